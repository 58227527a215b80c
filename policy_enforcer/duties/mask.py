"""The mask duty: characters of a text replaced, all or all but the first/last N."""

from __future__ import annotations

from typing import Callable, Literal

from pydantic import Field

from ..blocks import Compiling, StrictStr
from ..errors import PolicyError
from ..schema_fields import FieldType
from . import DUTIES, FieldDuty, FieldOutput, FieldSlot


def make_mask(keep_first: int, keep_last: int, char: str) -> Callable[[str], str]:
    """Mask all but the first/last characters; a value too short to keep anything is masked whole."""
    keep = keep_first + keep_last

    def mask(v: str) -> str:
        if v.__class__ is not str:
            raise TypeError(f"expected a string, got {type(v).__name__}")
        n = len(v)
        if n <= keep:
            return char * n
        return v[:keep_first] + char * (n - keep) + v[n - keep_last:]

    return mask


@DUTIES.register
class MaskDuty(FieldDuty):
    """ODRL ``anonymize`` by masking characters: all, or keep the first/last N. A field
    derived from a masked identifier may be masked too."""

    order = 20
    verb = "masks"
    type: Literal["mask"]
    field: StrictStr
    keep_first: int = Field(0, ge=0, le=64)
    keep_last: int = Field(0, ge=0, le=64)
    char: StrictStr = Field("*", min_length=1, max_length=1)

    def check_type(self, ft: FieldType, path: str) -> None:
        if ft.base != "string":
            raise PolicyError(f"field {self.field!r} is {ft.label}; mask needs a string field", path)

    def compile_field(self, slot: FieldSlot, ctx: Compiling) -> FieldOutput:
        return self.output(slot, slot.call(slot.const + "({v})"),
                           f"masked with {self.char!r}, keeping first {self.keep_first} and last {self.keep_last}",
                           make_mask(self.keep_first, self.keep_last, self.char), as_string=True)

    def covers_derived(self, identifier: str) -> bool:
        return identifier == "mask"
