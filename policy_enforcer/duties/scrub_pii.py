"""The scrub_pii duty: personal information removed from free text.

Also the duty identifier lineage adds on its own (``lineage.py``): a free-text field that
may contain a protected identifier is scrubbed of the record's own identifier values
first, then of any other personal information, whether or not the policy asks for it.
"""

from __future__ import annotations

from typing import Callable, Literal

from ..blocks import Compiling, StrictStr
from ..errors import PolicyError
from ..lineage import context_scrubber
from ..schema_fields import FieldType
from . import DUTIES, FieldDuty, FieldOutput, FieldSlot


def checked_scrubber(scrubber: Callable[[str], str]) -> Callable[[str], str]:
    def scrub(v: str) -> str:
        if v.__class__ is not str:
            raise TypeError(f"expected a string, got {type(v).__name__}")
        out = scrubber(v)
        if out.__class__ is not str:
            raise TypeError(f"scrubber returned {type(out).__name__}, not str")
        return out

    return scrub


def default_scrubber(path: str) -> Callable[[str], str]:
    """``policy_enforcer.pii.scrub``, imported only when a policy needs it."""
    try:
        from .. import pii  # noqa: PLC0415 - lazy on purpose: most plans never scrub
    except ImportError as exc:
        raise PolicyError(f"scrub_pii needs policy_enforcer.pii, which cannot be imported ({exc})", path) from None
    return pii.scrub


@DUTIES.register
class ScrubPiiDuty(FieldDuty):
    """Remove personal information from free text with the plan's scrubber."""

    order = 50
    verb = "scrubs"
    type: Literal["scrub_pii"]
    field: StrictStr

    def check_type(self, ft: FieldType, path: str) -> None:
        if ft.base != "string":
            raise PolicyError(f"field {self.field!r} is {ft.label}; scrub_pii needs a string field", path)

    def compile_field(self, slot: FieldSlot, ctx: Compiling) -> FieldOutput:
        scrubber = ctx.scrubber if ctx.scrubber is not None else default_scrubber(slot.path)
        if not slot.context:
            return self.output(slot, slot.call(slot.const + "({v})"), "personal information scrubbed from the text",
                               checked_scrubber(scrubber))
        why = " (automatic: the catalog says the text may contain them)" if slot.automatic else ""
        return self.output(slot, slot.call(slot.const + "({v}, r)"),
                           f"the record's own {', '.join(slot.context)} and any other personal information "
                           f"scrubbed from the text{why}", context_scrubber(scrubber, slot.context))
