"""Contract sharding (processors/sharding.py): one product's contracts split over runner
groups. The rule, without a broker; then two runner groups as real processes on one product
with ten contracts, one group's runner SIGKILLed at random moments while records flow: every
delivery topic holds each permitted record exactly once, in source order, and the dead
letters, written by the lead group alone, hold each malformed record once. Last, what was
over the provider's limit reaches no contract, whichever group enforces it."""

from __future__ import annotations

import ast
import collections
import itertools
import random
import re
import signal
import time

import pytest

from processors.sharding import RunnerGroup, RunnerGroupError, group_of
from streams import topics
from tests.mesh_fixtures import compliance_events, headers, make_city, read_topic, source_of
from tests.processors.test_runner_crash import (Publisher, contracts_delivered_once, flights,
                                                sigkill_repeatedly_then_catch_up, spawn_runner, stop, wait_caught_up,
                                                wait_for_log)

IDS = [f"contract-{i}" for i in range(2000)]


def test_every_contract_has_exactly_one_group():
    for count in (1, 2, 3, 7):
        groups = [RunnerGroup(k, count) for k in range(count)]
        for cid in IDS[:300]:
            owners = [g.index for g in groups if g.owns(cid)]
            assert owners == [group_of(cid, count)]


def test_groups_share_contracts_evenly():
    shares = collections.Counter(group_of(cid, 4) for cid in IDS)
    assert set(shares) == {0, 1, 2, 3}
    assert all(400 <= n <= 600 for n in shares.values()), shares  # 500 each expected


def test_adding_a_group_moves_only_what_the_new_group_wins():
    for count in (1, 2, 5):
        moved = [cid for cid in IDS if group_of(cid, count) != group_of(cid, count + 1)]
        assert all(group_of(cid, count + 1) == count for cid in moved)
        assert len(moved) < 1.3 * len(IDS) / (count + 1)  # about 1/(count+1) of them


def test_the_lead_keeps_the_names_a_single_runner_had():
    lead, other = RunnerGroup(0, 3), RunnerGroup(2, 3)
    assert lead.lead and not other.lead
    assert lead.consumer_group("uav") == RunnerGroup().consumer_group("uav") == "citymesh-runner.uav"
    assert other.consumer_group("uav") == "citymesh-runner.uav.2"
    assert lead.state_key("uav", 1) == b"uav:1" and other.state_key("uav", 1) == b"uav.2:1"
    assert lead.marker is None and other.marker == b"2"


@pytest.mark.parametrize("index,count", [(2, 2), (-1, 2), (0, 0)])
def test_a_group_outside_its_count_is_refused(index, count):
    with pytest.raises(RunnerGroupError, match=f"runner group {index} of {count}"):
        RunnerGroup(index, count)


def test_each_group_finds_only_its_own_batches(client_config, unique):
    """Both groups write BATCH events about the same source partition to the same compliance
    partition, with their own batch ranges: a group's recovery must replay its own batches
    only (another group's range, replayed, would mint new event ids and count twice)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    from processors.fencing import FenceReader
    from streams.admin import TopicSpec, ensure_topics
    topic, src = f"compliance.{unique}", f"cm.raw.{unique}"
    ensure_topics(AdminClient(client_config), [TopicSpec(topic, 1)])
    p = Producer(client_config)
    for eid, first, last, marker in (("lead-1", 100, 180, None), ("g1-1", 100, 150, b"1"),
                                     ("g1-2", 151, 230, b"1"), ("lead-2", 181, 260, None)):
        p.produce(topic, b"event", partition=0, headers=[
            ("cm.src.topic", src.encode()), ("cm.src.partition", b"2"), ("cm.batch.first", b"%d" % first),
            ("cm.batch.last", b"%d" % last), ("cm.batch.now", b"1"), ("cm.event.id", eid.encode()),
            *([("cm.runner.group", marker)] if marker else [])])
    p.flush()
    reader = FenceReader(client_config)
    try:
        assert reader.compliance_since(topic, 0, src, 2, 151) == ([(100, 180, 1), (181, 260, 1)], {"lead-1", "lead-2"})
        assert reader.compliance_since(topic, 0, src, 2, 151, runner_group=b"1") == ([(151, 230, 1)], {"g1-2"})
    finally:
        reader.close()


def ten_contracts(u: str) -> tuple[str, dict[int, list[str]]]:
    """Ten contracts, five for each of two runner groups (ids chosen by the rule), half of
    them narrowing fields, geofence and height, half taking whole records."""
    ids = {0: [], 1: []}
    for i in itertools.count():
        cid = f"{u}-c{i}"
        if len(ids[group_of(cid, 2)]) < 5:
            ids[group_of(cid, 2)].append(cid)
        if len(ids[0]) == len(ids[1]) == 5:
            break
    narrow = """
  - id: {cid}
    product: {u}-uav
    consumer: {u}-logistics
    purposes: [route-planning]
    policy:
      permission:
        fields: [serial_number, flight_id, timestamp_ms, lat, lon, height_agl_m]
        constraints:
          - {{type: purpose, in: [route-planning]}}
          - {{type: geofence, inside: urban}}
          - {{type: value, field: height_agl_m, op: "<=", value: {height}}}
      duties:
        - {{type: pseudonymise, field: serial_number}}
