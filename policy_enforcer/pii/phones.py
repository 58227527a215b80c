"""Phone numbers of any country, validated by libphonenumber (``phonenumbers``).

The Chinese patterns in ``patterns.py`` run first (they are cheap, measured on
the generated corpus, and know 转/分机 extensions and keyword-introduced local
numbers). This module finds everything else: a loose regex picks digit runs
that could be a phone number, and ``phonenumbers`` decides whether the run is a
valid number of some country. We do not use ``phonenumbers.PhoneNumberMatcher``
on the whole text: it ran at ~3,300 sentences/s on the hotline corpus (the
whole detector does ~50,000) and, with a Chinese default region, accepted any
10-11 digit run as a Chinese number ("ticket 4155550199").

A number without an international prefix is ambiguous, so it has to look like
a number of the country we try (``_regions``):

* a trunk ``0`` (0755-…, 020 7946 0958, 07911 123456): China, then the UK
  (UK first in an English sentence);
* a North American 3-3-4 grouping with separators ((212) 555-0143,
  415.555.0199, 1-604-555-0142): NANP (``US`` metadata accepts Canada too);
* ten bare digits: NANP only right after a phone word (call/phone/电话…), and
  never after an order/case word - bare digit runs are usually references.

Toll-free, shared-cost, premium and UAN numbers (400/800 lines, 1-800-…) and
Chinese numbers with a short local part (020-12345, a city's 12345 hotline) are
services, not people, and are reported as nothing.
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import PhoneNumberType, ValidationResult

from .patterns import CTX_ORDER, CTX_PHONE

__all__ = ["find_phones"]

# A run of digits and the separators people type between groups. The
# look-behind keeps references out ("#4155550199", "SR-2024…", "v1.2.3…");
# '/' and ':' are not separators, so dates and times never become candidates.
CANDIDATE = re.compile(
    r"(?<![0-9A-Za-z_#@./+-])"
    r"(?P<intl>\+ ?|00(?=[1-9])|\(\+(?=[1-9][0-9]{0,2}\)))?"
    r"(?P<body>[(（]?[0-9](?:[0-9]|[ .-](?=[0-9(（])|[(（)）] ?(?=[0-9])){5,24}[0-9])"
    r"(?P<ext> ?(?:ext\.?|x|#|转|分机) ?[0-9]{1,6})?"
    r"(?![0-9A-Za-z])"
)
_NANP = re.compile(r"(?:\+?1[ .-]?)?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-])[0-9]{3}[ .-][0-9]{4}")
_NOT_PERSONAL = frozenset({PhoneNumberType.TOLL_FREE, PhoneNumberType.PREMIUM_RATE,
                           PhoneNumberType.SHARED_COST, PhoneNumberType.UAN})
_CN_KIND = {PhoneNumberType.MOBILE: "mobile", PhoneNumberType.FIXED_LINE: "landline"}
_WIDTH = str.maketrans("（）", "()")
_NOT_DIGIT = re.compile(r"[^0-9]")


def _regions(body: str, digits: str, cue: int, latin: bool) -> tuple[str, ...]:
    """Which countries a number written without a country code may belong to."""
    if digits[0] == "0":
        return ("GB", "CN") if latin else ("CN", "GB")
    if _NANP.fullmatch(body) is not None:
        return ("US",)
    if cue == CTX_PHONE and len(digits) == 10 and body.isdigit():
        return ("US",)
    return ()


def _parse(number: str, region: str, explicit: bool = False):
    """The parsed number if it is valid; with an explicit country code a
    number of a possible length for that country is enough (reserved and
    newly opened ranges the metadata does not know yet, e.g. +44 7700 900…)."""
    try:
        n = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None
    if phonenumbers.is_valid_number(n):
        return n
    if (explicit and phonenumbers.is_possible_number_with_reason(n) == ValidationResult.IS_POSSIBLE
            and phonenumbers.region_code_for_country_code(n.country_code) != "ZZ"):
        return n
    return None


def classify(raw: str, cue: int = 0, latin: bool = False) -> str | None:
    """The kind of the phone number ``raw`` (normalised text, without an
    extension), or None when it is not a personal phone number.

    ``cue``: the nearest keyword group before it (``patterns.CTX_*``, 0 none).
    """
    raw = raw.translate(_WIDTH).strip()
    digits = _NOT_DIGIT.sub("", raw)
    if not 7 <= len(digits) <= 15:
        return None
    if raw.startswith(("+", "00", "(+")):
        n = _parse(raw, "CN", explicit=True)  # CN metadata reads the 00 international prefix
    elif raw.startswith("(") and 2 <= raw.find(")") <= 4 and raw[1] != "0" and _NANP.fullmatch(raw) is None:
        cc, _, rest = raw[1:].partition(")")  # "(86)755 2655 1087": a country code in brackets
        n = _parse(f"+{cc} {rest}", "CN")
    else:
        if cue == CTX_ORDER:
            return None
        for region in _regions(raw, digits, cue, latin):
            n = _parse(raw, region)
            if n is not None:
                break
        else:
            return None
    if n is None:
        return None
    kind = phonenumbers.number_type(n)
    if kind in _NOT_PERSONAL:
        return None
    if n.country_code == 86:
        # Valid but short (020-12345, 0755-12345): a city's service line, not a person's.
        if len(str(n.national_number)) < 9:
            return None
        return _CN_KIND.get(kind, "phone")
    return "phone"


def find_phones(norm: str, cue_at, is_latin, covered: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Spans of phone numbers in normalised text.

    ``cue_at(start)`` gives the nearest keyword group before a position (the
    detector's context function), ``is_latin(text)`` whether the text is an
    English request; ``covered`` are spans already found by the
    more specific patterns, whose digit runs are not looked at again. A run
    that is not valid as a whole is retried without its first and then
    without its last group, so a number right after "Unit 3 " is still found.
    """
    out = []
    latin = None
    for m in CANDIDATE.finditer(norm):
        start, end = m.start(), m.end("body")
        if any(s <= start and end <= e for s, e, _ in covered):
            continue
        if len(_NOT_DIGIT.sub("", norm[start:end])) < 7:
            continue  # amounts, times, room numbers: too short for any phone number
        if norm[start] in "(（" and not any(c in ")）" for c in norm[start:end]):
            start += 1  # "Oliver Bennett (0121 496 0321)": the bracket opens an aside
        cue = cue_at(start)
        if latin is None:
            latin = is_latin(norm)
        for s, e in _trials(norm, start, end):
            kind = classify(norm[s:e], cue, latin)
            if kind is not None:
                if e == m.end("body") and m.group("ext"):
                    e = m.end("ext")
                out.append((s, e, kind))
                break
    return out


def _trials(norm: str, start: int, end: int):
    yield start, end
    first = norm.find(" ", start, end)
    if first != -1:
        yield first + 1, end
    last = norm.rfind(" ", start, end)
    if last != -1:
        yield start, last
