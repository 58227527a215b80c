"""Operator rules in the enforcement runner, against the real broker: the example city's rules
(examples/city.yaml, applied through cm.control.rules) raise exactly the expected Alerts on
cm.alerts, keyed by subject, with the source position; and exactly once across SIGKILLs.

The expected hits are computed by a plain re-statement of the thresholds and zone boxes in
this file (`oracle`), not by the rules engine the runner uses.
"""

from __future__ import annotations

import copy
import itertools
import json
import random
import textwrap
import time
from collections import Counter

import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition

import schemas
from processors.runner import Runner
from streams import keyring, topics
from streams.connectors import ProviderConnector
from streams.simulators import FleetSimulator, HotlineSimulator
from tests.mesh_fixtures import EXAMPLES, City, headers, read_topic, source_of
from tests.processors.test_runner_crash import Publisher, flights, sigkill_repeatedly_then_catch_up

ALERT = schemas.load("Alert")
UAV = schemas.load("UavTelemetry")
TICKET = schemas.load("HotlineTicket")
EXAMPLE = yaml.safe_load((EXAMPLES / "city.yaml").read_text(encoding="utf-8"))
ZONES = json.loads((EXAMPLES / "geo" / "shenzhen-uas-zones.geojson").read_text(encoding="utf-8"))
SEVERITY = {r["id"]: r["severity"] for e in EXAMPLE["operator_rules"] for r in e["rules"]}
AUTHORISED = {op: zone for e in EXAMPLE["operator_rules"] for zone, ops in e.get("authorisations", {}).items()
              for op in ops}

OPEN = (22.5405, 113.9345)      # Nanshan, outside every zone
AIRPORT = (22.645, 113.815)     # ZSSZ-CTR, PROHIBITED 0-3000 m
CIVIC = (22.543, 114.059)       # SZ-CIVIC-R1, REQ_AUTHORISATION 0-300 m
T0 = 1_790_000_000_000


def topology(u: str) -> str:
    """A small city with the example's operator rules on its two products."""
    rules = copy.deepcopy(EXAMPLE["operator_rules"])
    for e in rules:
        e["product"] = {"uav-telemetry": f"{u}-uav", "hotline-tickets": f"{u}-tickets"}[e["product"]]
        e["fold"] = False  # one alert per hit: these tests check every rule on every record
    return textwrap.dedent(f"""
    participants:
      - {{id: {u}-skyway, name: SkyWay, roles: [provider]}}
      - {{id: {u}-hotline, name: Hotline, roles: [provider]}}
      - {{id: {u}-regulator, name: Regulator, roles: [regulator]}}
    products:
      - {{id: {u}-uav, provider: {u}-skyway, name: UAV, schema: UavTelemetry, partitions: 3, retention: 1d,
          key_field: serial_number, event_time_field: timestamp_ms}}
      - {{id: {u}-tickets, provider: {u}-hotline, name: Tickets, schema: HotlineTicket, partitions: 2,
          retention: 1d, key_field: order_no, event_time_field: call_time}}
    geofences:
      uas-zones: {{file: {EXAMPLES / 'geo' / 'shenzhen-uas-zones.geojson'}}}
    contracts:
      - id: {u}-regulator
        product: {u}-uav
        consumer: {u}-regulator
        purposes: [airspace-supervision]
        policy: {{permission: {{constraints: [{{type: purpose, in: [airspace-supervision]}}]}}}}
      - id: {u}-tickets-reg
        product: {u}-tickets
        consumer: {u}-regulator
        purposes: [supervision]
        policy: {{permission: {{constraints: [{{type: purpose, in: [supervision]}}]}}}}
    """) + yaml.safe_dump({"operator_rules": rules}, allow_unicode=True, sort_keys=False)


@pytest.fixture
def city(tmp_path, client_config, unique) -> City:
    c = City(unique, tmp_path / "city.yaml", tmp_path / "keys", client_config)
    c.apply(topology(unique))
    return c


