"""Kafka readers that fold the mesh's outputs into the dashboard model, each in its own thread.

What the dashboard reads, and why that grants it nothing extra:
- drone positions and hotline tickets: only through `ConsumerConnector` on the delivery
  topics of the operator's own ACTIVE contracts (cm.dlv.<contract>), so the page shows
  exactly the fields those contracts deliver — the connector refuses a contract the
  operator does not hold;
- cm.alerts and cm.compliance: the mesh's operator-facing outputs (rule hits, decision
  evidence and counts), which the operator owns;
- cm.control.negotiations: the DSP requests waiting for the operator's approval (审核),
  which are the operator's to decide;
- committed offsets of the runner groups against the raw topics' end offsets: metadata
  only (lag and throughput per runner); the probe fetch of streams.offsets reads one
  record per partition and discards it.

Failure handling is the point of this module: every reader catches everything, marks its
feed down with the reason and the time, waits, and builds a fresh client. librdkafka
reports an unreachable broker through `error_cb` only (a poll just returns nothing), so
the callback is wired to the feed state too; an empty poll counts as healthy only when no
such error came in the last few seconds. The page then says "no data since HH:MM:SS"
rather than showing stale drones as if they were live.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka import ConsumerGroupTopicPartitions

import schemas
from streams import topics
from streams.connectors import ConsumerConnector
from streams.control import read_table
from streams.offsets import end_offsets
from streams.settings import get_settings

from . import metrics
from .model import Model

log = logging.getLogger("citymesh.dashboard")

_BROKER_DOWN = {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE}
ERROR_GRACE_S = 5.0


def close_quietly(client) -> None:
    """Close a client whose broker may be gone: a failing close must not stop the rebuild."""
    if client is not None:
        try:
            client.close()
        except Exception:  # noqa: BLE001
            pass


class Reader(threading.Thread):
    """A thread that (re)builds a client, polls it, and reports health; subclasses do the rest."""

    def __init__(self, name: str, model: Model, client: dict, stop: threading.Event):
        super().__init__(name=f"feed-{name}", daemon=True)
        self.feed, self.model, self.stop_event = name, model, stop
        self._err_at = 0.0
        self.client = {**client, "error_cb": self._on_error}

    def _on_error(self, err) -> None:
        if err.code() in _BROKER_DOWN or err.fatal():
            self._err_at = time.monotonic()
            self.model.feed_down(self.feed, f"broker: {err.str()}")
            metrics.FEED_UP.labels(self.feed).set(0)

    def ok(self, n: int) -> None:
        if n:
            metrics.RECORDS.labels(self.feed).inc(n)
            metrics.LAST_RECORD.labels(self.feed).set(time.time())
        if n or time.monotonic() - self._err_at > ERROR_GRACE_S:
            self.model.feed_ok(self.feed, n)
            metrics.FEED_UP.labels(self.feed).set(1)

    def run(self) -> None:
        backoff = 1.0
        while not self.stop_event.is_set():
            try:
                self.open()
                backoff = 1.0
                while not self.stop_event.is_set():
                    self.ok(self.poll())
            except Exception as exc:  # noqa: BLE001 - any failure: report it, rebuild, carry on
                log.warning("%s feed: %s", self.feed, exc)
                self.model.feed_down(self.feed, str(exc) or exc.__class__.__name__)
                metrics.FEED_UP.labels(self.feed).set(0)
            finally:
                self.close()
            self.stop_event.wait(backoff)
            backoff = min(backoff * 2, 10.0)

    def open(self) -> None: ...

    def poll(self) -> int: ...

    def close(self) -> None: ...


class ContractFeed(Reader):
    """One of the operator's contracts: positions of drones or hotline tickets, as delivered."""

    def __init__(self, model: Model, client: dict, stop: threading.Event, operator: str, contract: dict, kind: str):
        super().__init__(contract["contract_id"], model, client, stop)
        self.operator, self.contract, self.kind = operator, contract, kind
        self.conn: ConsumerConnector | None = None

    def open(self) -> None:
        # a group of its own per process start: drones from the newest record (positions are
        # only worth their latest value), hotline tickets from the beginning (the history
        # the chart shows)
        group = f"{self.operator}.{self.contract['contract_id']}.dashboard-{uuid.uuid4().hex[:8]}"
        # forged records (streams/delivery.py) never reach the page
        self.conn = ConsumerConnector(self.operator, self.contract["contract_id"], self.client, group_id=group,
                                      from_beginning=self.kind == "hotline", contract=self.contract, verify="drop",
                                      keys_dir=get_settings().keyring_dir)

    def poll(self) -> int:
        batch = self.conn.poll(2000, 0.2)
        fold = self.model.drone_update if self.kind == "drones" else None
        cid = self.contract["contract_id"]
        for d in batch:
            if fold is not None:
                fold(cid, d.record)
            else:
                self.model.ticket(d.record)
        return len(batch)

    def close(self) -> None:
        close_quietly(self.conn)
        self.conn = None


