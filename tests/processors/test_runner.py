"""The enforcement runner against the real broker: what each contract delivers, evidence,
bad input, and hot-reloaded contracts."""

import gc
import json
import random
import sys
import time
import weakref

import pytest
from confluent_kafka import Consumer

import schemas
from processors.runner import (BROKER_TROUBLE, OUTPUTS_PER_BATCH, GroupJoinStuck, Runner, batch_limit,
                               collector_paused)
from streams import envelope, topics
from streams.simulators import FleetSimulator
from tests.mesh_fixtures import (CONTRACTS, city_yaml, compliance_events, headers, make_city, raw_producer, read_topic,
                                 source_of)


def _flights(n: int, seed: int = 3) -> list[dict]:
    fleet, out = FleetSimulator(drones=60, seed=seed, violators=0.3), []
    while len(out) < n:
        out += fleet.tick(1.0)
    return out[:n]


def _drain(runner: Runner, idle_s: float = 2.0) -> None:
    runner.run(max_idle_s=idle_s)


def _enforce(city, client_config) -> None:
    """Run a runner over everything in the raw topic, then stop it."""
    runner = Runner(city.product, client_config, city.keys)
    try:
        _drain(runner)
    finally:
        runner.close()


@pytest.fixture
def city(tmp_path, client_config, unique):
    return make_city(tmp_path, client_config, unique)


def test_each_contract_gets_exactly_what_it_grants(city, client_config):
    records = _flights(3000)
    with city.connector() as conn:
        for r in records:
            conn.publish(city.product, r)
    _enforce(city, client_config)
    schema = schemas.load("UavTelemetry")
    raw = {(m.partition(), m.offset()): schema.decode(m.value()) for m in read_topic(client_config, city.raw, 3000)}
    assert len(raw) == 3000

    routes = read_topic(client_config, topics.delivery(f"{city.u}-routes"))
    contract = {"consumer_id": f"{city.u}-logistics"}
    from streams.control import read_table
    contract = read_table(client_config, topics.CONTROL_CONTRACTS)[f"{city.u}-routes"]
    out_schema = schemas.RecordSchema.from_definition(json.loads(contract["delivery_schema_json"]))
    assert routes, "the routes contract delivered nothing"
    expected = {k for k, r in raw.items() if r["height_agl_m"] <= 120}
    got = {}
    for m in routes:
        h = headers(m)
        assert h["cm.contract"] == f"{city.u}-routes;v=1".encode()
        key = source_of(m, city.keys)
        assert m.partition() == key[0] % 3
        got[key] = out_schema.decode(m.value())
    assert set(got) == expected  # everything inside the city under 120 m, nothing else
    for key, rec in got.items():
        src = raw[key]
        assert set(rec) == {"serial_number", "flight_id", "timestamp_ms", "lat", "lon", "height_agl_m",
                            "speed_h_mps", "uav_class"}
        assert rec["serial_number"] != src["serial_number"] and len(rec["serial_number"]) == 32
        assert rec["lat"] == round(src["lat"], 3) and rec["lon"] == round(src["lon"], 3)
    # the same drone has the same pseudonym throughout
    by_serial = {}
    for key, rec in got.items():
        by_serial.setdefault(raw[key]["serial_number"], set()).add(rec["serial_number"])
    assert all(len(v) == 1 for v in by_serial.values())

    regulator = read_topic(client_config, topics.delivery(f"{city.u}-regulator"), 3000)
    assert len(regulator) == 3000  # the regulator's contract grants every record, unchanged
    # source order per partition in every delivery topic
    for msgs in (routes, regulator):
        last = {}
        for m in msgs:
            p, o = source_of(m, city.keys)
            assert o > last.get(p, -1)
            last[p] = o

    events = compliance_events(client_config, city.product)
    batches = [e for e in events if e["kind"] == "BATCH"]
    delivered = sum(e["counts"].get("deliver", 0) for e in batches if e["contract_id"] == f"{city.u}-routes")
    dropped = sum(n for e in batches if e["contract_id"] == f"{city.u}-routes"
                  for k, n in e["counts"].items() if k.startswith("drop:"))
    assert delivered == len(got) and delivered + dropped == 3000
    assert any(k == "drop:constraint:value:height_agl_m" for e in batches for k in e["counts"])
    assert all(e["digest"] and e["first_offset"] <= e["last_offset"] for e in batches)