def oracle(r: dict) -> set[str]:
    """The example city's UAV rules, restated by hand."""
    out, cls, h, kmh = set(), r["uav_class"], r["height_agl_m"], r["speed_h_mps"] * 3.6
    if cls in ("LIGHT", "SMALL") and h > 120:
        out.add("uav-height-120")
    if cls == "MICRO" and h > 50:
        out.add("uav-micro-height-50")
    if cls == "MICRO" and kmh > 40:
        out.add("uav-micro-speed-40")
    if cls == "LIGHT" and kmh > 100:
        out.add("uav-light-speed-100")
    if not (r["uin"] or "").strip():
        out.add("uav-unregistered")
    for f in ZONES["features"]:
        p = f["properties"]
        (x0, y0), _, (x1, y1) = f["geometry"]["coordinates"][0][:3]
        inside = min(x0, x1) <= r["lon"] <= max(x0, x1) and min(y0, y1) <= r["lat"] <= max(y0, y1)
        if not inside or AUTHORISED.get(r["operator_id"]) == p["identifier"]:
            continue
        if p["restriction"] == "CONDITIONAL" and h > p["upperLimit"]:
            out.add("uav-zone-conditional")
        elif p["restriction"] == "PROHIBITED" and p["lowerLimit"] <= h <= p["upperLimit"]:
            out.add("uav-zone-prohibited")
        elif p["restriction"] == "REQ_AUTHORISATION" and p["lowerLimit"] <= h <= p["upperLimit"]:
            out.add("uav-zone-unauthorised")
    return out


def fix(serial: str, t: int, cls="LIGHT", h=80.0, kmh=36.0, where=OPEN, uin="UAS000000001", op="CHN-OP-123456"):
    return {"serial_number": serial, "uin": uin, "operator_id": op, "uav_class": cls, "flight_id": f"{serial}-1",
            "timestamp_ms": t, "lat": where[0], "lon": where[1], "alt_msl_m": h + 20, "height_agl_m": h,
            "speed_h_mps": kmh / 3.6, "speed_v_mps": 0.0, "heading_deg": 0.0, "battery_pct": 90.0,
            "source": "SIMULATOR"}


CASES = {  # name -> (overrides, the alerts it must raise)
    "clean": ({}, set()),
    "at-ceiling": ({"h": 120.0}, set()),
    "light-130m": ({"h": 130.0}, {"uav-height-120"}),
    "small-121m": ({"cls": "SMALL", "h": 121.0}, {"uav-height-120"}),
    "medium-150m": ({"cls": "MEDIUM", "h": 150.0}, set()),
    "micro-55m": ({"cls": "MICRO", "h": 55.0, "kmh": 30.0}, {"uav-micro-height-50"}),
    "micro-45kmh": ({"cls": "MICRO", "h": 45.0, "kmh": 45.0}, {"uav-micro-speed-40"}),
    "light-110kmh": ({"kmh": 110.0}, {"uav-light-speed-100"}),
    "airport": ({"where": AIRPORT, "h": 30.0}, {"uav-zone-prohibited"}),
    "civic-no-auth": ({"where": CIVIC, "h": 100.0}, {"uav-zone-unauthorised"}),
    "civic-authorised": ({"where": CIVIC, "h": 100.0, "op": "CHN-OP-000001"}, set()),
    "no-uin": ({"uin": None}, {"uav-unregistered"}),
    "everything": ({"where": CIVIC, "h": 130.0, "uin": None, "kmh": 120.0},
                   {"uav-height-120", "uav-light-speed-100", "uav-zone-unauthorised", "uav-unregistered"}),
}


def alerts_of(client: dict, product: str, expect: int | None = None) -> list:
    return [(m, a) for m in read_topic(client, topics.ALERTS, expect=None, settle_s=0.5)
            if (a := ALERT.decode(m.value()))["product_id"] == product]


def enforce(product: str, city: City) -> None:
    runner = Runner(product, city.client, city.keys)
    try:
        runner.run(max_idle_s=2.0)
    finally:
        runner.close()


