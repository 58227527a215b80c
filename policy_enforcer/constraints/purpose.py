"""The purpose constraint: decided once per contract, not per record."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..blocks import Compiling, StrictStr
from . import CONSTRAINTS, CompiledConstraint, Constraint

RULE_PURPOSE = "constraint:purpose"


@CONSTRAINTS.register
class PurposeConstraint(Constraint):
    """ODRL leftOperand ``purpose`` / IDS ``USAGE_PURPOSE``: every purpose the consumer
    declared must be in ``in``. Decided once per contract at compile time: a contract
    whose consumer declared no purpose, or one outside the list, delivers nothing."""

    order = 10
    type: Literal["purpose"]
    in_: list[StrictStr] = Field(alias="in", min_length=1)

    def compile(self, ctx: Compiling, path: str, prefix: str) -> CompiledConstraint:
        allowed, declared = list(self.in_), list(ctx.purposes)
        outside = [p for p in declared if p not in allowed]
        blocked = None
        if not declared or outside:
            blocked = (RULE_PURPOSE, f"declared purposes {declared} are not all in the allowed {allowed}"
                       if declared else f"the consumer declared no purpose; allowed: {allowed}")
        return CompiledConstraint(path, blocked=blocked, section="purpose",
                                  evidence={"path": path, "allowed": allowed, "declared": declared})