def _malformed(kind: str, good_payload: bytes, good_headers: list, rnd: random.Random):
    if kind == "random":
        return rnd.randbytes(rnd.randrange(1, 200)), good_headers
    if kind == "truncated":
        return good_payload[:rnd.randrange(11, len(good_payload) - 1)], good_headers
    if kind == "no-tag":
        return good_payload, [(k, v) for k, v in good_headers if k != "cm.auth"]
    if kind == "wrong-tag":
        # the last hex digit changed (a fixed "0000" ending was the real tag 1 in 65,536 times:
        # then the record was the good one again, and a replay)
        return good_payload, [(k, v if k != "cm.auth" else v[:-1] + (b"1" if v[-1:] == b"0" else b"0"))
                              for k, v in good_headers]
    if kind == "unknown-participant":
        return good_payload, [(k, v if k != "cm.participant" else b"mallory") for k, v in good_headers]
    if kind == "oversized":
        return good_payload + rnd.randbytes(300 * 1024), good_headers
    raise AssertionError(kind)


def test_bad_input_goes_to_the_dead_letter_topic_and_good_input_flows(city, client_config):
    """10k malformed payloads interleaved with good ones: all bad ones in the DLQ with a reason,
    all good ones delivered, the runner keeps going."""
    rnd = random.Random(5)
    good = _flights(5000, seed=9)
    kinds = ["random", "truncated", "no-tag", "wrong-tag", "unknown-participant", "oversized"]
    conn = city.connector()
    # capture exactly what the connector would send, to forge variants of it
    sent = []
    real, conn._producer = conn._producer, type("Spy", (), {})()
    conn._producer.produce = lambda topic, v, k, headers, **kw: sent.append((topic, v, k, headers, kw))
    conn._producer.poll = lambda *_: 0
    for r in good:
        conn.publish(city.product, r)
    conn._producer = real
    conn.close()
    p = raw_producer(client_config)
    expected_bad = {}
    bad_i = 0
    for i, (topic, v, k, hdrs, kw) in enumerate(sent):
        p.produce(topic, v, k, headers=hdrs, timestamp=kw["timestamp"])
        for _ in range(2):  # two malformed records after each good one
            kind = kinds[bad_i % len(kinds)]
            bv, bh = _malformed(kind, v, hdrs, rnd)
            p.produce(topic, bv, f"bad-{bad_i}".encode(), headers=bh)
            expected_bad[f"bad-{bad_i}"] = kind
            bad_i += 1
        if i % 500 == 0:
            p.flush()
    p.flush()
    assert bad_i == 10000
    _enforce(city, client_config)
    dlq = read_topic(client_config, city.dlq, 10000)
    assert len(dlq) == 10000
    rules = {}
    for m in dlq:
        h = headers(m)
        assert h["cm.reason"]
        rules.setdefault(expected_bad[m.key().decode()], set()).add(h["cm.rule"].decode())
    assert rules["random"] <= {"reject:not-avro", "reject:empty-or-short", "reject:wrong-schema"}
    assert rules["truncated"] == {"reject:bad-auth-tag"}  # the tag covers the payload, so truncation breaks it
    assert rules["no-tag"] == {"reject:missing-auth-tag"}
    assert rules["wrong-tag"] == {"reject:bad-auth-tag"}
    assert rules["unknown-participant"] == {"reject:not-the-provider"}
    assert rules["oversized"] == {"reject:oversized"}
    regulator = read_topic(client_config, topics.delivery(f"{city.u}-regulator"), 5000)
    assert len(regulator) == 5000
    rejects = [e for e in compliance_events(client_config, city.product) if e["kind"] == "REJECT"]
    assert len(rejects) == 10000 and len({e["event_id"] for e in rejects}) == 10000


def test_truncated_avro_with_a_valid_tag_is_rejected_as_bad_avro(city, client_config):
    """A provider bug (not an attacker): the tag is right but the Avro body is cut short."""
    from streams import keyring
    ring = keyring.load(city.keys, city.provider)
    good = schemas.load("UavTelemetry").encode(_flights(1)[0])
    p = raw_producer(client_config)
    for payload in (good[:-5], good + b"\x00\x01"):
        et = b"1790000000000"
        tag = envelope.Tagger(ring.hmac_key).tag(city.provider.encode(), city.product.encode(), et, payload)
        p.produce(city.raw, payload, b"k", headers=[
            ("cm.participant", city.provider.encode()), ("cm.product", city.product.encode()),
            ("cm.event_time", et), ("cm.auth", f"{ring.key_id}:{tag.hex()}".encode())])
    p.flush()
    _enforce(city, client_config)
    dlq = read_topic(client_config, city.dlq, 2)
    assert sorted(headers(m)["cm.rule"] for m in dlq) == [b"reject:bad-avro", b"reject:bad-avro"]
    assert any(b"trailing" in headers(m)["cm.reason"] for m in dlq)


