"""Find, classify and scrub personal information in Chinese and English free text.

Detection runs every pattern on a width-normalised copy of the text and keeps
candidates in a fixed priority order, dropping any candidate that overlaps one
already kept. The order encodes which reading of an ambiguous span is more
specific: a 400 service number blocks everything, an e-mail beats the mobile
number in its local part, an IBAN beats the card-shaped digit groups inside it,
a checksummed ID beats a Luhn-valid "card", the Chinese phone patterns beat
libphonenumber's reading (phones.py), and name heuristics (names.py,
latin_names.py) come last because they are the weakest evidence.

Decisions worth knowing (the corpus labels in tests/policy_enforcer/pii/make_corpus.py
follow the same rules):

* An 18-character number whose region and birth date are valid but whose check
  character is wrong is reported as ``id_card`` only when an ID keyword
  (身份证, 证件号 …) appears just before it - a typo'd ID is still someone's ID.
  Without the keyword it is reported as nothing (not even a bank card): it is
  ID-shaped, and guessing "bank card" would be wrong either way. A number with
  an impossible birth date is never an ID.
* A 16-19 digit number is a bank card if a bank keyword precedes it (Luhn not
  required, people mistype); otherwise only if it passes Luhn, starts like a
  card (3/4/5/6/8/9 - date-based order numbers start with 1 or 2) and no
  order-number or ID keyword is nearer. Luhn alone would flag 1 in 10 order numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import patterns as P
from .checksums import hkid_valid, iban_valid, id_card_valid, id_structure_valid, luhn_valid, ssn_valid
from .latin_names import find_latin_names
from .names import find_names
from .normalize import normalize
from .phones import find_phones

__all__ = ["KINDS", "PiiMatch", "contains_pii", "detect", "scrub"]

KINDS: dict[str, str] = {
    "id_card": "[身份证号]",
    "mobile": "[手机号]",
    "landline": "[固定电话]",
    "plate": "[车牌号]",
    "bank_card": "[银行卡号]",
    "email": "[邮箱]",
    "name": "[姓名]",
    "phone": "[电话号码]",      # any other country's number, or a Chinese one of no clear type
    "iban": "[IBAN]",
    "passport": "[护照号]",     # passports and travel permits (港澳通行证, 台胞证)
    "ssn": "[社会安全号]",      # US social security number
}

_ANY_DIGIT = re.compile(r"[0-9]")
_CARD_FIRST_DIGITS = frozenset("345689")
_ASCII_LETTER = re.compile(r"[A-Za-z]")
_CJK = re.compile(r"[\u4e00-\u9fff]")
_LATIN_NAME_HINT = re.compile(r"[A-Z][a-z]|my name is")
_UPPER_DIGIT = re.compile(r"[A-Z][0-9A-Z]")
_DOC_HINT = re.compile(r"护照|通行证|台胞证|回乡证|旅行证|[Pp]assport|PASSPORT")
_PLATE_HINT = re.compile(r"[Pp]late|PLATE|[Rr]eg|REG|[Tt]ag|TAG|[Ll]icen")
_BLOCK = "_block"  # internal kind for spans that are known not to be PII


@dataclass(frozen=True, slots=True)
class PiiMatch:
    """One piece of personal information; ``text == original[start:end]``."""

    kind: str
    start: int
    end: int
    text: str


def _context(norm: str, start: int) -> int:
    """Which keyword group (``P.CTX_*``; 0 none) is nearest before ``start`` -
    the nearest one wins because hotline text lists several numbers in a row
    ("身份证…，银行卡号…")."""
    last = 0
    for m in P.CONTEXT.finditer(norm[max(0, start - P.CONTEXT_WINDOW):start].lower()):
        last = m.lastindex or 0
    return last


def _strip(s: str) -> str:
    return s.replace(" ", "").replace("-", "")


def is_latin(text: str) -> bool:
    """More ASCII letters than Chinese characters: an English (311) request."""
    return len(_ASCII_LETTER.findall(text)) > len(_CJK.findall(text))


def _iban(norm: str, start: int, end: int) -> int | None:
    """End of the longest valid IBAN at ``start``, dropping space-separated
    trailing groups the greedy pattern took from the next word."""
    while True:
        if iban_valid(norm[start:end]):
            return end
        end = norm.rfind(" ", start, end)
        if end - start < 15:
            return None


def _document_candidates(norm: str) -> list[tuple[int, int, str]]:
    """IBANs and identity documents other than the mainland resident ID."""
    out: list[tuple[int, int, str]] = []
    add = out.append
    if _UPPER_DIGIT.search(norm) is not None:  # IBAN and HKID start with capitals
        for m in P.IBAN.finditer(norm):
            end = _iban(norm, m.start(), m.end())
            if end is not None:
                add((m.start(), end, "iban"))
        for m in P.HKID.finditer(norm):
            if hkid_valid(m.group()) and (m.group().endswith(")") or _context(norm, m.start()) == P.CTX_ID):
                add((m.start(), m.end(), "id_card"))
    if "(" in norm:
        for m in P.ID_BRACKETED.finditer(norm):
            if _context(norm, m.start()) == P.CTX_ID:
                add((m.start(), m.end(), "id_card"))
    if "-" in norm:
        for m in P.SSN.finditer(norm):
            if ssn_valid(m.group()) and _context(norm, m.start()) != P.CTX_ORDER:
                add((m.start(), m.end(), "ssn"))
    if _DOC_HINT.search(norm) is not None:
        for m in P.TRAVEL_DOC.finditer(norm):
            add((m.start("doc"), m.end("doc"), "passport"))
    return out


def _numeric_candidates(norm: str) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    add = out.append
    for m in P.SERVICE.finditer(norm):
        add((m.start(), m.end(), _BLOCK))
    out.extend(_document_candidates(norm))
    for m in P.ID18.finditer(norm):
        s = _strip(m.group())
        if id_card_valid(s) or (id_structure_valid(s) and _context(norm, m.start()) == 1):
            add((m.start(), m.end(), "id_card"))
    for m in P.ID15.finditer(norm):
        if id_card_valid(m.group()):
            add((m.start(), m.end(), "id_card"))
    for m in P.BANK_CARD.finditer(norm):
        digits = _strip(m.group())
        ctx = _context(norm, m.start())
        if ctx == P.CTX_BANK or (
            ctx in (0, P.CTX_PHONE)
            and (digits[0] in _CARD_FIRST_DIGITS or "2221" <= digits[:4] <= "2720")  # Mastercard 2-series
            and luhn_valid(digits)
            and not (len(digits) == 18 and id_structure_valid(digits))
        ):
            add((m.start(), m.end(), "bank_card"))
    for m in P.MOBILE.finditer(norm):
        add((m.start(), m.end(), "mobile"))
    for m in P.LANDLINE.finditer(norm):
        add((m.start(), m.end(), "landline"))
    for m in P.LANDLINE_LOCAL.finditer(norm):
        add((m.start(1), m.end(1), "landline"))
    for m in P.PLATE.finditer(norm):
        # An ordinary plate has at most two letters in its last five places;
        # this keeps e.g. "苏ABCDE" (an English word after 苏) out.
        tail = m.group()[-5:]
        if sum(c.isdigit() for c in tail) >= 3 or not tail[-1].isalnum():
            add((m.start(), m.end(), "plate"))
    if _PLATE_HINT.search(norm) is not None:
        for m in P.PLATE_LATIN.finditer(norm):
            plate = _strip(m.group("plate"))
            if 5 <= len(plate) <= 8 and not plate.isdigit() and not plate.isalpha():
                add((m.start("plate"), m.end("plate"), "plate"))
    return out


def detect(text: str) -> list[PiiMatch]:
    """All personal information in ``text``: non-overlapping, sorted by start.

    Full-width digits/letters are matched as ASCII; spans and ``text`` refer to
    the original string.
    """
    norm = normalize(text)
    cands: list[tuple[int, int, str]] = []
    if "@" in norm:
        cands.extend((m.start(), m.end(), "email") for m in P.EMAIL.finditer(norm))
    if _ANY_DIGIT.search(norm) is not None:
        numeric = _numeric_candidates(norm)
        cands.extend(numeric)
        cands.extend(find_phones(norm, lambda pos: _context(norm, pos), is_latin, numeric))
    cands.extend((s, e, "name") for s, e in find_names(norm))
    if _LATIN_NAME_HINT.search(norm) is not None:
        cands.extend((s, e, "name") for s, e in find_latin_names(norm))
    if not cands:
        return []

    kept: list[tuple[int, int, str]] = []
    for start, end, kind in cands:
        if all(end <= ks or start >= ke for ks, ke, _ in kept):
            kept.append((start, end, kind))
    kept.sort()
    return [PiiMatch(k, s, e, text[s:e]) for s, e, k in kept if k != _BLOCK]


def scrub(text: str) -> str:
    """``text`` with every match replaced by its ``KINDS`` token; everything
    else is kept byte for byte."""
    matches = detect(text)
    if not matches:
        return text
    parts: list[str] = []
    pos = 0
    for m in matches:
        parts.append(text[pos:m.start])
        parts.append(KINDS[m.kind])
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts)


def contains_pii(text: str) -> bool:
    """True when ``detect`` finds anything (used by the compliance rule)."""
    return bool(detect(text))
