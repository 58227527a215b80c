"""The event-time constraint: the record's own time within bounds and fresh enough."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ..blocks import Compiling, PolicyCheck, StrictStr
from ..errors import PolicyError
from ..schema_fields import INTEGER
from . import CONSTRAINTS, CompiledConstraint, Constraint


@CONSTRAINTS.register
class EventTimeConstraint(Constraint):
    """ODRL ``elapsedTime`` / IDS ``USAGE_UNTIL_DELETION``-like freshness: the record's own
    time field not before / not after absolute instants (epoch ms) and at most ``max_age_s``
    old relative to the batch's processing time."""

    order = 50
    type: Literal["event_time"]
    field: StrictStr
    not_before_ms: int | None = None
    not_after_ms: int | None = None
    max_age_s: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _some(self):
        if self.not_before_ms is None and self.not_after_ms is None and self.max_age_s is None:
            raise ValueError("give not_before_ms, not_after_ms and/or max_age_s")
        return self

    def check(self, ctx: PolicyCheck, path: str) -> None:
        ft = ctx.type_of(self.field, f"{path}.field")
        if ft.base not in INTEGER:
            raise PolicyError(f"field {ft.name!r} is {ft.label}; event_time needs an epoch-ms int or long",
                              f"{path}.field")
        if self.not_before_ms is not None and self.not_after_ms is not None and self.not_before_ms > self.not_after_ms:
            raise PolicyError("not_before_ms is after not_after_ms", path)

    def compile(self, ctx: Compiling, path: str, prefix: str) -> CompiledConstraint:
        p = prefix
        rule = ctx.rule_id(f"constraint:event_time:{self.field}")
        consts: dict[str, Any] = {f"{p}r": rule}
        batch: list[str] = []
        tests = ["v is None"]
        lows = []
        if self.not_before_ms is not None:
            consts[f"{p}nb"] = self.not_before_ms
            lows.append(f"{p}nb")
        if self.max_age_s is not None:
            consts[f"{p}age"] = int(round(self.max_age_s * 1000))
            lows.append(f"now_ms - {p}age")
        if lows:
            batch.append(f"{p}lo = max({', '.join(lows)})" if len(lows) > 1 else f"{p}lo = {lows[0]}")
            tests.append(f"v < {p}lo")
        if self.not_after_ms is not None:
            consts[f"{p}na"] = self.not_after_ms
            tests.append(f"v > {p}na")
        code = [f"v = r[{self.field!r}]", f"if {' or '.join(tests)}: return {p}r"]
        parts = [f"not before {self.not_before_ms}" if self.not_before_ms is not None else "",
                 f"not after {self.not_after_ms}" if self.not_after_ms is not None else "",
                 f"at most {self.max_age_s:g} s old" if self.max_age_s is not None else ""]
        return CompiledConstraint(path, rule, f"{self.field} " + ", ".join(x for x in parts if x), code,
                                  consts, batch,
                                  evidence={"field": self.field, "not_before_ms": self.not_before_ms,
                                            "not_after_ms": self.not_after_ms, "max_age_s": self.max_age_s})
