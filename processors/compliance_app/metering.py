"""Metering: what each contract delivered per hour, from the runners' BATCH events, counted once.

cm.compliance carries one BATCH event per contract and slice from every runner. As a faust
agent with a table write per event the app metered 2,700-2,900 events/s (one contract at 5k
records/s writes 350-420), so one app kept up with about six busy contracts
(bench/bench_compliance_app.py); this is a `BatchReader` (reader.py).

Counted exactly once across restarts without broker transactions (the embedded broker shows
aborted records to every reader): each BATCH event's contribution is written, keyed by its
event id, to the compacted topic ``<app id>-metered`` (schemas/MeteredBatch.avsc) and flushed
before the offsets of the batch it came in are committed. A (re)started reader loads that table
first, so an event it reads again, or one a runner wrote twice, is known by its id and not
counted again. Usage totals are sums over the table, published to cm.usage as one UsageRecord
per contract and hour (re-published with growing totals under the same key while the hour fills).

Every reader takes all partitions of cm.compliance (assigned, not balanced in a group), so a
second app computes the same totals instead of half of them each.
"""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

import schemas
from schemas.headers import ORIGIN as H_ORIGIN
from streams.admin import COMPACTED, TopicSpec, ensure_topics
from streams.control import read_table

from . import logic, metrics
from .config import AppConfig
from .reader import BatchReader

log = logging.getLogger("citymesh.compliance.metering")

EVENT, METERED, USAGE = (schemas.load(n) for n in ("ComplianceEvent", "MeteredBatch", "UsageRecord"))


class Metering(BatchReader):
    """The metering reader; `start()` loads its table and meters on a thread of its own."""

    name = "metering"

    def __init__(self, cfg: AppConfig, client_config: dict, contracts, replication: int = 1):
        super().__init__()
        self.client, self.contracts, self.replication = client_config, contracts, replication
        self.source, self.usage_topic = cfg.compliance_topic, cfg.usage_topic
        self.table_topic, self.group = f"{cfg.app_id}-metered", f"{cfg.app_id}-metering"
        self.window_ms, self.flush_s = cfg.usage_window_s * 1000, cfg.flush_s
        self.origin = [(H_ORIGIN, cfg.app_id.encode())]
        self._seen: set[str] = set()       # event ids metered
        self._totals: dict[tuple[str, int], dict] = {}  # (contract, window start) -> usage so far
        self._dirty: set[tuple[str, int]] = set()       # totals to publish at the next flush
        self._lock = threading.Lock()      # _dirty is also marked by reprice() from the faust loop

    def reprice(self, contract_id: str) -> None:
        """A contract changed (its price): its windows are published again at the next flush."""
        with self._lock:
            self._dirty.update(k for k in self._totals if k[0] == contract_id)

    # -- the table ---------------------------------------------------------------------------
    def _load(self, partitions: int) -> int:
        """The table as durable on the broker: what this reader counted before, and its sums;
        returns the table's partition count (one made earlier with fewer keeps them)."""
        admin = AdminClient(self.client)
        ensure_topics(admin, [TopicSpec(self.table_topic, partitions, COMPACTED)], self.replication)
        table = read_table(self.client, self.table_topic, timeout_s=120)
        with self._lock:
            self._seen = set(table)
            self._totals.clear()
            for contribution in table.values():
                self._add(contribution)
        log.info("metering: %d BATCH events counted before, %d contract-hours", len(table), len(self._totals))
        return len(admin.list_topics(self.table_topic, timeout=10).topics[self.table_topic].partitions)

    def _add(self, contribution: dict) -> None:
        key = (contribution["contract_id"], contribution["window_start_ms"])
        total = self._totals.get(key)
        if total is None:
            self._totals[key] = total = {**contribution, "event_id": None, "records": 0, "bytes": 0}
        total["records"] += contribution["records"]
        total["bytes"] += contribution["bytes"]
        total["contract_version"] = max(total.get("contract_version") or 0, contribution.get("contract_version") or 0)
        self._dirty.add(key)

    # -- the loop ----------------------------------------------------------------------------
    def read(self) -> None:
        """Load the table, then meter from the committed offsets until stopped."""
        consumer = Consumer({**self.client, "group.id": self.group, "enable.auto.commit": False,
                             "auto.offset.reset": "earliest", "enable.partition.eof": False})
        producer = Producer({**self.client, "enable.idempotence": True, "linger.ms": 5})
        failed: list = []

        def delivered(err, _msg) -> None:
            if err is not None:
                failed.append(err)

        try:
            parts = [TopicPartition(self.source, p)
                     for p in consumer.list_topics(self.source, timeout=10).topics[self.source].partitions]
            table_partitions = self._load(len(parts))
            committed = consumer.committed(parts, timeout=10)
            consumer.assign([TopicPartition(self.source, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
                             for tp in committed])
            next_flush = time.monotonic() + self.flush_s
            while not self.stopping.is_set():
                msgs = consumer.consume(5000, 0.5)
                wrote = self._take(msgs, producer, delivered, table_partitions)
                if wrote:
                    producer.flush(30)
                    if failed or len(producer):
                        raise KafkaException(failed[0] if failed else "metered table not flushed in 30 s")
                if msgs:
                    consumer.commit(asynchronous=False)
                if time.monotonic() >= next_flush:
                    self._publish(producer, delivered, failed)
                    next_flush = time.monotonic() + self.flush_s
        finally:
            consumer.close()
            producer.flush(5)

    def _take(self, msgs: list, producer: Producer, delivered, table_partitions: int) -> int:
        """Count the batch's new BATCH events into the totals and write each to the table."""
        wrote = 0
        with self._lock:
            for m in msgs:
                if m.error() is not None or m.value() is None:
                    continue
                try:
                    event = EVENT.decode(m.value())
                except (schemas.UnknownSchema, ValueError, EOFError):
                    continue
                contribution = logic.metered(event, self.window_ms)
                if contribution is None:
                    continue
                if event["event_id"] in self._seen:
                    metrics.DUPLICATES.inc()
                    continue
                self._seen.add(event["event_id"])
                contribution["event_id"] = event["event_id"]
                producer.produce(self.table_topic, METERED.encode(contribution), event["event_id"].encode(),
                                 partition=m.partition() % table_partitions, on_delivery=delivered)
                producer.poll(0)
                self._add(contribution)
                metrics.METERED.labels(contribution["contract_id"]).inc(contribution["records"])
                wrote += 1
        return wrote

    def _publish(self, producer: Producer, delivered, failed: list) -> None:
        """The usage of every contract-hour that changed (or was re-priced) since the last flush."""
        with self._lock:
            keys, self._dirty = sorted(self._dirty), set()
            records = [logic.usage_record(self._totals[k], self.contracts.by_id.get(k[0]), self.window_ms)
                       for k in keys]
        for rec in records:
            producer.produce(self.usage_topic, USAGE.encode(rec), rec["usage_id"].encode(), headers=self.origin,
                             on_delivery=delivered)
        producer.flush(30)
        if failed or len(producer):  # starting over re-publishes every total
            raise KafkaException(failed[0] if failed else "usage not flushed in 30 s")
