"""Personal-information detection for citizen-request free text (12345 and
311 style, Chinese and English).

Standard library plus three maintained data/validation libraries
(``phonenumbers`` for phone numbers of every country, ``python-stdnum`` for
IBAN and SSN, Faker's per-locale name lists for Latin-script names), so it can
run inside any stream processor without pulling in Kafka or the rest of
citymesh. Public API::

    detect(text) -> list[PiiMatch]   # non-overlapping, sorted by start
    scrub(text) -> str               # each match -> KINDS[kind]
    contains_pii(text) -> bool
    KINDS                            # kind -> replacement token
    id_card_valid(s), luhn_valid(s)  # the checksums, for direct use
"""

from .checksums import id_card_valid, luhn_valid
from .detector import KINDS, PiiMatch, contains_pii, detect, scrub

__all__ = ["KINDS", "PiiMatch", "contains_pii", "detect", "id_card_valid", "luhn_valid", "scrub"]
