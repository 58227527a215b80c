"""`citymesh tail`: decode and print the last records of any mesh topic.

Avro payloads are decoded with the shipped schemas and the delivery schemas of the
contracts; anything else (a dead-lettered payload) is shown as hex next to its headers.
"""

from __future__ import annotations

import json
import time

from confluent_kafka import Consumer, TopicPartition

import schemas
from streams import topics
from streams.control import read_table
from streams.offsets import end_offsets, take


def _registry(client_config: dict) -> schemas.Registry:
    reg = schemas.Registry(schemas.load(n) for n in schemas.available())
    for c in read_table(client_config, topics.CONTROL_CONTRACTS).values():
        if c.get("delivery_schema_json"):
            reg.add(schemas.RecordSchema.from_definition(json.loads(c["delivery_schema_json"])))
    return reg


def render(msg, registry: schemas.Registry) -> str:
    headers = {k: v.decode("utf-8", "replace") if v is not None else None for k, v in (msg.headers() or [])}
    value = msg.value()
    if value is None:
        body = None
    else:
        try:
            body = registry.decode(value)[1]
        except Exception:
            body = {"undecodable_hex": value[:64].hex() + ("…" if len(value) > 64 else ""), "bytes": len(value)}
    return json.dumps({"partition": msg.partition(), "offset": msg.offset(),
                       "key": msg.key().decode("utf-8", "replace") if msg.key() else None,
                       "headers": headers, "value": body}, ensure_ascii=False, default=str)


def tail(client_config: dict, topic: str, n: int, follow: bool, timeout_s: float = 10.0) -> int:
    registry = _registry(client_config)
    consumer = Consumer({**client_config, "group.id": "citymesh-tail", "enable.auto.commit": False})
    try:
        md = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if md is None or md.error is not None or not md.partitions:
            print(f"no topic {topic}")
            return 1
        assignment, remaining = [], {}
        ends = end_offsets(consumer, [TopicPartition(topic, p) for p in md.partitions], timeout_s)
        for (_, p), (lo, hi) in ends.items():
            start = max(lo, hi - n)
            assignment.append(TopicPartition(topic, p, start))
            if hi > start:
                remaining[p] = hi
        consumer.assign(assignment)
        deadline = time.monotonic() + timeout_s
        backlog = []  # the last n of every partition; the last n overall are printed
        while remaining and time.monotonic() < deadline:
            for msg in take(consumer, 500, 0.5):
                if msg.error():
                    continue
                backlog.append(msg)
                if msg.offset() + 1 >= remaining.get(msg.partition(), 0):
                    remaining.pop(msg.partition(), None)
            # offsets no record is read at (a transaction's marker, aborted records) end some
            # partitions: the position passes them
            for tp in consumer.position([TopicPartition(topic, p) for p in remaining]):
                if tp.offset >= remaining[tp.partition]:
                    remaining.pop(tp.partition)
        backlog.sort(key=lambda m: (m.timestamp()[1], m.partition(), m.offset()))
        for msg in backlog[-n:] if n > 0 else []:
            print(render(msg, registry), flush=True)
        while follow:
            for msg in take(consumer, 500, 0.5):
                if not msg.error():
                    print(render(msg, registry), flush=True)
    finally:
        consumer.close()
    return 0
