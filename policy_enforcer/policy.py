"""The policy document: its pydantic models and its validation against a product schema.

Why this shape: it follows ODRL's split into a permission (with constraints), duties
(obligations the mesh fulfils in transit) and prohibitions (recorded for audit), because
that is the vocabulary contracts and regulators already use, but keeps each rule a flat
object with a ``type`` so a YAML author can write one per line. The document is validated
in two steps: structure (pydantic, strict: ``"3"`` is not an integer) and meaning against
the product's Avro schema (every field exists and has a type the rule can work on).
Nothing unknown is ignored: an unknown key, rule type or field is a PolicyError whose
message starts with its path, e.g. ``policy.duties[2].type: unknown duty 'encrypt'``.

Document (all keys optional except each rule's ``type``)::

    {"description": "...",
     "permission": {"fields": [...],            # allow-list; default every field
                    "constraints": [...]},      # purpose, validity, geofence, value, event_time
     "duties": [...],                           # drop, mask, pseudonymise, generalise, scrub_pii
     "prohibitions": [...]}                     # onward_transfer, re_identification, ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas import RecordSchema

from .errors import PolicyError
from .geo import Polygon, parse_geojson
from .lineage import ProductTerms, check_contract
from .schema_fields import INTEGER, NUMERIC, FieldType, field_types

StrictStr = Annotated[str, Field(strict=True)]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


# ---- constraints (ODRL: odrl:constraint on the permission) ---------------------------------

class PurposeConstraint(_Rule):
    """ODRL leftOperand ``purpose`` / IDS ``USAGE_PURPOSE``: every purpose the consumer
    declared must be in ``in``. Decided once per contract at compile time."""
    type: Literal["purpose"]
    in_: list[StrictStr] = Field(alias="in", min_length=1)


class ValidityConstraint(_Rule):
    """ODRL ``dateTime`` / IDS ``USAGE_DURING_INTERVAL``: processing time window, epoch ms."""
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


class GeofenceConstraint(_Rule):
    """ODRL ``spatial`` / IDS ``USAGE_LOCATION``: the record's position inside (or outside)
    polygons given as GeoJSON."""
    type: Literal["geofence"]
    inside: dict | None = None
    outside: dict | None = None
    lat_field: StrictStr = "lat"
    lon_field: StrictStr = "lon"

    @model_validator(mode="after")
    def _one(self):
        if (self.inside is None) == (self.outside is None):
            raise ValueError("give exactly one of inside or outside")
        return self


ValueOp = Literal["==", "!=", "<", "<=", ">", ">=", "in", "not_in"]
Scalar = Union[bool, int, float, str]


class ValueConstraint(_Rule):
    """A condition on one field of the record (ODRL constraint with a custom leftOperand).
    A null value fails every comparison, including ``!=`` and ``not_in``."""
    type: Literal["value"]
    field: StrictStr
    op: ValueOp
    value: Scalar | list[Scalar]


class EventTimeConstraint(_Rule):
    """ODRL ``elapsedTime`` / IDS ``USAGE_UNTIL_DELETION``-like freshness: the record's own
    time field not before / not after absolute instants (epoch ms) and at most ``max_age_s``
    old relative to the batch's processing time."""
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


CONSTRAINTS: dict[str, type[_Rule]] = {
    "purpose": PurposeConstraint, "validity": ValidityConstraint, "geofence": GeofenceConstraint,
    "value": ValueConstraint, "event_time": EventTimeConstraint,
}


# ---- duties (ODRL: odrl:duty / obligation, fulfilled by the mesh in transit) ----------------

class DropDuty(_Rule):
    """ODRL ``delete`` applied to fields: they are not delivered."""
    type: Literal["drop"]
    fields: list[StrictStr] = Field(min_length=1)


class MaskDuty(_Rule):
    """ODRL ``anonymize`` by masking characters: all, or keep the first/last N."""
    type: Literal["mask"]
    field: StrictStr
    keep_first: int = Field(0, ge=0, le=64)
    keep_last: int = Field(0, ge=0, le=64)
    char: StrictStr = Field("*", min_length=1, max_length=1)


class PseudonymiseDuty(_Rule):
    """ODRL ``anonymize`` (pseudonymisation): keyed HMAC-SHA256 with the contract's key,
    hex of the first ``bytes`` bytes. Joinable within one contract, not across contracts."""
    type: Literal["pseudonymise"]
    field: StrictStr
    bytes: int = Field(16, ge=8, le=32)


class GeneraliseDuty(_Rule):
    """Coarsen a value: round a number to ``decimals`` or truncate an epoch-ms time to a
    ``period_s`` boundary."""
    type: Literal["generalise"]
    field: StrictStr
    decimals: int | None = Field(None, ge=-6, le=12)
    period_s: int | None = Field(None, gt=0, le=366 * 86400)

    @model_validator(mode="after")
    def _one(self):
        if (self.decimals is None) == (self.period_s is None):
            raise ValueError("give exactly one of decimals or period_s")
        return self


