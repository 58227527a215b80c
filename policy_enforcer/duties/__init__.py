"""Duties fulfilled in transit (ODRL: ``odrl:duty``), one module per type.

Each module defines one ``Duty`` subclass registered under its ``type``: its pydantic
model, ``check`` against the product schema, the expression its field is delivered as
(``compile_field``) with the text ``Plan.describe()`` and the output schema's ``doc``
show, and what identifier lineage (``lineage.py``) may assume of it. **Adding a duty is
adding one module here**; this package imports every module it holds, and nothing else
names a duty type (but lineage, which scrubs free text with ``scrub_pii`` on its own).

Every delivered field gets one expression over the source record ``r`` (a plain copy, or
the copy passed through a mask, pseudonym, rounding, time truncation or PII scrubber);
``plan.py`` assembles them into one dict display, the fastest way CPython builds a dict.
Null stays null for nullable fields; any other value the duty cannot process raises, and
the plan rejects the record naming the duty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..blocks import Block, Compiling, PolicyCheck, Registry, discover
from ..errors import PolicyError
from ..schema_fields import FieldType

LINEAGE_PATH = "policy.permission.fields"  # where a duty lineage adds (not the policy) is reported
_LINEAGE_DUTY = "scrub_pii"                # the duty lineage adds to free text that may hold an identifier


@dataclass
class FieldOutput:
    """How one delivered field is produced; ``rule`` is None for a plain copy."""

    name: str
    expr: str
    rule: str | None = None
    path: str | None = None
    text: str = "copied"
    as_string: bool = False          # the output schema types it as string
    consts: dict[str, Any] = field(default_factory=dict)
    keyed: bool = False              # its duty read the contract's key: the value is the contract's own


@dataclass
class FieldSlot:
    """One delivered field being compiled: its schema type, the path of the duty on it, the
    identifiers lineage says its text may contain, and the names its expression may use."""

    name: str
    type: FieldType
    index: int
    path: str
    context: list[str]
    automatic: bool = False          # the duty was added by lineage, not written in the policy

    @property
    def src(self) -> str:
        return f"r[{self.name!r}]"

    @property
    def const(self) -> str:
        """The name of the duty's one constant (a function or a parameter)."""
        return f"_d{self.index}"

    @property
    def var(self) -> str:
        return f"v{self.index}"

    def call(self, fn_expr: str) -> str:
        """``fn_expr`` names the value once as ``{v}``; null passes through a nullable field."""
        if self.type.nullable:
            return f"(None if ({self.var} := {self.src}) is None else {fn_expr.format(v=self.var)})"
        return fn_expr.format(v=self.src)


class Duty(Block):
    """One duty type. ``verb`` says what it does to an identifier in lineage errors
    (default: its type)."""

    verb: ClassVar[str] = ""

    def check(self, ctx: PolicyCheck, path: str) -> None:
        """Refuse what the schema cannot support or another duty already claims."""

    def transforms(self) -> str | None:
        """The one field this duty turns into something else, if any."""
        return None

    def withholds(self) -> list[str]:
        """The fields this duty keeps from the consumer."""
        return []

    def compile_field(self, slot: FieldSlot, ctx: Compiling) -> FieldOutput:
        """How the field this duty transforms is delivered (see ``output``)."""
        raise NotImplementedError

    def output(self, slot: FieldSlot, expr: str, text: str, const: Any, as_string: bool = False) -> FieldOutput:
        """The FieldOutput of ``slot`` under this duty: ``expr`` reads ``const`` as ``slot.const``."""
        return FieldOutput(slot.name, expr, f"duty:{self.type}:{slot.name}", slot.path, text, as_string,
                           {slot.const: const})

    def describe(self, path: str) -> list[dict]:
        """Entries for ``Plan.describe()["duties"]`` besides those of its delivered field."""
        return []

    def covers_derived(self, identifier: str) -> bool:
        """Whether a field derived from an identifier is safe under this duty when the
        identifier itself is treated as ``identifier`` (a duty type, or ``withheld``)."""
        return False


class FieldDuty(Duty):
    """A duty that transforms one delivered field; subclasses declare ``field: StrictStr``
    after their ``type`` (so a model lists its keys as a policy author writes them)."""

    def transforms(self) -> str:
        return self.field

    def check(self, ctx: PolicyCheck, path: str) -> None:
        self.check_type(ctx.type_of(self.field, f"{path}.field"), f"{path}.field")
        if self.field not in ctx.allowed:
            raise PolicyError(f"field {self.field!r} is not delivered (not in policy.permission.fields)",
                              f"{path}.field")
        if self.field in ctx.dropped:
            raise PolicyError(f"field {self.field!r} is dropped by an earlier duty", f"{path}.field")
        if self.field in ctx.transformed:
            raise PolicyError(f"field {self.field!r} is already transformed by {ctx.transformed[self.field]}",
                              f"{path}.field")
        ctx.transformed[self.field] = path

    def check_type(self, ft: FieldType, path: str) -> None:
        """Refuse a field of a type this duty cannot process."""


def compile_fields(delivered: list[str], fields: dict[str, FieldType], duties: list[tuple[str, Duty]],
                   context_scrub: dict[str, list[str]], ctx: Compiling) -> list[FieldOutput]:
    """One FieldOutput per delivered field, in schema order: the field's duty compiled, or a
    plain copy. Free text lineage says may contain an identifier (``context_scrub``) and no
    duty touches is scrubbed anyway."""
    by_field = {d.transforms(): (path, d) for path, d in duties if d.transforms() is not None}
    out: list[FieldOutput] = []
    for n, name in enumerate(delivered):
        context = context_scrub.get(name) or []
        path, d = by_field.get(name, (LINEAGE_PATH, None))
        if d is None and not context:
            out.append(FieldOutput(name, f"r[{name!r}]"))
            continue
        slot = FieldSlot(name, fields[name], n, path, context, automatic=d is None)
        if d is None:
            d = DUTIES[_LINEAGE_DUTY].model_validate({"type": _LINEAGE_DUTY, "field": name})
        keyed_before, ctx.keyed = ctx.keyed, False
        out.append(d.compile_field(slot, ctx))
        out[-1].keyed = ctx.keyed
        ctx.keyed = keyed_before or ctx.keyed
    return out


DUTIES = Registry("duty")
discover(__name__, __path__)
