"""Each constraint delivers what it allows and drops the rest with its rule id."""

import pytest
from enforcer_samples import AIRPORT_ZONES, DISTRICT, HOTLINE, KEY, NOW_MS, UAV, ticket, uav

from policy_enforcer import DELIVER, DROP, REJECT, ContractTerms, compile_plan


def plan(policy, schema=UAV, purposes=("route-planning",), nb=None, na=None, cid="c-test"):
    return compile_plan(ContractTerms(cid, 1, "consumer-x", list(purposes), policy, nb, na), schema, KEY)


def outcome(p, rec, now=NOW_MS):
    r = p.evaluate([rec], now)
    return r.decisions[0], r.rules[0]


def test_purpose_match_delivers_and_mismatch_delivers_nothing():
    policy = {"permission": {"constraints": [{"type": "purpose", "in": ["route-planning", "logistics"]}]}}
    assert outcome(plan(policy), uav()) == (DELIVER, None)
    blocked = plan(policy, purposes=["route-planning", "advertising"])
    result = blocked.evaluate([uav(), uav()], NOW_MS)
    assert result.decisions == [DROP, DROP] and result.rules == ["constraint:purpose"] * 2
    assert result.counts == {"drop:constraint:purpose": 2}
    described = blocked.describe()
    assert described["delivers"] is False and described["blocked"]["rule"] == "constraint:purpose"
    assert "advertising" in described["blocked"]["reason"]
    assert plan(policy, purposes=[]).blocked_rule == "constraint:purpose"


def test_validity_window_of_contract_and_of_constraint():
    p = plan({}, nb=NOW_MS - 1000, na=NOW_MS + 1000)
    assert outcome(p, uav(), NOW_MS) == (DELIVER, None)
    assert outcome(p, uav(), NOW_MS - 1001) == (DROP, "validity:not_before")
    assert outcome(p, uav(), NOW_MS + 1001) == (DROP, "validity:not_after")
    q = plan({"permission": {"constraints": [{"type": "validity", "not_after_ms": NOW_MS}]}}, na=NOW_MS + 10_000)
    assert q.not_after_ms == NOW_MS  # the narrower end wins
    assert outcome(q, uav(), NOW_MS + 1) == (DROP, "validity:not_after")


def test_geofence_inside_and_outside():
    inside = plan({"permission": {"constraints": [{"type": "geofence", "inside": DISTRICT}]}})
    assert outcome(inside, uav(lat=30.58, lon=114.34)) == (DELIVER, None)
    assert outcome(inside, uav(lat=30.70, lon=114.20)) == (DROP, "constraint:geofence")
    outside = plan({"permission": {"constraints": [{"type": "geofence", "outside": AIRPORT_ZONES}]}})
    assert outcome(outside, uav(lat=30.77, lon=114.21)) == (DROP, "constraint:geofence")
    assert outcome(outside, uav(lat=30.60, lon=114.35)) == (DELIVER, None)


def test_geofence_null_position_drops_and_bad_type_rejects():
    p = plan({"permission": {"constraints": [{"type": "geofence", "inside": DISTRICT}]}}, schema=HOTLINE,
             purposes=[])
    assert outcome(p, ticket(lat=None)) == (DROP, "constraint:geofence")
    r = p.evaluate([ticket(lat="30.56")], NOW_MS)
    assert (r.decisions[0], r.rules[0]) == (REJECT, "constraint:geofence")
    assert "TypeError" in r.messages[0]


def test_geofence_with_custom_field_names_and_two_fences_get_distinct_rules():
    schema_def = {"type": "record", "name": "Sensor", "namespace": "citymesh.test", "fields": [
        {"name": "id", "type": "string"}, {"name": "y", "type": "double"}, {"name": "x", "type": "double"}]}
    import schemas
    s = schemas.RecordSchema.from_definition(schema_def)
    p = plan({"permission": {"constraints": [
        {"type": "geofence", "inside": DISTRICT, "lat_field": "y", "lon_field": "x"},
        {"type": "geofence", "outside": AIRPORT_ZONES, "lat_field": "y", "lon_field": "x"}]}}, schema=s)
    assert outcome(p, {"id": "a", "y": 30.58, "x": 114.34}) == (DELIVER, None)
    assert outcome(p, {"id": "a", "y": 30.585, "x": 114.305}) == (DROP, "constraint:geofence#2")  # helipad
    assert outcome(p, {"id": "a", "y": 30.9, "x": 114.34}) == (DROP, "constraint:geofence")


