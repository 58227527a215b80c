import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.admin import TopicCounter, TopicSpec, ensure_topics
from streams.control import read_table
from streams.offsets import EndOffsetTimeout, end_offsets


def test_end_offsets_count_every_record_of_a_multi_record_batch(client_config, unique):
    topic = f"t.{unique}"
    ensure_topics(AdminClient(client_config), [TopicSpec(topic, 2)])
    p = Producer({**client_config, "linger.ms": 50})
    for batch in (8, 1, 5):  # several records per produce request
        for i in range(batch):
            p.produce(topic, b"v", b"k", partition=0)
        p.flush()
    c = Consumer({**client_config, "group.id": "x"})
    try:
        ends = end_offsets(c, [TopicPartition(topic, 0), TopicPartition(topic, 1)])
    finally:
        c.close()
    assert ends[(topic, 0)] == (0, 14) and ends[(topic, 1)] == (0, 0)
    counter = TopicCounter(client_config)
    try:
        assert counter.counts(prefix=topic)[topic] == 14
    finally:
        counter.close()


def test_read_table_sees_every_key_of_one_batch(client_config, unique):
    import schemas
    topic = f"ctl.{unique}"
    ensure_topics(AdminClient(client_config), [TopicSpec(topic, 1, {"cleanup.policy": "compact"})])
    s = schemas.load("Participant")
    p = Producer({**client_config, "linger.ms": 50})
    for i in range(20):
        p.produce(topic, s.encode({"participant_id": f"p{i}", "name": "n", "roles": ["CONSUMER"]}), f"p{i}".encode())
    p.produce(topic, None, b"p3")  # tombstone
    p.flush()
    table = read_table(client_config, topic)
    assert sorted(table) == sorted(f"p{i}" for i in range(20) if i != 3)


def test_end_offsets_read_a_last_batch_larger_than_a_fetch_response(client_config, unique):
    """The fence's case (CI: alerts written twice): the last batch is far larger than what one
    fetch response may carry, so the end is only known after several fetches."""
    topic = f"t.{unique}"
    ensure_topics(AdminClient(client_config), [TopicSpec(topic, 1)])
    p = Producer({**client_config, "linger.ms": 200, "batch.size": 4_000_000, "batch.num.messages": 100_000})
    p.produce(topic, b"first", partition=0)
    p.flush()
    for i in range(3000):
        p.produce(topic, b"%06d" % i + b"x" * 400, partition=0)
    p.flush()
    c = Consumer({**client_config, "group.id": "x", "isolation.level": "read_committed",
                  "max.partition.fetch.bytes": 16_384})
    try:
        assert end_offsets(c, [TopicPartition(topic, 0)])[(topic, 0)] == (0, 3001)
        assert not c.assignment()  # the probe leaves the consumer unassigned
    finally:
        c.close()


def test_an_end_that_cannot_be_read_raises_instead_of_answering_short(client_config, unique):
    topic = f"t.{unique}"
    ensure_topics(AdminClient(client_config), [TopicSpec(topic, 1)])
    p = Producer(client_config)
    for _ in range(10):
        p.produce(topic, b"v", partition=0)
    p.flush()
    c = Consumer({**client_config, "group.id": "x"})
    try:
        # an answer beyond what the partition holds: the record below it never comes
        with pytest.raises(EndOffsetTimeout, match=rf"{topic}\[0\] at offset 99"):
            end_offsets(c, [TopicPartition(topic, 0)], timeout_s=1.5, listed={(topic, 0): (0, 100)})
        assert end_offsets(c, [TopicPartition(topic, 0)], timeout_s=10) == {(topic, 0): (0, 10)}
    finally:
        c.close()


def test_take_returns_with_the_first_record_not_after_its_timeout(client_config, unique):
    """A reader of a quiet topic gets what is there at once; an empty one waits its timeout."""
    import time

    from streams.offsets import assign, take
    topic = f"t.{unique}"
    ensure_topics(AdminClient(client_config), [TopicSpec(topic, 1)])
    p = Producer(client_config)
    for i in range(3):
        p.produce(topic, b"%d" % i, partition=0)
    p.flush()
    c = Consumer({**client_config, "group.id": "x"})
    try:
        assign(c, [TopicPartition(topic, 0, 0)])
        got, started = [], time.monotonic()
        while len(got) < 3 and time.monotonic() - started < 30:
            got += [m.value() for m in take(c, 1000, 30.0)]
        assert got == [b"0", b"1", b"2"]
        assert time.monotonic() - started < 15.0  # consume(1000, 30.0) waits 30 s for 3 records
        started = time.monotonic()
        assert take(c, 1000, 0.3) == []
        assert time.monotonic() - started >= 0.25
        p.produce(topic, b"3", partition=0)
        p.flush()
        assert [m.value() for m in take(c, 1, 5.0)] == [b"3"]
    finally:
        c.close()
