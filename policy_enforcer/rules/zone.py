"""The ``zone`` rule: a UAV inside an ED-269 UAS geographical zone it may not be in."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal

from pydantic import BeforeValidator, PrivateAttr

from ..errors import PolicyError
from ..geo import PolygonIndex, parse_geojson
from . import RULES, FieldName, OperatorRule, RuleContext, Scan, _fmt

RESTRICTIONS = ("PROHIBITED", "REQ_AUTHORISATION", "CONDITIONAL")
_FEET = 0.3048


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


def _features(obj: Any) -> list:
    return obj.get("features", []) if isinstance(obj, dict) and obj.get("type") == "FeatureCollection" else [obj]


def zone_set(ctx: RuleContext, name: Any, path: str) -> tuple[Zone, ...]:
    """The zones of the set ``name``, parsed once per rule list."""
    if name not in ctx.zones:
        known = ", ".join(sorted(ctx.zones)) or "none"
        raise PolicyError(f"unknown zones {name!r} (known: {known})", path)
    key = ("zone-set", name)
    if key not in ctx.cache:
        feats = _features(ctx.zones[name])
        ctx.cache[key] = tuple(_zone(f, f"{path}[{name}].features[{i}]") for i, f in enumerate(feats))
    return ctx.cache[key]


def _restrictions(v: Any) -> Any:
    if not isinstance(v, list) or not v or any(w not in RESTRICTIONS for w in v):
        raise ValueError(f"restrictions must be a list of {', '.join(RESTRICTIONS)}")
    return v


@RULES.register
class ZoneRule(OperatorRule):
    """``zones`` (a key of ``compile_rules``' ``zones``: GeoJSON features with ED-269
    attributes), ``restrictions`` (default all three), ``height_field`` (default
    ``height_agl_m``; a zone whose ``lowerVerticalReference`` is AMSL is checked against
    ``msl_field``, default ``alt_msl_m``), ``operator_field`` (default ``operator_id``). See
    :class:`Zone` for what breaks each restriction. An operator authorised for a zone never
    breaks it. Evidence: zone, restriction, reason, height and limits, position, operator."""

    order = 30
    type: Literal["zone"]
    zones: str | None = None
    restrictions: Annotated[list[str], BeforeValidator(_restrictions)] = list(RESTRICTIONS)
    height_field: FieldName = "height_agl_m"
    msl_field: FieldName = "alt_msl_m"
    operator_field: FieldName = "operator_id"
    _zones: tuple[Zone, ...] = PrivateAttr(())

    def check(self, ctx: RuleContext, path: str) -> None:
        super().check(ctx, path)
        zones = zone_set(ctx, self.zones, f"{path}.zones")
        self._zones = tuple(z for z in zones if z.restriction in self.restrictions)
        ctx.check_field(self.height_field, f"{path}.height_field", numeric=True)
        if any(z.msl for z in self._zones):
            ctx.check_field(self.msl_field, f"{path}.msl_field", numeric=True)
        ctx.check_field(self.operator_field, f"{path}.operator_field")
        for name in ("lat", "lon"):
            ctx.check_field(name, path, numeric=True)

    def compile(self, ctx: RuleContext) -> Scan:
        zones = self._zones
        if not zones:
            return lambda records, now_ms, out: None
        h_field, op_field = self.height_field, self.operator_field
        msl_field = self.msl_field if any(z.msl for z in zones) else h_field
        lat_f, lon_f = "lat", "lon"
        make = self.hit("{restriction} zone {zone} ({reason}) at {height_m} m")
        keep = self.applies()
        auth = ctx.authorisations
        # one index over the union of all zones rejects the common case (outside every zone) in one call
        union = PolygonIndex([p for z in zones for p in z.polygons]).contains
        # per zone: (contains, lower, upper, conditional?, msl?, identifier, restriction, reason)
        checks = tuple((z.contains, z.lower_m, z.upper_m, z.restriction == "CONDITIONAL", z.msl, z.identifier,
                        z.restriction, z.reason) for z in zones)
        no_auth: frozenset = frozenset()

        def scan(records: list[dict], now_ms: int, out: list) -> None:
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
