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
    out: dict[tuple[str, int], tuple[int, int]] = {}
    probe = []
    deadline = time.monotonic() + timeout_s
    for tp in partitions:
        lo, hi = _watermarks(consumer, TopicPartition(tp.topic, tp.partition), deadline)
        out[(tp.topic, tp.partition)] = (lo, hi)
        if hi > lo:
            probe.append(TopicPartition(tp.topic, tp.partition, hi - 1))
    if not probe:
        return out
    consumer.assign(probe)
    waiting = {(tp.topic, tp.partition): tp.offset + 1 for tp in probe}
    while waiting and time.monotonic() < deadline:
        for m in consumer.consume(1000, 0.2):
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
