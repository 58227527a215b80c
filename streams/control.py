"""Compacted control topics: read their current state, write only what changed.

Each control topic is a table keyed by id (participant, product, contract); the latest
record per key wins, a tombstone (null value) deletes. Readers that must not miss an
update (runners hot-reloading contracts) keep consuming; one-shot readers (CLI,
`apply`) read from the beginning up to the high watermark seen at start.
"""

from __future__ import annotations

import time
from typing import Iterator

from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING

import schemas

from .offsets import end_offsets, take


def read_table(client_config: dict, topic: str, timeout_s: float = 15.0) -> dict[str, dict]:
    """The current value per key of a compacted control topic (tombstones removed)."""
    table: dict[str, dict] = {}
    for key, value in _read_to_end(client_config, topic, timeout_s):
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return table


def _read_to_end(client_config: dict, topic: str, timeout_s: float) -> Iterator[tuple[str, dict | None]]:
    registry = schemas.default_registry()
    consumer = Consumer({**client_config, "group.id": "citymesh-control-reader", "enable.auto.commit": False,
                         "enable.partition.eof": False})
    try:
        md = consumer.list_topics(topic, timeout=timeout_s)
        tmeta = md.topics.get(topic)
        if tmeta is None or tmeta.error is not None:
            return
        parts = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in tmeta.partitions]
        ends = {p: hi for (_, p), (lo, hi) in end_offsets(consumer, parts, timeout_s).items() if hi > lo}
        if not ends:
            return
        consumer.assign([tp for tp in parts if tp.partition in ends])
        deadline = time.monotonic() + timeout_s
        while ends and time.monotonic() < deadline:
            for msg in take(consumer, 1000, 0.5):
                if msg.error():
                    continue
                key = msg.key().decode()
                value = msg.value()
                yield key, (None if value is None else registry.decode(value)[1])
                if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                    ends.pop(msg.partition(), None)
        if ends:
            raise TimeoutError(f"could not read {topic} to its end within {timeout_s:.0f}s")
    finally:
        consumer.close()
