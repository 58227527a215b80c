"""The ``pii`` rule: personal information in free text, reported by kind, never by value."""

from __future__ import annotations

from typing import Literal

from ..pii import detect as _detect_pii
from . import RULES, FieldName, OperatorRule, RuleContext, Scan


@RULES.register
class PiiRule(OperatorRule):
    """``field`` (text, default ``content``): hit when personal information is detected; the
    evidence lists the kinds found (``pii_kinds: mobile,name``) and how many, never the values."""

    order = 40
    type: Literal["pii"]
    field: FieldName = "content"

    def check(self, ctx: RuleContext, path: str) -> None:
        super().check(ctx, path)
        ctx.check_field(self.field, f"{path}.field", text=True)

    def compile(self, ctx: RuleContext) -> Scan:
        field = self.field
        make = self.hit(f"personal data in {field}: {{pii_kinds}}")
        keep = self.applies()

        def scan(records: list[dict], now_ms: int, out: list) -> None:
            for i, r in enumerate(records):
                text = r.get(field)
                if not text or (keep is not None and not keep(r)):
                    continue
                found = _detect_pii(text)
                if found:
                    kinds = sorted({m.kind for m in found})
                    out.append(make(i, r, {"field": field, "pii_kinds": ",".join(kinds), "matches": str(len(found))}))
        return scan
