"""Each duty transforms every delivered record, and the result encodes with output_schema."""

import pytest
from enforcer_samples import HOTLINE, KEY, NOW_MS, UAV, ticket, uav

import schemas
from policy_enforcer import (DELIVER, REJECT, ContractTerms, PolicyError, compile_plan, derive_contract_key)


def plan(policy, schema=UAV, key=KEY, cid="c-test", scrubber=None):
    return compile_plan(ContractTerms(cid, 1, "consumer-x", [], policy), schema, key, scrubber=scrubber)


def deliver(p, rec):
    r = p.evaluate([rec], NOW_MS)
    assert r.decisions == [DELIVER], (r.rules, r.messages)
    out = r.records[0]
    p.output_schema.decode(p.output_schema.encode(out))  # round-trips as Avro
    return out


def test_field_allow_list_and_drop():
    p = plan({"permission": {"fields": ["serial_number", "lat", "lon", "uin"]},
              "duties": [{"type": "drop", "fields": ["uin"]}]})
    assert list(deliver(p, uav())) == ["serial_number", "lat", "lon"]
    assert p.output_schema.field_names == ["serial_number", "lat", "lon"]
    q = plan({"duties": [{"type": "drop", "fields": ["uin", "operator_id", "battery_pct"]}]})
    assert set(deliver(q, uav())) == set(UAV.field_names) - {"uin", "operator_id", "battery_pct"}


@pytest.mark.parametrize("duty, value, expected", [
    ({}, "13812345678", "***********"),
    ({"keep_last": 4}, "13812345678", "*******5678"),
    ({"keep_first": 3}, "13812345678", "138********"),
    ({"keep_first": 3, "keep_last": 4, "char": "#"}, "13812345678", "138####5678"),
    ({"keep_last": 4}, "1234", "****"),          # too short to keep anything: all masked
    ({"keep_last": 4}, "", ""),
])
def test_mask(duty, value, expected):
    p = plan({"duties": [{"type": "mask", "field": "caller_phone", **duty}]}, schema=HOTLINE)
    assert deliver(p, ticket(caller_phone=value))["caller_phone"] == expected


def test_mask_keeps_null_and_types_field_as_nullable_string():
    p = plan({"duties": [{"type": "mask", "field": "caller_phone", "keep_last": 4}]}, schema=HOTLINE)
    assert deliver(p, ticket(caller_phone=None))["caller_phone"] is None
    f = next(f for f in p.output_schema.definition["fields"] if f["name"] == "caller_phone")
    assert f["type"] == ["null", "string"] and f["default"] is None


def test_pseudonymise_is_keyed_hmac_stable_within_and_different_across_contracts():
    import hashlib
    import hmac
    master = b"citymesh-master-secret-for-tests"
    k1, k2 = derive_contract_key(master, "logistics-routes"), derive_contract_key(master, "insurance-pricing")
    assert len(k1) == 32 and k1 != k2 and k1 == derive_contract_key(master, "logistics-routes")
    policy = {"duties": [{"type": "pseudonymise", "field": "serial_number"}]}
    p1, p2 = plan(policy, key=k1, cid="logistics-routes"), plan(policy, key=k2, cid="insurance-pricing")
    a, b = deliver(p1, uav())["serial_number"], deliver(p1, uav())["serial_number"]
    assert a == b == hmac.new(k1, b"1581F5FJB22A0012", hashlib.sha256).digest()[:16].hex()
    assert deliver(p2, uav())["serial_number"] != a
    assert deliver(p1, uav(serial_number="1581F5FJB22A0013"))["serial_number"] != a
    assert len(deliver(plan({"duties": [{"type": "pseudonymise", "field": "serial_number", "bytes": 8}]}),
                       uav())["serial_number"]) == 16


def test_pseudonymise_enum_and_nullable_fields_become_strings():
    p = plan({"duties": [{"type": "pseudonymise", "field": "uav_class"}, {"type": "pseudonymise", "field": "uin"}]})
    out = deliver(p, uav(uin=None))
    assert out["uin"] is None and len(out["uav_class"]) == 32
    types = {f["name"]: f["type"] for f in p.output_schema.definition["fields"]}
    assert types["uav_class"] == "string" and types["uin"] == ["null", "string"]


