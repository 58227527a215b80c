"""Nothing replayed: a valid provider record re-produced byte for byte is refused, whenever.

1,000 records a provider published are copied back into the raw topic exactly as they are
(value, key, headers, tag) by a client of its own: at once, after 10 s, and after the runner
restarted. None is delivered twice; every copy is in the dead-letter topic with
reject:replay. Then the same while the runner is SIGKILLed at random moments: every delivery
topic holds each original record exactly once and no copy. And a record whose event time is
outside the product's window is refused as reject:event-time.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter

from confluent_kafka import Consumer, Producer, TopicPartition

from processors.runner import Runner
from streams import topics
from tests.mesh_fixtures import CONTRACTS, city_yaml, headers, make_city, read_topic, source_of
from tests.processors.test_runner_crash import Publisher, flights, sigkill_repeatedly_then_catch_up

REGULATOR = "{u}-regulator"


def _replay(client: dict, msgs: list) -> None:
    """Copy records into the raw topic byte for byte, as any client could."""
    p = Producer({**client, "linger.ms": 5})
    for m in msgs:
        p.produce(m.topic(), m.value(), m.key(), headers=m.headers())
    assert p.flush(30) == 0


def _drain(city, client: dict) -> None:
    runner = Runner(city.product, client, city.keys, poll_timeout_s=0.05)
    try:
        runner.run(max_idle_s=2.0)
    finally:
        runner.close()


def _delivered_once(city, client: dict, originals: set) -> list:
    msgs = read_topic(client, topics.delivery(REGULATOR.format(u=city.u)))
    where = Counter(source_of(m, city.keys) for m in msgs)
    twice = [k for k, n in where.items() if n > 1]
    assert not twice, f"{len(twice)} records delivered more than once"
    assert set(where) == originals, (f"{len(set(where) - originals)} copies delivered, "
                                     f"{len(originals - set(where))} originals missing")
    return msgs


def test_a_record_replayed_byte_for_byte_is_refused_now_later_and_after_a_restart(tmp_path, client_config, unique):
    city = make_city(tmp_path, client_config, unique)
    with city.connector() as conn:
        for r in itertools.islice(flights(drones=100, seed=4, violators=0.0), 1000):
            conn.publish(city.product, r)
    _drain(city, client_config)
    raw = read_topic(client_config, city.raw, 1000)
    assert len(raw) == 1000 and all(headers(m).get("cm.seq") for m in raw)
    originals = {(m.partition(), m.offset()) for m in raw}

    runner = Runner(city.product, client_config, city.keys, poll_timeout_s=0.05)
    try:
        _replay(client_config, raw)            # at once
        runner.run(max_idle_s=2.0)
        time.sleep(10)
        _replay(client_config, raw)            # 10 s later
        runner.run(max_idle_s=2.0)
    finally:
        runner.close()
    _replay(client_config, raw)                # after the runner restarted
    _drain(city, client_config)

    _delivered_once(city, client_config, originals)
    dlq = read_topic(client_config, city.dlq, 3000)
    rules = Counter(headers(m)["cm.rule"] for m in dlq)
    assert rules == {b"reject:replay": 3000}, rules
    assert all(b"already seen" in headers(m)["cm.reason"] or b"written for partition" in headers(m)["cm.reason"]
               for m in dlq)


def test_replays_amid_sigkills_leave_every_delivery_topic_exactly_once(tmp_path, client_config, unique, bootstrap):
    rnd = random.Random(7)
    city = make_city(tmp_path, client_config, unique)
    log_path = tmp_path / "runner.log"
    log_path.touch()
    records = flights(drones=300, seed=21, violators=0.2)
    conn = city.connector()
    reader = Consumer({**client_config, "group.id": f"test-replay-{unique}", "enable.auto.commit": False})
    reader.assign([TopicPartition(city.raw, p, 0) for p in range(3)])
    copier = Producer({**client_config, "linger.ms": 5})
    pool, copies = [], set()

    def copied(err, msg) -> None:
        assert err is None, err
        copies.add((msg.partition(), msg.offset()))

    def chunk() -> int:
        """500 new records, and byte-for-byte copies of 100 records already in the raw topic."""
        for r in itertools.islice(records, 500):
            conn.publish(city.product, r)
        conn.flush()
        pool.extend(m for m in reader.consume(5000, 0.5)
                    if not m.error() and (m.partition(), m.offset()) not in copies)
        for m in rnd.sample(pool, min(100, len(pool))):
            copier.produce(m.topic(), m.value(), m.key(), headers=m.headers(), on_delivery=copied)
        copier.flush(30)
        return 500

    pub = Publisher(2_000, chunk, at_least=20_000)
    pub.start()
    try:
        sigkill_repeatedly_then_catch_up(city, bootstrap, client_config, log_path, rnd, 0.5, pub, "after a crash")
    finally:
        conn.close()
        reader.close()
    raw = read_topic(client_config, city.raw, pub.sent + len(copies))
    originals = {(m.partition(), m.offset()) for m in raw} - copies
    assert len(originals) == pub.sent and len(copies) >= 1000
    _delivered_once(city, client_config, originals)
    dlq = read_topic(client_config, city.dlq, len(copies))
    where = Counter((int(headers(m)["cm.src.partition"]), int(headers(m)["cm.src.offset"])) for m in dlq)
    assert set(where) == copies and max(where.values()) == 1, "a copy dead-lettered twice or not at all"
    assert {headers(m)["cm.rule"] for m in dlq} == {b"reject:replay"}


def test_an_event_time_outside_the_window_is_refused(tmp_path, client_config, unique):
    city = make_city(tmp_path, client_config, unique)
    city.apply(city_yaml(unique, CONTRACTS).replace("event_time_field: timestamp_ms",
                                                     "event_time_field: timestamp_ms\n    event_time_window: 10m"))
    now = int(time.time() * 1000)
    fresh = list(itertools.islice(flights(drones=10, seed=2, violators=0.0), 20))
    for i, r in enumerate(fresh):
        r["timestamp_ms"] = now - 60_000 if i % 2 else now - 3_600_000  # a minute old / an hour old
    with city.connector() as conn:
        for r in fresh:
            conn.publish(city.product, r)
    _drain(city, client_config)
    delivered = read_topic(client_config, topics.delivery(REGULATOR.format(u=unique)), 10)
    dlq = read_topic(client_config, city.dlq, 10)
    assert len(delivered) == 10 and len(dlq) == 10
    assert {headers(m)["cm.rule"] for m in dlq} == {b"reject:event-time"}
