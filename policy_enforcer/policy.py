"""The policy document: its pydantic models and its validation against a product schema.

Why this shape: it follows ODRL's split into a permission (with constraints), duties
(obligations the mesh fulfils in transit) and prohibitions (recorded for audit), because
that is the vocabulary contracts and regulators already use, but keeps each rule a flat
object with a ``type`` so a YAML author can write one per line. The document is validated
in two steps: structure (pydantic, strict: ``"3"`` is not an integer) and meaning against
the product's Avro schema (every field exists and has a type the rule can work on).
Nothing unknown is ignored: an unknown key, rule type or field is a PolicyError whose
message starts with its path, e.g. ``policy.duties[2].type: unknown duty 'encrypt'``.

Each constraint and duty type is one class in ``constraints/`` or ``duties/``, registered
under its ``type``; this module only walks the document and looks types up by name.

Document (all keys optional except each rule's ``type``)::

    {"description": "...",
     "permission": {"fields": [...],            # allow-list; default every field
                    "constraints": [...]},      # purpose, validity, geofence, value, event_time
     "duties": [...],                           # drop, mask, pseudonymise, generalise, scrub_pii
     "prohibitions": [...]}                     # onward_transfer, re_identification, ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from schemas import RecordSchema

from .blocks import PolicyCheck, StrictModel, StrictStr, parse_model
from .constraints import CONSTRAINTS, Constraint
# the built-in blocks' models, by name, for importers that build or read policies with them
from .constraints.event_time import EventTimeConstraint
from .constraints.geofence import GeofenceConstraint
from .constraints.purpose import PurposeConstraint
from .constraints.validity import ValidityConstraint
from .constraints.value import ValueConstraint
from .duties import DUTIES, Duty
from .duties.drop import DropDuty
from .duties.generalise import GeneraliseDuty
from .duties.mask import MaskDuty
from .duties.pseudonymise import PseudonymiseDuty
from .duties.scrub_pii import ScrubPiiDuty
from .errors import PolicyError
from .lineage import ProductTerms, check_contract
from .schema_fields import FieldType, field_types

__all__ = [
    "CONSTRAINTS", "DUTIES", "PROHIBITIONS", "CheckedPolicy", "PolicyDocument", "Permission", "Prohibition",
    "check_policy", "validate_policy",
    "PurposeConstraint", "ValidityConstraint", "GeofenceConstraint", "ValueConstraint", "EventTimeConstraint",
    "DropDuty", "MaskDuty", "PseudonymiseDuty", "GeneraliseDuty", "ScrubPiiDuty",
]

# ---- prohibitions (ODRL: odrl:prohibition; recorded, not enforced on records) ---------------

PROHIBITIONS: dict[str, str] = {
    "onward_transfer": "The consumer must not pass the data on to a third party.",
    "re_identification": "The consumer must not try to re-identify persons or aircraft behind pseudonyms or masks.",
    "commercial_resale": "The consumer must not sell the data or products derived from it.",
    "cross_border_transfer": "The data must not leave the jurisdiction (PIPL / Data Security Law).",
    "ai_training": "The data must not be used to train machine-learning models.",
    "data_linkage": "The data must not be linked with other data sets about the same persons.",
}


class Prohibition(StrictModel):
    type: StrictStr
    note: StrictStr | None = None


class Permission(StrictModel):
    fields: list[StrictStr] | None = None
    constraints: list[Any] = Field(default_factory=list)


class PolicyDocument(StrictModel):
    description: StrictStr | None = None
    permission: Permission = Field(default_factory=Permission)
    duties: list[Any] = Field(default_factory=list)
    prohibitions: list[Any] = Field(default_factory=list)


# ---- validation -----------------------------------------------------------------------------

@dataclass
class CheckedPolicy:
    """A policy that passed validation, with everything compile_plan needs resolved."""

    document: PolicyDocument
    fields: dict[str, FieldType]               # every schema field
    delivered: list[str]                       # output fields, schema order
    constraints: list[tuple[str, Constraint]] = field(default_factory=list)   # (path, rule)
    duties: list[tuple[str, Duty]] = field(default_factory=list)
    prohibitions: list[Prohibition] = field(default_factory=list)
    # free-text field -> the protected identifiers it is scrubbed of (policy_enforcer/lineage.py)
    context_scrub: dict[str, list[str]] = field(default_factory=dict)


def check_policy(policy: Any, schema: RecordSchema, product: ProductTerms | None = None) -> CheckedPolicy:
    """Validate ``policy`` against ``schema`` (and the product's identifier lineage) and
    return it resolved; raise PolicyError."""
    doc = parse_model(PolicyDocument, policy, "policy")
    fields = field_types(schema)
    perm = doc.permission
    allowed = list(fields)
    ctx = PolicyCheck(schema, fields, allowed)
    if perm.fields is not None:
        seen = set()
        for i, name in enumerate(perm.fields):
            ctx.type_of(name, f"policy.permission.fields[{i}]")
            if name in seen:
                raise PolicyError(f"field {name!r} listed twice", f"policy.permission.fields[{i}]")
            seen.add(name)
        ctx.allowed = allowed = [f for f in fields if f in seen]
    checked = CheckedPolicy(doc, fields, allowed)

    for i, raw in enumerate(perm.constraints):
        path = f"policy.permission.constraints[{i}]"
        c = CONSTRAINTS.parse(raw, path)
        c.check(ctx, path)
        checked.constraints.append((path, c))
    for i, raw in enumerate(doc.duties):
        path = f"policy.duties[{i}]"
        d = DUTIES.parse(raw, path)
        d.check(ctx, path)
        checked.duties.append((path, d))
    checked.delivered = [f for f in allowed if f not in ctx.dropped]
    if not checked.delivered:
        raise PolicyError("the policy delivers no field at all", "policy.permission.fields")

    for i, raw in enumerate(doc.prohibitions):
        path = f"policy.prohibitions[{i}]"
        p = parse_model(Prohibition, raw, path)
        if p.type not in PROHIBITIONS:
            raise PolicyError(f"unknown prohibition {p.type!r} (known: {', '.join(PROHIBITIONS)})", f"{path}.type")
        checked.prohibitions.append(p)
    if product is not None and product.identifiers:
        single = {d.transforms(): (path, d) for path, d in checked.duties if d.transforms() is not None}
        checked.context_scrub = check_contract(product.identifiers, checked.delivered, single,
                                               "policy.permission.fields")
    return checked


def validate_policy(policy: dict, schema: RecordSchema, product: ProductTerms | None = None) -> None:
    """Raise PolicyError (message starting with the path) unless ``policy`` compiles for ``schema``."""
    check_policy(policy, schema, product)