class TopicFeed(Reader):
    """A shared mesh topic (cm.alerts, cm.compliance), every partition, from the beginning, no group."""

    def __init__(self, name: str, topic: str, model: Model, client: dict, stop: threading.Event, fold):
        super().__init__(name, model, client, stop)
        self.topic, self.fold = topic, fold
        self.registry = schemas.default_registry()
        self.consumer: Consumer | None = None
        self.parts: set[int] = set()
        self.backlog_end: dict[int, int] = {}
        self._listed = 0.0

    def open(self) -> None:
        self.consumer = Consumer({**self.client, "group.id": f"dashboard-{uuid.uuid4().hex[:8]}",
                                  "enable.auto.commit": False, "enable.partition.eof": False,
                                  "auto.offset.reset": "earliest"})
        self.parts = set()
        self._assign()

    def _assign(self) -> None:
        """(Re)assign every partition of the topic; new partitions join from their beginning."""
        self._listed = time.monotonic()
        md = self.consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
        if md is None or md.error is not None or not md.partitions:
            raise RuntimeError(f"topic {self.topic} not available ({md.error if md else 'missing'})")
        new = set(md.partitions) - self.parts
        if new:
            tps = [TopicPartition(self.topic, p, 0) for p in sorted(new)]
            for (_, p), (_, hi) in end_offsets(self.consumer, tps).items():
                self.backlog_end[p] = hi
            self.parts |= new
            self.consumer.assign([TopicPartition(self.topic, p, 0) for p in sorted(self.parts)])

    def poll(self) -> int:
        if time.monotonic() - self._listed > 30:
            self._assign()
        n = 0
        for m in self.consumer.consume(2000, 0.2):
            if m.error():
                if m.error().code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION):
                    raise KafkaException(m.error())  # the broker lost the topic (restart): rebuild
                continue
            try:
                schema, record = self.registry.decode(m.value())
            except Exception:  # noqa: BLE001 - not ours to judge; the ledger rejects it with a reason
                continue
            # a record from the backlog read at start is judged by when it was written, not now
            backlog = m.offset() < self.backlog_end.get(m.partition(), 0)
            self.fold(schema.name, record, m.timestamp()[1] if backlog else None)
            n += 1
        return n

    def close(self) -> None:
        close_quietly(self.consumer)
        self.consumer = None


class OffsetsFeed(Reader):
    """Broker reachability, the operator's contracts, and per-runner lag and throughput, every 2 s."""

    def __init__(self, model: Model, client: dict, stop: threading.Event, on_contracts, products,
                 interval_s: float = 2.0):
        super().__init__("broker", model, client, stop)
        self.on_contracts, self.products, self.interval_s = on_contracts, products, interval_s
        self.admin: AdminClient | None = None
        self.consumer: Consumer | None = None
        self.catalog: dict[str, dict] = {}
        self._tables_at = 0.0

    def open(self) -> None:
        self.admin = AdminClient({k: v for k, v in self.client.items()})
        self.consumer = Consumer({**self.client, "group.id": "dashboard-offsets", "enable.auto.commit": False})

    def poll(self) -> int:
        self.consumer.list_topics(timeout=5)  # raises when the broker is unreachable
        if time.monotonic() - self._tables_at > 15 or not self.catalog:
            self.catalog = read_table(self.client, topics.CONTROL_CATALOG, timeout_s=10)
            self.on_contracts(read_table(self.client, topics.CONTROL_CONTRACTS, timeout_s=10),
                              read_table(self.client, topics.CONTROL_PARTICIPANTS, timeout_s=10), self.catalog)
            self._tables_at = time.monotonic()
        for pid in sorted(self.products()):
            if pid in self.catalog:
                self._runner(pid, self.catalog[pid]["raw_topic"])
        self.stop_event.wait(self.interval_s)
        return 0

    def _runner(self, product: str, raw: str) -> None:
        md = self.consumer.list_topics(raw, timeout=5).topics.get(raw)
        if md is None or md.error is not None or not md.partitions:
            return
        parts = [TopicPartition(raw, p) for p in md.partitions]
        end = sum(hi for _, hi in end_offsets(self.consumer, parts, timeout_s=5).values())
        group = f"citymesh-runner.{product}"
        fut = self.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, parts)])[group]
        committed = [tp.offset for tp in fut.result(timeout=5).topic_partitions]
        known = any(o >= 0 for o in committed)
        self.model.runner_progress(product, sum(o for o in committed if o >= 0), end, known)
        lag = self.model.runners.get(product, {}).get("lag", 0)
        metrics.RUNNER_LAG.labels(product).set(lag)

    def close(self) -> None:
        close_quietly(self.consumer)
        self.consumer, self.admin = None, None


