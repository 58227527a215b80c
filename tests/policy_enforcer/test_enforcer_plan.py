"""Plan-level behaviour: describe() for audit, batch results, the default PII scrubber."""

import json
from pathlib import Path

import pytest
from enforcer_samples import DISTRICT, HOTLINE, KEY, NOW_MS, UAV, ticket, uav, uav_batch

import policy_enforcer
from policy_enforcer import DELIVER, ContractTerms, PolicyError, compile_plan


def test_describe_lists_constraints_duties_prohibitions_and_is_json():
    policy = {"description": "route planning",
              "permission": {"constraints": [{"type": "purpose", "in": ["route-planning"]},
                                             {"type": "geofence", "inside": DISTRICT}]},
              "duties": [{"type": "drop", "fields": ["uin"]}, {"type": "pseudonymise", "field": "serial_number"}],
              "prohibitions": [{"type": "onward_transfer", "note": "not even to subsidiaries"},
                               {"type": "re_identification"}]}
    p = compile_plan(ContractTerms("logi", 3, "swift", ["route-planning"], policy, NOW_MS, None), UAV, KEY)
    d = json.loads(json.dumps(p.describe()))
    assert (d["contract_id"], d["version"], d["delivers"]) == ("logi", 3, True)
    assert [c["rule"] for c in d["constraints"]] == ["constraint:geofence"]
    assert {x["rule"] for x in d["duties"]} == {"duty:pseudonymise:serial_number", "duty:drop"}
    assert d["prohibitions"][0] == {"type": "onward_transfer", "note": "not even to subsidiaries",
                                    "text": policy_enforcer.PROHIBITIONS["onward_transfer"]}
    assert d["purpose"] == [{"path": "policy.permission.constraints[0]", "allowed": ["route-planning"],
                             "declared": ["route-planning"]}]
    assert d["validity"]["not_before_ms"] == NOW_MS and "uin" in d["dropped_fields"]
    assert d["output_fingerprint"] == p.output_schema.fingerprint and len(d["policy_digest"]) == 64
    assert (p.contract_id, p.version) == ("logi", 3)


def test_prohibitions_do_not_change_records():
    base = compile_plan(ContractTerms("a", 1, "c", [], {}), UAV, KEY)
    prohibited = compile_plan(ContractTerms("a", 1, "c", [], {"prohibitions": [{"type": "commercial_resale"}]}),
                              UAV, KEY)
    assert base.evaluate([uav()], NOW_MS).records == prohibited.evaluate([uav()], NOW_MS).records == [uav()]


def test_policy_none_is_an_error():
    with pytest.raises(PolicyError, match="policy: expected an object"):
        compile_plan(ContractTerms("a", 1, "c", [], None), UAV, KEY)


def test_delivered_records_are_new_dicts():
    rec = uav()
    out = compile_plan(ContractTerms("a", 1, "c", [], {}), UAV, KEY).evaluate([rec], NOW_MS).records[0]
    assert out == rec and out is not rec


@pytest.mark.skipif(not (Path(policy_enforcer.__file__).parent / "pii").is_dir(),
                    reason="policy_enforcer/pii/ is written by another change")
def test_scrub_pii_uses_policy_enforcer_pii_by_default():
    from policy_enforcer import pii
    policy = {"duties": [{"type": "scrub_pii", "field": "content"}]}
    p = compile_plan(ContractTerms("hl", 1, "c", [], policy), HOTLINE, KEY)
    text = "我叫张伟，电话 13812345678，身份证 420106199001011234，中北路积水。"
    r = p.evaluate([ticket(content=text)], NOW_MS)
    assert r.decisions == [DELIVER]
    assert r.records[0]["content"] == pii.scrub(text)
    assert "13812345678" not in r.records[0]["content"]


