"""The ``max`` rule: a number above a ceiling (a height, a speed)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from . import RULES, FieldName, OperatorRule, RuleContext, Scan, _fmt

_UNITS = {"m": 1.0, "m/s": 1.0, "km/h": 1 / 3.6}


def _finite(v: Any) -> Any:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise ValueError("max must be a finite number")
    return v


def _unit(v: Any) -> Any:
    if v not in _UNITS:
        raise ValueError(f"unit {v!r} is not one of {', '.join(_UNITS)}")
    return v


@RULES.register
class MaxRule(OperatorRule):
    """``field`` (numeric), ``max``, ``unit`` (``m``, ``m/s`` or ``km/h``; default ``m/s``
    for a ``speed*`` field, else ``m``; km/h is converted to the field's m/s): hit when the
    value is above ``max``. Evidence: the value in ``unit``, ``max``, ``unit``."""

    order = 10
    type: Literal["max"]
    field: FieldName = Field(None, validate_default=True)
    max: Annotated[int | float, BeforeValidator(_finite)] = Field(None, validate_default=True)
    unit: Annotated[str | None, BeforeValidator(_unit)] = None

    def check(self, ctx: RuleContext, path: str) -> None:
        super().check(ctx, path)
        ctx.check_field(self.field, f"{path}.field", numeric=True)

    def compile(self, ctx: RuleContext) -> Scan:
        field, limit = self.field, self.max
        unit = self.unit or ("m/s" if field.startswith("speed") else "m")
        threshold = limit * _UNITS[unit]
        to_unit = 1 / _UNITS[unit]
        make = self.hit(f"{field} {{{field}}} {unit} above {{max}} {unit}")
        keep = self.applies()
        limit_s = _fmt(limit)

        def scan(records: list[dict], now_ms: int, out: list) -> None:
            for i, r in enumerate(records):
                v = r.get(field)
                if v is not None and v > threshold and (keep is None or keep(r)):
                    shown = round(v * to_unit, 2) if to_unit != 1 else v
                    out.append(make(i, r, {field: _fmt(shown), "max": limit_s, "unit": unit}))
        return scan