def operator_of(participants: dict[str, dict], configured: str | None) -> str | None:
    """CITYMESH_OPERATOR, else the one participant with role OPERATOR (several or none: no guess)."""
    if configured:
        return configured
    ops = sorted(pid for pid, p in participants.items() if "OPERATOR" in (p.get("roles") or []))
    return ops[0] if len(ops) == 1 else None


class Feeds:
    """Starts the readers, and a ContractFeed for each of the operator's ACTIVE contracts as they appear."""

    KINDS = {"UavTelemetry": "drones", "HotlineTicket": "hotline"}

    def __init__(self, model: Model, client: dict, operator: str | None = None):
        self.model, self.client, self.configured_operator = model, client, operator
        self.stop = threading.Event()
        self.contract_feeds: dict[str, ContractFeed] = {}
        self.threads: list[Reader] = []
        self.products: set[str] = set()

    def start(self) -> "Feeds":
        """The broker/offsets reader first; it reads the control topics and starts the rest. The
        review list needs no contract of the operator's, so its reader starts at once."""
        self.offsets = OffsetsFeed(self.model, self.client, self.stop, self._contracts, products=lambda: self.products)
        self.offsets.start()
        self.reviews = TopicFeed("reviews", topics.CONTROL_NEGOTIATIONS, self.model, self.client, self.stop,
                                 self._negotiation)
        self.reviews.start()
        return self

    def _negotiation(self, schema_name: str, record: dict, _written_ms) -> None:
        if schema_name == "Negotiation":
            self.model.negotiation(record)

    def _alert(self, schema_name: str, record: dict, written_ms: int | None) -> None:
        if schema_name == "Alert" and record["product_id"] in self.products:
            self.model.alert(record, written_ms)

    def _compliance(self, schema_name: str, record: dict, _written_ms) -> None:
        if schema_name == "ComplianceEvent" and record["product_id"] in self.products:
            self.model.compliance(record)

    def _contracts(self, contracts: dict, participants: dict, catalog: dict) -> None:
        """The operator's ACTIVE contracts decide what the page shows: their delivery topics, and
        the alerts, evidence counts and runners of their products only (a shared cluster holds
        other products too)."""
        operator = operator_of(participants, self.configured_operator)
        held = {cid: c for cid, c in contracts.items() if c["consumer_id"] == operator and c["state"] == "ACTIVE"}
        self.products = {c["product_id"] for c in held.values()}
        if not self.threads and held:
            self.threads = [
                TopicFeed("alerts", topics.ALERTS, self.model, self.client, self.stop, self._alert),
                TopicFeed("compliance", topics.COMPLIANCE, self.model, self.client, self.stop, self._compliance),
            ]
            for t in self.threads:
                t.start()
        with self.model.lock:
            self.model.info = {"operator": operator, "operator_name": participants.get(operator, {}).get("name"),
                               "contracts": sorted(held)}
            self.model._changed.add("info")
        for cid, c in held.items():
            schema_name = (catalog.get(c["product_id"]) or {}).get("schema_name") or ""
            kind = self.KINDS.get(schema_name.rsplit(".", 1)[-1])
            if kind and cid not in self.contract_feeds:
                f = self.contract_feeds[cid] = ContractFeed(self.model, self.client, threading.Event(), operator, c,
                                                            kind)
                f.start()
                log.info("reading %s (%s) as %s", cid, kind, operator)
        # a contract no longer ACTIVE stops its feed: the runner stops delivering anyway, and the
        # page must not keep showing what the operator may no longer see
        for cid in [cid for cid in self.contract_feeds if cid not in held]:
            self.contract_feeds.pop(cid).stop_event.set()
            log.info("contract %s no longer held; its feed stops", cid)

    def close(self) -> None:
        self.stop.set()
        for f in list(self.contract_feeds.values()):
            f.stop_event.set()
