"""The ``overdue`` rule: a work order past its deadline and not done."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator

from . import RULES, FieldName, OperatorRule, RuleContext, Scan, _fmt


def _states(v: Any) -> Any:
    if not isinstance(v, list):
        raise ValueError("done must be a list of states")
    return v


def _grace(v: Any) -> Any:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
        raise ValueError("grace_s must be a non-negative number")
    return v


@RULES.register
class OverdueRule(OperatorRule):
    """``deadline_field`` (default ``deadline``), ``status_field`` (``status``), ``done``
    (``[COMPLETED, CLOSED]``), ``completed_field`` (``completed_time``), ``grace_s`` (0): hit
    when the deadline has passed at ``now_ms`` and the order is neither in a done state nor
    has a completion time. Evidence: deadline, status, seconds overdue."""

    order = 50
    type: Literal["overdue"]
    deadline_field: FieldName = "deadline"
    status_field: FieldName = "status"
    done: Annotated[list, BeforeValidator(_states)] = ["COMPLETED", "CLOSED"]
    completed_field: FieldName = "completed_time"
    grace_s: Annotated[int | float, BeforeValidator(_grace)] = 0

    def check(self, ctx: RuleContext, path: str) -> None:
        super().check(ctx, path)
        ctx.check_field(self.deadline_field, f"{path}.deadline_field", numeric=True)
        ctx.check_field(self.status_field, f"{path}.status_field")
        ctx.check_field(self.completed_field, f"{path}.completed_field")

    def compile(self, ctx: RuleContext) -> Scan:
        deadline_f, status_f, completed_f = self.deadline_field, self.status_field, self.completed_field
        done = frozenset(self.done)
        grace_ms = int(self.grace_s * 1000)
        make = self.hit("work order {status} {overdue_s} s past its deadline")
        keep = self.applies()

        def scan(records: list[dict], now_ms: int, out: list) -> None:
            cutoff = now_ms - grace_ms
            for i, r in enumerate(records):
                d = r.get(deadline_f)
                if d is None or d >= cutoff or r.get(status_f) in done or r.get(completed_f) is not None:
                    continue
                if keep is None or keep(r):
                    out.append(make(i, r, {"deadline": _fmt(d), "status": _fmt(r.get(status_f)),
                                           "overdue_s": _fmt((now_ms - d) // 1000)}))
        return scan
