"""True end offsets of partitions, on any Kafka-protocol broker.

Why not just ListOffsets(latest)? The embedded broker (Tansu 0.6) answers it with the base
offset of the partition's last record batch + 1 instead of the log end offset: after one
produce request carrying 8 records, it says the end is 1 (seen here; see bench/RESULTS.md).
A fetch from just below that answer brings the rest of the batch (one fetch response,
queued at once), so this asks ListOffsets for a first answer, fetches from just below it, and
takes the consumer's position after what the fetch brought. On Apache Kafka both agree and
the fetch costs one round trip. (Not the fetch's high watermark: on Apache Kafka it lies beyond
the records of a transaction still open, which a read_committed consumer, librdkafka's default,
waits for in vain; ListOffsets already answers such a consumer with the last stable offset.)
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition


def end_offsets(consumer: Consumer, partitions: list[TopicPartition], timeout_s: float = 10.0
                ) -> dict[tuple[str, int], tuple[int, int]]:
    """(topic, partition) -> (low, high) watermarks, high being where `consumer` can read to:
    the true log end offset, or the last stable offset for a read_committed consumer.

    Uses `consumer`'s assignment for the probe fetch and leaves it unassigned."""
    deadline = time.monotonic() + timeout_s
    first = {(tp.topic, tp.partition): _watermarks(consumer, TopicPartition(tp.topic, tp.partition), deadline)
             for tp in partitions}
    return read_ends(consumer, first, deadline)


def read_ends(consumer: Consumer, first: dict[tuple[str, int], tuple[int, int]], deadline: float
              ) -> dict[tuple[str, int], tuple[int, int]]:
    """The true (low, high) of partitions from ListOffsets' first answers (`first`, as asked
    by whichever client): fetch from just below each answer and take the consumer's position
    after what the fetch brought. The one place that contains the embedded broker's quirk
    (the module docstring); `consumer` is left unassigned."""
    out = dict(first)
    probe = [TopicPartition(t, p, hi - 1) for (t, p), (lo, hi) in first.items() if hi > lo]
    if not probe:
        return out
    consumer.assign(probe)
    waiting = {(tp.topic, tp.partition): tp.offset + 1 for tp in probe}
    while waiting and time.monotonic() < deadline:
        # one record, returned the moment it is there (consume(n, t) waits for n or all of t)
        for m in consumer.consume(1, 0.05):
            waiting.pop((m.topic(), m.partition()), None)
        # a transaction marker at hi - 1 is no record: the position passes it
        for tp in consumer.position([TopicPartition(*key) for key in waiting]):
            if tp.offset >= waiting[(tp.topic, tp.partition)]:
                waiting.pop((tp.topic, tp.partition))
    while time.monotonic() < deadline and consumer.consume(1000, 0):
        pass  # the rest of what the fetches brought
    for tp in consumer.position(probe):
        key = (tp.topic, tp.partition)
        if tp.offset > out[key][1]:
            out[key] = (out[key][0], tp.offset)
    consumer.unassign()
    return out


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
