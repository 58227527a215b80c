"""The control topics as tables the control plane reads and writes.

Why a tailing view and not a database: the compacted control topics are the mesh's state
of record (runners already read contracts from them), so the HTTP service keeps none of
its own. At start it reads every table to its end before it answers anything; afterwards a
thread keeps following the topics, so a participant the operator registers or a product it
re-applies is seen within a poll. A write is produced, acknowledged by the broker and only
then applied to the view, so what an answer says has been written. Each record of the
dataspace's own tables carries a revision; the view keeps the highest, so the tail reading
back an older write of ours cannot roll a table back.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

import schemas
from streams import topics
from streams.offsets import end_offsets, take

from .errors import Unavailable

log = logging.getLogger("citymesh.dataspace.store")

SCHEMA_OF = {topics.CONTROL_PARTICIPANTS: "Participant", topics.CONTROL_CATALOG: "DataProduct",
             topics.CONTROL_CONTRACTS: "Contract", topics.CONTROL_NEGOTIATIONS: "Negotiation",
             topics.CONTROL_TRANSFERS: "Transfer", topics.CONTROL_AGREEMENTS: "Agreement",
             topics.COMPLIANCE: "ComplianceEvent"}
TABLES = (topics.CONTROL_PARTICIPANTS, topics.CONTROL_CATALOG, topics.CONTROL_CONTRACTS,
          topics.CONTROL_NEGOTIATIONS, topics.CONTROL_TRANSFERS, topics.CONTROL_AGREEMENTS)
REVISIONED = (topics.CONTROL_NEGOTIATIONS, topics.CONTROL_TRANSFERS, topics.CONTROL_AGREEMENTS)


class ControlStore:
    def __init__(self, client_config: dict, tables: Iterable[str] = TABLES, load_timeout_s: float = 30.0):
        self.client_config = client_config
        self.tables: dict[str, dict[str, dict]] = {t: {} for t in tables}
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._registry = schemas.default_registry()
        self._producer = Producer({**client_config, "enable.idempotence": True, "acks": "all", "linger.ms": 0})
        self._consumer = Consumer({**client_config, "group.id": "citymesh-dataspace-view", "enable.auto.commit": False,
                                   "enable.partition.eof": False, "fetch.wait.max.ms": 100})
        self._stop = threading.Event()
        self._load(load_timeout_s)
        self._thread = threading.Thread(target=self._follow, name="control-view", daemon=True)
        self._thread.start()

    # ---- reading -------------------------------------------------------------------------

    def _load(self, timeout_s: float) -> None:
        md = self._consumer.list_topics(timeout=timeout_s)
        parts = []
        for t in self.tables:
            meta = md.topics.get(t)
            if meta is None or meta.error is not None:
                raise Unavailable(f"control topic {t} does not exist: run `citymesh apply` first")
            parts += [TopicPartition(t, p, OFFSET_BEGINNING) for p in meta.partitions]
        ends = {(t, p): hi for (t, p), (lo, hi) in end_offsets(self._consumer, parts, timeout_s).items() if hi > lo}
        self._consumer.assign(parts)
        deadline = time.monotonic() + timeout_s
        while ends:
            if time.monotonic() > deadline:
                raise Unavailable(f"could not read the control topics to their end within {timeout_s:.0f} s")
            for m in take(self._consumer, 1000, 0.2):
                if m.error():
                    continue
                self._apply(m)
                if m.offset() + 1 >= ends.get((m.topic(), m.partition()), 0):
                    ends.pop((m.topic(), m.partition()), None)

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                msgs = self._consumer.consume(500, 0.2)
            except (KafkaException, RuntimeError) as exc:  # the consumer was closed under us, or the broker left
                if self._stop.is_set():
                    return
                log.warning("control view: %s", exc)
                time.sleep(0.5)
                continue
            if msgs:
                with self.lock:
                    for m in msgs:
                        if not m.error():
                            self._apply(m)
                    self.changed.notify_all()

    def _apply(self, m) -> None:
        key = m.key().decode() if m.key() else None
        if key is None:
            return
        with self.lock:
            table = self.tables[m.topic()]
            if m.value() is None:
                table.pop(key, None)
                return
            try:
                record = self._registry.decode(m.value())[1]
            except Exception as exc:  # noqa: BLE001 - a record of an unknown schema is skipped, loudly
                log.warning("cannot decode %s[%s]@%s: %s", m.topic(), key, m.offset(), exc)
                return
            old = table.get(key)
            if m.topic() in REVISIONED and old is not None and old.get("revision", 0) > record.get("revision", 0):
                return
            table[key] = record

    def get(self, topic: str, key: str) -> dict | None:
        with self.lock:
            rec = self.tables[topic].get(key)
            return dict(rec) if rec is not None else None

    def values(self, topic: str) -> list[dict]:
        with self.lock:
            return [dict(r) for r in self.tables[topic].values()]

    def public_key(self, participant_id: str) -> str | None:
        p = self.get(topics.CONTROL_PARTICIPANTS, participant_id)
        return p.get("public_key") if p else None

    # ---- writing -------------------------------------------------------------------------

    def put(self, topic: str, key: str, record: dict, timeout_s: float = 15.0) -> dict:
        """Write `record` (revision bumped on revisioned tables), wait for the broker, update the view."""
        with self.lock:
            if topic in REVISIONED:
                old = self.tables[topic].get(key)
                record = {**record, "revision": (old.get("revision", 0) if old else 0) + 1}
            self.produce(topic, key, record, timeout_s)
            if topic in self.tables:
                self.tables[topic][key] = record
                self.changed.notify_all()
            return dict(record)

    def produce(self, topic: str, key: str, record: dict, timeout_s: float = 15.0) -> None:
        """Write one record and wait for its acknowledgement; Unavailable when the broker does not take it."""
        errors: list = []
        try:
            payload = schemas.load(SCHEMA_OF[topic]).encode(record)
            self._producer.produce(topic, payload, key.encode(),
                                   on_delivery=lambda err, _msg: errors.append(err) if err else None)
        except BufferError:
            raise Unavailable("the producer queue is full") from None
        if self._producer.flush(timeout_s) or errors:
            raise Unavailable(f"{topic} did not acknowledge the write of {key!r}: {errors[0] if errors else 'timeout'}")

    def wait_for(self, predicate, timeout_s: float) -> bool:
        """Block until `predicate()` holds (checked on every change of the view) or the timeout."""
        deadline = time.monotonic() + timeout_s
        with self.lock:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, 0.5))
            return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()
        self._producer.flush(5)
        # released now, not when the last handler that holds the store is collected: until then
        # it would reconnect to a broker that is gone and log every refused attempt. Purged
        # first: close() waits for every queued record (up to message.timeout.ms with the broker
        # gone), and what is still queued belongs to writes `produce` already reported Unavailable
        self._producer.purge()
        self._producer.close()