def test_each_uav_rule_raises_exactly_its_alerts(city, client_config):
    u = city.u
    crafted = [fix(f"{u}-{name}", T0 + i * 1000, **kw) for i, (name, (kw, _)) in enumerate(CASES.items())]
    for (name, (_, want)), r in zip(CASES.items(), crafted):
        assert oracle(r) == want, name  # the oracle agrees with the cases written out by hand
    fleet, flights = FleetSimulator(drones=80, seed=23, violators=0.3), []
    while len(flights) < 3000:
        flights += fleet.tick(1.0)
    records = crafted + flights[:3000]
    with city.connector() as conn:
        for r in records:
            conn.publish(city.product, r)
    enforce(city.product, city)

    raw = {(m.partition(), m.offset()): UAV.decode(m.value()) for m in read_topic(client_config, city.raw,
                                                                                    len(records))}
    assert len(raw) == len(records)
    want = {pos: oracle(r) for pos, r in raw.items()}
    assert sum(len(v) for v in want.values()) > 500  # the simulated violators do break rules
    got: dict[tuple, set] = {pos: set() for pos in raw}
    alerts = alerts_of(client_config, city.product)
    assert len({a["alert_id"] for _, a in alerts}) == len(alerts), "an alert was written twice"
    for m, a in alerts:
        pos = (a["source_partition"], a["source_offset"])
        r = raw[pos]
        assert a["source_topic"] == city.raw
        assert a["rule_id"] not in got[pos]
        got[pos].add(a["rule_id"])
        assert m.key() == a["subject"].encode() == r["serial_number"].encode()
        h = headers(m)
        assert h["cm.event.id"] == a["alert_id"].encode()
        assert (h["cm.src.topic"], h["cm.src.partition"], h["cm.src.offset"]) == (
            city.raw.encode(), str(pos[0]).encode(), str(pos[1]).encode())
        assert int(h["cm.batch.first"]) <= pos[1] <= int(h["cm.batch.last"])
        assert a["time_ms"] == r["timestamp_ms"]  # the record's event time
        assert a["severity"] == SEVERITY[a["rule_id"]] and a["message"] and not a["escalated"]
    assert got == want
    by_name = {r["serial_number"].removeprefix(f"{u}-"): got[pos] for pos, r in raw.items()
               if r["serial_number"].startswith(u)}
    assert by_name == {name: w for name, (_, w) in CASES.items()}
    civic = next(a for _, a in alerts if a["subject"] == f"{u}-civic-no-auth")
    assert civic["evidence"]["zone"] == "SZ-CIVIC-R1" and civic["evidence"]["operator_id"] == "CHN-OP-123456"


def test_hotline_pii_and_overdue_tickets_raise_alerts(city, client_config):
    u = city.u
    product, provider = f"{u}-tickets", f"{u}-hotline"
    now = int(time.time() * 1000)
    sim = HotlineSimulator(seed=5)
    phone = "13812345678"

    def ticket(name, **over):
        t = sim.ticket(now - 3_600_000)
        t.update({"order_no": f"{u}-{name}", "content": "小区门口路灯不亮，请尽快维修。",
                  "deadline": now + 86_400_000, "status": "RECEIVED", "completed_time": None})
        t.update(over)
        return t

    tickets = {
        "clean": (ticket("clean"), set()),
        "pii": (ticket("pii", content=f"路灯不亮。我叫王小明，电话{phone}。"), {"hotline-pii-in-content"}),
        "overdue": (ticket("overdue", deadline=now - 600_000, status="DISPATCHED"), {"hotline-overdue"}),
        "overdue-done": (ticket("overdue-done", deadline=now - 600_000, status="COMPLETED"), set()),
        "overdue-completed": (ticket("overdue-completed", deadline=now - 600_000, status="IN_PROGRESS",
                                     completed_time=now - 700_000), set()),
        "both": (ticket("both", content=f"联系电话{phone}", deadline=now - 1000), {"hotline-pii-in-content",
                                                                                 "hotline-overdue"}),
    }
    with ProviderConnector(keyring.load(city.keys, provider), client_config) as conn:
        for t, _ in tickets.values():
            conn.publish(product, t)
    enforce(product, city)
    alerts = alerts_of(client_config, product)
    got = {name: set() for name in tickets}
    for m, a in alerts:
        name = a["subject"].removeprefix(f"{u}-")
        got[name].add(a["rule_id"])
        assert m.key() == a["subject"].encode()
        assert a["time_ms"] == tickets[name][0]["call_time"]
        assert phone not in a["message"] and phone not in json.dumps(a["evidence"])  # kinds, never values
    assert got == {name: want for name, (_, want) in tickets.items()}
    assert len(alerts) == sum(len(w) for _, w in tickets.values())
    pii = next(a for _, a in alerts if a["rule_id"] == "hotline-pii-in-content" and a["subject"].endswith("-pii"))
    assert "mobile" in pii["evidence"]["pii_kinds"].split(",")


