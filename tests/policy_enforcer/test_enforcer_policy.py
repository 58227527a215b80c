"""Policy validation: nothing unknown or mistyped is ever ignored, and errors name the path."""

import copy

import pytest
from enforcer_samples import DISTRICT, HOTLINE, UAV

from policy_enforcer import PolicyError, validate_policy

GOOD = {
    "permission": {"fields": ["serial_number", "timestamp_ms", "lat", "lon", "height_agl_m"],
                   "constraints": [{"type": "purpose", "in": ["route-planning"]},
                                   {"type": "geofence", "inside": DISTRICT},
                                   {"type": "value", "field": "height_agl_m", "op": "<=", "value": 120},
                                   {"type": "event_time", "field": "timestamp_ms", "max_age_s": 60}]},
    "duties": [{"type": "pseudonymise", "field": "serial_number"},
               {"type": "generalise", "field": "lat", "decimals": 3}],
    "prohibitions": [{"type": "onward_transfer"}],
}


def _error(policy, schema=UAV) -> str:
    with pytest.raises(PolicyError) as e:
        validate_policy(policy, schema)
    return str(e.value)


def _with(path_setter):
    p = copy.deepcopy(GOOD)
    path_setter(p)
    return p


def test_good_policy_and_empty_policy_validate():
    assert validate_policy(GOOD, UAV) is None
    assert validate_policy({}, UAV) is None


@pytest.mark.parametrize("mutate, expected", [
    (lambda p: p["duties"].append({"type": "encrypt", "field": "lat"}),
     "policy.duties[2].type: unknown duty 'encrypt' (known: drop, mask, pseudonymise, generalise, scrub_pii)"),
    (lambda p: p["permission"]["constraints"].append({"type": "weather", "max_wind": 10}),
     "policy.permission.constraints[4].type: unknown constraint 'weather'"),
    (lambda p: p["prohibitions"].append({"type": "sell_to_aliens"}),
     "policy.prohibitions[1].type: unknown prohibition 'sell_to_aliens'"),
    (lambda p: p["permission"]["fields"].append("pilot_name"),
     "policy.permission.fields[5]: unknown field 'pilot_name' in citymesh.UavTelemetry"),
    (lambda p: p["duties"].append({"type": "mask", "field": "callsign"}),
     "policy.duties[2].field: unknown field 'callsign'"),
    (lambda p: p["permission"]["constraints"][2].update(field="altitude"),
     "policy.permission.constraints[2].field: unknown field 'altitude'"),
    (lambda p: p["permission"]["constraints"][1].update(lat_field="latitude"),
     "policy.permission.constraints[1].lat_field: unknown field 'latitude'"),
    (lambda p: p["duties"][1].update(decimals="3"),
     "policy.duties[1].decimals: Input should be a valid integer"),
    (lambda p: p["duties"][1].update(decimals=True),
     "policy.duties[1].decimals: Input should be a valid integer"),
    (lambda p: p["duties"][1].update(round_to=3),
     "policy.duties[1].round_to: unknown key 'round_to'"),
    (lambda p: p.update(obligations=[]), "policy.obligations: unknown key 'obligations'"),
    (lambda p: p["permission"]["constraints"][0].update({"in": "route-planning"}),
     "policy.permission.constraints[0].in: Input should be a valid list"),
    (lambda p: p["permission"]["constraints"][2].update(op="~="),
     "policy.permission.constraints[2].op: Input should be"),
    (lambda p: p["permission"]["constraints"][2].update(value="120"),
     "policy.permission.constraints[2].value: '120' is not a valid value for field 'height_agl_m' (double)"),
    (lambda p: p["permission"]["constraints"][2].update(op="in"),
     "policy.permission.constraints[2].value: op 'in' needs a non-empty list"),
    (lambda p: p["permission"]["constraints"][1].update(outside=DISTRICT),
     "policy.permission.constraints[1]: give exactly one of inside or outside"),
    (lambda p: p["permission"]["constraints"][1].update(lat_field="serial_number"),
     "policy.permission.constraints[1].lat_field: field 'serial_number' is string, a coordinate must be float or double"),
    (lambda p: p["permission"]["constraints"][3].pop("max_age_s"),
     "policy.permission.constraints[3]: give not_before_ms, not_after_ms and/or max_age_s"),
    (lambda p: p["permission"]["constraints"][3].update(field="lat"),
     "policy.permission.constraints[3].field: field 'lat' is double; event_time needs an epoch-ms int or long"),
    (lambda p: p["duties"].append({"type": "mask", "field": "lat"}),
     "policy.duties[2].field: field 'lat' is double; mask needs a string field"),
    (lambda p: p["duties"].append({"type": "generalise", "field": "serial_number", "decimals": 1}),
     "policy.duties[2].field: field 'serial_number' is string; rounding needs a number field"),
    (lambda p: p["duties"].append({"type": "generalise", "field": "timestamp_ms", "decimals": 1, "period_s": 60}),
     "policy.duties[2]: give exactly one of decimals or period_s"),
    (lambda p: p["duties"].append({"type": "generalise", "field": "lat", "period_s": 60}),
     "policy.duties[2].field: field 'lat' is double; period_s needs an epoch-ms int or long field"),
    (lambda p: p["duties"].append({"type": "pseudonymise", "field": "serial_number", "bytes": 8}),
     "policy.duties[2].field: field 'serial_number' is already transformed by policy.duties[0]"),
    (lambda p: p["duties"].append({"type": "pseudonymise", "field": "uin"}),
     "policy.duties[2].field: field 'uin' is not delivered (not in policy.permission.fields)"),
    (lambda p: p["duties"].insert(0, {"type": "drop", "fields": ["lat"]}),
     "policy.duties[2].field: field 'lat' is dropped by an earlier duty"),
    (lambda p: p["duties"].append({"field": "lat"}), "policy.duties[2].type: missing duty type"),
    (lambda p: p["duties"].append("drop"), "policy.duties[2]: expected an object, got str"),
    (lambda p: p["duties"][0].update(bytes=4), "policy.duties[0].bytes: Input should be greater than or equal to 8"),
    (lambda p: p["permission"].update(fields="lat"), "policy.permission.fields: Input should be a valid list"),
    (lambda p: p["permission"]["constraints"].append({"type": "validity", "not_before_ms": "2026-01-01"}),
     "policy.permission.constraints[4].not_before_ms: Input should be a valid integer"),
])
def test_errors_name_the_path(mutate, expected):
    assert _error(_with(mutate)).startswith(expected)


