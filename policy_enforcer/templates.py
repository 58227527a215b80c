"""Contract templates: a full policy from a few parameters (plug-and-play contracts).

Why: most contracts on a product differ only in an area, a precision or a threshold.
A template fixes the fields, duties and prohibitions that a use case needs, so a provider
offers it and a consumer accepts it by filling the blanks, and reviewers read one
template instead of every contract. The rendered dict is an ordinary policy document and
is validated like any other. Geofence parameters are named ``geofence`` (an area to stay
inside) and ``zones`` (areas to stay out of) so the topology loader can replace a geofence
name by its GeoJSON before rendering.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import PolicyError

_UAV_POSITION_FIELDS = ["serial_number", "flight_id", "uav_class", "timestamp_ms", "lat", "lon",
                        "alt_msl_m", "height_agl_m", "speed_h_mps", "speed_v_mps", "heading_deg"]


@dataclass(frozen=True)
class Param:
    kind: str            # "geojson", "int", "number", "bool", "str", "str_list"
    description: str
    required: bool = False
    default: Any = None


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    schemas: tuple[str, ...]
    params: dict[str, Param]
    build: Callable[[dict], dict] = field(repr=False, compare=False)


def _is(kind: str, v: Any) -> bool:
    if kind == "geojson":
        return isinstance(v, dict) and isinstance(v.get("type"), str)
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "str":
        return isinstance(v, str) and bool(v)
    if kind == "str_list":
        return isinstance(v, list) and bool(v) and all(isinstance(x, str) for x in v)
    raise AssertionError(kind)


def _geo(p: dict) -> list[dict]:
    out = []
    if p.get("geofence") is not None:
        out.append({"type": "geofence", "inside": p["geofence"]})
    if p.get("zones") is not None:
        out.append({"type": "geofence", "outside": p["zones"]})
    return out


def _fresh(p: dict, field_name: str) -> list[dict]:
    return [] if p.get("max_age_s") is None else [{"type": "event_time", "field": field_name, "max_age_s": p["max_age_s"]}]


def _logistics(p: dict) -> dict:
    return {
        "description": "Drone logistics route planning: positions of aircraft inside the service area, "
                       "pseudonymous aircraft, coarse coordinates.",
        "permission": {
            "fields": list(_UAV_POSITION_FIELDS),
            "constraints": [{"type": "purpose", "in": ["route-planning"]}, *_geo(p),
                            {"type": "value", "field": "height_agl_m", "op": "<=", "value": p["max_height_m"]},
                            *_fresh(p, "timestamp_ms")]},
        "duties": [{"type": "pseudonymise", "field": "serial_number"},
                   {"type": "generalise", "field": "lat", "decimals": p["decimals"]},
                   {"type": "generalise", "field": "lon", "decimals": p["decimals"]},
                   {"type": "pseudonymise", "field": "flight_id"}],  # built from the serial number
        "prohibitions": [{"type": "onward_transfer"}, {"type": "commercial_resale"}],
    }


def _insurance(p: dict) -> dict:
    return {
        "description": "UAV insurance pricing: registered aircraft's flight behaviour, pseudonymous, "
                       "coarse in space and time.",
        "permission": {
            "fields": ["uin", "uav_class", "flight_id", "timestamp_ms", "lat", "lon", "height_agl_m", "speed_h_mps"],
            "constraints": [{"type": "purpose", "in": ["insurance-pricing"]}, *_geo(p)]},
        "duties": [{"type": "pseudonymise", "field": "uin"},
                   {"type": "generalise", "field": "lat", "decimals": p["decimals"]},
                   {"type": "generalise", "field": "lon", "decimals": p["decimals"]},
                   {"type": "generalise", "field": "timestamp_ms", "period_s": p["time_period_s"]},
                   {"type": "pseudonymise", "field": "flight_id"}],  # built from the serial number
        "prohibitions": [{"type": "onward_transfer"}, {"type": "re_identification"}],
    }


def _emergency(p: dict) -> dict:
    product = p["product"]
    purposes = {"type": "purpose", "in": ["emergency-response", "public-safety"]}
    if product == "UavTelemetry":
        constraints = [purposes, *_geo(p), *_fresh(p, "timestamp_ms")]
        duties: list[dict] = []
    elif product == "HotlineTicket":
        constraints = [purposes, *_geo(p), *_fresh(p, "call_time")]
        if p.get("categories") is not None:
            constraints.append({"type": "value", "field": "category_code", "op": "in", "value": list(p["categories"])})
        duties = [{"type": "mask", "field": "caller_phone", "keep_last": 4},
                  {"type": "scrub_pii", "field": "content"}] if p["mask_phone"] else []
    else:
        raise PolicyError(f"template 'emergency-response': product must be UavTelemetry or HotlineTicket, "
                          f"got {product!r}", "params.product")
    return {
        "description": f"Emergency response: live {product} for the emergency services, full precision.",
        "permission": {"constraints": constraints},
        "duties": duties,
        "prohibitions": [{"type": "onward_transfer"}, {"type": "commercial_resale"}],
    }


def _hotline_analytics(p: dict) -> dict:
    constraints: list[dict] = [{"type": "purpose", "in": ["service-quality-analysis"]}]
    if p["exclude_confidential"]:
        constraints.append({"type": "value", "field": "confidential", "op": "==", "value": False})
    constraints += _geo(p)
    return {
        "description": "12345 service-quality analytics: work orders without personal information; "
                       "pseudonymous callers, masked phone numbers, scrubbed free text.",
        "permission": {
            "fields": ["order_no", "call_time", "channel", "caller_name", "caller_phone", "category_code",
                       "category_name", "district", "content", "handling_unit", "status", "deadline",
                       "completed_time", "lat", "lon"],
            "constraints": constraints},
        "duties": [{"type": "pseudonymise", "field": "caller_name"},
                   {"type": "mask", "field": "caller_phone", "keep_last": p["phone_keep_last"]},
                   {"type": "scrub_pii", "field": "content"},
                   {"type": "generalise", "field": "lat", "decimals": p["decimals"]},
                   {"type": "generalise", "field": "lon", "decimals": p["decimals"]}],
        "prohibitions": [{"type": "re_identification"}, {"type": "onward_transfer"}, {"type": "data_linkage"}],
    }


TEMPLATES: dict[str, Template] = {t.name: t for t in [
    Template("logistics-route-planning",
             "UAV telemetry for drone-logistics route planning inside a service area: pseudonymous serial "
             "number, coordinates rounded, aircraft above a height ceiling left out.",
             ("UavTelemetry",),
             {"geofence": Param("geojson", "service area (GeoJSON) the positions must be inside", required=True),
              "zones": Param("geojson", "areas (GeoJSON) to leave out, e.g. airport control zones"),
              "decimals": Param("int", "decimals kept on lat/lon (3 ≈ 100 m)", default=3),
              "max_height_m": Param("number", "deliver only records at or below this true height", default=120),
              "max_age_s": Param("number", "deliver only fixes at most this old")},
             _logistics),
    Template("insurance-pricing",
             "UAV telemetry for insurance pricing: registered aircraft pseudonymous, position and time coarsened.",
             ("UavTelemetry",),
             {"geofence": Param("geojson", "area (GeoJSON) covered by the policy"),
              "zones": Param("geojson", "areas (GeoJSON) to leave out"),
              "decimals": Param("int", "decimals kept on lat/lon (2 ≈ 1 km)", default=2),
              "time_period_s": Param("int", "timestamps truncated to this period", default=60)},
             _insurance),
    Template("emergency-response",
             "Live UAV telemetry or 12345 work orders for the emergency services at full precision; "
             "callers' phone numbers masked.",
             ("UavTelemetry", "HotlineTicket"),
             {"product": Param("str", "UavTelemetry or HotlineTicket", required=True),
              "geofence": Param("geojson", "incident area (GeoJSON)"),
              "zones": Param("geojson", "areas (GeoJSON) to leave out"),
              "max_age_s": Param("number", "deliver only records at most this old"),
              "categories": Param("str_list", "hotline: category codes to deliver (default all)"),
              "mask_phone": Param("bool", "hotline: mask the caller's phone (keep last 4)", default=True)},
             _emergency),
    Template("hotline-analytics",
             "12345 work orders for service-quality analytics: caller pseudonymous, phone masked, free "
             "text scrubbed of personal information, confidential orders left out.",
             ("HotlineTicket",),
             {"decimals": Param("int", "decimals kept on lat/lon", default=2),
              "phone_keep_last": Param("int", "digits of the caller's phone left visible", default=4),
              "exclude_confidential": Param("bool", "leave out orders whose caller asked for confidentiality",
                                            default=True),
              "geofence": Param("geojson", "area (GeoJSON) of interest"),
              "zones": Param("geojson", "areas (GeoJSON) to leave out")},
             _hotline_analytics),
]}


def render_template(name: str, params: dict) -> dict:
    """The policy document of template ``name`` filled with ``params``; PolicyError names
    an unknown template, an unknown or missing parameter, or a parameter of the wrong type."""
    template = TEMPLATES.get(name)
    if template is None:
        raise PolicyError(f"unknown template {name!r} (known: {', '.join(TEMPLATES)})", "template")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise PolicyError(f"expected an object, got {type(params).__name__}", "params")
    for key in params:
        if key not in template.params:
            raise PolicyError(f"template {name!r} has no parameter {key!r} (known: {', '.join(template.params)})",
                              f"params.{key}")
    values: dict[str, Any] = {}
    for key, spec in template.params.items():
        if key not in params or params[key] is None:
            if spec.required:
                raise PolicyError(f"template {name!r} needs parameter {key!r}: {spec.description}", f"params.{key}")
            values[key] = spec.default
            continue
        if not _is(spec.kind, params[key]):
            raise PolicyError(f"template {name!r}: parameter {key!r} must be {spec.kind}, got {params[key]!r:.80}",
                              f"params.{key}")
        values[key] = copy.deepcopy(params[key])
    return template.build(values)