def test_pseudonymise_wrong_type_rejects_naming_the_duty():
    p = plan({"duties": [{"type": "pseudonymise", "field": "serial_number"}]})
    r = p.evaluate([uav(serial_number=12345)], NOW_MS)
    assert r.decisions == [REJECT] and r.rules == ["duty:pseudonymise:serial_number"]
    assert "serial_number" in r.messages[0]


def test_pseudonym_key_must_be_bytes():
    with pytest.raises(PolicyError, match="pseudonym_key"):
        plan({"duties": [{"type": "pseudonymise", "field": "serial_number"}]}, key="secret")


def test_generalise_decimals_and_time_period():
    p = plan({"duties": [{"type": "generalise", "field": "lat", "decimals": 3},
                         {"type": "generalise", "field": "lon", "decimals": 2},
                         {"type": "generalise", "field": "timestamp_ms", "period_s": 60}]})
    out = deliver(p, uav(lat=30.583216, lon=114.334567, timestamp_ms=1_767_225_659_999))
    assert out["lat"] == 30.583 and out["lon"] == 114.33 and out["timestamp_ms"] == 1_767_225_600_000
    types = {f["name"]: f["type"] for f in p.output_schema.definition["fields"]}
    assert types["lat"] == "double" and types["timestamp_ms"] == {"type": "long", "logicalType": "timestamp-millis"}


def test_generalise_nullable_fields_keep_null():
    p = plan({"duties": [{"type": "generalise", "field": "lat", "decimals": 2},
                         {"type": "generalise", "field": "deadline", "period_s": 3600}]}, schema=HOTLINE)
    out = deliver(p, ticket(lat=None, deadline=None))
    assert out["lat"] is None and out["deadline"] is None
    out = deliver(p, ticket(deadline=NOW_MS + 5_400_000))
    assert out["deadline"] == NOW_MS + 3_600_000 and out["lat"] == 30.56


def test_generalise_bad_value_rejects():
    p = plan({"duties": [{"type": "generalise", "field": "lat", "decimals": 3}]})
    r = p.evaluate([uav(), uav(lat="30.5"), uav()], NOW_MS)
    assert r.decisions == [DELIVER, REJECT, DELIVER] and r.rules[1] == "duty:generalise:lat"
    assert r.counts == {"deliver": 2, "reject:duty:generalise:lat": 1}


def test_scrub_pii_with_an_explicit_scrubber():
    def scrubber(text):
        return text.replace("13812345678", "[PHONE]")
    p = plan({"duties": [{"type": "scrub_pii", "field": "content"}]}, schema=HOTLINE, scrubber=scrubber)
    assert deliver(p, ticket())["content"] == "中北路口积水严重，请尽快处理。联系电话 [PHONE]。"
    bad = plan({"duties": [{"type": "scrub_pii", "field": "content"}]}, schema=HOTLINE, scrubber=lambda t: None)
    r = bad.evaluate([ticket()], NOW_MS)
    assert r.decisions == [REJECT] and r.rules == ["duty:scrub_pii:content"]


def test_missing_field_rejects():
    p = plan({"permission": {"fields": ["serial_number", "lat"]}})
    rec = uav()
    del rec["lat"]
    r = p.evaluate([rec], NOW_MS)
    assert r.decisions == [REJECT] and r.rules == ["field:lat"] and r.messages[0] == "missing field 'lat'"


def test_output_schema_name_is_deterministic_and_fingerprint_stable():
    policy = {"duties": [{"type": "pseudonymise", "field": "serial_number"}]}
    a = plan(policy, cid="logistics-routes.v2", key=KEY)
    b = plan(policy, cid="logistics-routes.v2", key=bytes(32))
    assert a.output_schema.full_name == "citymesh.delivery.UavTelemetry_logistics_routes_v2"
    assert a.output_schema.fingerprint == b.output_schema.fingerprint
    assert plan(policy, cid="other").output_schema.fingerprint != a.output_schema.fingerprint
    # the published schema is an ordinary Avro schema a consumer can rebuild
    rebuilt = schemas.RecordSchema.from_definition(a.output_schema.definition)
    assert rebuilt.fingerprint == a.output_schema.fingerprint