def test_rules_hot_reload_and_a_product_without_rules_raises_nothing(city, client_config):
    """Rules removed (an empty list) stop alerts from the next batches; put back, they resume."""
    u = city.u
    runner = Runner(city.product, client_config, city.keys)
    try:
        def flight(tag: str, n: int) -> None:
            with city.connector() as conn:
                for i in range(n):
                    conn.publish(city.product, fix(f"{u}-{tag}", T0 + i * 1000, h=150.0))
            runner.run(max_idle_s=1.5)

        assert runner.alerts.rules is not None
        flight("before", 5)
        text = city.path.read_text()
        city.apply(_without_uav_rules(text, u))
        time.sleep(0.5)
        flight("off", 5)
        assert runner.alerts.rules is None
        city.apply(text)
        time.sleep(0.5)
        flight("after", 5)
        assert runner.alerts.rules is not None
    finally:
        runner.close()
    subjects = Counter(a["subject"] for _, a in alerts_of(client_config, city.product))
    assert subjects == {f"{u}-before": 5, f"{u}-after": 5}


def test_a_replay_fences_alerts_even_when_the_rules_come_back_after_the_restart(city, client_config):
    """Alerts written, offsets not committed (a crash), rules removed, a runner restarted with
    no rules (its alert recovery waits for rules), then the rules put back before it replays:
    every alert of the first run is fenced, none is written twice."""
    u = city.u
    with city.connector() as conn:
        for i in range(60):
            conn.publish(city.product, fix(f"{u}-d{i % 6}", T0 + i * 1000, h=150.0))
    enforce(city.product, city)
    first = [a["alert_id"] for _, a in alerts_of(client_config, city.product)]
    assert len(first) == 60 == len(set(first))
    raw = topics.raw(f"{u}-skyway", city.product)
    rewind = Consumer({**client_config, "group.id": f"citymesh-runner.{city.product}"})
    try:  # as if the runner had crashed before committing anything
        rewind.commit(offsets=[TopicPartition(raw, p, 0) for p in range(3)], asynchronous=False)
    finally:
        rewind.close()
    text = city.path.read_text()
    city.apply(_without_uav_rules(text, u))
    runner = Runner(city.product, client_config, city.keys)
    try:
        assert runner.alerts.rules is None
        city.apply(text)
        time.sleep(0.5)
        runner.run(max_idle_s=2.0)
        assert runner.alerts.rules is not None and runner.alerts.fenced == 60 and runner.alerts.raised == 0
    finally:
        runner.close()
    again = [a["alert_id"] for _, a in alerts_of(client_config, city.product)]
    assert sorted(again) == sorted(first)


def _without_uav_rules(text: str, u: str) -> str:
    doc = yaml.safe_load(text)
    for e in doc["operator_rules"]:
        if e["product"] == f"{u}-uav":
            e["rules"], e["authorisations"] = [], {}
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


# slow enough that a restarted runner drains the backlog of its restart in several batches:
# the kills land while it writes. The publisher goes on until the killing is over.
RATE = 1_500


