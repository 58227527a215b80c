"""Checksum and structure rules for resident IDs and bank cards."""

from datetime import date, timedelta

import pytest

from policy_enforcer.pii import id_card_valid, luhn_valid
from policy_enforcer.pii.checksums import id_check_char, id_structure_valid


@pytest.mark.parametrize("number", [
    "11010519491231002X",  # the example printed in GB 11643-1999
    "360426199101010071",  # python-stdnum test vectors
    "44011320141005001x",  # lower-case x accepted
    "412723199010050012",
    "110102199101010078",
])
def test_valid_18_digit_ids(number):
    assert id_card_valid(number)


@pytest.mark.parametrize("number, why", [
    ("36042619910102009X", "wrong check character"),
    ("360426199113010079", "month 13"),
    ("11010519490230002X", "30 February"),
    ("01010519491231002X", "region starting with 0"),
    ("99010519491231002X", "9 + non-province"),
    ("110105194912310", "15 digits but 1949-12-31 is not YYMMDD"),
    ("1101051949123100", "16 characters"),
    ("11010519491231002Y", "bad last character"),
    ("", "empty"),
])
def test_invalid_ids(number, why):
    assert not id_card_valid(number), why


def test_check_character_of_standard_example():
    assert id_check_char("11010519491231002") == "X"
    assert id_check_char("36042619910101007") == "1"


def test_birth_date_in_future_is_rejected():
    tomorrow = date.today() + timedelta(days=1)
    body = "110105" + tomorrow.strftime("%Y%m%d") + "001"
    assert id_structure_valid(body + id_check_char(body)) is False
    past = "110105" + "20000101" + "001"
    assert id_card_valid(past + id_check_char(past))


def test_fifteen_digit_ids_need_region_and_date():
    assert id_card_valid("420106520314123")      # 1952-03-14
    assert not id_card_valid("420106521314123")  # month 13
    assert not id_card_valid("000106520314123")  # region 00


def test_full_width_digits_are_accepted():
    assert id_card_valid("１１０１０５１９４９１２３１００２Ｘ")
    assert luhn_valid("４１１１１１１１１１１１１１１１")


def test_structure_ignores_check_character():
    assert id_structure_valid("36042619910102009X")
    assert not id_structure_valid("360426199113010079")


@pytest.mark.parametrize("number, ok", [
    ("4111111111111111", True),
    ("79927398713", True),
    ("79927398710", False),
    ("6222 0212 3456 7890 128", True),
    ("6222-0212-3456-7890-128", True),
    ("6222021234567890127", False),
    ("4111a11111111111", False),
    ("0", False),
    ("", False),
])
def test_luhn(number, ok):
    assert luhn_valid(number) is ok
