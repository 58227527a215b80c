"""Templates render full policies from a few parameters, and reject unknown or bad ones."""

import pytest
from enforcer_samples import AIRPORT_ZONES, DISTRICT, HOTLINE, KEY, NOW_MS, UAV, ticket, uav

from policy_enforcer import (DELIVER, DROP, TEMPLATES, ContractTerms, PolicyError, compile_plan, render_template,
                             validate_policy)


def test_every_template_has_a_description_and_params():
    assert {"logistics-route-planning", "insurance-pricing", "emergency-response", "hotline-analytics"} <= set(TEMPLATES)
    for t in TEMPLATES.values():
        assert t.description and t.schemas and all(p.description for p in t.params.values())


def test_logistics_route_planning():
    policy = render_template("logistics-route-planning", {"geofence": DISTRICT, "zones": AIRPORT_ZONES,
                                                          "decimals": 4, "max_height_m": 100, "max_age_s": 30})
    validate_policy(policy, UAV)
    p = compile_plan(ContractTerms("logi", 1, "swift", ["route-planning"], policy), UAV, KEY)
    r = p.evaluate([uav(), uav(height_agl_m=110.0), uav(lat=30.585, lon=114.305), uav(timestamp_ms=NOW_MS - 31_000)],
                   NOW_MS)
    assert r.decisions == [DELIVER, DROP, DROP, DROP]
    assert r.rules[1:] == ["constraint:value:height_agl_m", "constraint:geofence#2",
                           "constraint:event_time:timestamp_ms"]
    out = r.records[0]
    assert out["lat"] == 30.5832 and len(out["serial_number"]) == 32 and "uin" not in out
    assert {x["type"] for x in p.describe()["prohibitions"]} == {"onward_transfer", "commercial_resale"}


def test_insurance_pricing_defaults():
    policy = render_template("insurance-pricing", {"geofence": DISTRICT})
    p = compile_plan(ContractTerms("ins", 1, "anxin", ["insurance-pricing"], policy), UAV, KEY)
    out = p.evaluate([uav()], NOW_MS).records[0]
    assert out["lat"] == 30.58 and out["timestamp_ms"] % 60_000 == 0 and len(out["uin"]) == 32
    assert "serial_number" not in out


def test_emergency_response_for_both_products():
    uav_policy = render_template("emergency-response", {"product": "UavTelemetry"})
    p = compile_plan(ContractTerms("em-uav", 1, "ems", ["emergency-response"], uav_policy), UAV, KEY)
    assert p.evaluate([uav()], NOW_MS).records[0] == uav()  # full precision, every field
    hl_policy = render_template("emergency-response", {"product": "HotlineTicket", "categories": ["0301"]})
    q = compile_plan(ContractTerms("em-hl", 1, "ems", ["public-safety"], hl_policy), HOTLINE, KEY)
    r = q.evaluate([ticket(), ticket(category_code="0905")], NOW_MS)
    assert r.decisions == [DELIVER, DROP] and r.records[0]["caller_phone"] == "*******5678"
    with pytest.raises(PolicyError, match="params.product: template 'emergency-response': product must be"):
        render_template("emergency-response", {"product": "Parking"})


def test_hotline_analytics_scrubs_masks_and_pseudonymises():
    policy = render_template("hotline-analytics", {})
    validate_policy(policy, HOTLINE)
    p = compile_plan(ContractTerms("hl", 1, "insight", ["service-quality-analysis"], policy), HOTLINE, KEY,
                     scrubber=lambda t: t.replace("13812345678", "[PHONE]"))
    r = p.evaluate([ticket(), ticket(confidential=True)], NOW_MS)
    assert r.decisions == [DELIVER, DROP] and r.rules[1] == "constraint:value:confidential"
    out = r.records[0]
    assert out["caller_phone"] == "*******5678" and out["caller_name"] != "张伟" and len(out["caller_name"]) == 32
    assert "[PHONE]" in out["content"] and "13812345678" not in out["content"]
    assert "caller_email" not in out and "address" not in out
    p.output_schema.encode(out)


@pytest.mark.parametrize("name, params, message", [
    ("drone-racing", {}, "template: unknown template 'drone-racing' (known: logistics-route-planning"),
    ("logistics-route-planning", {}, "params.geofence: template 'logistics-route-planning' needs parameter 'geofence'"),
    ("logistics-route-planning", {"geofence": DISTRICT, "altitude": 3},
     "params.altitude: template 'logistics-route-planning' has no parameter 'altitude'"),
    ("logistics-route-planning", {"geofence": DISTRICT, "decimals": "3"},
     "params.decimals: template 'logistics-route-planning': parameter 'decimals' must be int"),
    ("logistics-route-planning", {"geofence": "nanshan-delivery"},
     "params.geofence: template 'logistics-route-planning': parameter 'geofence' must be geojson"),
    ("hotline-analytics", {"exclude_confidential": "yes"},
     "params.exclude_confidential: template 'hotline-analytics': parameter 'exclude_confidential' must be bool"),
])
def test_template_errors_name_the_parameter(name, params, message):
    with pytest.raises(PolicyError) as e:
        render_template(name, params)
    assert str(e.value).startswith(message)


def test_rendered_policy_with_bad_values_fails_validation():
    policy = render_template("insurance-pricing", {"decimals": 40})
    with pytest.raises(PolicyError, match=r"policy.duties\[1\].decimals: Input should be less than or equal to 12"):
        validate_policy(policy, UAV)
