"""Exactly-once delivery without broker transactions: find what a crashed runner already wrote.

Why: the embedded broker shows records of aborted transactions to read_committed readers
(DESIGN.md), so transactions cannot be what makes delivery exactly-once on every broker.
Instead, every record the runner writes carries its source partition and offset in headers,
the outputs of one source partition go to one output partition, in source order, from an
idempotent producer (so a crash can only lose a suffix, never a record in the middle), and
offsets are committed synchronously after each batch is acknowledged. After a restart, the
last record from source partition p in each output partition says up to which source offset
that output is complete (the *fence*); replaying from the committed offset skips what is
at or below it. Compliance events are fenced the same way, by their event ids, and carry
the batch's processing time so a replayed batch decides exactly as the original did.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from confluent_kafka import Consumer, TopicPartition

H_SRC_TOPIC = "cm.src.topic"
H_SRC_PARTITION = "cm.src.partition"
H_SRC_OFFSET = "cm.src.offset"
H_BATCH_FIRST = "cm.batch.first"
H_BATCH_LAST = "cm.batch.last"
H_BATCH_NOW = "cm.batch.now"
H_EVENT_ID = "cm.event.id"
SCAN_WINDOW = 2000


def output_partition(source_partition: int, partitions: int) -> int:
    return source_partition % partitions


def compliance_partition(product: str, source_partition: int, partitions: int) -> int:
    """All compliance events about one source partition land in one partition, in order."""
    return zlib.crc32(f"{product}:{source_partition}".encode()) % partitions


@dataclass
class PartitionFence:
    """What already exists downstream for one source partition, beyond its committed offset."""

    committed: int
    outputs: dict[str, int] = field(default_factory=dict)  # output topic -> last source offset written
    batch_last: int | None = None  # last offset of a batch whose compliance events were (partly) written
    batch_now_ms: int | None = None
    event_ids: set[str] = field(default_factory=set)

    def written(self, topic: str, offset: int) -> bool:
        return offset <= self.outputs.get(topic, -1)


class FenceReader:
    """Reads output partitions backwards from their end with a group-less consumer."""

    def __init__(self, client_config: dict):
        self._consumer = Consumer({**client_config, "group.id": "citymesh-fence-reader",
                                   "enable.auto.commit": False, "enable.partition.eof": False})

    def close(self) -> None:
        self._consumer.close()

    def _scan_back(self, topic: str, partition: int, stop_below: int | None = None):
        """Yield messages newest-first-window by window (each window oldest-first)."""
        lo, hi = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        end = hi
        while end > lo:
            start = max(lo, end - SCAN_WINDOW)
            self._consumer.assign([TopicPartition(topic, partition, start)])
            window = []
            while not window or window[-1].offset() < end - 1:
                msgs = self._consumer.consume(SCAN_WINDOW, 2.0)
                if not msgs:
                    break
                window += [m for m in msgs if not m.error() and m.offset() < end]
            yield window
            end = start

    def last_source_offset(self, topic: str, partition: int, src_topic: str, src_partition: int) -> int:
        """The highest source offset from (src_topic, src_partition) written to topic/partition, or -1."""
        want_p, want_t = str(src_partition).encode(), src_topic.encode()
        for window in self._scan_back(topic, partition):
            for m in reversed(window):
                h = dict(m.headers() or ())
                if h.get(H_SRC_PARTITION) == want_p and h.get(H_SRC_TOPIC) == want_t:
                    return int(h[H_SRC_OFFSET])
        return -1

    def compliance_since(self, topic: str, partition: int, src_topic: str, src_partition: int,
                         committed: int) -> tuple[int | None, int | None, set[str]]:
        """(batch last offset, batch processing time, event ids) of compliance events written
        about source offsets at or after `committed` (at most one uncommitted batch)."""
        want_p, want_t = str(src_partition).encode(), src_topic.encode()
        last = now = None
        ids: set[str] = set()
        for window in self._scan_back(topic, partition):
            for m in reversed(window):
                h = dict(m.headers() or ())
                if h.get(H_SRC_PARTITION) != want_p or h.get(H_SRC_TOPIC) != want_t or H_BATCH_FIRST not in h:
                    continue
                if int(h[H_BATCH_LAST]) < committed:
                    return last, now, ids  # older than the committed offset: nothing more to find
                last = max(last or -1, int(h[H_BATCH_LAST]))
                now = int(h[H_BATCH_NOW])
                ids.add(h[H_EVENT_ID].decode())
        return last, now, ids
