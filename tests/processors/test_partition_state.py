"""The partition state record bounds the search after a crash (processors/partition_state.py):
an idle partition's compliance floor follows the shared compliance topic's end, so a
restarted runner does not read back through what other products wrote since."""

import itertools
import time

from confluent_kafka import Producer, TopicPartition

import schemas
from processors.evidence import event_id
from processors.fencing import compliance_partition
from processors.runner import FLOOR_REFRESH_S, Runner
from streams import topics
from streams.offsets import end_offsets
from tests.mesh_fixtures import make_city
from tests.processors.test_runner_crash import flights

OTHERS = 3000


def _compliance_ends(client_config) -> dict[int, int]:
    from confluent_kafka import Consumer
    c = Consumer({**client_config, "group.id": "test-ends", "enable.auto.commit": False})
    try:
        n = len(c.list_topics(topics.COMPLIANCE, timeout=10).topics[topics.COMPLIANCE].partitions)
        return {p: hi for (_, p), (_, hi) in end_offsets(c, [TopicPartition(topics.COMPLIANCE, p)
                                                             for p in range(n)]).items()}
    finally:
        c.close()


def test_an_idle_partitions_floor_follows_the_compliance_topic_past_other_products_events(
        tmp_path, client_config, unique):
    city = make_city(tmp_path, client_config, unique)
    with city.connector() as conn:
        for r in itertools.islice(flights(drones=30, seed=5, violators=0.0), 300):
            conn.publish(city.product, r)
    runner = Runner(city.product, client_config, city.keys)
    try:
        runner.run(max_idle_s=2.0)  # every partition enforced, then idle
        assert len(runner.states.saved) == 3
        # another product writes to every compliance partition while this one is idle: OTHERS
        # events, then a last few. (The floor is a ListOffsets answer: on the embedded broker
        # the base offset of a partition's last record batch + 1, so below that last batch.)
        p, schema, other = Producer(client_config), schemas.load("ComplianceEvent"), f"{unique}-other"
        n = len(_compliance_ends(client_config))
        for i in range(OTHERS + 10 * n):
            ev = {"event_id": event_id("batch", other, i % n, i, i, "x", 1), "time_ms": int(time.time() * 1000),
                  "kind": "BATCH", "product_id": other, "provider_id": "other", "contract_id": "x",
                  "contract_version": 1, "consumer_id": "c", "rule": None, "reason": None, "counts": {"deliver": 1},
                  "source_topic": topics.raw("other", other), "source_partition": i % n, "first_offset": i,
                  "last_offset": i, "digest": None, "trace_id": None, "details": {}}
            p.produce(topics.COMPLIANCE, schema.encode(ev), b"%s:%d" % (other.encode(), i % n), i % n)
            if i == OTHERS - 1:
                assert p.flush(30) == 0
                after_others = _compliance_ends(client_config)
        assert p.flush(30) == 0
        deadline = time.monotonic() + 4 * FLOOR_REFRESH_S + 5
        while time.monotonic() < deadline and any(
                runner.states.floors.get(q, -1) < after_others[compliance_partition(city.product, q, n)]
                for q in range(3)):
            runner.step()
        runner.producer.flush(10)
    finally:
        runner.close()

    again = Runner(city.product, client_config, city.keys)
    try:
        for q in range(3):
            committed = again._committed(q)
            _, floor = again.states.recover(q, committed)
            cq = compliance_partition(city.product, q, n)
            assert floor is not None and floor[0] == cq
            assert floor[1] >= after_others[cq], "the floor is below events other products wrote while idle"
            # and the search above it finds what the unbounded one finds: nothing beyond the commit
            assert again.fence_reader.compliance_since(topics.COMPLIANCE, cq, city.raw, q, committed, floor[1]) \
                == again.fence_reader.compliance_since(topics.COMPLIANCE, cq, city.raw, q, committed, None) == ([], set())
    finally:
        again.close()