def _reapplied_mid_stream(city, client_config, contracts: str, seed: int):
    """1000 records enforced, the topology applied again with `contracts`, 1000 more enforced,
    by one runner; the second apply's report."""
    records = _flights(2000, seed=seed)
    runner = Runner(city.product, client_config, city.keys)
    try:
        with city.connector() as conn:
            for r in records[:1000]:
                conn.publish(city.product, r)
        _drain(runner)
        report = city.apply(city_yaml(city.u, contracts))
        with city.connector() as conn:
            for r in records[1000:]:
                conn.publish(city.product, r)
        _drain(runner)
    finally:
        runner.close()
    return report


def _from_offsets(event: dict) -> dict[int, int]:
    """Partition -> offset a CONTRACT_CHANGE event says the change took effect from."""
    return dict(tuple(map(int, x.split(":"))) for x in event["details"]["from_offsets"].split(","))


def test_contracts_hot_reload_at_a_batch_boundary(city, client_config, tmp_path):
    # suspend the regulator's contract, add a new one
    extra = CONTRACTS.replace("""    consumer: {u}-regulator
    purposes: [airspace-supervision]""", """    consumer: {u}-regulator
    purposes: [airspace-supervision]
    state: SUSPENDED""") + """
  - id: {u}-late
    product: {u}-uav
    consumer: {u}-logistics
    purposes: [research]
    policy: {{permission: {{fields: [flight_id, timestamp_ms], constraints: [{{type: purpose, in: [research]}}]}}}}
"""
    _reapplied_mid_stream(city, client_config, extra, seed=4)
    regulator = read_topic(client_config, topics.delivery(f"{city.u}-regulator"), 1000)
    late = read_topic(client_config, topics.delivery(f"{city.u}-late"), 1000)
    changes = [e for e in compliance_events(client_config, city.product) if e["kind"] == "CONTRACT_CHANGE"]
    assert len(regulator) == 1000 and len(late) == 1000, changes
    reg_offsets = {source_of(m, city.keys) for m in regulator}
    late_offsets = {source_of(m, city.keys) for m in late}
    assert not reg_offsets & late_offsets  # one stopped exactly where the other started
    stopped = next(e for e in changes if e["contract_id"] == f"{city.u}-regulator" and e["rule"] == "state:SUSPENDED")
    started = next(e for e in changes if e["contract_id"] == f"{city.u}-late")
    assert stopped["details"]["from_offsets"] == started["details"]["from_offsets"]
    froms = _from_offsets(stopped)
    assert all(o < froms[p] for p, o in reg_offsets) and all(o >= froms[p] for p, o in late_offsets)


def test_a_contract_removed_from_the_topology_stops_delivering(city, client_config):
    """Taking a contract out of the file revokes it on the next apply (topology/apply.py
    AppliedRecords): the runner stops delivering to it at a batch boundary, as on a revocation."""
    routes_only = CONTRACTS[:CONTRACTS.index("  - id: {u}-regulator")]
    report = _reapplied_mid_stream(city, client_config, routes_only, seed=5)
    assert report.retired == {topics.CONTROL_CONTRACTS: [f"{city.u}-regulator"]}
    regulator = {source_of(m, city.keys) for m in read_topic(client_config, topics.delivery(f"{city.u}-regulator"),
                                                              1000)}
    routes = {source_of(m, city.keys) for m in read_topic(client_config, topics.delivery(f"{city.u}-routes"))}
    stopped = next(e for e in compliance_events(client_config, city.product)
                   if e["kind"] == "CONTRACT_CHANGE" and e["contract_id"] == f"{city.u}-regulator")
    assert stopped["rule"] == "state:REVOKED"
    froms = _from_offsets(stopped)
    assert len(regulator) == 1000  # the first thousand, every one, and nothing after
    assert all(o < froms[p] for p, o in regulator)
    assert any(o >= froms[p] for p, o in routes)  # the contract that stayed goes on


