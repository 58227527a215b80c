"""Property-based tests: random contracts over random records (hypothesis).

For every delivered record: only allowed fields appear, every duty was applied, every
spatial and value constraint holds (checked here with independent code), and the record
encodes with the plan's output schema. Every non-delivered record was dropped by the
first rule it breaks.
"""

import hashlib
import hmac
import operator

from enforcer_samples import HOTLINE, NOW_MS, UAV, ticket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy_enforcer import DELIVER, DROP, ContractTerms, compile_plan
from policy_enforcer.geo import PolygonIndex, parse_geojson

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
       "in": lambda a, b: a in b, "not_in": lambda a, b: a not in b}

lat_s = st.floats(30.40, 30.90, allow_nan=False)
lon_s = st.floats(114.00, 114.60, allow_nan=False)
opt = lambda s: st.one_of(st.none(), s)  # noqa: E731

uav_records = st.fixed_dictionaries({
    "serial_number": st.sampled_from([f"1581F5FJB22A{i:04d}" for i in range(8)]),
    "uin": opt(st.from_regex(r"UAS-CN-[0-9]{8}", fullmatch=True)),
    "operator_id": opt(st.text("ABCDEFGH0123456789-", min_size=1, max_size=12)),
    "uav_class": st.sampled_from(["MICRO", "LIGHT", "SMALL", "MEDIUM", "LARGE", "UNKNOWN"]),
    "flight_id": st.text("F0123456789-", min_size=1, max_size=16),
    "timestamp_ms": st.integers(NOW_MS - 600_000, NOW_MS + 5_000),
    "lat": lat_s, "lon": lon_s,
    "alt_msl_m": st.floats(0, 600, allow_nan=False), "height_agl_m": st.floats(0, 300, allow_nan=False),
    "speed_h_mps": st.floats(0, 40, allow_nan=False), "speed_v_mps": st.floats(-10, 10, allow_nan=False),
    "heading_deg": st.floats(0, 359.99, allow_nan=False), "battery_pct": opt(st.floats(0, 100, allow_nan=False)),
    "source": st.sampled_from(["MAVLINK", "DJI_OSD", "REMOTE_ID", "SIMULATOR"]),
})


@st.composite
def polygons(draw):
    """A random star-shaped polygon (or a FeatureCollection of two) over Wuhan."""
    def one():
        import math
        cx, cy = draw(st.floats(114.15, 114.45)), draw(st.floats(30.50, 30.80))
        n = draw(st.integers(3, 12))
        radii = draw(st.lists(st.floats(0.01, 0.2), min_size=n, max_size=n))
        ring = [[round(cx + r * math.cos(2 * math.pi * i / n), 6), round(cy + r * math.sin(2 * math.pi * i / n), 6)]
                for i, r in enumerate(radii)]
        return {"type": "Polygon", "coordinates": [ring + [ring[0]]]}
    if draw(st.booleans()):
        return one()
    return {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": one()}
                                                      for _ in range(2)]}


@st.composite
def uav_policies(draw):
    names = UAV.field_names
    allowed = draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    dropped = draw(st.lists(st.sampled_from(allowed), unique=True, max_size=len(allowed) - 1)) if len(allowed) > 1 else []
    kept = [f for f in allowed if f not in dropped]
    duties = [{"type": "drop", "fields": dropped}] if dropped else []
    for f in kept:
        choice = draw(st.integers(0, 3))
        if choice == 0:
            continue
        if f in ("serial_number", "uin", "operator_id", "flight_id", "uav_class", "timestamp_ms"):
            if choice == 1 or f in ("uav_class",):
                duties.append({"type": "pseudonymise", "field": f, "bytes": draw(st.sampled_from([8, 16, 32]))})
            elif f == "timestamp_ms":
                duties.append({"type": "generalise", "field": f, "period_s": draw(st.sampled_from([1, 60, 900]))})
            else:
                duties.append({"type": "mask", "field": f, "keep_first": draw(st.integers(0, 3)),
                               "keep_last": draw(st.integers(0, 4))})
        elif f in ("lat", "lon", "alt_msl_m", "height_agl_m", "speed_h_mps", "speed_v_mps", "heading_deg",
                   "battery_pct"):
            duties.append({"type": "generalise", "field": f, "decimals": draw(st.integers(0, 5))})
    constraints = []
    if draw(st.booleans()):
        constraints.append({"type": "geofence", draw(st.sampled_from(["inside", "outside"])): draw(polygons())})
    if draw(st.booleans()):
        op = draw(st.sampled_from(list(OPS)))
        field = draw(st.sampled_from(["height_agl_m", "battery_pct"]))
        value = draw(st.lists(st.integers(0, 300), min_size=1, max_size=3)) if op in ("in", "not_in") \
            else draw(st.floats(0, 300, allow_nan=False))
        constraints.append({"type": "value", "field": field, "op": op, "value": value})
    return {"permission": {"fields": allowed, "constraints": constraints}, "duties": duties}


