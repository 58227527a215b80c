"""Operator rules: what the city operator and the regulator watch on every record.

Contract policies decide what one consumer receives; operator rules are the mesh's own
watch list over a product (a drone above 120 m, inside a no-fly zone, without a real-name
registration; personal data in a hotline ticket, an overdue work order). A hit does not
change delivery; the runner turns it into an Alert on ``cm.alerts``.

Why rules are data: the operator edits thresholds, severities and zone lists in YAML
without touching code, and an unknown rule type or field fails when the rules are
compiled (naming the rule), not in the data plane. Why compiled closures: this runs per
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

Types and their parameters:

``max``       ``field`` (numeric), ``max``, ``unit``: hit when the value is above ``max``.
``required``  ``field``: hit when the value is null or blank (e.g. ``uin``, the real-name registration id).
``zone``      ``zones`` (a key of the ``zones`` argument: GeoJSON features with ED-269 attributes),
              ``restrictions`` (default all three), ``height_field`` (default ``height_agl_m``; a
              zone whose ``lowerVerticalReference`` is AMSL is checked against ``msl_field``, default
              ``alt_msl_m``), ``operator_field`` (default ``operator_id``). See :class:`Zone` for what
              breaks each restriction. An operator authorised for a zone never breaks it.
``pii``       ``field`` (text): hit when personal information is detected; the evidence lists the kinds
              found (``pii_kinds: mobile,name``), never the values.
``overdue``   ``deadline_field`` (default ``deadline``), ``status_field`` (``status``), ``done`` (``[COMPLETED,
              CLOSED]``), ``completed_field`` (``completed_time``), ``grace_s`` (0): hit when the deadline has
              passed at ``now_ms`` and the order is neither in a done state nor has a completion time.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from schemas import RecordSchema

from .errors import PolicyError
from .geo import PolygonIndex, parse_geojson
from .pii import detect as _detect_pii
from .schema_fields import NUMERIC, field_types

SEVERITIES = ("INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL")
RESTRICTIONS = ("PROHIBITED", "REQ_AUTHORISATION", "CONDITIONAL")
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_UNITS = {"m": 1.0, "m/s": 1.0, "km/h": 1 / 3.6}
_COMMON = {"id", "type", "severity", "subject", "message", "when"}
_FEET = 0.3048


@dataclass(frozen=True, slots=True)
class Hit:
    """One record breaking one rule. ``evidence`` holds the values that broke it, as strings."""

    rule_id: str
    severity: str
    subject: str
    message: str
    evidence: dict[str, str]
    index: int  # position of the record in the evaluated batch


@dataclass(frozen=True)
class Zone:
    """One ED-269 UAS geographical zone, prepared for the per-record test.

    What breaks it, for a point inside the zone's polygon:

    * PROHIBITED and REQ_AUTHORISATION: being inside its volume, i.e. ``lowerLimit <= height <=
      upperLimit``. (Above the volume the zone does not apply; below its lower limit neither.)
    * CONDITIONAL: ED-269 lets flights into the volume under the zone's conditions, and the example
      city publishes them as "allowed below upperLimit". So the condition we enforce is the ceiling:
      a flight over the zone's footprint *above* ``upperLimit`` breaks it; inside the volume is fine.

    In all three cases an operator holding an authorisation for the zone identifier is exempt.
    """

    identifier: str
    restriction: str
    lower_m: float
    upper_m: float
    msl: bool
    reason: str
    contains: Callable[[float, float], bool]
    polygons: tuple = ()


def _zone(feature: Any, path: str) -> Zone:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise PolicyError("a zone must be a GeoJSON Feature", path)
    props = feature.get("properties") or {}
    ident = props.get("identifier")
    if not isinstance(ident, str) or not ident:
        raise PolicyError("a zone needs properties.identifier (ED-269)", path)
    restriction = props.get("restriction")
    if restriction not in RESTRICTIONS:
        raise PolicyError(f"zone {ident}: restriction {restriction!r} is not one of {', '.join(RESTRICTIONS)}", path)
    scale = {"m": 1.0, "ft": _FEET}.get(props.get("uom", "m"))
    if scale is None:
        raise PolicyError(f"zone {ident}: uom {props.get('uom')!r} is not m or ft", path)
    ref = props.get("lowerVerticalReference", "AGL")
    if ref not in ("AGL", "AMSL", "WGS84"):
        raise PolicyError(f"zone {ident}: lowerVerticalReference {ref!r} is not AGL, AMSL or WGS84", path)
    lower, upper = props.get("lowerLimit", 0), props.get("upperLimit")
    upper = math.inf if upper is None else upper
    for name, v in (("lowerLimit", lower), ("upperLimit", upper)):
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise PolicyError(f"zone {ident}: {name} must be a number", path)
    reason = props.get("reason") or []
    reason = ",".join(reason) if isinstance(reason, list) else str(reason)
    polygons = parse_geojson(feature, path)
    return Zone(ident, restriction, float(lower) * scale, float(upper) * scale, ref != "AGL", reason,
                PolygonIndex(polygons).contains, tuple(polygons))


def _fmt(v: Any) -> str:
    return "" if v is None else str(v)


def _evidence_message(template: str, evidence: dict[str, str], rule_id: str) -> str:
    try:
        return template.format_map(evidence)
    except (KeyError, IndexError, ValueError):
        return f"{rule_id}: {template}"


class _Compiler:
    """Checks one rule dict against the schema and turns it into a scan function."""

    def __init__(self, schema: RecordSchema, zones: dict[str, Any], authorisations: dict[str, list[str]]):
        self.schema = schema
        self.types = field_types(schema)
        self.zones = zones
        self.auth = {op: frozenset(ids) for op, ids in authorisations.items()}
        self._zone_cache: dict[str, tuple[Zone, ...]] = {}

    # -- validation helpers -------------------------------------------------
    def field(self, rule: dict, key: str, path: str, default: str | None = None, numeric: bool = False,
              text: bool = False) -> str:
        name = rule.get(key, default)
        if not isinstance(name, str) or not name:
            raise PolicyError(f"{key} is required", f"{path}.{key}")
        ft = self.types.get(name)
        if ft is None:
            raise PolicyError(f"unknown field {name!r} in schema {self.schema.name}", f"{path}.{key}")
        if numeric and ft.base not in NUMERIC:
            raise PolicyError(f"field {name!r} is {ft.label}, not a number", f"{path}.{key}")
        if text and ft.base != "string":
            raise PolicyError(f"field {name!r} is {ft.label}, not text", f"{path}.{key}")
        return name

    def zone_set(self, name: Any, path: str) -> tuple[Zone, ...]:
        if name not in self.zones:
            known = ", ".join(sorted(self.zones)) or "none"
            raise PolicyError(f"unknown zones {name!r} (known: {known})", path)
        if name not in self._zone_cache:
            feats = _features(self.zones[name])
            self._zone_cache[name] = tuple(_zone(f, f"{path}[{name}].features[{i}]") for i, f in enumerate(feats))
        return self._zone_cache[name]

    # -- rule types ---------------------------------------------------------
    def compile(self, rule: Any, position: int) -> "_Compiled":
        path = f"rules[{position}]"
        if not isinstance(rule, dict):
            raise PolicyError(f"a rule must be a mapping, got {type(rule).__name__}", path)
        rid = rule.get("id")
        if not isinstance(rid, str) or not _ID.match(rid):
            raise PolicyError(f"id {rid!r} must be 1-63 chars of a-z, 0-9, '.', '-' or '_'", f"{path}.id")
        path = f"rules[{position}] ({rid})"
        kind = rule.get("type")
        builder = getattr(self, f"_t_{kind}", None) if isinstance(kind, str) else None
        if builder is None:
            raise PolicyError(f"unknown rule type {kind!r} (known: {', '.join(TYPES)})", f"{path}.type")
        allowed = _COMMON | TYPES[kind]
        extra = sorted(set(rule) - allowed)
        if extra:
            raise PolicyError(f"unknown field(s) {', '.join(extra)} for a {kind} rule "
                              f"(allowed: {', '.join(sorted(allowed))})", path)
        severity = rule.get("severity", "MEDIUM")
        if severity not in SEVERITIES:
            raise PolicyError(f"severity {severity!r} is not one of {', '.join(SEVERITIES)}", f"{path}.severity")
        default_subject = "serial_number" if "serial_number" in self.types else (
            "order_no" if "order_no" in self.types else None)
        subject = self.field(rule, "subject", path, default_subject)
        when = self._when(rule.get("when"), path)
        message = rule.get("message")
        if message is not None and not isinstance(message, str):
            raise PolicyError("message must be text", f"{path}.message")
        scan = builder(rule, path, rid, severity, subject, when, message)
        return _Compiled(rid, kind, severity, scan)

    def _when(self, when: Any, path: str) -> tuple[tuple[str, frozenset], ...]:
        if when is None:
            return ()
        if not isinstance(when, dict) or not when:
            raise PolicyError("when must map field names to lists of values", f"{path}.when")
        out = []
        for name, values in when.items():
            self.field({"f": name}, "f", f"{path}.when")
            if not isinstance(values, list) or not values:
                raise PolicyError(f"when.{name} must be a non-empty list", f"{path}.when.{name}")
            ft = self.types[name]
            if ft.base == "enum":
                bad = [v for v in values if v not in ft.symbols]
                if bad:
                    raise PolicyError(f"{bad!r} not among {name}'s symbols {list(ft.symbols)}", f"{path}.when.{name}")
            out.append((name, frozenset(values)))
        return tuple(out)

    @staticmethod
    def _emit(rid: str, severity: str, subject: str, when, message: str, evidence_keys: tuple[str, ...] = ()):
        """A hit factory: evidence = the broken values plus the `when` fields (why the rule applied)."""
        when_fields = tuple(f for f, _ in when)

        def make(i: int, r: dict, evidence: dict[str, str]) -> Hit:
            for f in when_fields:
                evidence[f] = _fmt(r.get(f))
            return Hit(rid, severity, _fmt(r.get(subject)), _evidence_message(message, evidence, rid), evidence, i)

        return make

    @staticmethod
    def _filter(when):
        """Compose the `when` filter once; None when the rule applies to every record."""
        if not when:
            return None
        if len(when) == 1:
            (f, vals), = when
            return lambda r: r.get(f) in vals
        return lambda r: all(r.get(f) in vals for f, vals in when)

    def _t_max(self, rule, path, rid, severity, subject, when, message):
        field = self.field(rule, "field", path, numeric=True)
        limit = rule.get("max")
        if not isinstance(limit, (int, float)) or isinstance(limit, bool) or not math.isfinite(limit):
            raise PolicyError("max must be a finite number", f"{path}.max")
        unit = rule.get("unit", "m/s" if field.startswith("speed") else "m")
        if unit not in _UNITS:
            raise PolicyError(f"unit {unit!r} is not one of {', '.join(_UNITS)}", f"{path}.unit")
        threshold = limit * _UNITS[unit]
        to_unit = 1 / _UNITS[unit]
        make = self._emit(rid, severity, subject, when,
                          message or f"{field} {{{field}}} {unit} above {{max}} {unit}")
        keep = self._filter(when)
        limit_s = _fmt(limit)

        def scan(records: list[dict], now_ms: int, out: list[Hit]) -> None:
            for i, r in enumerate(records):
                v = r.get(field)
                if v is not None and v > threshold and (keep is None or keep(r)):
                    shown = round(v * to_unit, 2) if to_unit != 1 else v
                    out.append(make(i, r, {field: _fmt(shown), "max": limit_s, "unit": unit}))
        return scan

    def _t_required(self, rule, path, rid, severity, subject, when, message):
        field = self.field(rule, "field", path)
        make = self._emit(rid, severity, subject, when, message or f"{field} is missing")
        keep = self._filter(when)

        def scan(records: list[dict], now_ms: int, out: list[Hit]) -> None:
            for i, r in enumerate(records):
                v = r.get(field)
                if (v is None or (v.__class__ is str and not v.strip())) and (keep is None or keep(r)):
                    out.append(make(i, r, {field: _fmt(v)}))
        return scan

    def _t_zone(self, rule, path, rid, severity, subject, when, message):
        zones = self.zone_set(rule.get("zones"), f"{path}.zones")
        wanted = rule.get("restrictions", list(RESTRICTIONS))
        if not isinstance(wanted, list) or not wanted or any(w not in RESTRICTIONS for w in wanted):
            raise PolicyError(f"restrictions must be a list of {', '.join(RESTRICTIONS)}", f"{path}.restrictions")
        zones = tuple(z for z in zones if z.restriction in wanted)
        h_field = self.field(rule, "height_field", path, "height_agl_m", numeric=True)
        msl_field = self.field(rule, "msl_field", path, "alt_msl_m", numeric=True) if any(z.msl for z in zones) else h_field
        op_field = self.field(rule, "operator_field", path, "operator_id")
        lat_f, lon_f = self.field({"f": "lat"}, "f", path, numeric=True), self.field({"f": "lon"}, "f", path, numeric=True)
        make = self._emit(rid, severity, subject, when,
                          message or "{restriction} zone {zone} ({reason}) at {height_m} m")
        keep = self._filter(when)
        auth = self.auth
        if not zones:
            return lambda records, now_ms, out: None
        # one index over the union of all zones rejects the common case (outside every zone) in one call
        union = PolygonIndex([p for z in zones for p in z.polygons]).contains
        # per zone: (contains, lower, upper, conditional?, msl?, identifier, restriction, reason)
        checks = tuple((z.contains, z.lower_m, z.upper_m, z.restriction == "CONDITIONAL", z.msl, z.identifier,
                        z.restriction, z.reason) for z in zones)
        no_auth: frozenset = frozenset()

        def scan(records: list[dict], now_ms: int, out: list[Hit]) -> None:
            for i, r in enumerate(records):
                lon, lat = r.get(lon_f), r.get(lat_f)
                if lon is None or lat is None or not union(lon, lat):
                    continue
                if keep is not None and not keep(r):
                    continue
                for contains, lower, upper, conditional, msl, ident, restriction, reason in checks:
                    if not contains(lon, lat):
                        continue
                    h = r.get(msl_field if msl else h_field)
                    if h is None:
                        continue
                    broken = h > upper if conditional else lower <= h <= upper
                    if broken and ident not in auth.get(r.get(op_field), no_auth):
                        out.append(make(i, r, {"zone": ident, "restriction": restriction, "reason": reason,
                                               "height_m": _fmt(h), "lower_m": _fmt(lower), "upper_m": _fmt(upper),
                                               "lat": _fmt(lat), "lon": _fmt(lon),
                                               "operator_id": _fmt(r.get(op_field))}))
        return scan

    def _t_pii(self, rule, path, rid, severity, subject, when, message):
        field = self.field(rule, "field", path, "content", text=True)
        make = self._emit(rid, severity, subject, when, message or f"personal data in {field}: {{pii_kinds}}")
        keep = self._filter(when)

        def scan(records: list[dict], now_ms: int, out: list[Hit]) -> None:
            for i, r in enumerate(records):
                text = r.get(field)
                if not text or (keep is not None and not keep(r)):
                    continue
                found = _detect_pii(text)
                if found:
                    kinds = sorted({m.kind for m in found})
                    out.append(make(i, r, {"field": field, "pii_kinds": ",".join(kinds), "matches": str(len(found))}))
        return scan

    def _t_overdue(self, rule, path, rid, severity, subject, when, message):
        deadline_f = self.field(rule, "deadline_field", path, "deadline", numeric=True)
        status_f = self.field(rule, "status_field", path, "status")
        completed_f = self.field(rule, "completed_field", path, "completed_time")
        done = rule.get("done", ["COMPLETED", "CLOSED"])
        if not isinstance(done, list):
            raise PolicyError("done must be a list of states", f"{path}.done")
        done = frozenset(done)
        grace = rule.get("grace_s", 0)
        if not isinstance(grace, (int, float)) or isinstance(grace, bool) or grace < 0:
            raise PolicyError("grace_s must be a non-negative number", f"{path}.grace_s")
        grace_ms = int(grace * 1000)
        make = self._emit(rid, severity, subject, when,
                          message or "work order {status} {overdue_s} s past its deadline")
        keep = self._filter(when)

        def scan(records: list[dict], now_ms: int, out: list[Hit]) -> None:
            cutoff = now_ms - grace_ms
            for i, r in enumerate(records):
                d = r.get(deadline_f)
                if d is None or d >= cutoff or r.get(status_f) in done or r.get(completed_f) is not None:
                    continue
                if keep is None or keep(r):
                    out.append(make(i, r, {"deadline": _fmt(d), "status": _fmt(r.get(status_f)),
                                           "overdue_s": _fmt((now_ms - d) // 1000)}))
        return scan


def _features(obj: Any) -> list:
    return obj.get("features", []) if isinstance(obj, dict) and obj.get("type") == "FeatureCollection" else [obj]


TYPES: dict[str, frozenset] = {
    "max": frozenset({"field", "max", "unit"}),
    "required": frozenset({"field"}),
    "zone": frozenset({"zones", "restrictions", "height_field", "msl_field", "operator_field"}),
    "pii": frozenset({"field"}),
    "overdue": frozenset({"deadline_field", "status_field", "done", "completed_field", "grace_s"}),
}


@dataclass(frozen=True)
class _Compiled:
    rule_id: str
    type: str
    severity: str
    scan: Callable[[list[dict], int, list[Hit]], None]


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
    comp = _Compiler(schema, zones or {}, authorisations or {})
    compiled = tuple(comp.compile(r, i) for i, r in enumerate(rules))
    seen: set[str] = set()
    for i, c in enumerate(compiled):
        if c.rule_id in seen:
            raise PolicyError(f"duplicate rule id {c.rule_id!r}", f"rules[{i}] ({c.rule_id}).id")
        seen.add(c.rule_id)
    return RuleSet(schema, compiled)


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
