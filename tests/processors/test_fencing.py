"""The compliance floor (processors/fencing.py: ComplianceFloors): a restarted runner searches
the shared compliance topic only down to the floor its partition state recorded, so what
other products wrote there while its partitions were idle costs the restart nothing, and the
runner still resumes exactly once."""

from __future__ import annotations

import re
import time

from confluent_kafka import Producer

import schemas
from processors.evidence import event_id
from streams import topics
from streams.simulators import FleetSimulator
from tests.mesh_fixtures import make_city, read_topic, source_of
from tests.processors.test_runner_crash import spawn_runner, stop, topic_ends, wait_caught_up, wait_for_log

OTHER_EVENTS = 30_000
PRODUCER_BATCH = 1_000  # the embedded broker's end answer may lag one record batch


def other_products_events(client: dict, product: str, n: int, partitions: int) -> None:
    """n BATCH events of another product, as its runner writes them, over every partition."""
    schema, raw = schemas.load("ComplianceEvent"), topics.raw("someone-else", product)
    p = Producer({**client, "linger.ms": 20, "batch.num.messages": PRODUCER_BATCH})
    for i in range(n):
        src, now = i % 3, int(time.time() * 1000)
        ev = {"event_id": event_id("batch", product, src, i, i, "x", 1), "time_ms": now, "kind": "BATCH",
              "product_id": product, "provider_id": "someone-else", "contract_id": "x", "contract_version": 1,
              "consumer_id": "c", "rule": None, "reason": None, "counts": {"deliver": 1}, "source_topic": raw,
              "source_partition": src, "first_offset": i, "last_offset": i, "digest": None, "trace_id": None,
              "details": {}}
        headers = [("cm.src.topic", raw.encode()), ("cm.src.partition", b"%d" % src), ("cm.batch.first", b"%d" % i),
                   ("cm.batch.last", b"%d" % i), ("cm.batch.now", b"%d" % now), ("cm.event.id", ev["event_id"].encode())]
        while True:
            try:
                p.produce(topics.COMPLIANCE, schema.encode(ev), f"{product}:{src}".encode(), i % partitions, headers=headers)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(60) == 0


def test_a_restart_searches_the_compliance_topic_only_down_to_the_floor(tmp_path, client_config, unique, bootstrap):
    city = make_city(tmp_path, client_config, unique)
    conn = city.connector()
    fleet = FleetSimulator(drones=30, seed=3, violators=0.0, start_ms=int(time.time() * 1000))
    published = 0

    def publish(n: int) -> None:  # (drones spend their first seconds on the ground)
        nonlocal published
        until = published + n
        while published < until:
            for r in fleet.tick(1.0):
                conn.publish(city.product, r)
                published += 1
        conn.flush()

    publish(60)
    log = tmp_path / "runner.log"
    group = f"citymesh-runner.{city.product}"
    runner = spawn_runner(city, bootstrap, log)
    try:
        wait_caught_up(client_config, group, city.raw, 60)
        time.sleep(1.5)  # the partitions are idle now
        before = topic_ends(client_config, topics.COMPLIANCE)
        other_products_events(client_config, f"{unique}-other", OTHER_EVENTS, len(before))
        after = topic_ends(client_config, topics.COMPLIANCE)
        time.sleep(2.5)  # an idle partition's state is written again with a new floor once a second
        runner.kill()
        runner.wait(10)
        since = len(log.read_text(errors="replace"))
        runner = spawn_runner(city, bootstrap, log)
        publish(90)  # records on every partition: each recovers at its first batch
        wait_for_log(log, "recovered at offset", since, 60, runner)
        wait_caught_up(client_config, group, city.raw, 60)
        recovered = re.findall(r"partition (\d+): recovered at offset \d+ in [\d.]+ s \(compliance floor (\w+) of "
                               r"partition (\d+)\)", log.read_text(errors="replace")[since:])
        assert len(recovered) == 3, recovered
        for p, floor, q in recovered:
            assert floor != "None", f"partition {p} recovered without a compliance floor"
            # above everything the other product wrote, give or take the broker's last batch
            assert before[int(q)] < int(floor) and int(floor) >= after[int(q)] - PRODUCER_BATCH, \
                (p, floor, q, before, after)
    finally:
        stop(runner)
        conn.close()
    delivered = read_topic(client_config, topics.delivery(f"{unique}-regulator"), expect=published)
    positions = [source_of(m, city.keys) for m in delivered]
    assert len(positions) == len(set(positions)) == published


def test_alert_ids_are_found_below_a_later_owners_older_batch(client_config, unique):
    """Two crashes in a row (processors/fencing.py: FenceReader.ids_since): owner A wrote an
    alert about offset 12591 and died before its batch's compliance events; B skipped it,
    committed up to 12588 and wrote alerts of its next batch; C resumes at 12588 and must
    find A's alert below B's about the older batch, or it writes it again."""
    from confluent_kafka.admin import AdminClient

    from processors.fencing import FenceReader
    from streams.admin import TopicSpec, ensure_topics
    topic, src = f"alerts.{unique}", f"cm.raw.{unique}"
    ensure_topics(AdminClient(client_config), [TopicSpec(topic, 1)])
    p = Producer(client_config)
    for eid, first, last, offset in (("a-12591", 12400, 12600, 12591),   # A, its batch never committed
                                     ("b-12500", 12400, 12587, 12500),   # B, committed up to 12588
                                     ("b-12650", 12588, 12700, 12650)):  # B, its next batch
        p.produce(topic, b"alert", partition=0, headers=[
            ("cm.src.topic", src.encode()), ("cm.src.partition", b"2"), ("cm.batch.first", b"%d" % first),
            ("cm.batch.last", b"%d" % last), ("cm.src.offset", b"%d" % offset), ("cm.event.id", eid.encode())])
        p.flush()
    reader = FenceReader(client_config)
    try:
        assert reader.ids_since(topic, 0, src, 2, 12588, 0) == {"a-12591", "b-12650"}
    finally:
        reader.close()
