"""The ``required`` rule: a value that must be there (a real-name registration id)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from . import RULES, FieldName, OperatorRule, RuleContext, Scan, _fmt


@RULES.register
class RequiredRule(OperatorRule):
    """``field``: hit when the value is null or blank (e.g. ``uin``, the real-name
    registration id). Evidence: the value."""

    order = 20
    type: Literal["required"]
    field: FieldName = Field(None, validate_default=True)

    def check(self, ctx: RuleContext, path: str) -> None:
        super().check(ctx, path)
        ctx.check_field(self.field, f"{path}.field")

    def compile(self, ctx: RuleContext) -> Scan:
        field = self.field
        make = self.hit(f"{field} is missing")
        keep = self.applies()

        def scan(records: list[dict], now_ms: int, out: list) -> None:
            for i, r in enumerate(records):
                v = r.get(field)
                if (v is None or (v.__class__ is str and not v.strip())) and (keep is None or keep(r)):
                    out.append(make(i, r, {field: _fmt(v)}))
        return scan
