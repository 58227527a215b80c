"""Behaviour of detect/scrub per kind, on hand-picked positives and traps."""

import ast
import dataclasses
import sys
from pathlib import Path

import pytest

import policy_enforcer.pii as pii
from policy_enforcer.pii import KINDS, PiiMatch, contains_pii, detect, scrub


def found(text):
    return [(m.kind, m.text) for m in detect(text)]


def test_kinds_tokens_are_the_agreed_ones():
    assert KINDS == {
        "id_card": "[身份证号]", "mobile": "[手机号]", "landline": "[固定电话]", "plate": "[车牌号]",
        "bank_card": "[银行卡号]", "email": "[邮箱]", "name": "[姓名]", "phone": "[电话号码]",
        "iban": "[IBAN]", "passport": "[护照号]", "ssn": "[社会安全号]",
    }


def test_match_is_frozen_and_text_is_original_slice():
    text = "电话13812345678"
    (m,) = detect(text)
    assert m == PiiMatch("mobile", 2, 13, "13812345678")
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.start = 0  # type: ignore[misc]


@pytest.mark.parametrize("text, expected", [
    ("身份证号11010519491231002X。", [("id_card", "11010519491231002X")]),
    ("证件：44011320141005001x", [("id_card", "44011320141005001x")]),
    ("号码 110105 19491231 002X 已登记", [("id_card", "110105 19491231 002X")]),
    ("老身份证420106520314123已过期", [("id_card", "420106520314123")]),
    ("手机13812345678", [("mobile", "13812345678")]),
    ("电话138 1234 5678谢谢", [("mobile", "138 1234 5678")]),
    ("电话138-1234-5678", [("mobile", "138-1234-5678")]),
    ("请回电+86 13812345678", [("mobile", "+86 13812345678")]),
    ("请回电0086-13812345678", [("mobile", "0086-13812345678")]),
    ("请回电(+86)19912345678", [("mobile", "(+86)19912345678")]),
    ("电话010-62345678", [("landline", "010-62345678")]),
    ("电话(0755)86001234", [("landline", "(0755)86001234")]),
    ("电话（０２１）６２３４５６７８", [("landline", "（０２１）６２３４５６７８")]),
    ("电话0571-8765432转123", [("landline", "0571-8765432转123")]),
    ("电话027-8765 4321", [("landline", "027-8765 4321")]),
    ("座机85761234打不通", [("landline", "85761234")]),
    ("车牌京A12345", [("plate", "京A12345")]),
    ("车牌粤B·D12345", [("plate", "粤B·D12345")]),
    ("车牌沪A12345F", [("plate", "沪A12345F")]),
    ("警车京A1234警", [("plate", "京A1234警")]),
    ("领馆车沪A1234领", [("plate", "沪A1234领")]),
    ("教练车鄂A1234学", [("plate", "鄂A1234学")]),
    ("卡号6222 0212 3456 7890 128", [("bank_card", "6222 0212 3456 7890 128")]),
    ("转到4111111111111111了", [("bank_card", "4111111111111111")]),
    ("银行卡号6222021234567890127（可能记错）", [("bank_card", "6222021234567890127")]),
    ("发到zhang_san.01@whu.edu.cn。", [("email", "zhang_san.01@whu.edu.cn")]),
    ("我叫张伟反映噪音", [("name", "张伟")]),
    ("我是王小明，住3栋", [("name", "王小明")]),
    ("本人李娜，反映", [("name", "李娜")]),
    ("姓名：欧阳娜娜", [("name", "欧阳娜娜")]),
    ("联系人:诸葛亮", [("name", "诸葛亮")]),
    ("张先生来电称", [("name", "张")]),
    ("物业的王经理说", [("name", "王")]),
    ("，王小明先生反映", [("name", "王小明")]),
])
def test_positives(text, expected):
    assert found(text) == expected


@pytest.mark.parametrize("text", [
    "拨打12345热线", "已报110、119和120", "工单号2024051200123", "2024年5月1日", "20240501",
    "2024-05-01 18:30", "金额3500元", "欠薪4万5千元", "3栋2单元1502室", "约500米", "客服400-820-8820",
    "热线800-810-8888", "号码12812345678", "号码1381234567", "号码138123456789",
    "对方号码36042619910102009X核实无此人",  # wrong check, no ID keyword
    "身份证号360426199113010079",  # impossible date, even after the keyword
    "会员码6222021234567890127",  # Luhn fails, no bank keyword
    "订单号6222021234567890128",  # Luhn passes but it is an order number
    "交易号20240512123456789012",  # date-based, starts with 2
    "我是高三学生", "我是车主", "保安师傅", "语文老师", "班主任老师", "我是本小区业主",
    "苏ABCDE", "京A123", "停电10:00-22:00",
])
def test_negatives(text):
    assert detect(text) == []
    assert not contains_pii(text)


def test_wrong_check_character_after_id_keyword_is_still_an_id():
    assert found("身份证号36042619910102009X") == [("id_card", "36042619910102009X")]


def test_email_wins_over_the_mobile_inside_it():
    assert found("邮箱13812345678@139.com") == [("email", "13812345678@139.com")]