"""
    whole = """
  - id: {cid}
    product: {u}-uav
    consumer: {u}-regulator
    purposes: [airspace-supervision]
    policy:
      permission:
        constraints:
          - {{type: purpose, in: [airspace-supervision]}}
"""
    text = ""
    for n, cid in enumerate(ids[0] + ids[1]):
        text += (narrow if n % 2 else whole).format(cid=cid, u=u, height=60 + 10 * n)
    return text.replace("{", "{{").replace("}", "}}"), ids  # (make_city formats it once more)


def test_two_runner_groups_deliver_exactly_once_across_sigkill(tmp_path, client_config, unique, bootstrap):
    text, ids = ten_contracts(unique)
    city = make_city(tmp_path, client_config, unique, text)
    rnd = random.Random(20261203)
    records = flights(drones=300, seed=23, violators=0.3)
    conn = city.connector()
    raw = __import__("confluent_kafka").Producer({**client_config, "enable.idempotence": True, "linger.ms": 5})
    good_headers = [("cm.participant", city.provider.encode()), ("cm.product", city.product.encode())]
    bad = []

    def chunk() -> int:
        for r in itertools.islice(records, 500):
            conn.publish(city.product, r)
        raw.produce(city.raw, b"not a record", f"bad-{len(bad)}".encode(), headers=good_headers)
        bad.append(len(bad))
        conn.flush()
        raw.flush()
        return 501

    logs = {g: tmp_path / f"runner-g{g}.log" for g in (0, 1)}
    for path in logs.values():
        path.touch()
    lead = spawn_runner(city, bootstrap, logs[0], "--group", "0", "--groups", "2")
    pub = Publisher(2_000, chunk, at_least=30_000)
    try:
        wait_for_log(logs[0], "assigned partitions", 0, 40, lead)
        pub.start()
        kills = sigkill_repeatedly_then_catch_up(city, bootstrap, client_config, logs[1], rnd, 0.5, pub,
                                                 "after a crash", RunnerGroup(1, 2),
                                                 watch=topics.delivery(ids[1][0]), min_kills=2)
        wait_caught_up(client_config, RunnerGroup(0, 2).consumer_group(city.product), city.raw, 90)
        lead.send_signal(signal.SIGTERM)
        lead.wait(15)
    finally:
        pub.stop.set()
        conn.close()
        raw.close()
        stop(lead)
    log0, log1 = (logs[g].read_text(errors="replace") for g in (0, 1))
    assert "Traceback" not in log0 + log1, (log0 + log1)[-3000:]
    assert "runner group 1 of 2" in log1 and "5 active contracts" in log1 and "5 active contracts" in log0
    assert "after a crash" in log1, "no kill landed while outputs were being written"
    print(f"group 1 killed {len(kills)} times; " + "; ".join(ln for ln in log1.splitlines() if "after a crash" in ln))

    sent = read_topic(client_config, city.raw, pub.sent)
    assert len(sent) == pub.sent
    bad_expected, events = contracts_delivered_once(client_config, city, sent, ids[0] + ids[1])
    # the dead letters and their REJECT events are the lead group's alone: each malformed record once
    dlq = read_topic(client_config, city.dlq, len(bad_expected))
    dlq_keys = [(int(headers(m)["cm.src.partition"]), int(headers(m)["cm.src.offset"])) for m in dlq]
    rejects = [(e["source_partition"], e["first_offset"]) for e in events if e["kind"] == "REJECT"]
    # (once, in a local run, one dead letter was missing, and three runs after it passed: the
    # message says whether the lead wrote a REJECT event for a missing one in the same batch)
    missing = sorted(set(bad_expected) - set(dlq_keys))
    assert sorted(dlq_keys) == sorted(bad_expected), (
        f"dead letters missing {missing}, of them with a REJECT event {sorted(set(missing) & set(rejects))}; "
        f"twice {sorted(k for k, n in collections.Counter(dlq_keys).items() if n > 1)}; "
        f"{len(dlq)} read of {len(bad_expected)}")
    assert sorted(rejects) == sorted(bad_expected)
    # what group 1's restarts replayed were group 1's own batches (the lead's have other ranges)
    own = {(e["source_partition"], e["first_offset"], e["last_offset"]) for e in events
           if e["kind"] == "BATCH" and e["contract_id"] in ids[1]}
    for line in (ln for ln in log1.splitlines() if "after a crash" in ln):
        p = int(re.search(r"partition (\d+):", line)[1])
        for first, last in ast.literal_eval(line.split(", batches ")[1]):
            assert (p, first, last) in own, f"group 1 replayed a batch it did not write: {line}"


def one_contract_per_group(u: str, extra: str = "") -> tuple[dict[int, str], str]:
    """Two whole-record contracts, one enforced by each of two runner groups (ids chosen by the
    rule), with `extra` lines in each (a quota, say): (group -> contract id, make_city's text)."""
    from tests.processors.test_limits import ALL
    ids: dict[int, str] = {}
    for i in itertools.count():
        ids.setdefault(group_of(f"{u}-c{i}", 2), f"{u}-c{i}")
        if len(ids) == 2:
            break
    contract = """
  - id: CID
    product: {u}-uav
    consumer: {u}-regulator
    purposes: [airspace-supervision]
""" + extra + ALL
    return ids, "".join(contract.replace("CID", ids[g]) for g in (0, 1))


def test_what_was_over_the_providers_limit_reaches_no_contract_in_any_group(tmp_path, client_config, unique):
    """A provider bursts ten times its limit (`on_excess: dlq`) on a product whose two
    contracts are enforced by two runner groups: both contracts get the same records, those
    within the limit; the rest is in the dead-letter topic once, and the limit's events count
    it once (the lead's). Before every group applied the limit, group 1's contract got all."""
    from processors.runner import Runner
    from tests.processors.test_limits import _drain, _records
    ids, text = one_contract_per_group(unique)
    city = make_city(tmp_path, client_config, unique, text)
    city.apply(city.path.read_text().replace(
        "roles: [provider]}", "roles: [provider], limits: {records_per_s: 30, burst: 1s, on_excess: dlq}}"))
    n, now = 300, int(time.time() * 1000)
    with city.connector() as conn:
        for r in _records(n):  # all at one instant (the connector stamps a record with its event time)
            conn.publish(city.product, {**r, "timestamp_ms": now})
    runners = [Runner(city.product, client_config, city.keys, poll_timeout_s=0.01, runner_group=RunnerGroup(g, 2))
               for g in (0, 1)]
    try:
        _drain(*runners)
    finally:
        for r in runners:
            r.close()
    got = [{source_of(m, city.keys) for m in read_topic(client_config, topics.delivery(ids[g]))} for g in (0, 1)]
    assert got[0] == got[1], f"group 0 delivered {len(got[0])}, group 1 {len(got[1])}"
    dead = [(int(headers(m)["cm.src.partition"]), int(headers(m)["cm.src.offset"]))
            for m in read_topic(client_config, city.dlq)]
    assert len(dead) == len(set(dead)) and not set(dead) & got[0]
    assert len(dead) + len(got[0]) == n and len(got[0]) < n / 2, (len(dead), len(got[0]))
    dropped = [e["counts"]["drop:ratelimit"] for e in compliance_events(client_config, city.product)
               if e["kind"] == "RATE_LIMIT"]
    assert sum(dropped) == len(dead)


def test_status_shows_the_quota_of_every_contract_whichever_group_enforces_it(tmp_path, client_config, unique,
                                                                              capsys):
    """Each group persists the quotas of its own contracts in its own state records; `citymesh
    status` shows them all (it showed the lead group's alone)."""
    from deploy.mesh import _limits_status
    from processors.runner import Runner
    from tests.processors.test_limits import _drain, _publish, _records
    ids, text = one_contract_per_group(unique, "    quota: {{records: 30, per: 1d}}\n")
    city = make_city(tmp_path, client_config, unique, text)
    _publish(city, _records(300))
    runners = [Runner(city.product, client_config, city.keys, runner_group=RunnerGroup(g, 2)) for g in (0, 1)]
    try:
        _drain(*runners)
    finally:
        for r in runners:
            r.close()
    _limits_status(client_config)
    out = capsys.readouterr().out
    for g in (0, 1):
        assert out.count(f"quota {ids[g]}: 10 used this window") == 3, out
