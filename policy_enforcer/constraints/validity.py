"""The validity constraint: a processing-time window, decided once per batch."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from ..blocks import Compiling
from . import CONSTRAINTS, CompiledConstraint, Constraint


@CONSTRAINTS.register
class ValidityConstraint(Constraint):
    """ODRL ``dateTime`` / IDS ``USAGE_DURING_INTERVAL``: processing time window, epoch ms.
    The plan intersects it with the contract's own window and every other validity
    constraint, and describes the result once."""

    order = 20
    type: Literal["validity"]
    not_before_ms: int | None = None
    not_after_ms: int | None = None

    @model_validator(mode="after")
    def _one(self):
        if self.not_before_ms is None and self.not_after_ms is None:
            raise ValueError("give not_before_ms and/or not_after_ms")
        if self.not_before_ms is not None and self.not_after_ms is not None and self.not_before_ms > self.not_after_ms:
            raise ValueError("not_before_ms is after not_after_ms")
        return self

    def compile(self, ctx: Compiling, path: str, prefix: str) -> CompiledConstraint:
        return CompiledConstraint(path, not_before_ms=self.not_before_ms, not_after_ms=self.not_after_ms,
                                  section=None)