def test_a_batch_holds_fewer_records_the_more_contracts_there_are():
    """A batch's deliveries are held until it is flushed: its records x contracts are bounded
    (peak RSS with 50 contracts), not its records alone."""
    assert batch_limit(5000, 0) == batch_limit(5000, 1) == batch_limit(5000, 5) == 5000
    assert batch_limit(5000, 20) == OUTPUTS_PER_BATCH // 20 and batch_limit(5000, 50) == 500
    assert batch_limit(5000, 1000) == 100  # never a batch so small that its fixed costs dominate
    assert batch_limit(200, 50) == 200 and batch_limit(40, 2) == 40  # a smaller --batch-size stays as asked


def _on_the_stack(code) -> bool:
    """Whether a frame running `code` is on the stack of the caller (a gc callback)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code is not code:
        frame = frame.f_back
    return frame is not None


def test_the_collector_is_paused_inside_the_block_and_catches_up_after_it():
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ValueError), collector_paused():
        raise ValueError("a batch that fails")
    assert gc.isenabled()
    gc.disable()  # somebody else's pause is left as it was
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
    # cycles made inside the block, more than the youngest generation's threshold: collected
    # as the block ends, not at whatever container the process allocates next
    freed, block_code, started_in_block = [], collector_paused.__wrapped__.__code__, []

    class Node:
        pass

    def where(phase, info):
        if phase == "start":
            started_in_block.append(_on_the_stack(block_code))
    gc.callbacks.append(where)
    try:
        with collector_paused():
            for _ in range(2 * gc.get_threshold()[0]):
                a, b = Node(), Node()
                a.other, b.other = b, a
                weakref.finalize(a, freed.append, 1)
            del a, b
            assert not freed and not started_in_block
    finally:
        gc.callbacks.remove(where)
    assert started_in_block[:1] == [True]
    assert len(freed) == 2 * gc.get_threshold()[0]


def test_a_batch_runs_without_cyclic_collections(city, client_config):
    """Reference counting frees a batch's objects when it returns: the cyclic collector, which
    would walk all of them every 700 allocations, has nothing to do inside it (RESULTS, "The
    cyclic collector paused for each batch")."""
    with city.connector() as conn:
        for r in _flights(3000):
            conn.publish(city.product, r)
    runner = Runner(city.product, client_config, city.keys)
    step_code, collections = Runner._step.__code__, {True: 0, False: 0}

    def count(phase, info):
        if phase == "start":
            collections[_on_the_stack(step_code)] += 1
    gc.callbacks.append(count)
    try:
        while runner.consumed < 3000:
            runner.step()
    finally:
        gc.callbacks.remove(count)
        runner.close()
    assert read_topic(client_config, topics.delivery(f"{city.u}-routes")), "the runner delivered nothing"
    assert collections[True] == 0, f"{collections[True]} collection(s) inside the runner's batches"


def test_a_join_that_does_not_finish_is_broker_trouble(city, client_config):
    """A member that holds the group's partitions and stops polling never serves the rebalance a
    new member starts, so the runner's join does not finish; past its deadline step() raises
    GroupJoinStuck, which main treats as broker trouble (it starts over with a new consumer)
    instead of polling an empty assignment for good. (On the embedded broker the group stays
    wedged for new members too, even after both have left: seen here, so this test ends there.)"""
    group = f"{city.u}-join"
    holder = Consumer({**client_config, "group.id": group, "session.timeout.ms": 6000,
                       "heartbeat.interval.ms": 2000, "max.poll.interval.ms": 20_000})
    assigned: list = []
    holder.subscribe([city.raw], on_assign=lambda _c, parts: assigned.extend(parts))
    deadline = time.monotonic() + 30
    while not assigned:
        assert time.monotonic() < deadline, "the holder was not given the partitions"
        holder.poll(0.2)
    t0 = time.monotonic()  # (the deadline runs from the runner's subscription, in its constructor)
    runner = Runner(city.product, client_config, city.keys, group_id=group, join_deadline=4.0)
    try:
        with pytest.raises(GroupJoinStuck) as raised:
            while time.monotonic() - t0 < 15:
                runner.step()
        assert 4.0 <= time.monotonic() - t0 < 15
        assert isinstance(raised.value, BROKER_TROUBLE) and group in str(raised.value)
        assert not runner.consumer.assignment()
    finally:
        runner.close()
        holder.close()
