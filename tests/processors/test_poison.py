"""No record stalls its partition.

- Records of 2 MB and 10 MB, alone and in a burst of 100, written straight into a live
  product's raw topic (the broker takes them; the mesh accepts 256 KiB): each is accounted
  for in the dead-letter topic as a reference (size, SHA-256, source position), the runner
  never starts over on an error, and the next valid record is delivered within 1 s.
- A record a stage cannot take (here a stage that fails on one record, as a bug would) is
  quarantined with an event and an alert, and every other record of its batch is delivered.
"""

from __future__ import annotations

import hashlib
import itertools
import time

from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

import schemas
from deploy.broker import EmbeddedBroker
from processors.runner import Runner
from processors.stages import Stage
from streams import topics
from tests.mesh_fixtures import compliance_events, headers, make_city, read_topic, source_of
from tests.processors.test_runner_crash import flights, spawn_runner, stop, wait_for_log

MB = 1_000_000


def test_oversized_records_go_to_the_dead_letter_topic_by_reference_and_nothing_stalls(tmp_path, unique):
    with EmbeddedBroker() as broker:  # a broker of its own: it holds ~300 MB of test records in memory
        client = {"bootstrap.servers": broker.bootstrap}
        city = make_city(tmp_path, client, unique)
        log_path = tmp_path / "runner.log"
        log_path.touch()
        proc = spawn_runner(city, broker.bootstrap, log_path)
        try:
            wait_for_log(log_path, "assigned partitions", 0, 40, proc)
            with city.connector() as conn:  # one valid record first: the runner is live
                conn.publish(city.product, next(flights(drones=1, seed=1, violators=0.0)))
            good = read_topic(client, city.raw, 1)[0]
            big = Producer({**client, "message.max.bytes": 20 * MB, "linger.ms": 5})
            sizes = [2 * MB, 10 * MB] + [2 * MB] * 90 + [10 * MB] * 10
            written = []
            for i, n in enumerate(sizes):  # the provider's own headers: only the size is wrong
                big.produce(city.raw, bytes([i % 251]) * n, f"big-{i}".encode(), good.partition(),
                            headers=good.headers(), on_delivery=lambda e, m: written.append((e, m.offset())))
            assert big.flush(120) == 0 and all(e is None for e, _ in written)
            offsets = {o for _, o in written}
            # every oversized record in the dead-letter topic once, as a reference
            deadline, dlq = time.monotonic() + 120, []
            while time.monotonic() < deadline and len(dlq) < len(sizes):
                dlq = read_topic(client, city.dlq, len(sizes), timeout_s=10)
            assert len(dlq) == len(sizes)
            for m in dlq:
                h, i = headers(m), int(m.key().split(b"-")[1])
                assert h["cm.rule"] == b"reject:oversized" and m.value() is None
                assert int(h["cm.payload.bytes"]) == sizes[i]
                assert h["cm.payload.sha256"] == hashlib.sha256(bytes([i % 251]) * sizes[i]).hexdigest().encode()
            assert {int(headers(m)["cm.src.offset"]) for m in dlq} == offsets
            # then a valid record: delivered within a second of being produced
            watch = Consumer({**client, "group.id": f"watch-{unique}", "enable.auto.commit": False})
            dlv = topics.delivery(f"{unique}-regulator")
            watch.assign([TopicPartition(dlv, p, OFFSET_END) for p in range(3)])
            time.sleep(1.0)
            with city.connector() as conn:
                t0 = time.time()
                conn.publish(city.product, next(flights(drones=1, seed=2, violators=0.0)))
                conn.flush()
            got, deadline = [], time.monotonic() + 10
            while not got and time.monotonic() < deadline:
                got = [m for m in watch.consume(10, 0.05) if not m.error()]
            watch.close()
            assert got, "the valid record after the burst was not delivered"
            latency = got[0].timestamp()[1] / 1000 - t0
            print(f"valid record delivered {latency * 1000:.0f} ms after it was produced")
            assert latency <= 1.0
            log = log_path.read_text(errors="replace")
            assert "starting over" not in log and "Traceback" not in log, log[-3000:]
        finally:
            stop(proc)


class FailsOn(Stage):
    """A stage with a bug: it raises on one serial number."""

    name = "fails-on"

    def __init__(self, serial: str):
        self.serial = serial

    def process(self, s) -> None:
        for g in s.good:
            if g.record["serial_number"] == self.serial:
                raise ValueError(f"cannot take {self.serial}")


def test_a_record_no_stage_can_take_is_quarantined_and_its_batch_goes_on(tmp_path, client_config, unique):
    city = make_city(tmp_path, client_config, unique)
    records = list(itertools.islice(flights(drones=20, seed=6, violators=0.0), 200))
    poison = records[77]["serial_number"]
    with city.connector() as conn:
        for r in records:
            conn.publish(city.product, r)
    runner = Runner(city.product, client_config, city.keys)
    runner.decide.insert(2, FailsOn(poison))  # after admission and replay, before the contracts
    try:
        runner.run(max_idle_s=2.0)
    finally:
        runner.close()
    bad = sum(1 for r in records if r["serial_number"] == poison)
    raw = {(m.partition(), m.offset()): schemas.load("UavTelemetry").decode(m.value())
           for m in read_topic(client_config, city.raw, 200)}
    dlq = read_topic(client_config, city.dlq, bad)
    assert len(dlq) == bad and {headers(m)["cm.rule"] for m in dlq} == {b"quarantine:poison"}
    delivered = read_topic(client_config, topics.delivery(f"{unique}-regulator"), 200 - bad)
    assert sorted(source_of(m, city.keys) for m in delivered) == sorted(
        k for k, r in raw.items() if r["serial_number"] != poison)
    events = [e for e in compliance_events(client_config, city.product) if e["kind"] == "QUARANTINE"]
    assert len(events) == bad and {e["rule"] for e in events} == {"quarantine:poison"}
    alerts = [schemas.load("Alert").decode(m.value()) for m in read_topic(client_config, topics.ALERTS)]
    assert sum(1 for a in alerts if a["rule_id"] == "quarantine:poison" and a["product_id"] == city.product) == bad
    assert len(runner.quarantined) == bad