class ScrubPiiDuty(_Rule):
    """Remove personal information from free text with the plan's scrubber."""
    type: Literal["scrub_pii"]
    field: StrictStr


DUTIES: dict[str, type[_Rule]] = {
    "drop": DropDuty, "mask": MaskDuty, "pseudonymise": PseudonymiseDuty,
    "generalise": GeneraliseDuty, "scrub_pii": ScrubPiiDuty,
}

# ---- prohibitions (ODRL: odrl:prohibition; recorded, not enforced on records) ---------------

PROHIBITIONS: dict[str, str] = {
    "onward_transfer": "The consumer must not pass the data on to a third party.",
    "re_identification": "The consumer must not try to re-identify persons or aircraft behind pseudonyms or masks.",
    "commercial_resale": "The consumer must not sell the data or products derived from it.",
    "cross_border_transfer": "The data must not leave the jurisdiction (PIPL / Data Security Law).",
    "ai_training": "The data must not be used to train machine-learning models.",
    "data_linkage": "The data must not be linked with other data sets about the same persons.",
}


class Prohibition(_Rule):
    type: StrictStr
    note: StrictStr | None = None


class Permission(_Rule):
    fields: list[StrictStr] | None = None
    constraints: list[Any] = Field(default_factory=list)


class PolicyDocument(_Rule):
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
    constraints: list[tuple[str, _Rule]] = field(default_factory=list)   # (path, rule)
    duties: list[tuple[str, _Rule]] = field(default_factory=list)
    prohibitions: list[Prohibition] = field(default_factory=list)
    polygons: dict[int, list[Polygon]] = field(default_factory=dict)     # constraint index -> polygons
    # free-text field -> the protected identifiers it is scrubbed of (policy_enforcer/lineage.py)
    context_scrub: dict[str, list[str]] = field(default_factory=dict)


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _model(cls: type[_Rule], data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise PolicyError(f"expected an object, got {type(data).__name__}", path)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal"))))
        if err["type"] == "extra_forbidden":
            return _raise(f"unknown key {loc[-1]!r}", path + _loc(loc[:-1]) + f".{loc[-1]}")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "required"
        raise PolicyError(msg, path + _loc(loc)) from None


def _raise(msg: str, path: str):
    raise PolicyError(msg, path)


def _typed(kind: str, registry: dict[str, type[_Rule]], data: Any, path: str) -> _Rule:
    if not isinstance(data, dict):
        raise PolicyError(f"expected an object, got {type(data).__name__}", path)
    t = data.get("type")
    if t is None:
        raise PolicyError(f"missing {kind} type (known: {', '.join(registry)})", f"{path}.type")
    if not isinstance(t, str) or t not in registry:
        raise PolicyError(f"unknown {kind} {t!r} (known: {', '.join(registry)})", f"{path}.type")
    return _model(registry[t], data, path)


def _field(fields: dict[str, FieldType], name: str, path: str, schema: RecordSchema) -> FieldType:
    ft = fields.get(name)
    if ft is None:
        raise PolicyError(f"unknown field {name!r} in {schema.full_name} (fields: {', '.join(fields)})", path)
    return ft


def _check_value(c: ValueConstraint, ft: FieldType, path: str) -> None:
    values = c.value if c.op in ("in", "not_in") else [c.value]
    if c.op in ("in", "not_in"):
        if not isinstance(c.value, list) or not c.value:
            raise PolicyError(f"op {c.op!r} needs a non-empty list", f"{path}.value")
    elif isinstance(c.value, list):
        raise PolicyError(f"op {c.op!r} needs a single value, got a list", f"{path}.value")
    base = ft.base
    for i, v in enumerate(values):
        vpath = f"{path}.value" + (f"[{i}]" if c.op in ("in", "not_in") else "")
        if base in NUMERIC:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            if ok and base in INTEGER and isinstance(v, float) and c.op in ("==", "!=", "in", "not_in") and not v.is_integer():
                ok = False
        elif base in ("string", "enum"):
            ok = isinstance(v, str)
        elif base == "boolean":
            ok = isinstance(v, bool)
        else:
            raise PolicyError(f"field {ft.name!r} is {ft.label}; value constraints work on numbers, "
                              "strings, enums and booleans", f"{path}.field")
        if not ok:
            raise PolicyError(f"{v!r} is not a valid value for field {ft.name!r} ({ft.label})", vpath)
        if base == "enum" and v not in ft.symbols:
            raise PolicyError(f"{v!r} is not a symbol of {ft.name!r} (symbols: {', '.join(ft.symbols)})", vpath)
    if base in ("boolean", "enum") and c.op in ("<", "<=", ">", ">="):
        raise PolicyError(f"op {c.op!r} is not defined for {ft.label} field {ft.name!r}", f"{path}.op")


def check_policy(policy: Any, schema: RecordSchema, product: ProductTerms | None = None) -> CheckedPolicy:
    """Validate ``policy`` against ``schema`` (and the product's identifier lineage) and
    return it resolved; raise PolicyError."""
    doc = _model(PolicyDocument, policy, "policy")
    fields = field_types(schema)
    perm = doc.permission
    allowed = list(fields)
    if perm.fields is not None:
        seen = set()
        for i, name in enumerate(perm.fields):
            _field(fields, name, f"policy.permission.fields[{i}]", schema)
            if name in seen:
                raise PolicyError(f"field {name!r} listed twice", f"policy.permission.fields[{i}]")
            seen.add(name)
        allowed = [f for f in fields if f in seen]
    checked = CheckedPolicy(doc, fields, allowed)

    for i, raw in enumerate(perm.constraints):
        path = f"policy.permission.constraints[{i}]"
        c = _typed("constraint", CONSTRAINTS, raw, path)
        if isinstance(c, GeofenceConstraint):
            for attr in ("lat_field", "lon_field"):
                ft = _field(fields, getattr(c, attr), f"{path}.{attr}", schema)
                if ft.base not in ("float", "double"):
                    raise PolicyError(f"field {ft.name!r} is {ft.label}, a coordinate must be float or double",
                                      f"{path}.{attr}")
            key = "inside" if c.inside is not None else "outside"
            checked.polygons[i] = parse_geojson(getattr(c, key), f"{path}.{key}")
        elif isinstance(c, ValueConstraint):
            _check_value(c, _field(fields, c.field, f"{path}.field", schema), path)
        elif isinstance(c, EventTimeConstraint):
            ft = _field(fields, c.field, f"{path}.field", schema)
            if ft.base not in INTEGER:
                raise PolicyError(f"field {ft.name!r} is {ft.label}; event_time needs an epoch-ms int or long",
                                  f"{path}.field")
            if c.not_before_ms is not None and c.not_after_ms is not None and c.not_before_ms > c.not_after_ms:
                raise PolicyError("not_before_ms is after not_after_ms", path)
        checked.constraints.append((path, c))

    dropped: set[str] = set()
    transformed: dict[str, str] = {}
    for i, raw in enumerate(doc.duties):
        path = f"policy.duties[{i}]"
        d = _typed("duty", DUTIES, raw, path)
        checked.duties.append((path, d))
        if isinstance(d, DropDuty):
            for j, name in enumerate(d.fields):
                _field(fields, name, f"{path}.fields[{j}]", schema)
                if name in transformed:
                    raise PolicyError(f"field {name!r} is also transformed by {transformed[name]}", f"{path}.fields[{j}]")
                dropped.add(name)
            continue
        ft = _field(fields, d.field, f"{path}.field", schema)
        if isinstance(d, (MaskDuty, ScrubPiiDuty)) and ft.base != "string":
            raise PolicyError(f"field {d.field!r} is {ft.label}; {d.type} needs a string field", f"{path}.field")
        if isinstance(d, PseudonymiseDuty) and ft.base not in ("string", "enum", "int", "long"):
            raise PolicyError(f"field {d.field!r} is {ft.label}; pseudonymise needs a string, enum, int or long field",
                              f"{path}.field")
        if isinstance(d, GeneraliseDuty):
            if d.decimals is not None and ft.base not in NUMERIC:
                raise PolicyError(f"field {d.field!r} is {ft.label}; rounding needs a number field", f"{path}.field")
            if d.period_s is not None and ft.base not in INTEGER:
                raise PolicyError(f"field {d.field!r} is {ft.label}; period_s needs an epoch-ms int or long field",
                                  f"{path}.field")
            if d.period_s is not None and ft.logical not in (None, "timestamp-millis"):
                raise PolicyError(f"field {d.field!r} is {ft.label}; period_s needs milliseconds", f"{path}.field")
        if d.field not in allowed:
            raise PolicyError(f"field {d.field!r} is not delivered (not in policy.permission.fields)", f"{path}.field")
        if d.field in dropped:
            raise PolicyError(f"field {d.field!r} is dropped by an earlier duty", f"{path}.field")
        if d.field in transformed:
            raise PolicyError(f"field {d.field!r} is already transformed by {transformed[d.field]}", f"{path}.field")
        transformed[d.field] = path
    checked.delivered = [f for f in allowed if f not in dropped]
    if not checked.delivered:
        raise PolicyError("the policy delivers no field at all", "policy.permission.fields")

    for i, raw in enumerate(doc.prohibitions):
        path = f"policy.prohibitions[{i}]"
        p = _model(Prohibition, raw, path)
        if p.type not in PROHIBITIONS:
            raise PolicyError(f"unknown prohibition {p.type!r} (known: {', '.join(PROHIBITIONS)})", f"{path}.type")
        checked.prohibitions.append(p)
    if product is not None and product.identifiers:
        single = {d.field: (path, d) for path, d in checked.duties if not isinstance(d, DropDuty)}
        checked.context_scrub = check_contract(product.identifiers, checked.delivered, single,
                                               "policy.permission.fields")
    return checked


def validate_policy(policy: dict, schema: RecordSchema, product: ProductTerms | None = None) -> None:
    """Raise PolicyError (message starting with the path) unless ``policy`` compiles for ``schema``."""
    check_policy(policy, schema, product)
