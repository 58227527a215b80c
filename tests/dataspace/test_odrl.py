"""The citymesh ODRL profile: lossless both ways, strict on what the mesh cannot enforce."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import policy_enforcer
import schemas
from dataspace import messages
from dataspace.errors import OdrlError
from dataspace.odrl import canonical, from_odrl, instant, to_odrl
from dataspace.offers import offer_policy
from topology.loader import load_topology
from tests.mesh_fixtures import EXAMPLES

names = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True)
texts = st.text(min_size=1, max_size=20)
instants = st.integers(-62_000_000_000_000, 253_000_000_000_000)  # years 5 .. 9987: xsd:dateTime range
scalars = st.one_of(st.booleans(), st.integers(-10**12, 10**12), texts,
                    st.floats(allow_nan=False, allow_infinity=False))
opt = lambda s: st.one_of(st.none(), s)  # noqa: E731


@st.composite
def geojson(draw):
    n = draw(st.integers(3, 8))
    ring = [[draw(st.floats(-180, 180)), draw(st.floats(-90, 90))] for _ in range(n)]
    poly = {"type": "Polygon", "coordinates": [ring + [ring[0]]]}
    if draw(st.booleans()):
        return poly
    return {"type": "Feature", "properties": {"name": draw(texts)}, "geometry": poly}


def drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


@st.composite
def constraint(draw):
    kind = draw(st.sampled_from(["purpose", "validity", "geofence", "value", "event_time"]))
    if kind == "purpose":
        return {"type": "purpose", "in": draw(st.lists(texts, min_size=1, max_size=3))}
    if kind == "validity":
        nb, na = draw(opt(instants)), draw(opt(instants))
        if nb is None and na is None:
            nb = draw(instants)
        return drop_none({"type": "validity", "not_before_ms": nb, "not_after_ms": na})
    if kind == "geofence":
        return drop_none({"type": "geofence", draw(st.sampled_from(["inside", "outside"])): draw(geojson()),
                          "lat_field": draw(opt(names)), "lon_field": draw(opt(names))})
    if kind == "value":
        op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "not_in"]))
        value = draw(st.lists(scalars, min_size=1, max_size=4)) if op in ("in", "not_in") else draw(scalars)
        return {"type": "value", "field": draw(names), "op": op, "value": value}
    c = drop_none({"type": "event_time", "field": draw(names), "not_before_ms": draw(opt(instants)),
                   "not_after_ms": draw(opt(instants)),
                   "max_age_s": draw(opt(st.one_of(st.integers(1, 10**6), st.floats(0.001, 1e6))))})
    if len(c) == 2:
        c["max_age_s"] = 30
    return c


@st.composite
def duty(draw):
    kind = draw(st.sampled_from(["drop", "mask", "pseudonymise", "generalise", "scrub_pii"]))
    if kind == "drop":
        return {"type": "drop", "fields": draw(st.lists(names, min_size=1, max_size=3))}
    d = {"type": kind, "field": draw(names)}
    if kind == "mask":
        d.update(drop_none({"keep_first": draw(opt(st.integers(0, 64))), "keep_last": draw(opt(st.integers(0, 64))),
                            "char": draw(opt(st.sampled_from(["*", "#", "x"])))}))
    elif kind == "pseudonymise":
        d.update(drop_none({"bytes": draw(opt(st.integers(8, 32)))}))
    elif kind == "generalise":
        d.update({"decimals": draw(st.integers(-6, 12))} if draw(st.booleans())
                 else {"period_s": draw(st.integers(1, 366 * 86400))})
    return d


@st.composite
def policies(draw):
    permission = {}
    if draw(st.booleans()):
        permission["fields"] = draw(st.lists(names, min_size=1, max_size=6, unique=True))
    cs = draw(st.lists(constraint(), max_size=5))
    if cs:
        permission["constraints"] = cs
    p = {"permission": permission} if permission else {}
    ds = draw(st.lists(duty(), max_size=4))
    if ds:
        p["duties"] = ds
    ps = draw(st.lists(st.builds(lambda t, n: drop_none({"type": t, "note": n}),
                                 st.sampled_from(sorted(policy_enforcer.PROHIBITIONS)), opt(texts)), max_size=3))
    if ps:
        p["prohibitions"] = ps
    if draw(st.booleans()):
        p["description"] = draw(texts)
    return p


def as_message_offer(body: dict) -> dict:
    return {"@id": "urn:uuid:1", "@type": "Offer", "target": "urn:citymesh:dataset:x", **body}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies())
def test_random_policies_map_to_odrl_and_back_unchanged(policy):
    odrl = json.loads(json.dumps(to_odrl(policy)))  # through the wire
    assert from_odrl(odrl) == canonical(policy)
    offer = messages.envelope("ContractRequestMessage", consumerPid="urn:uuid:2", callbackAddress="http://x/cb",
                              offer=as_message_offer(odrl))
    assert messages.problems(offer, "ContractRequestMessage") == []


def city_policies() -> list[tuple[str, dict]]:
    topo = load_topology(EXAMPLES / "city.yaml")
    out = [(f"contract {c.id}", c.policy) for c in topo.contracts]
    for p in topo.products:
        for o in p.offers:
            out.append((f"offer {p.id}/{o.id}", offer_policy({"template": o.template, "params": o.params})))
    return out


@pytest.mark.parametrize("name,policy", city_policies(), ids=[n for n, _ in city_policies()])
def test_every_example_city_policy_round_trips(name, policy):
    assert from_odrl(json.loads(json.dumps(to_odrl(policy)))) == canonical(policy)


def test_values_keep_their_types():
    policy = {"permission": {"constraints": [{"type": "value", "field": "h", "op": "<=", "value": 120},
                                             {"type": "value", "field": "h", "op": "<=", "value": 120.0},
                                             {"type": "value", "field": "c", "op": "==", "value": False},
                                             {"type": "value", "field": "s", "op": "in", "value": ["1", 1, 1.5]}]}}
    back = from_odrl(json.loads(json.dumps(to_odrl(policy))))["permission"]["constraints"]
    assert [type(c["value"]) for c in back[:3]] == [int, float, bool]
    assert [type(v) for v in back[3]["value"]] == [str, int, float]


def test_instants_are_xsd_datetime_with_milliseconds():
    assert instant(0) == {"@value": "1970-01-01T00:00:00.000Z", "@type": "xsd:dateTime"}
    assert instant(1_767_225_600_123)["@value"] == "2026-01-01T00:00:00.123Z"
    # the spec's own example spelling is read too
    rule = from_odrl({"permission": [{"action": "use", "constraint": [
        {"leftOperand": "dateTime", "operator": "lteq", "rightOperand": "2023-12-31T06:00Z"}]}]})
    assert rule["permission"]["constraints"][0]["not_after_ms"] == 1_704_002_400_000


@pytest.mark.parametrize("odrl,path,words", [
    ({"permission": [{"action": "use", "constraint": [{"leftOperand": "partner", "operator": "eq",
                                                       "rightOperand": "gold"}]}]},
     "offer.permission[0].constraint[0].leftOperand", "unknown left operand 'partner'"),
    ({"permission": [{"action": "use", "constraint": [{"or": [
        {"leftOperand": "purpose", "operator": "eq", "rightOperand": "a"},
        {"leftOperand": "purpose", "operator": "eq", "rightOperand": "b"}]}]}]},
     "offer.permission[0].constraint[0]", "'or' constraints cannot be enforced"),
    ({"permission": [{"action": "use", "constraint": [{"leftOperand": "spatial", "operator": "eq",
                                                       "rightOperand": "http://example.org/EU"}]}]},
     "offer.permission[0].constraint[0].operator", "operator 'eq' on spatial cannot be enforced"),
    ({"permission": [{"action": "use", "constraint": [{"leftOperand": "spatial", "operator": "isPartOf",
                                                       "rightOperand": "http://example.org/EU"}]}]},
     "offer.permission[0].constraint[0].rightOperand", "cannot enforce a named region"),
    ({"permission": [{"action": "use", "duty": [{"action": "cm:encrypt"}]}]},
     "offer.permission[0].duty[0].action", "unknown duty action 'cm:encrypt'"),
    ({"permission": [{"action": "distribute"}]}, "offer.permission[0].action", "grants the action 'use'"),
    ({"permission": [{"action": "use"}], "obligation": [{"action": "compensate"}]}, "offer.obligation",
     "policy-level obligations"),
    ({"permission": [{"action": "use", "constraint": [{"leftOperand": "cm:field/h", "operator": "lteq",
                                                       "rightOperand": "1", "unit": "m"}]}]},
     "offer.permission[0].constraint[0]", "['unit'] cannot be enforced"),
    ({"profile": "https://example.org/other", "permission": [{"action": "use"}]}, "offer.profile",
     "unknown ODRL profile"),
    ({"permission": [{"action": "use"}], "prohibition": [{"action": "cm:teleport"}]},
     "offer.prohibition[0].action", "unknown prohibition 'cm:teleport'"),
])
def test_what_the_mesh_cannot_enforce_is_refused_naming_the_rule(odrl, path, words):
    with pytest.raises(OdrlError) as err:
        from_odrl(odrl)
    assert err.value.path == path and words in err.value.detail


def test_a_valid_policy_stays_valid_after_the_round_trip():
    schema = schemas.load("UavTelemetry")
    for _, policy in city_policies():
        if {"purpose"} <= {c["type"] for c in policy.get("permission", {}).get("constraints", [])}:
            try:
                policy_enforcer.validate_policy(policy, schema)
            except policy_enforcer.PolicyError:
                continue  # a hotline policy
            policy_enforcer.validate_policy(from_odrl(to_odrl(policy)), schema)


def test_float_edge_values_survive():
    for v in (0.1, 1e-300, -0.0, 5e-324, 1.7976931348623157e308, 123456789.123456789):
        p = {"permission": {"constraints": [{"type": "value", "field": "x", "op": "<", "value": v}]}}
        out = from_odrl(json.loads(json.dumps(to_odrl(p))))["permission"]["constraints"][0]["value"]
        assert out == v and math.copysign(1, out) == math.copysign(1, v)
