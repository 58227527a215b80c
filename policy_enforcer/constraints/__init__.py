"""Constraints (ODRL: ``odrl:constraint`` on the permission), one module per type.

Each module defines one ``Constraint`` subclass registered under its ``type``: its pydantic
model, ``check`` against the product schema, ``compile`` into what the plan runs, and the
text ``Plan.describe()`` shows. **Adding a constraint is adding one module here**; this
package imports every module it holds, and nothing else names a constraint type.

Why compiled fragments and not one closure per constraint: a call costs about as much as
the comparison it wraps, and the data plane pays it for every record. A per-record
constraint becomes a few lines of Python (a test that ``return``s its rule id when it
fails) plus the constants it reads; ``plan.py`` joins them with the duties into one
generated function. The same fragment is also compiled alone, so when a record raises (a
value of the wrong type) the plan can tell which rule could not process it, with one
source of truth for what each rule means. Field names are only ever embedded via ``repr``
after they were checked against the schema; every value from the policy reaches the code
as a named constant, never as text.

Not every constraint is per record: purpose is decided once per contract against the
consumer's declared purposes (``blocked``), validity once per batch against its processing
time (``not_before_ms`` / ``not_after_ms``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..blocks import Block, Compiling, PolicyCheck, Registry, discover


@dataclass
class CompiledConstraint:
    """What the plan runs for one constraint.

    Per record (``code`` not empty): ``batch_code`` runs once per batch (sees ``now_ms``),
    ``code`` per record (sees ``r``) and returns ``rule`` when the record fails; both read
    ``consts``. Per contract: ``blocked`` (rule, reason) when the contract may deliver
    nothing at all. Per batch: a processing-time window. ``section`` is the key of
    ``Plan.describe()`` that lists it (None: described by the plan's window)."""

    path: str
    rule: str | None = None
    text: str = ""
    code: list[str] = field(default_factory=list)
    consts: dict[str, Any] = field(default_factory=dict)
    batch_code: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    blocked: tuple[str, str] | None = None
    not_before_ms: int | None = None
    not_after_ms: int | None = None
    section: str | None = "constraints"

    def description(self) -> dict:
        """Its entry in ``Plan.describe()[section]``."""
        if self.rule is None:
            return dict(self.evidence)
        return {"rule": self.rule, "path": self.path, "text": self.text, **self.evidence}


class Constraint(Block):
    """One constraint type. ``check`` raises PolicyError naming the path; ``compile`` gets
    ``prefix``, unique to this constraint in the plan, for the names of its constants."""

    def check(self, ctx: PolicyCheck, path: str) -> None:
        """Refuse what the product schema cannot support (a field that does not exist ...)."""

    def compile(self, ctx: Compiling, path: str, prefix: str) -> CompiledConstraint:
        raise NotImplementedError


CONSTRAINTS = Registry("constraint")
discover(__name__, __path__)
