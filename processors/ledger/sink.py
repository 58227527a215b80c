"""The ledger sink: cm.compliance + cm.alerts → the hash-chained ledger, exactly once.

    python -m processors.ledger.sink [--keyring FILE] [--metrics-port N] [--checkpoint-every N]

A batch loop on confluent-kafka: consume up to `batch_size` records, decode them (the
schema comes from the payload's fingerprint, so either topic may carry either type), and
append them in ONE database transaction together with the next offset of every partition
consumed (processors/ledger/ledger.py). Offsets are never committed to Kafka: the database
is the only place the position lives, so it can never disagree with the entries. On start
the sink assigns every partition of its topics itself, at the stored position (or the
beginning), and picks up partitions that appear later; there is no consumer group to wait
for, and since the chain is one sequence there is only ever one writer to balance.

If the database fails mid-batch the process exits (the supervisor restarts it) instead of
carrying on with a consumer position ahead of the ledger. SIGTERM/SIGINT finish the
current batch, sign a final checkpoint and exit 0.

Environment: CITYMESH_BOOTSTRAP, CITYMESH_STATE_DIR (via streams.settings);
CITYMESH_LEDGER_URL (default <state_dir>/ledger.sqlite) and CITYMESH_OPERATOR (default:
the participant with role OPERATOR on cm.control.participants) via processors.ledger.config.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import time
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

import schemas
from streams import topics as mesh_topics
from streams.control import read_table
from streams.settings import get_settings

from . import config, metrics
from .chain import canonical_json, identify
from .ledger import AppendResult, Incoming, Ledger
from .store import open_store, redact

log = logging.getLogger("citymesh.ledger")


class LedgerSink:
    def __init__(self, ledger: Ledger, client_config: dict, topics: tuple[str, ...] = (mesh_topics.COMPLIANCE,
                 mesh_topics.ALERTS), batch_size: int = 5000, poll_s: float = 0.5,
                 checkpoint_interval_s: float = 60.0, refresh_s: float = 10.0):
        self.ledger = ledger
        self.topics = tuple(topics)
        self.batch_size = batch_size
        self.poll_s = poll_s
        self.checkpoint_interval_s = checkpoint_interval_s
        self.refresh_s = refresh_s
        self.registry = schemas.default_registry()
        self.consumer = Consumer({**client_config, "group.id": "citymesh-ledger", "enable.auto.commit": False,
                                  "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
                                  "enable.partition.eof": False})
        self.assigned: set[tuple[str, int]] = set()
        self._stopping = False
        self._last_refresh = 0.0
        self._last_checkpoint = time.monotonic()
        metrics.HEIGHT.set(ledger.store.head()[0])
        self.refresh_assignment()

    def refresh_assignment(self) -> None:
        """Assign partitions not yet assigned (new topics or partitions), each at its stored position."""
        self._last_refresh = time.monotonic()
        md = self.consumer.list_topics(timeout=10)
        stored = self.ledger.store.offsets()
        new = []
        for topic in self.topics:
            meta = md.topics.get(topic)
            if meta is None or meta.error is not None:
                continue
            for p in sorted(meta.partitions):
                if (topic, p) not in self.assigned:
                    new.append(TopicPartition(topic, p, stored.get((topic, p), OFFSET_BEGINNING)))
        if new:
            self.consumer.incremental_assign(new)
            self.assigned |= {(tp.topic, tp.partition) for tp in new}
            log.info("reading %s", ", ".join(f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in new))

    def step(self) -> AppendResult | None:
        """One batch: consume, decode, append in one transaction. None when nothing arrived."""
        if time.monotonic() - self._last_refresh > self.refresh_s:
            self.refresh_assignment()
        msgs = self.consumer.consume(self.batch_size, self.poll_s)
        if not msgs:
            if time.monotonic() - self._last_checkpoint > self.checkpoint_interval_s:
                self.checkpoint()
            return None
        started = time.perf_counter()
        records, positions = [], {}
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error: %s", err)
                continue
            key = (m.topic(), m.partition())
            positions[key] = max(positions.get(key, 0), m.offset() + 1)
            try:
                records.append(self._decode(m))
            except Exception as exc:  # anything undecodable is counted and logged, never chained
                reason = type(exc).__name__
                metrics.REJECTED.labels(reason).inc()
                log.warning("not a ledger record at %s[%d]@%d: %s", m.topic(), m.partition(), m.offset(), exc)
        result = self.ledger.append(records, positions)
        for kind, n in result.appended.items():
            metrics.ENTRIES.labels(kind).inc(n)
        metrics.DUPLICATES.inc(result.duplicates)
        metrics.FENCED.inc(result.fenced)
        if result.checkpoint is not None:
            self._checkpointed()
        metrics.HEIGHT.set(result.head_seq)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        return result

    def _decode(self, m) -> Incoming:
        value = m.value()
        if value is None:
            raise ValueError("tombstone")
        schema, record = self.registry.decode(value)
        kind, event_id, time_ms = identify(schema.name, record)
        return Incoming(m.topic(), m.partition(), m.offset(), kind, event_id, time_ms, canonical_json(record))

    def checkpoint(self) -> None:
        if self.ledger.checkpoint() is not None:
            self._checkpointed()
        self._last_checkpoint = time.monotonic()

    def _checkpointed(self) -> None:
        metrics.CHECKPOINTS.inc()
        self._last_checkpoint = time.monotonic()

    def run(self, max_idle_s: float | None = None) -> None:
        """Until stop() (or, for tests and one-shot catch-up, until idle for max_idle_s)."""
        idle_since = time.monotonic()
        while not self._stopping:
            if self.step() is not None:
                idle_since = time.monotonic()
            elif max_idle_s is not None and time.monotonic() - idle_since > max_idle_s:
                break

    def stop(self, *_args) -> None:
        self._stopping = True

    def close(self) -> None:
        """Sign the head (clean shutdown) and release the consumer and the database."""
        try:
            if self.ledger.signer is not None:
                self.checkpoint()
        finally:
            self.consumer.close()
            self.ledger.store.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m processors.ledger.sink", description=__doc__.split("\n")[0])
    ap.add_argument("--keyring", type=Path, default=None, help="operator keyring file (default: see module doc)")
    ap.add_argument("--topics", default=f"{mesh_topics.COMPLIANCE},{mesh_topics.ALERTS}",
                    help="comma-separated source topics")
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--checkpoint-every", type=int, default=1000, help="sign the head every N entries")
    ap.add_argument("--checkpoint-interval", type=float, default=60.0,
                    help="and after this many idle seconds when entries are unsigned")
    ap.add_argument("--metrics-port", type=int, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = get_settings()
    client = settings.client_config()
    participants = None
    if args.keyring is None and not os.environ.get(config.OPERATOR_ENV):
        participants = read_table(client, mesh_topics.CONTROL_PARTICIPANTS)
    signer = config.operator_keyring(settings.keyring_dir, keyring_file=args.keyring, participants=participants)
    url = config.ledger_url(settings)
    ledger = Ledger(open_store(url), signer, args.checkpoint_every)
    sink = LedgerSink(ledger, client, tuple(t for t in args.topics.split(",") if t), args.batch_size,
                      checkpoint_interval_s=args.checkpoint_interval)
    port = metrics.serve(args.metrics_port if args.metrics_port is not None else settings.metrics_port)
    signal.signal(signal.SIGTERM, sink.stop)
    signal.signal(signal.SIGINT, sink.stop)
    print(f"ledger sink: {redact(url)} at height {ledger.store.head()[0]}, signing as {signer.participant_id}; "
          f"metrics: http://127.0.0.1:{port}/metrics", flush=True)
    try:
        sink.run()
    finally:
        sink.close()
    log.info("stopped cleanly")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
