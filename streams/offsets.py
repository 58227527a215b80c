"""True end offsets of partitions, on any Kafka-protocol broker: the one place that knows
how a broker's answer can fall short.

Why not just ListOffsets(latest)? The embedded broker (Tansu 0.6) answers it with the base
offset of the partition's last record batch + 1 instead of the log end offset: after one
produce request carrying 8 records, it says the end is 1 (seen here; see bench/RESULTS.md).
So ``end_offsets`` asks ListOffsets for a first answer, fetches from just below it, and when
that fetch brings records past the answer (the answer was short) reads on while the
fetches' own high watermark (``fetched_high``) is ahead: a fetch response carries at most
``max.partition.fetch.bytes`` (1 MiB), so a large last batch takes several, and stopping
after the first fetch fenced a runner's outputs too low (CI: ~1,800 alerts written twice).
On Apache Kafka both agree and the probe costs one round trip. (The high watermark is not
the answer itself: on Apache Kafka it lies beyond the records of a transaction still open,
which a read_committed consumer, librdkafka's default, waits for in vain; ListOffsets
already answers such a consumer with the last stable offset. So it is only read on to when
the broker's answer was seen to be short.)
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from schemas.errors import CitymeshError

IDLE_S = 0.5  # reading on past the listed end stops after this long without a record


class EndOffsetTimeout(CitymeshError, TimeoutError):
    """A partition's end could not be read within the time given: where it ends is not known
    (answering the broker's too-low first answer instead would hide records)."""


def end_offsets(consumer: Consumer, partitions: list[TopicPartition], timeout_s: float = 10.0,
                listed: dict[tuple[str, int], tuple[int, int]] | None = None
                ) -> dict[tuple[str, int], tuple[int, int]]:
    """(topic, partition) -> (low, high) watermarks, high being where `consumer` can read to:
    the true log end offset, or the last stable offset for a read_committed consumer.

    ``listed`` holds ListOffsets answers already at hand (asked for many partitions at once,
    by an admin client); the others are asked for here. Uses `consumer`'s assignment for the
    probe fetch and leaves it unassigned. EndOffsetTimeout when a probe is not read in time."""
    out: dict[tuple[str, int], tuple[int, int]] = {}
    probe = []
    deadline = time.monotonic() + timeout_s
    for tp in partitions:
        key = (tp.topic, tp.partition)
        lo, hi = (listed or {}).get(key) or _watermarks(consumer, TopicPartition(*key), deadline)
        out[key] = (lo, hi)
        if hi > lo:
            probe.append(TopicPartition(tp.topic, tp.partition, hi - 1))
    if not probe:
        return out
    assign(consumer, probe, max(0.5, deadline - time.monotonic()))
    try:
        waiting = {(tp.topic, tp.partition): tp.offset + 1 for tp in probe}
        while waiting:
            if time.monotonic() > deadline:
                raise EndOffsetTimeout("not read within %.0f s: %s" % (timeout_s, ", ".join(
                    f"{t}[{p}] at offset {hi - 1}" for (t, p), hi in sorted(waiting.items()))))
            # the first record and the rest of what its fetch brought, so the position shows a
            # short answer (below); a restart's recovery probes every output partition
            take(consumer, 1000, 0.05)
            # (a transaction marker at hi - 1 is no record: the position passes it)
            for tp in consumer.position([TopicPartition(*key) for key in waiting]):
                if tp.offset >= waiting[(tp.topic, tp.partition)]:
                    waiting.pop((tp.topic, tp.partition))
        short = [tp for tp in consumer.position(probe) if tp.offset > out[(tp.topic, tp.partition)][1]]
        if short:  # the broker's answer fell short: read on to where its fetches say the log ends
            _read_on(consumer, short, deadline)
        for tp in consumer.position(probe):
            key = (tp.topic, tp.partition)
            if tp.offset > out[key][1]:
                out[key] = (out[key][0], tp.offset)
    finally:
        consumer.unassign()
    return out


def take(consumer: Consumer, limit: int, timeout_s: float) -> list:
    """Up to `limit` records as soon as there is one: what the consumer's prefetch queue
    holds, else the first record to arrive within `timeout_s` and what came with it ([] when
    none came). consume(n, timeout) returns only when it has n records or its timeout passed,
    so every reader of a quiet topic (a runner at a modest rate, a control table smaller than
    n, a probe of one record) waited out the whole timeout; poll() returns the moment one
    arrives. Under load the batch grows by itself: the longer one takes, the more is queued
    for the next."""
    msgs = consumer.consume(limit, 0)
    if msgs:
        return msgs
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    return [first] + consumer.consume(limit - 1, 0) if limit > 1 else [first]


def assign(consumer: Consumer, partitions: list[TopicPartition], timeout_s: float = 10.0) -> None:
    """consumer.assign(partitions), their topics' metadata asked for first: librdkafka starts
    fetching a topic it holds no metadata for only at its next once-a-second refresh of unknown
    topics, so a consumer's first read of a topic waited ~1 s (a restarted runner's recovery
    reads a dozen topics for the first time: bench/RESULTS.md, "A restart within 5 s")."""
    for topic in {tp.topic for tp in partitions}:
        consumer.list_topics(topic, timeout=timeout_s)
    consumer.assign(partitions)


def fetched_high(consumer: Consumer, topic: str, partition: int) -> int:
    """The high watermark the last fetch of (topic, partition) by `consumer` carried (0 when
    none yet): the true log end on the embedded broker, whose ListOffsets answer can be short
    (this module's docstring); on Apache Kafka also the end of a transaction still open."""
    return (consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True) or (0, 0))[1]


def _read_on(consumer: Consumer, partitions: list[TopicPartition], deadline: float) -> None:
    """Consume while the fetches' high watermark of a partition is ahead of the position and
    records keep coming (a partition written to meanwhile: not past IDLE_S or the deadline)."""
    idle_since = time.monotonic()
    while time.monotonic() < deadline:
        if consumer.consume(1000, 0):
            idle_since = time.monotonic()
            continue
        if time.monotonic() - idle_since > IDLE_S or all(
                tp.offset >= fetched_high(consumer, tp.topic, tp.partition) for tp in consumer.position(partitions)):
            return
        time.sleep(0.005)


_MOVING = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART)


def _watermarks(consumer: Consumer, tp: TopicPartition, deadline: float) -> tuple[int, int]:
    """ListOffsets, retried while the error is retriable: Apache Kafka answers NOT_LEADER for a
    moment after a topic is created, or while a partition moves to a new leader."""
    while True:
        try:
            return consumer.get_watermark_offsets(tp, timeout=max(0.5, deadline - time.monotonic()), cached=False)
        except KafkaException as exc:
            err = exc.args[0]
            if not (err.retriable() or err.code() in _MOVING) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