def _holds(c, rec) -> bool:
    """Independent check of one constraint on the source record."""
    if c["type"] == "geofence":
        mode = "inside" if "inside" in c else "outside"
        idx = PolygonIndex(parse_geojson(c[mode], "t"))
        inside = idx.contains_exact(rec["lon"], rec["lat"])
        return inside if mode == "inside" else not inside
    v = rec[c["field"]]
    return v is not None and OPS[c["op"]](v, c["value"])


@SETTINGS
@given(policy=uav_policies(), recs=st.lists(uav_records, min_size=1, max_size=40), key=st.binary(min_size=32, max_size=32))
def test_random_uav_contracts(policy, recs, key):
    plan = compile_plan(ContractTerms("prop-uav", 1, "c", [], policy), UAV, key)
    result = plan.evaluate(recs, NOW_MS)
    dropped = set(policy["duties"][0]["fields"]) if policy["duties"] and policy["duties"][0]["type"] == "drop" else set()
    expected_fields = [f for f in UAV.field_names if f in policy["permission"]["fields"] and f not in dropped]
    duties = {d["field"]: d for d in policy["duties"] if "field" in d}
    constraints = policy["permission"]["constraints"]
    assert len(result) == len(recs) and sum(result.counts.values()) == len(recs)
    for rec, decision, out, rule in zip(recs, result.decisions, result.records, result.rules):
        failing = next((c for c in constraints if not _holds(c, rec)), None)
        if decision == DROP:
            assert out is None and failing is not None
            expected_rule = "constraint:geofence" if failing["type"] == "geofence" else f"constraint:value:{failing['field']}"
            assert rule == expected_rule
            continue
        assert decision == DELIVER and failing is None, (rec, constraints)
        assert list(out) == expected_fields == plan.output_schema.field_names
        for f, v in out.items():
            d, src = duties.get(f), rec[f]
            if src is None:
                assert v is None
            elif d is None:
                assert v == src
            elif d["type"] == "pseudonymise":
                assert v == hmac.new(key, str(src).encode(), hashlib.sha256).digest()[:d["bytes"]].hex()
            elif d["type"] == "mask":
                a, b = d["keep_first"], d["keep_last"]
                assert len(v) == len(src)
                if len(src) > a + b:
                    assert v[:a] == src[:a] and v[len(v) - b:] == src[len(src) - b:]
                    assert set(v[a:len(v) - b]) == {"*"}
                else:
                    assert set(v) <= {"*"}
            elif "decimals" in d:
                assert v == round(src, d["decimals"])
            else:
                assert v == src - src % (d["period_s"] * 1000) and 0 <= src - v < d["period_s"] * 1000
        assert plan.output_schema.decode(plan.output_schema.encode(out)) == out


def _assert_encoded_path_agrees(plan, recs, source_schema):
    """The runner's one-pass path (decide + encode, or reuse the source body) delivers exactly
    the bytes of evaluate() followed by the output schema's encoder, with the same decisions."""
    result = plan.evaluate(recs, NOW_MS)
    encoded = plan.evaluate_encoded(recs, [source_schema.encode(r) for r in recs], NOW_MS)
    assert (encoded.decisions, encoded.rules, encoded.counts) == (result.decisions, result.rules, result.counts)
    assert encoded.records == [None if r is None else plan.output_schema.encode(r) for r in result.records]


@SETTINGS
@given(policy=uav_policies(), recs=st.lists(uav_records, min_size=1, max_size=40), key=st.binary(min_size=32, max_size=32))
def test_encoded_path_delivers_the_same_bytes(policy, recs, key):
    _assert_encoded_path_agrees(compile_plan(ContractTerms("prop-uav", 1, "c", [], policy), UAV, key), recs, UAV)