def test_policy_must_be_an_object():
    assert _error(None) == "policy: expected an object, got NoneType"


def test_value_constraint_types_follow_the_schema():
    ok = {"permission": {"constraints": [
        {"type": "value", "field": "confidential", "op": "==", "value": False},
        {"type": "value", "field": "category_code", "op": "in", "value": ["0301", "0302"]},
        {"type": "value", "field": "status", "op": "not_in", "value": ["CLOSED"]},
        {"type": "value", "field": "call_time", "op": ">=", "value": 1_767_225_600_000}]}}
    validate_policy(ok, HOTLINE)
    bad_enum = {"permission": {"constraints": [{"type": "value", "field": "status", "op": "==", "value": "OPEN"}]}}
    assert "'OPEN' is not a symbol of 'status'" in _error(bad_enum, HOTLINE)
    bad_bool = {"permission": {"constraints": [{"type": "value", "field": "confidential", "op": "==", "value": 0}]}}
    assert _error(bad_bool, HOTLINE).startswith(
        "policy.permission.constraints[0].value: 0 is not a valid value for field 'confidential' (boolean)")
    bool_order = {"permission": {"constraints": [{"type": "value", "field": "confidential", "op": "<", "value": True}]}}
    assert "op '<' is not defined for boolean field 'confidential'" in _error(bool_order, HOTLINE)
    on_map = {"permission": {"constraints": [{"type": "value", "field": "attributes", "op": "==", "value": "x"}]}}
    assert "field 'attributes' is complex" in _error(on_map, HOTLINE)


def test_a_policy_that_delivers_nothing_is_an_error():
    p = {"permission": {"fields": ["lat"]}, "duties": [{"type": "drop", "fields": ["lat"]}]}
    assert _error(p) == "policy.permission.fields: the policy delivers no field at all"
