"""Operator rules on hand-built and simulated records: each rule fires exactly where it should."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import schemas
from policy_enforcer import PolicyError
from policy_enforcer.rules import (DEFAULT_HOTLINE_RULES, DEFAULT_UAV_RULES, alert_record, compile_rules)
from streams.simulators import FleetSimulator, HotlineSimulator

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ZONES = {"uas-zones": json.loads((EXAMPLES / "geo" / "shenzhen-uas-zones.geojson").read_text())}
UAV = schemas.load("UavTelemetry")
TICKET = schemas.load("HotlineTicket")
NOW = 1_790_000_000_000
# a point in open airspace (Nanshan, outside every example zone), and one inside each zone
OPEN = (22.5405, 113.9345)
AIRPORT = (22.645, 113.815)     # ZSSZ-CTR, PROHIBITED 0-3000 m
CIVIC = (22.543, 114.059)       # SZ-CIVIC-R1, REQ_AUTHORISATION 0-300 m
PORT = (22.480, 113.912)        # SZ-PORT-C1, CONDITIONAL 0-120 m
RECTANGLES = [(f["properties"]["identifier"], f["properties"]["restriction"],
               (f["geometry"]["coordinates"][0][0][0], f["geometry"]["coordinates"][0][0][1],
                f["geometry"]["coordinates"][0][2][0], f["geometry"]["coordinates"][0][2][1]),
               f["properties"]["upperLimit"]) for f in ZONES["uas-zones"]["features"]]


@pytest.fixture(scope="module")
def uav_rules():
    return compile_rules(DEFAULT_UAV_RULES, UAV, ZONES, {"OP-AUTH": ["SZ-CIVIC-R1", "ZSSZ-CTR"]})


def fix(cls="LIGHT", h=80.0, kmh=36.0, where=OPEN, uin="UAS000000001", op="OP-1", serial="SN1") -> dict:
    return {"serial_number": serial, "uin": uin, "operator_id": op, "uav_class": cls, "flight_id": f"{serial}-1",
            "timestamp_ms": NOW, "lat": where[0], "lon": where[1], "alt_msl_m": h + 20, "height_agl_m": h,
            "speed_h_mps": kmh / 3.6, "speed_v_mps": 0.0, "heading_deg": 0.0, "battery_pct": 90.0,
            "source": "SIMULATOR"}


def fired(rules, records, now=NOW) -> list[tuple[int, str]]:
    return [(h.index, h.rule_id) for h in rules.evaluate(records, now)]


@pytest.mark.parametrize("record, expected", [
    (fix(), []),
    (fix(h=120.0), []),                                      # at the ceiling is allowed
    (fix(h=120.5), ["uav-height-120"]),
    (fix(cls="SMALL", h=150), ["uav-height-120"]),
    (fix(cls="MEDIUM", h=150), []),                          # the 120 m rule is for LIGHT and SMALL
    (fix(cls="MICRO", h=45, kmh=30), []),
    (fix(cls="MICRO", h=55, kmh=30), ["uav-micro-height-50"]),
    (fix(cls="MICRO", h=45, kmh=45), ["uav-micro-speed-40"]),
    (fix(cls="LIGHT", kmh=99), []),
    (fix(cls="LIGHT", kmh=110), ["uav-light-speed-100"]),
    (fix(cls="SMALL", kmh=110), []),
    (fix(uin=None), ["uav-unregistered"]),
    (fix(uin="  "), ["uav-unregistered"]),
    (fix(where=AIRPORT, h=30), ["uav-zone-prohibited"]),
    (fix(where=CIVIC, h=100), ["uav-zone-unauthorised"]),
    (fix(where=CIVIC, cls="MEDIUM", h=310), []),             # above the restricted volume
    (fix(where=CIVIC, h=100, op="OP-AUTH"), []),             # authorised operator
    (fix(where=AIRPORT, h=30, op="OP-AUTH"), []),
    (fix(where=PORT, h=100), []),                            # conditional: allowed below its ceiling
    (fix(where=PORT, h=119), []),
    (fix(where=PORT, cls="MEDIUM", h=130), ["uav-zone-conditional"]),
    (fix(where=PORT, h=130), ["uav-height-120", "uav-zone-conditional"]),
    (fix(where=CIVIC, h=130, uin=None, kmh=120), ["uav-height-120", "uav-light-speed-100", "uav-zone-unauthorised",
                                                  "uav-unregistered"]),
])
def test_each_uav_rule_fires_exactly_where_it_should(uav_rules, record, expected):
    assert [rid for _, rid in fired(uav_rules, [record])] == expected


def test_hits_carry_subject_evidence_and_index(uav_rules):
    records = [fix(serial="OK"), fix(serial="HIGH", h=131.5), fix(serial="ZONE", where=CIVIC, h=100)]
    hits = uav_rules.evaluate(records, NOW)
    assert [(h.index, h.subject, h.severity) for h in hits] == [(1, "HIGH", "HIGH"), (2, "ZONE", "HIGH")]
    assert hits[0].evidence == {"height_agl_m": "131.5", "max": "120", "unit": "m", "uav_class": "LIGHT"}
    assert "131.5" in hits[0].message
    assert hits[1].evidence["zone"] == "SZ-CIVIC-R1" and hits[1].evidence["operator_id"] == "OP-1"
    alert = alert_record(hits[0], "uav-telemetry", NOW, "cm.raw.x", 0, 42)
    assert schemas.load("Alert").decode(schemas.load("Alert").encode(alert)) == alert
    assert alert_record(hits[0], "uav-telemetry", NOW + 5, "cm.raw.x", 0, 42)["alert_id"] == alert["alert_id"]
    assert alert_record(hits[0], "uav-telemetry", NOW, "cm.raw.x", 0, 43)["alert_id"] != alert["alert_id"]


def test_vertical_limits_of_a_zone_are_respected():
    zone = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"identifier": "BAND", "restriction": "PROHIBITED", "lowerLimit": 50,
                                          "upperLimit": 100, "uom": "m", "reason": ["OTHER"]},
        "geometry": {"type": "Polygon", "coordinates": [[[113.9, 22.5], [114.0, 22.5], [114.0, 22.6], [113.9, 22.6]]]}}]}
    rules = compile_rules([{"id": "z", "type": "zone", "zones": "band"}], UAV, {"band": zone})
    inside = (22.55, 113.95)
    got = [bool(rules.evaluate([fix(where=inside, h=h)], NOW)) for h in (10, 49.9, 50, 75, 100, 100.1, 200)]
    assert got == [False, False, True, True, True, False, False]
    assert rules.evaluate([fix(where=(22.7, 113.95), h=75)], NOW) == []   # beside the zone


def test_simulated_fleet_hits_match_an_independent_check(uav_rules):
    """FleetSimulator: a share of drones fly above 120 m or unregistered; compare with plain arithmetic."""
    sim = FleetSimulator(drones=40, seed=3, violators=0.3)
    records = [r for _ in range(120) for r in sim.tick(1.0)]
    hits = fired(uav_rules, records)
    expected = []
    for i, r in enumerate(records):
        if r["uav_class"] in ("LIGHT", "SMALL") and r["height_agl_m"] > 120:
            expected.append((i, "uav-height-120"))
        if r["uav_class"] == "MICRO" and r["height_agl_m"] > 50:
            expected.append((i, "uav-micro-height-50"))
        if r["uav_class"] == "MICRO" and r["speed_h_mps"] * 3.6 > 40:
            expected.append((i, "uav-micro-speed-40"))
        if r["uav_class"] == "LIGHT" and r["speed_h_mps"] * 3.6 > 100:
            expected.append((i, "uav-light-speed-100"))
        if not r["uin"]:
            expected.append((i, "uav-unregistered"))
        # the example zones are rectangles; one simulator base lies inside the Civic Centre zone
        for ident, restriction, (lon0, lat0, lon1, lat1), upper in RECTANGLES:
            inside = lon0 < r["lon"] < lon1 and lat0 < r["lat"] < lat1
            h = r["height_agl_m"]
            if inside and (h > upper if restriction == "CONDITIONAL" else h <= upper):
                expected.append((i, {"PROHIBITED": "uav-zone-prohibited", "REQ_AUTHORISATION": "uav-zone-unauthorised",
                                     "CONDITIONAL": "uav-zone-conditional"}[restriction]))
    assert sorted(hits) == sorted(expected)
    kinds = {rid for _, rid in hits}
    assert {"uav-height-120", "uav-unregistered", "uav-zone-unauthorised"} <= kinds


def test_a_compliant_fleet_raises_nothing():
    sim = FleetSimulator(drones=30, seed=5, violators=0.0)
    records = [r for _ in range(100) for r in sim.tick(1.0)]
    for r in records:  # the simulator flies MICRO drones at up to 58 km/h; keep them legal here
        if r["uav_class"] == "MICRO":
            r["speed_h_mps"] = min(r["speed_h_mps"], 11.0)
    authorised = {r["operator_id"]: ["SZ-CIVIC-R1"] for r in records}  # base 2 is inside the Civic Centre zone
    rules = compile_rules(DEFAULT_UAV_RULES, UAV, ZONES, authorised)
    assert records and rules.evaluate(records, NOW) == []
    assert compile_rules(DEFAULT_UAV_RULES, UAV, ZONES).evaluate(records, NOW)  # without authorisations it is not


def ticket(**kw) -> dict:
    t = HotlineSimulator(seed=1).ticket(NOW - 86_400_000)
    t.update(content="小区门口路灯不亮，请尽快维修。", deadline=NOW + 3_600_000, status="RECEIVED", completed_time=None)
    t.update(kw)
    return t


def test_pii_in_a_ticket_is_reported_by_kind_never_by_value():
    rules = compile_rules(DEFAULT_HOTLINE_RULES, TICKET)
    text = "路灯不亮。我叫王伟，电话13812345678，身份证110101199003071234。"
    hits = rules.evaluate([ticket(), ticket(content=text, order_no="T2")], NOW)
    assert [(h.index, h.rule_id, h.subject) for h in hits] == [(1, "hotline-pii-in-content", "T2")]
    ev = hits[0].evidence
    assert set(ev["pii_kinds"].split(",")) >= {"mobile", "name"}
    dumped = json.dumps(ev, ensure_ascii=False) + hits[0].message
    for value in ("13812345678", "王伟", "110101199003071234"):
        assert value not in dumped


@pytest.mark.parametrize("fields, overdue", [
    ({"deadline": NOW - 1000}, True),
    ({"deadline": NOW - 1000, "status": "IN_PROGRESS"}, True),
    ({"deadline": NOW + 1000}, False),
    ({"deadline": None}, False),
    ({"deadline": NOW - 1000, "status": "COMPLETED"}, False),
    ({"deadline": NOW - 1000, "status": "CLOSED"}, False),
    ({"deadline": NOW - 1000, "completed_time": NOW - 5000}, False),
])
def test_overdue_tickets(fields, overdue):
    rules = compile_rules(DEFAULT_HOTLINE_RULES, TICKET)
    hits = rules.evaluate([ticket(**fields)], NOW)
    assert [h.rule_id for h in hits] == (["hotline-overdue"] if overdue else [])
    if overdue:
        assert hits[0].evidence["overdue_s"] == "1"


@pytest.mark.parametrize("rule, message", [
    ({"id": "x", "type": "median"}, "rules[0] (x).type: unknown rule type 'median'"),
    ({"id": "x", "type": "max", "field": "altitude", "max": 1}, "rules[0] (x).field: unknown field 'altitude'"),
    ({"id": "x", "type": "max", "field": "uin", "max": 1}, "not a number"),
    ({"id": "x", "type": "max", "field": "height_agl_m", "max": 1, "above": 3}, "rules[0] (x): unknown field(s) above"),
    ({"id": "x", "type": "max", "field": "height_agl_m", "max": 1, "unit": "ft/s"}, "rules[0] (x).unit"),
    ({"id": "x", "type": "max", "field": "height_agl_m", "max": 1, "severity": "URGENT"}, "rules[0] (x).severity"),
    ({"id": "x", "type": "max", "field": "height_agl_m", "max": 1, "when": {"uav_class": ["HUGE"]}},
     "rules[0] (x).when.uav_class"),
    ({"id": "x", "type": "zone", "zones": "nowhere"}, "rules[0] (x).zones: unknown zones 'nowhere'"),
    ({"id": "Bad Id", "type": "required", "field": "uin"}, "rules[0].id"),
])
def test_bad_rules_name_the_rule(rule, message):
    with pytest.raises(PolicyError) as err:
        compile_rules([rule], UAV, ZONES)
    assert message in str(err.value)


def test_duplicate_ids_and_bad_zone_attributes_are_rejected():
    with pytest.raises(PolicyError, match="duplicate rule id"):
        compile_rules([{"id": "a", "type": "required", "field": "uin"}] * 2, UAV)
    zone = {"type": "Feature", "properties": {"identifier": "Z", "restriction": "MAYBE"},
            "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}
    with pytest.raises(PolicyError, match="restriction 'MAYBE'"):
        compile_rules([{"id": "z", "type": "zone", "zones": "z"}], UAV, {"z": zone})
