"""The generalise duty: a number rounded, or an epoch-ms time truncated to a period."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..blocks import Compiling, StrictStr
from ..errors import PolicyError
from ..schema_fields import INTEGER, NUMERIC, FieldType
from . import DUTIES, FieldDuty, FieldOutput, FieldSlot


@DUTIES.register
class GeneraliseDuty(FieldDuty):
    """Coarsen a value: round a number to ``decimals`` or truncate an epoch-ms time to a
    ``period_s`` boundary."""

    order = 40
    verb = "generalises"
    type: Literal["generalise"]
    field: StrictStr
    decimals: int | None = Field(None, ge=-6, le=12)
    period_s: int | None = Field(None, gt=0, le=366 * 86400)

    @model_validator(mode="after")
    def _one(self):
        if (self.decimals is None) == (self.period_s is None):
            raise ValueError("give exactly one of decimals or period_s")
        return self

    def check_type(self, ft: FieldType, path: str) -> None:
        if self.decimals is not None and ft.base not in NUMERIC:
            raise PolicyError(f"field {self.field!r} is {ft.label}; rounding needs a number field", path)
        if self.period_s is not None and ft.base not in INTEGER:
            raise PolicyError(f"field {self.field!r} is {ft.label}; period_s needs an epoch-ms int or long field",
                              path)
        if self.period_s is not None and ft.logical not in (None, "timestamp-millis"):
            raise PolicyError(f"field {self.field!r} is {ft.label}; period_s needs milliseconds", path)

    def compile_field(self, slot: FieldSlot, ctx: Compiling) -> FieldOutput:
        p, v = slot.const, slot.var
        if self.decimals is not None:
            return self.output(slot, slot.call(f"round({{v}}, {p})"), f"rounded to {self.decimals} decimals",
                               self.decimals)
        # the value is named once even when not nullable: ``x - x % p`` reads it twice
        expr = slot.call(f"({{v}} - {{v}} % {p})") if slot.type.nullable else f"(({v} := {slot.src}) - {v} % {p})"
        return self.output(slot, expr, f"truncated to a {self.period_s} s period", self.period_s * 1000)