def test_alerts_are_exactly_once_across_sigkill(city, client_config, bootstrap, tmp_path):
    """The runner as a process, SIGKILLed while it writes; at the end cm.alerts holds every
    expected alert exactly once (ids are checked against the oracle's hits)."""
    rnd = random.Random(4242)
    records = flights(drones=300, seed=31, violators=0.6)
    log_path = tmp_path / "runner.log"
    log_path.touch()
    conn = city.connector()

    def chunk() -> int:
        for r in itertools.islice(records, 500):
            conn.publish(city.product, r)
        conn.flush()
        return 500

    pub = Publisher(RATE, chunk)
    pub.start()
    try:
        kills = sigkill_repeatedly_then_catch_up(city, bootstrap, client_config, log_path, rnd, 0.4, pub,
                                                 "alert(s) already written before the restart")
    finally:
        conn.close()
    print(f"{len(kills)} kills, {pub.sent} records published")
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    fenced = [ln for ln in log.splitlines() if "alert(s) already written before the restart" in ln]
    print("\n".join(fenced))
    assert fenced, "no kill landed after alerts were written: the fence was not exercised"

    raw = {(m.partition(), m.offset()): UAV.decode(m.value()) for m in read_topic(client_config, city.raw, pub.sent)}
    assert len(raw) == pub.sent
    want = Counter({(pos, rule): 1 for pos, r in raw.items() for rule in oracle(r)})
    alerts = [a for _, a in alerts_of(client_config, city.product)]
    got = Counter(((a["source_partition"], a["source_offset"]), a["rule_id"]) for a in alerts)
    dupes = {k: n for k, n in got.items() if n > 1}
    story = "\n".join(ln for ln in log.splitlines() if any(w in ln for w in (
        "assigned partitions", "resuming at", "already written", "broker trouble", "committed offset", "state")))
    assert not dupes, f"{len(dupes)} alerts written more than once, e.g. {list(dupes.items())[:3]}; the runs:\n{story}"
    assert got == want, (f"missing {len(want - got)}, unexpected {len(got - want)}")
    assert len({a["alert_id"] for a in alerts}) == len(alerts)


def test_a_commit_landing_after_the_assignment_writes_nothing_twice(city, client_config, caplog):
    """A runner can resume a partition below the group's committed offset as it reads that
    offset at the partition's first record: an asynchronous commit of its own, still under way
    when the partitions were revoked, landed after the consumer fetched the offsets for the new
    assignment. The records in between were processed and their alerts and deliveries written,
    so the fence starts where consumption resumed (and the state is the one of that offset):
    nothing is written twice, and nothing is dead-lettered as a replay of itself.

    The broker and the runner are real; only the read of the committed offset is made to
    return the later commit, which in a run depends on timing."""
    records = list(itertools.islice(flights(drones=200, seed=5, violators=0.6), 1200))
    with city.connector() as conn:
        for r in records:
            conn.publish(city.product, r)
    enforce(city.product, city)  # all processed, alerts and deliveries written, offsets committed
    before = len(alerts_of(client_config, city.product))
    dead_before = len(read_topic(client_config, city.dlq, settle_s=0.5))
    group = f"citymesh-runner.{city.product}"
    c = Consumer({**client_config, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(city.raw, p) for p in c.list_topics(city.raw, timeout=10).topics[city.raw].partitions]
        done = {tp.partition: tp.offset for tp in c.committed(parts, timeout=10)}
        assert all(o > 10 for o in done.values()), done
        # the offsets the consumer of the next runner fetches: an older commit
        c.commit(offsets=[TopicPartition(city.raw, p, o // 2) for p, o in done.items()], asynchronous=False)
    finally:
        c.close()
    runner = Runner(city.product, city.client, city.keys)
    runner._committed = lambda p: done[p]  # the group's offset as read later: the commit that landed
    caplog.set_level("WARNING", logger="citymesh.runner")
    try:
        runner.run(max_idle_s=2.0)
    finally:
        runner.close()

    alerts = [a for _, a in alerts_of(client_config, city.product)]
    got = Counter(((a["source_partition"], a["source_offset"]), a["rule_id"]) for a in alerts)
    dupes = {k: n for k, n in got.items() if n > 1}
    assert before > 100 and len(alerts) == before and not dupes, (before, len(alerts), list(dupes.items())[:3])
    delivered = Counter(source_of(m, city.keys) for m in read_topic(client_config,
                                                                     topics.delivery(f"{city.u}-regulator")))
    assert delivered and max(delivered.values()) == 1, [k for k, n in delivered.items() if n > 1][:3]
    # nor taken for replays of themselves (the replay check's state is the one of where it resumed)
    assert len(read_topic(client_config, city.dlq, settle_s=0.5)) == dead_before
    assert sum("below the committed offset" in r.getMessage() for r in caplog.records) == len(done)
