"""Width normalisation that never changes string length.

Hotline operators type on Chinese IMEs, so digits, letters, ``@``, parentheses
and colons often arrive full-width (``１３８``, ``（０１０）``, ``：``). Every
mapping here is one code point to one code point, so an offset in the
normalised text is the same offset in the original text: detectors match on
the normalised copy and report spans (and text) from the original.
"""

from __future__ import annotations

import re

__all__ = ["normalize"]

_TABLE: dict[int, int] = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}  # ！..～ -> !..~
_TABLE[0x3000] = 0x20  # ideographic space
for _cp in (0x2010, 0x2011, 0x2012, 0x2013, 0x2014, 0x2015, 0x2212, 0xFE63):
    _TABLE[_cp] = 0x2D  # the many dashes people type between digit groups

# Checking first is much cheaper than translate(), which walks a dict per
# character. The check deliberately ignores the full-width punctuation that is
# in almost every Chinese sentence (，：；（）！？): the patterns accept both
# widths of those, so only digits, letters and phone/e-mail symbols force a
# translation.
_NEEDS = re.compile("[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a\uff0b\uff0d\uff0e\uff20\uff3f\uff05"
                    "\u3000\u2010-\u2015\u2212\ufe63]")


def normalize(text: str) -> str:
    """Return ``text`` with full-width ASCII, ideographic spaces and dash
    variants mapped to ASCII; ``len(normalize(t)) == len(t)`` always.

    Text whose only full-width characters are common punctuation is returned
    unchanged (see ``_NEEDS``); callers must accept ``：（）`` as well as ``:()``.
    """
    if _NEEDS.search(text) is None:
        return text
    return text.translate(_TABLE)