def test_encoded_path_rejects_a_bad_record_like_evaluate_and_still_encodes_the_rest():
    """A record the one-pass step cannot take sends the batch through evaluate(): same
    decisions, rules and reasons; the good records still come out encoded."""
    policy = {"permission": {"constraints": [{"type": "value", "field": "height_agl_m", "op": "<=", "value": 120}]},
              "duties": [{"type": "generalise", "field": "lat", "decimals": 3}]}
    plan = compile_plan(ContractTerms("enc", 1, "c", [], policy), UAV, KEY)
    good, high = uav(), uav(height_agl_m=300.0)
    bad = dict(uav(), lat="not a number")
    recs = [good, bad, high]
    values = [UAV.encode(good), UAV.encode(good), UAV.encode(high)]  # bad's payload does not matter here
    expected = plan.evaluate(recs, NOW_MS)
    got = plan.evaluate_encoded(recs, values, NOW_MS)
    assert got.decisions == expected.decisions == [DELIVER, "reject", "drop"]
    assert (got.rules, got.counts, got.messages) == (expected.rules, expected.counts, expected.messages)
    assert got.records[0] == plan.output_schema.encode(expected.records[0]) and got.records[1:] == [None, None]
    assert plan.output_schema.decode(got.records[0])["lat"] == round(good["lat"], 3)


def test_plans_that_differ_only_by_their_pseudonyms_share_all_but_those():
    """One offer, three consumers' agreements: a geofence, a pseudonymised key field and a
    pseudonymised nullable field. The geofence and every other field are computed once for the
    three (Plan.split_key); each contract's payload and key are byte for byte what its plan
    makes on its own, and differ from the others' only where the pseudonyms are. A keyed plan
    with no other of its policy takes its own path: the split would only cost it."""
    from policy_enforcer import SourceBatch, shared_split_keys
    from policy_enforcer.lineage import ProductTerms
    policy = {"permission": {"constraints": [{"type": "geofence", "inside": DISTRICT}]},
              "duties": [{"type": "pseudonymise", "field": "serial_number"}, {"type": "pseudonymise", "field": "uin"},
                         {"type": "generalise", "field": "lat", "decimals": 3}]}
    product = ProductTerms(key_field="serial_number")
    plans = [compile_plan(ContractTerms(cid, 1, "c", [], policy), UAV, bytes([i]) * 32, product=product)
             for i, cid in enumerate(("alpha", "beta", "gamma"), 1)]
    records = uav_batch(40) + [uav(uin=None), uav(lat=30.0)]  # a null pseudonymised field; one outside
    values, offsets = [UAV.encode(r) for r in records], list(range(len(records)))
    assert shared_split_keys(plans) == {plans[0].split_key} and shared_split_keys(plans[:1]) == frozenset()
    batch = SourceBatch(0, records, values, offsets, [None] * len(records), shared_split_keys(plans))
    got = [plan.deliver(batch, NOW_MS) for plan in plans]
    assert list(batch.outputs) == [("split", plans[0].split_key, NOW_MS)]
    assert plans[0]._make_split_step is not None and len({p.split_key for p in plans}) == 1
    for plan, result in zip(plans, got):
        alone = SourceBatch(0, records, values, offsets, [None] * len(records), shared_split_keys([plan]))
        own = plan.deliver(alone, NOW_MS)
        assert alone.outputs == {}
        assert (result.records, result.keys, result.decisions, result.rules, result.counts) == (
            own.records, own.keys, own.decisions, own.rules, own.counts)
        decoded = [plan.output_schema.decode(p) for p in result.records if p is not None]
        assert decoded[-1]["uin"] is None and all(d["lat"] == round(d["lat"], 3) for d in decoded)
        assert [k for k in result.keys if k is not None] == [d["serial_number"].encode() for d in decoded]
    assert got[0].decisions[-1] == "drop" and got[0].counts["drop:constraint:geofence"] >= 1
    a, b = ([plans[i].output_schema.decode(p) for p in got[i].records if p is not None] for i in (0, 1))
    assert [x["serial_number"] != y["serial_number"] for x, y in zip(a, b)] == [True] * len(a)
    assert [{**x, "serial_number": 0, "uin": 0} for x in a] == [{**y, "serial_number": 0, "uin": 0} for y in b]