def test_full_width_digits_report_original_spans():
    text = "我叫刘洋，手机１３８１２３４５６７８，身份证１１０１０５１９４９１２３１００２Ｘ"
    matches = detect(text)
    assert [m.kind for m in matches] == ["name", "mobile", "id_card"]
    for m in matches:
        assert text[m.start:m.end] == m.text
    assert matches[1].text == "１３８１２３４５６７８"


def test_scrub_keeps_everything_else():
    text = "我叫张伟，住3栋2单元1502室，手机13812345678，车牌京A12345，2024年5月1日已打12345。"
    assert scrub(text) == "我叫[姓名]，住3栋2单元1502室，手机[手机号]，车牌[车牌号]，2024年5月1日已打12345。"
    plain = "幸福家园2栋门口每天早上6点有商贩占道卖菜，约20个摊位。"
    assert scrub(plain) == plain


def test_detect_output_is_sorted_and_non_overlapping():
    text = "联系人：冯雪梅，电话13812345678或(0755)86001234-321，邮箱fxm@qq.com，卡号6222021234567890128"
    matches = detect(text)
    assert [m.kind for m in matches] == ["name", "mobile", "landline", "email", "bank_card"]
    assert all(a.end <= b.start for a, b in zip(matches, matches[1:]))


# Maintained validators the detector relies on (declared in pyproject.toml).
ALLOWED_LIBRARIES = {"phonenumbers", "stdnum", "faker"}


def test_package_imports_only_the_standard_library_and_its_validators():
    """The detector runs inside any processor; it must not drag in Kafka or
    other citymesh packages."""
    pkg_dir = Path(pii.__file__).parent
    for path in pkg_dir.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: stays inside the package
                    continue
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top in ALLOWED_LIBRARIES, f"{path.name} imports {name}"


def test_surname_lists():
    from policy_enforcer.pii.surnames import COMPOUND_SURNAMES, SINGLE_SURNAMES

    assert len(set(SINGLE_SURNAMES)) == len(SINGLE_SURNAMES), "duplicate surname"
    assert 180 <= len(SINGLE_SURNAMES) <= 240
    assert {"欧阳", "司马", "诸葛"} <= set(COMPOUND_SURNAMES)
    assert all(len(s) == 2 for s in COMPOUND_SURNAMES)


def test_compound_surname_before_honorific():
    assert found("欧阳女士反映") == [("name", "欧阳")]


@pytest.mark.parametrize("text, expected", [
    ("Call me at 415-555-0199", [("phone", "415-555-0199")]),
    ("UK office +44 20 7946 0958 today", [("phone", "+44 20 7946 0958")]),
    ("Reach me on (212) 555-0143.", [("phone", "(212) 555-0143")]),
    ("Berlin: +49 30 901820", [("phone", "+49 30 901820")]),
    ("电话0755-83211234", [("landline", "0755-83211234")]),
    ("Text me at 13812345678", [("mobile", "13812345678")]),
    ("请回电+86 755 2655 1087", [("landline", "+86 755 2655 1087")]),
    ("office (415) 555-0110 ext. 204", [("phone", "(415) 555-0110 ext. 204")]),
    ("call 4155550199 please", [("phone", "4155550199")]),
    ("Refund to DE89 3704 0044 0532 0130 00 please", [("iban", "DE89 3704 0044 0532 0130 00")]),
    ("IBAN GB29NWBK60161331926819.", [("iban", "GB29NWBK60161331926819")]),
    ("Amex 3782 822463 10005 charged", [("bank_card", "3782 822463 10005")]),
    ("card 5555-5555-5555-4444", [("bank_card", "5555-5555-5555-4444")]),
    ("My SSN is 536-22-8437", [("ssn", "536-22-8437")]),
    ("HKID A123456(3) lost", [("id_card", "A123456(3)")]),
    ("护照号E83046217", [("passport", "E83046217")]),
    ("New York plates HJK-4821 on the car", [("plate", "HJK-4821")]),
    ("My neighbour John Smith leaves bins out", [("name", "John Smith")]),
    ("— Maria Garcia", [("name", "Maria Garcia")]),
    ("signed: Li Wei", [("name", "Li Wei")]),
    ("the landlord, Mr. Patel, refuses", [("name", "Patel")]),
    ("邻居王海涛把车停在楼道", [("name", "王海涛")]),
])
def test_international_positives(text, expected):
    assert found(text) == expected


@pytest.mark.parametrize("text", [
    "Order #112-4456789-1234567 was late", "ticket 4155550199 closed", "on 2024-05-01 at 18:30",
    "paid $1,250.00 on 05/12/2024", "Apt 4B, 221 Elm Street, ZIP 94110-1234", "Bus 38R at 7:45 pm",
    "case 2024-0051-8832", "Call 1-800-275-2273 for Apple", "客服400-910-5757", "拨打0755-12345热线",
    "Potholes on Martin Luther King Jr Blvd", "Graffiti at Lincoln Elementary School", "lab named Buddy",
    "IBAN GB29NWBK60161331926818 (typo)", "Visa ending in 4821", "In 2023 the city repaved Lincoln Park",
    "我是龙华区居民", "老板周末不开门", "师傅马上到",
])
def test_international_negatives(text):
    assert detect(text) == []
