"""The contracts stage on its own (no broker): the example city's UAV contracts, compiled as
the runner compiles them, deliver, drop and reject admitted records; one BATCH event per
contract counts every decision; quotas take deliveries back; records too large for the
broker are quarantined; contract changes take effect at batch boundaries."""

from __future__ import annotations

import json
import math

import pytest

from processors import evidence
from processors.limiting import Limiting
from processors.stages.base import DeadLetter
from processors.stages.contracts import HEADER_ALLOWANCE, RULE_UNWRITABLE
from schemas.headers import CONTRACT, SCHEMA, SOURCE_REF, TRACE
from tests.processors.stages.samples import (NOW, PARTITIONS, UAV, Provider, admitted_slice, contract, contracts_stage,
                                             uav)

# in the Nanshan delivery area; in the urban area only; outside both; a latitude no geofence can place
RECORDS = [uav(0), uav(1, lat=22.6, lon=114.2), uav(2, lat=22.0, lon=113.5), uav(3, lat=math.nan)]
GEOFENCE = "constraint:geofence"


def delivered(result) -> list[int]:
    return [i for i, payload in enumerate(result.records) if payload is not None]


def test_each_contract_delivers_drops_and_rejects_and_counts_them_in_one_batch_event():
    stage = contracts_stage(["logistics-routes", "insurance-pricing", "regulator-uav"])
    s = admitted_slice(Provider(), RECORDS, p=2, first=100)
    stage.process(s)
    by_contract = {ap.contract_id: (ap, result, event) for ap, result, event in s.deliveries}
    assert list(by_contract) == ["logistics-routes", "insurance-pricing", "regulator-uav"]
    expected = {"logistics-routes": ([0], {"deliver": 1, f"drop:{GEOFENCE}": 2, f"reject:{GEOFENCE}": 1}),
                "insurance-pricing": ([0, 1], {"deliver": 2, f"drop:{GEOFENCE}": 1, f"reject:{GEOFENCE}": 1}),
                "regulator-uav": ([0, 1, 2, 3], {"deliver": 4})}
    for cid, (indexes, counts) in expected.items():
        ap, result, event = by_contract[cid]
        assert delivered(result) == indexes, cid
        assert result.counts == counts, cid
        c = contract(cid)
        assert event == evidence.batch_event(NOW, "uav-telemetry", "skyway", cid, c["version"], c["consumer_id"],
                                             UAV["raw_topic"], 2, 100, 103, counts, None, None)
        assert ap.topic == f"cm.dlv.{cid}" and ap.partitions == PARTITIONS
    assert s.events == [event for _, _, event in s.deliveries]  # one BATCH event per contract, nothing else
    assert "is not a number (NaN)" in by_contract["logistics-routes"][1].messages[3]


def test_a_delivery_is_the_contracts_view_of_the_record_with_its_own_headers():
    stage = contracts_stage(["logistics-routes"])
    s = admitted_slice(Provider(), RECORDS[:1])
    stage.process(s)
    [(ap, result, _)] = s.deliveries
    out = ap.plan.output_schema.decode(result.records[0])
    assert set(out) == {"serial_number", "flight_id", "timestamp_ms", "lat", "lon", "alt_msl_m", "height_agl_m",
                        "speed_h_mps", "speed_v_mps", "heading_deg", "uav_class"}  # uin, operator_id ... withheld
    assert out["serial_number"] != RECORDS[0]["serial_number"]  # pseudonymised
    assert (out["lat"], out["lon"]) == (22.53, 113.94) and out["height_agl_m"] == 80.0
    headers = dict(result.headers[0])
    assert headers[CONTRACT] == b"logistics-routes;v=1" and headers[SCHEMA] == ap.plan.output_schema.fingerprint.encode()
    assert ap.position_of(headers) == (0, 0)  # its sealed cm.src opens to the source position
    assert headers[SOURCE_REF] and headers[TRACE] != dict(s.msgs[0].headers())[TRACE]  # nothing of the provider's
    assert result.keys[0] not in (None, RECORDS[0]["serial_number"].encode())


