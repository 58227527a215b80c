"""Operator rules: what the city operator and the regulator watch on every record.

Contract policies decide what one consumer receives; operator rules are the mesh's own
watch list over a product (a drone above 120 m, inside a no-fly zone, without a real-name
registration; personal data in a hotline ticket, an overdue work order). A hit does not
change delivery; the runner turns it into an Alert on ``cm.alerts``.

Why rules are data: the operator edits thresholds, severities and zone lists in YAML
without touching code, and an unknown rule type or field fails when the rules are
compiled (naming the rule), not in the data plane. Each rule type is one module of this
package, one ``OperatorRule`` subclass registered under its ``type`` (its pydantic model,
its check against the product schema, its compiled scan and its default alert message),
the way constraints and duties are: **adding a rule type is adding one module here**. Why compiled closures: this runs per
record in the enforcement runner, so every rule is turned once into a tight loop over the
batch with its thresholds, enum sets, zone indexes and authorisation sets bound as local
constants; the per-record path is a dict look-up and a comparison. Kafka-free, like the
rest of ``policy_enforcer``.

Rule format (one dict per rule, e.g. a YAML list)::

    - id: uav-height-ceiling          # required; becomes Alert.rule_id
      type: max                       # max | required | zone | pii | overdue
      severity: HIGH                  # INFO | LOW | MEDIUM | HIGH | CRITICAL (default MEDIUM)
      field: height_agl_m
      max: 120
      unit: m                         # max only: m | m/s | km/h (km/h is converted to the field's m/s)
      when: {uav_class: [LIGHT, SMALL]}   # optional, any type: only records whose field is in the list
      subject: serial_number          # optional; default serial_number or order_no
      message: "{uav_class} UAV at {height_agl_m} m above the {max} m ceiling"   # optional, formatted with the evidence

Types (``RULES``; today ``max``, ``required``, ``zone``, ``pii`` and ``overdue``): each
module's class docstring lists its keys and when it hits.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable

from pydantic import BeforeValidator, PrivateAttr, ValidationInfo

from schemas import RecordSchema

from ..blocks import Block, Registry, discover, parse_model
from ..errors import PolicyError
from ..schema_fields import NUMERIC, FieldType, field_types

SEVERITIES = ("INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL")
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")

Scan = Callable[[list[dict], int, list["Hit"]], None]


@dataclass(frozen=True, slots=True)
class Hit:
    """One record breaking one rule. ``evidence`` holds the values that broke it, as strings."""

    rule_id: str
    severity: str
    subject: str
    message: str
    evidence: dict[str, str]
    index: int  # position of the record in the evaluated batch


def _fmt(v: Any) -> str:
    return "" if v is None else str(v)


def _evidence_message(template: str, evidence: dict[str, str], rule_id: str) -> str:
    try:
        return template.format_map(evidence)
    except (KeyError, IndexError, ValueError):
        return f"{rule_id}: {template}"


# ---- checks of a rule's own keys (pydantic validators with the messages authors see) --------

def _check_field_name(v: Any, info: ValidationInfo) -> str:
    """A key naming a schema field: a non-empty string (checked against the schema later)."""
    if not isinstance(v, str) or not v:
        raise ValueError(f"{info.field_name} is required")
    return v


def _check_severity(v: Any) -> str:
    if v not in SEVERITIES:
        raise ValueError(f"severity {v!r} is not one of {', '.join(SEVERITIES)}")
    return v


def _check_when(v: Any) -> Any:
    if v is not None and (not isinstance(v, dict) or not v):
        raise ValueError("when must map field names to lists of values")
    return v


def _check_message(v: Any) -> Any:
    if v is not None and not isinstance(v, str):
        raise ValueError("message must be text")
    return v


FieldName = Annotated[str, BeforeValidator(_check_field_name)]


@dataclass
class RuleContext:
    """One rule list being compiled for a schema: the schema's fields, the zone sets rules
    may name (GeoJSON by name), which operator may fly in which zones, and a cache blocks
    share (a zone set parsed once for every rule that names it)."""

    schema: RecordSchema
    zones: dict[str, Any]
    authorisations: dict[str, frozenset]
    types: dict[str, FieldType] = field(init=False)
    cache: dict = field(default_factory=dict)

    def __post_init__(self):
        self.types = field_types(self.schema)

    def check_field(self, name: str, path: str, numeric: bool = False, text: bool = False) -> str:
        """``name`` if the schema has it (a number / a text, when asked); else PolicyError at ``path``."""
        ft = self.types.get(name)
        if ft is None:
            raise PolicyError(f"unknown field {name!r} in schema {self.schema.name}", path)
        if numeric and ft.base not in NUMERIC:
            raise PolicyError(f"field {name!r} is {ft.label}, not a number", path)
        if text and ft.base != "string":
            raise PolicyError(f"field {name!r} is {ft.label}, not text", path)
        return name


class OperatorRule(Block):
    """What every rule has: ``id``, ``severity``, ``subject`` (the field naming who broke
    it; default ``serial_number`` or ``order_no``), ``when`` (apply only to records whose
    fields hold one of the listed values) and ``message`` (an alert template over the
    evidence; each type has a default). A type adds its keys, ``check`` (against the
    schema, after ``super().check``) and ``compile`` (the scan over a batch)."""

    id: str
    severity: Annotated[str, BeforeValidator(_check_severity)] = "MEDIUM"
    subject: Annotated[str | None, BeforeValidator(_check_field_name)] = None
    when: Annotated[dict | None, BeforeValidator(_check_when)] = None
    message: Annotated[str | None, BeforeValidator(_check_message)] = None
    _subject: str = PrivateAttr("")
    _when: tuple[tuple[str, frozenset], ...] = PrivateAttr(())

    def check(self, ctx: RuleContext, path: str) -> None:
        default = next((f for f in ("serial_number", "order_no") if f in ctx.types), None)
        subject = self.subject if "subject" in self.model_fields_set else default
        if subject is None:
            raise PolicyError("subject is required", f"{path}.subject")
        self._subject = ctx.check_field(subject, f"{path}.subject")
        when = []
        for name, values in (self.when or {}).items():
            ctx.check_field(name, f"{path}.when.{name}")
            if not isinstance(values, list) or not values:
                raise PolicyError(f"when.{name} must be a non-empty list", f"{path}.when.{name}")
            ft = ctx.types[name]
            if ft.base == "enum":
                bad = [v for v in values if v not in ft.symbols]
                if bad:
                    raise PolicyError(f"{bad!r} not among {name}'s symbols {list(ft.symbols)}", f"{path}.when.{name}")
            when.append((name, frozenset(values)))
        self._when = tuple(when)

    def compile(self, ctx: RuleContext) -> Scan:
        raise NotImplementedError

    def hit(self, default_message: str) -> Callable[[int, dict, dict[str, str]], Hit]:
        """A hit factory: evidence = the broken values plus the ``when`` fields (why the rule applied)."""
        rid, severity, subject = self.id, self.severity, self._subject
        message = self.message or default_message
        when_fields = tuple(f for f, _ in self._when)

        def make(i: int, r: dict, evidence: dict[str, str]) -> Hit:
            for f in when_fields:
                evidence[f] = _fmt(r.get(f))
            return Hit(rid, severity, _fmt(r.get(subject)), _evidence_message(message, evidence, rid), evidence, i)

        return make

    def applies(self) -> Callable[[dict], bool] | None:
        """The ``when`` filter, composed once; None when the rule applies to every record."""
        when = self._when
        if not when:
            return None
        if len(when) == 1:
            (f, vals), = when
            return lambda r: r.get(f) in vals
        return lambda r: all(r.get(f) in vals for f, vals in when)


RULES = Registry("rule type")


def parse_rule(rule: Any, position: int) -> tuple[str, OperatorRule]:
    """(path, model) of the rule at ``position``; the path names it by id once it has one."""
    path = f"rules[{position}]"
    if not isinstance(rule, dict):
        raise PolicyError(f"a rule must be a mapping, got {type(rule).__name__}", path)
    rid = rule.get("id")
    if not isinstance(rid, str) or not _ID.match(rid):
        raise PolicyError(f"id {rid!r} must be 1-63 chars of a-z, 0-9, '.', '-' or '_'", f"{path}.id")
    path = f"rules[{position}] ({rid})"
    kind = rule.get("type")
    cls = RULES.lookup(kind, f"{path}.type")
    allowed = set(cls.model_fields)
    extra = sorted(set(rule) - allowed)
    if extra:
        raise PolicyError(f"unknown field(s) {', '.join(extra)} for a {kind} rule "
                          f"(allowed: {', '.join(sorted(allowed))})", path)
    return path, parse_model(cls, rule, path)


@dataclass(frozen=True)
class _Compiled:
    rule_id: str
    type: str
    severity: str
    scan: Scan


class RuleSet:
    """Compiled rules for one schema. ``evaluate`` is what the data plane calls per batch."""

    def __init__(self, schema: RecordSchema, rules: tuple[_Compiled, ...]):
        self.schema = schema
        self.rules = rules
        self._scans = tuple(r.scan for r in rules)

    @property
    def rule_ids(self) -> list[str]:
        return [r.rule_id for r in self.rules]

    def evaluate(self, records: list[dict], now_ms: int) -> list[Hit]:
        """Every hit of every rule on the batch, ordered by record, then by rule order.

        Rules run one after another over the whole batch (a tight loop per rule beats a loop
        over rules per record in Python: one closure call per rule per batch, not per record).
        """
        out: list[Hit] = []
        for scan in self._scans:
            scan(records, now_ms, out)
        if len(self._scans) > 1 and len(out) > 1:
            order = {rid: k for k, rid in enumerate(self.rule_ids)}
            out.sort(key=lambda h: (h.index, order[h.rule_id]))
        return out

    def __len__(self) -> int:
        return len(self.rules)


def compile_rules(rules: list[dict], schema: RecordSchema, zones: dict[str, Any] | None = None,
                  authorisations: dict[str, list[str]] | None = None) -> RuleSet:
    """Check and compile operator rules for records of ``schema``; PolicyError names the bad rule.

    ``zones`` maps a zone-set name (as rules refer to it) to GeoJSON; ``authorisations`` maps an
    operator id to the zone identifiers it may fly in.
    """
    if not isinstance(rules, list):
        raise PolicyError(f"rules must be a list, got {type(rules).__name__}", "rules")
    ctx = RuleContext(schema, zones or {}, {op: frozenset(ids) for op, ids in (authorisations or {}).items()})
    compiled = []
    for i, raw in enumerate(rules):
        path, rule = parse_rule(raw, i)
        rule.check(ctx, path)
        compiled.append(_Compiled(rule.id, rule.type, rule.severity, rule.compile(ctx)))
    seen: set[str] = set()
    for i, c in enumerate(compiled):
        if c.rule_id in seen:
            raise PolicyError(f"duplicate rule id {c.rule_id!r}", f"rules[{i}] ({c.rule_id}).id")
        seen.add(c.rule_id)
    return RuleSet(schema, tuple(compiled))


def alert_record(hit: Hit, product_id: str, time_ms: int, source_topic: str | None = None,
                 source_partition: int | None = None, source_offset: int | None = None) -> dict:
    """An Alert (schemas/Alert.avsc) for a hit, with an id that is the same on replay.

    The id hashes rule, subject and the source position (or the evidence when there is no
    position), so a runner that re-processes a batch after a crash emits the same alert ids
    and the compliance app and dashboards de-duplicate.
    """
    where = (source_topic, source_partition, source_offset) if source_offset is not None else \
        tuple(sorted(hit.evidence.items()))
    alert_id = hashlib.sha256("|".join(map(str, ("alert", product_id, hit.rule_id, hit.subject, *where)))
                              .encode()).hexdigest()[:32]
    return {"alert_id": alert_id, "time_ms": time_ms, "rule_id": hit.rule_id, "severity": hit.severity,
            "product_id": product_id, "subject": hit.subject, "message": hit.message, "evidence": dict(hit.evidence),
            "source_topic": source_topic, "source_partition": source_partition, "source_offset": source_offset,
            "escalated": False, "incident_id": None, "first_seen_ms": None, "last_seen_ms": None, "count": 1}


# Defaults for the example city (examples/city.yaml): the zone set is its `uas-zones` geofence.
DEFAULT_UAV_RULES: list[dict] = [
    {"id": "uav-height-120", "type": "max", "severity": "HIGH", "field": "height_agl_m", "max": 120, "unit": "m",
     "when": {"uav_class": ["LIGHT", "SMALL"]},
     "message": "{uav_class} UAV at {height_agl_m} m true height, above the {max} m open-airspace ceiling"},
    {"id": "uav-micro-height-50", "type": "max", "severity": "MEDIUM", "field": "height_agl_m", "max": 50,
     "unit": "m", "when": {"uav_class": ["MICRO"]}, "message": "MICRO UAV at {height_agl_m} m, above {max} m"},
    {"id": "uav-micro-speed-40", "type": "max", "severity": "MEDIUM", "field": "speed_h_mps", "max": 40,
     "unit": "km/h", "when": {"uav_class": ["MICRO"]}, "message": "MICRO UAV at {speed_h_mps} km/h, above {max} km/h"},
    {"id": "uav-light-speed-100", "type": "max", "severity": "MEDIUM", "field": "speed_h_mps", "max": 100,
     "unit": "km/h", "when": {"uav_class": ["LIGHT"]}, "message": "LIGHT UAV at {speed_h_mps} km/h, above {max} km/h"},
    {"id": "uav-zone-prohibited", "type": "zone", "severity": "CRITICAL", "zones": "uas-zones",
     "restrictions": ["PROHIBITED"]},
    {"id": "uav-zone-unauthorised", "type": "zone", "severity": "HIGH", "zones": "uas-zones",
     "restrictions": ["REQ_AUTHORISATION"]},
    {"id": "uav-zone-conditional", "type": "zone", "severity": "MEDIUM", "zones": "uas-zones",
     "restrictions": ["CONDITIONAL"], "message": "above the {upper_m} m ceiling of conditional zone {zone}"},
    {"id": "uav-unregistered", "type": "required", "severity": "HIGH", "field": "uin",
     "message": "UAV without a real-name registration id (uin)"},
]

DEFAULT_HOTLINE_RULES: list[dict] = [
    {"id": "hotline-pii-in-content", "type": "pii", "severity": "MEDIUM", "field": "content"},
    {"id": "hotline-overdue", "type": "overdue", "severity": "LOW"},
]


discover(__name__, __path__)