@SETTINGS
@given(recs=st.lists(uav_records, min_size=1, max_size=20))
def test_passthrough_plan_reuses_the_source_body(recs):
    plan = compile_plan(ContractTerms("prop-all", 1, "c", ["audit"],
                                      {"permission": {"constraints": [{"type": "purpose", "in": ["audit"]}]}}), UAV, b"k" * 32)
    assert plan.passthrough
    values = [UAV.encode(r) for r in recs]
    out = plan.evaluate_encoded(recs, values, NOW_MS).records
    assert [o[10:] for o in out] == [v[10:] for v in values]
    assert [plan.output_schema.decode(o) for o in out] == recs
    _assert_encoded_path_agrees(plan, recs, UAV)


@SETTINGS
@given(rec=uav_records, ids=st.lists(st.text("abcdefghij-", min_size=1, max_size=12), min_size=2, max_size=2, unique=True))
def test_pseudonyms_stable_within_a_contract_and_different_across(rec, ids):
    from policy_enforcer import derive_contract_key
    master = b"0123456789abcdef0123456789abcdef"
    policy = {"duties": [{"type": "pseudonymise", "field": "serial_number"}]}
    p1, p2 = (compile_plan(ContractTerms(i, 1, "c", [], policy), UAV, derive_contract_key(master, i)) for i in ids)
    again = compile_plan(ContractTerms(ids[0], 1, "c", [], policy), UAV, derive_contract_key(master, ids[0]))
    a = p1.evaluate([rec, dict(rec)], NOW_MS).records
    assert a[0]["serial_number"] == a[1]["serial_number"] == again.evaluate([rec], NOW_MS).records[0]["serial_number"]
    assert p2.evaluate([rec], NOW_MS).records[0]["serial_number"] != a[0]["serial_number"]


phones = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)
hotline_records = st.builds(
    lambda phone, name, conf, code, lat, lon, words: ticket(
        caller_phone=phone, caller_name=name, confidential=conf, category_code=code, lat=lat, lon=lon,
        content=f"{words} 联系电话 {phone or '无'}"),
    opt(phones), opt(st.sampled_from(["张伟", "王芳", "李娜", "刘洋"])), st.booleans(),
    st.sampled_from(["0301", "0302", "0501", "0905"]), opt(lat_s), opt(lon_s),
    st.text("积水噪音路灯占道施工垃圾", min_size=0, max_size=30))


def _scrub(text: str) -> str:
    import re
    return re.sub(r"1[3-9][0-9]{9}", "[PHONE]", text)


@SETTINGS
@given(recs=st.lists(hotline_records, min_size=1, max_size=30), keep=st.integers(0, 6), decimals=st.integers(1, 4))
def test_random_hotline_contracts(recs, keep, decimals):
    policy = {"permission": {"fields": ["order_no", "call_time", "caller_name", "caller_phone", "category_code",
                                        "content", "lat", "lon", "confidential"],
                             "constraints": [{"type": "value", "field": "confidential", "op": "==", "value": False},
                                             {"type": "value", "field": "category_code", "op": "in",
                                              "value": ["0301", "0501"]}]},
              "duties": [{"type": "mask", "field": "caller_phone", "keep_last": keep},
                         {"type": "pseudonymise", "field": "caller_name"},
                         {"type": "scrub_pii", "field": "content"},
                         {"type": "generalise", "field": "lat", "decimals": decimals},
                         {"type": "generalise", "field": "lon", "decimals": decimals}]}
    plan = compile_plan(ContractTerms("prop-hl", 1, "c", [], policy), HOTLINE, b"k" * 32, scrubber=_scrub)
    result = plan.evaluate(recs, NOW_MS)
    _assert_encoded_path_agrees(plan, recs, HOTLINE)
    for rec, decision, out, rule in zip(recs, result.decisions, result.records, result.rules):
        if rec["confidential"]:
            assert (decision, rule) == (DROP, "constraint:value:confidential")
        elif rec["category_code"] not in ("0301", "0501"):
            assert (decision, rule) == (DROP, "constraint:value:category_code")
        else:
            assert decision == DELIVER
            assert set(out) == set(policy["permission"]["fields"])
            phone = rec["caller_phone"]
            if phone is None:
                assert out["caller_phone"] is None
            else:
                assert out["caller_phone"] == "*" * (11 - keep) + phone[11 - keep:] if keep else "*" * 11
                assert phone not in out["content"] and phone not in str(out)
            if rec["caller_name"] is not None:
                assert len(out["caller_name"]) == 32 and rec["caller_name"] not in str(out)
            for f in ("lat", "lon"):
                assert out[f] == (None if rec[f] is None else round(rec[f], decimals))
            plan.output_schema.encode(out)