def test_a_quota_takes_deliveries_back_and_is_counted():
    lim = Limiting(UAV["product_id"], UAV["provider_id"], UAV["raw_topic"], 1, UAV["event_time_field"], None)
    quota = json.dumps({"records": 2, "per_ms": 60_000})
    stage = contracts_stage(["regulator-uav", "emergency-uav"], limiting=lim, **{"regulator-uav": {"quota_json": quota}})
    lim.restore(0, {})  # the partition's limiters, as the runner restores them when it is assigned
    s = admitted_slice(Provider(), RECORDS)
    stage.process(s)
    (_, quoted, quoted_event), (_, free, free_event) = s.deliveries
    assert delivered(quoted) == [0, 1] and delivered(free) == [0, 1, 2, 3]
    assert quoted_event.counts == {"deliver": 2, "drop:quota": 2} and free_event.counts == {"deliver": 4}
    [quota_event] = [e for e in s.events if e.kind == "QUOTA"]
    assert quota_event.contract_id == "regulator-uav" and quota_event.counts == {"drop:quota": 2}
    # the window is used up: the next slice delivers nothing under the quota
    s = admitted_slice(Provider(), RECORDS[:1], first=4, now=NOW + 1)
    stage.process(s)
    assert [e.counts for _, _, e in s.deliveries] == [{"drop:quota": 1}, {"deliver": 1}]


def test_a_delivery_larger_than_the_broker_takes_is_quarantined_once_per_record():
    provider = Provider()
    size = len(provider.route.schema.encode(RECORDS[0]))
    stage = contracts_stage(["regulator-uav", "emergency-uav"], max_record_bytes=HEADER_ALLOWANCE + size - 10)
    big = uav(1, flight_id="F" * 40)
    s = admitted_slice(provider, [big, uav(2, serial_number="S", flight_id="S-1")])
    stage.process(s)
    for _, result, event in s.deliveries:  # the full-record contracts cannot write the big one
        assert delivered(result) == [1] and event.counts == {"deliver": 1, RULE_UNWRITABLE: 1}
    [dead] = s.dead
    assert isinstance(dead, DeadLetter) and (dead.offset, dead.rule) == (0, RULE_UNWRITABLE)
    assert "is larger than the broker takes" in dead.reason


def test_contract_changes_take_effect_at_the_batch_boundary():
    stage = contracts_stage([])
    assert stage.plans == {}
    s = admitted_slice(Provider(), RECORDS)
    stage.process(s)
    assert s.deliveries == [] and s.events == []
    [event] = stage.apply([(contract("regulator-uav"), None)], {0: 7, 1: 3})
    assert (event.kind, event.rule, event.reason) == ("CONTRACT_CHANGE", "state:ACTIVE", "ABSENT -> ACTIVE")
    assert event.details == {"from_offsets": "0:7,1:3"} and event.first_offset == 3
    assert list(stage.plans) == ["regulator-uav"]
    [event] = stage.apply([(contract("regulator-uav", state="REVOKED", version=2), contract("regulator-uav"))], {0: 9})
    assert event.reason == "ACTIVE -> REVOKED" and stage.plans == {}


def test_keyed_contracts_of_one_policy_share_their_split_and_a_lone_one_goes_its_own_way():
    """Two agreements on one offer pseudonymise with keys of their own but decide alike: the
    stage has their plans split once per slice (SourceBatch.split_keys); a keyed contract
    alone, or left alone by a revocation, takes its plan's own path; both deliver the same."""
    twin = contract("logistics-routes", contract_id="logistics-routes-2")
    stage = contracts_stage(["logistics-routes"])
    lone = stage.plans["logistics-routes"].plan
    assert lone.split_key is not None and stage._split_keys == frozenset()
    s = admitted_slice(Provider(), RECORDS)
    stage.process(s)
    [(_, alone, _)] = s.deliveries
    stage.apply([(twin, None)], {0: 0})
    assert stage._split_keys == {lone.split_key} == {stage.plans["logistics-routes-2"].plan.split_key}
    s = admitted_slice(Provider(), RECORDS)
    stage.process(s)
    [(_, shared, _), (_, other, _)] = s.deliveries
    assert (shared.records, shared.keys, shared.counts) == (alone.records, alone.keys, alone.counts)
    assert delivered(other) == delivered(shared) and other.records[0] != shared.records[0]  # its own pseudonyms
    stage.apply([(contract("logistics-routes", state="REVOKED", version=2), contract("logistics-routes"))], {0: 9})
    assert stage._split_keys == frozenset()


def test_a_contract_that_does_not_compile_is_not_enforced():
    stage = contracts_stage(["regulator-uav"])
    broken = contract("regulator-uav", version=2, policy_json=json.dumps({"permission": {"fields": ["no_such"]}}))
    [event] = stage.apply([(broken, contract("regulator-uav"))], {})
    assert stage.plans == {} and event.kind == "CONTRACT_CHANGE"


@pytest.mark.parametrize("cid", ["logistics-routes", "insurance-pricing", "emergency-uav", "regulator-uav",
                                 "operator-uav"])
def test_every_uav_contract_of_the_example_city_compiles_for_its_delivery_schema(cid):
    stage = contracts_stage([cid])
    out = stage.plans[cid].plan.output_schema
    assert out.definition == json.loads(contract(cid)["delivery_schema_json"])  # what `apply` published