@pytest.mark.parametrize("op, value, passing, failing", [
    ("<=", 120, 120.0, 120.5), ("<", 120, 119.9, 120.0), (">", 10, 10.5, 10.0), (">=", 10, 10.0, 9.99),
    ("==", 75.4, 75.4, 75.5), ("!=", 0, 1.0, 0.0), ("in", [50, 60], 60.0, 70.0), ("not_in", [50, 60], 70.0, 50.0),
])
def test_value_ops(op, value, passing, failing):
    p = plan({"permission": {"constraints": [{"type": "value", "field": "height_agl_m", "op": op, "value": value}]}})
    assert outcome(p, uav(height_agl_m=passing)) == (DELIVER, None)
    assert outcome(p, uav(height_agl_m=failing)) == (DROP, "constraint:value:height_agl_m")


@pytest.mark.parametrize("op, value", [("!=", 50), ("not_in", [1, 2]), ("<=", 120)])
def test_null_fails_every_comparison(op, value):
    p = plan({"permission": {"constraints": [{"type": "value", "field": "battery_pct", "op": op, "value": value}]}})
    assert outcome(p, uav(battery_pct=None)) == (DROP, "constraint:value:battery_pct")
    assert outcome(p, uav(battery_pct=64.0))[0] == DELIVER


def test_value_on_strings_enums_and_booleans():
    p = plan({"permission": {"constraints": [
        {"type": "value", "field": "category_code", "op": "in", "value": ["0301", "0302"]},
        {"type": "value", "field": "status", "op": "!=", "value": "CLOSED"},
        {"type": "value", "field": "confidential", "op": "==", "value": False}]}}, schema=HOTLINE, purposes=[])
    assert outcome(p, ticket()) == (DELIVER, None)
    assert outcome(p, ticket(category_code="0905")) == (DROP, "constraint:value:category_code")
    assert outcome(p, ticket(status="CLOSED")) == (DROP, "constraint:value:status")
    assert outcome(p, ticket(confidential=True)) == (DROP, "constraint:value:confidential")


def test_value_type_mismatch_rejects():
    p = plan({"permission": {"constraints": [{"type": "value", "field": "height_agl_m", "op": "<=", "value": 120}]}})
    r = p.evaluate([uav(height_agl_m="high")], NOW_MS)
    assert r.decisions == [REJECT] and r.rules == ["constraint:value:height_agl_m"]
    assert r.counts == {"reject:constraint:value:height_agl_m": 1}


def test_event_time_max_age_and_absolute_bounds():
    p = plan({"permission": {"constraints": [
        {"type": "event_time", "field": "timestamp_ms", "max_age_s": 60, "not_after_ms": NOW_MS + 5000}]}})
    assert outcome(p, uav(timestamp_ms=NOW_MS - 60_000)) == (DELIVER, None)
    assert outcome(p, uav(timestamp_ms=NOW_MS - 60_001)) == (DROP, "constraint:event_time:timestamp_ms")
    assert outcome(p, uav(timestamp_ms=NOW_MS + 5001)) == (DROP, "constraint:event_time:timestamp_ms")
    # max age is relative to the batch's processing time
    assert outcome(p, uav(timestamp_ms=NOW_MS - 60_001), now=NOW_MS - 10) == (DELIVER, None)
    q = plan({"permission": {"constraints": [
        {"type": "event_time", "field": "timestamp_ms", "not_before_ms": NOW_MS - 10, "max_age_s": 3600}]}})
    assert outcome(q, uav(timestamp_ms=NOW_MS - 11)) == (DROP, "constraint:event_time:timestamp_ms")


def test_first_failing_constraint_is_the_rule_and_counts_add_up():
    p = plan({"permission": {"constraints": [
        {"type": "geofence", "inside": DISTRICT},
        {"type": "value", "field": "height_agl_m", "op": "<=", "value": 120}]}})
    recs = [uav(), uav(lat=30.9), uav(height_agl_m=150.0), uav(lat=30.9, height_agl_m=150.0), "not a record"]
    r = p.evaluate(recs, NOW_MS)
    assert r.decisions == [DELIVER, DROP, DROP, DROP, REJECT]
    assert r.rules == [None, "constraint:geofence", "constraint:value:height_agl_m", "constraint:geofence",
                       "input:not-a-record"]
    assert r.counts == {"deliver": 1, "drop:constraint:geofence": 2, "drop:constraint:value:height_agl_m": 1,
                        "reject:input:not-a-record": 1}
    assert sum(r.counts.values()) == len(recs) == len(r)
    assert p.evaluate([], NOW_MS).counts == {}
