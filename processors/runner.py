"""The enforcement runner: one per data product, the mesh's data plane.

A batch loop on confluent-kafka: consume up to `batch_size` raw records, bring contracts up
to date (at the batch boundary), admit the records, evaluate every ACTIVE contract's
compiled plan on the batch, write what each contract grants to its delivery topic and
what was rejected to the dead-letter topic, emit the batch's compliance events, wait for
the broker's acknowledgements, then commit the source offsets (without waiting for the
commit's answer, unless the product has limits: see step()). More
instances in the same consumer group share the product's partitions.

Exactly-once: see processors/fencing.py. Decisions are a function of the record, the
contract version and the batch's processing time; a restarted runner fences off what a
crashed one already wrote, so each delivery topic holds each permitted record once, in
source order per partition, whatever moment the crash came at.

    python -m processors.runner --product uav-telemetry
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import time
from dataclasses import dataclass

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaException, Producer, TopicPartition

import policy_enforcer
import schemas
from streams import envelope, keyring, topics
from streams.control import read_table
from streams.settings import Settings, get_settings

from schemas.headers import REASON as H_REASON
from schemas.headers import RULE as H_RULE
from schemas.headers import SOURCE_REF as H_SOURCE_REF

from . import evidence, limiting, metrics
from .admission import DEFAULT_MAX_BYTES, Admission
from .alert_stage import AlertStage
from .contract_feed import ContractFeed
from .fencing import (H_BATCH_FIRST, H_BATCH_LAST, H_BATCH_NOW, H_EVENT_ID, H_SRC_OFFSET, H_SRC_PARTITION,
                      H_SRC_TOPIC, FenceReader, PartitionFence, clear_position, compliance_partition)

log = logging.getLogger("citymesh.runner")

PRODUCER_CONFIG = {
    "enable.idempotence": True,  # per partition: in order, no duplicates, a crash loses only a suffix
    "acks": "all",
    "linger.ms": 2,
    "batch.num.messages": 10000,
    "queue.buffering.max.messages": 1_000_000,
    "compression.type": "lz4",
    "delivery.report.only.error": True,
}


FETCH_WAIT_MS = 10


class DeliveryFailed(RuntimeError):
    """The broker did not acknowledge an output; the batch is not committed and will be replayed."""


@dataclass
class ActivePlan:
    """One ACTIVE contract compiled for this product, with its output topic's shape."""

    contract: dict
    plan: policy_enforcer.Plan
    topic: str
    partitions: int

    @property
    def contract_id(self) -> str:
        return self.contract["contract_id"]

    def position_of(self, headers: dict) -> tuple[int, int] | None:
        """The source position of one of this contract's deliveries (its sealed cm.src)."""
        ref = headers.get(H_SOURCE_REF)
        return self.plan.source_refs.open(ref) if ref else None


class Runner:
    def __init__(self, product_id: str, client_config: dict, keys_dir, batch_size: int = 5000,
                 max_record_bytes: int = DEFAULT_MAX_BYTES, session_timeout_ms: int = 6000,
                 group_id: str | None = None, poll_timeout_s: float = 0.1):
        self.product_id = product_id
        self.client_config = client_config
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        catalog = read_table(client_config, topics.CONTROL_CATALOG)
        entry = catalog.get(product_id)
        if entry is None:
            raise SystemExit(f"product {product_id!r} is not in the catalog; apply the topology first")
        self.provider_id = entry["provider_id"]
        self.product_entry = entry
        self.schema = schemas.load(entry["schema_name"])
        self.raw_topic = entry["raw_topic"]
        self.dlq_topic = topics.dead_letter(self.provider_id, product_id)
        self.admission = Admission(product_id, self.provider_id, self.schema,
                                   keyring.load(keys_dir, self.provider_id), max_record_bytes)
        self.master_secret = keyring.mesh_secret(keys_dir)
        # one delivery callback for every record this producer writes (outputs, dead letters,
        # compliance events, limiter state): a failure anywhere fails the batch (_flush), and a
        # producer-wide callback costs less per record than one passed to each produce()
        self.producer = Producer({**client_config, **PRODUCER_CONFIG, "on_delivery": self._on_delivery})
        self.consumer = Consumer({
            **client_config, "group.id": group_id or f"citymesh-runner.{product_id}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "session.timeout.ms": session_timeout_ms, "enable.partition.eof": False,
            # a broker answers a connection's requests in order: a commit (synchronous with
            # limits) waits behind a long-poll fetch for up to fetch.wait.max.ms
            "fetch.wait.max.ms": FETCH_WAIT_MS,
        })
        self.feed = ContractFeed(client_config, product_id)
        self.fence_reader = FenceReader(client_config)
        md = self.producer.list_topics(timeout=10)
        self._partitions = {name: len(t.partitions) for name, t in md.topics.items()}
        self.plans: dict[str, ActivePlan] = {}
        self.fences: dict[int, PartitionFence] = {}
        self._recover: set[int] = set()
        self._carry: dict[int, list] = {}
        self._failed: list = []
        self._issued: dict[int, int] = {}  # partition -> the last offset a commit was sent for
        self._stopping = False
        self.consumed = 0  # raw records consumed by this instance
        self.fenced = 0  # outputs skipped because a previous owner had written them
        self._src_topic_header = (H_SRC_TOPIC, self.raw_topic.encode())
        # rate limits, quotas, provider breaker (processors/limiting.py); None when there are none
        catalog_n = sum(1 for e in catalog.values() if e["provider_id"] == self.provider_id)
        self.limiting = limiting.Limiting(
            client_config, product_id, self.provider_id, self.raw_topic, self._n_partitions(self.raw_topic),
            entry.get("event_time_field"), limiting.ingress_terms(
                read_table(client_config, topics.CONTROL_PARTICIPANTS).get(self.provider_id), catalog_n),
            self.producer, self.fence_reader)
        self._limits: limiting.Limiting | None = None
        # operator rules -> cm.alerts, in the same pass as the contracts (processors/alert_stage.py)
        self.alerts = AlertStage(client_config, product_id, self.schema, self.raw_topic,
                                 entry.get("event_time_field"), self._produce)
        self.apply_contract_changes(self.feed.sync(), {})
        self.consumer.subscribe([self.raw_topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    # ---- contracts ----------------------------------------------------------------------

    def _n_partitions(self, topic: str) -> int:
        if topic not in self._partitions:
            md = self.producer.list_topics(topic, timeout=10).topics[topic]
            if md.error is not None:
                raise SystemExit(f"topic {topic} does not exist; apply the topology first")
            self._partitions[topic] = len(md.partitions)
        return self._partitions[topic]

    def _compile(self, c: dict) -> ActivePlan:
        plan = policy_enforcer.plan_for(c, self.product_entry, self.master_secret)
        topic = topics.delivery(c["contract_id"])
        return ActivePlan(c, plan, topic, self._n_partitions(topic))

    def apply_contract_changes(self, changes: list, from_offsets: dict[int, int]) -> list[dict]:
        """Take contract changes into effect now (a batch boundary); returns compliance events."""
        events = []
        now = int(time.time() * 1000)
        for c, old in changes:
            cid = c["contract_id"]
            if c["state"] == "ACTIVE":
                try:
                    self.plans[cid] = self._compile(c)
                except policy_enforcer.PolicyError as exc:  # applied contracts are validated; be safe anyway
                    log.error("contract %s v%s does not compile, not enforced: %s", cid, c["version"], exc)
                    self.plans.pop(cid, None)
            else:
                self.plans.pop(cid, None)
            events.append(evidence.contract_change_event(now, self.product_id, self.provider_id, c,
                                                         old["state"] if old else None, self.raw_topic,
                                                         from_offsets))
            log.info("contract %s v%s %s -> %s from offsets %s", cid, c["version"], old and old["state"],
                     c["state"], from_offsets)
        metrics.ACTIVE_CONTRACTS.labels(self.product_id).set(len(self.plans))
        self.limiting.set_quotas(self.plans)
        self._limits = self.limiting if self.limiting.active else None
        return events

    # ---- partitions and recovery ---------------------------------------------------------

    def _on_assign(self, consumer, partitions) -> None:
        log.info("assigned partitions %s of %s", sorted(tp.partition for tp in partitions), self.raw_topic)
        for tp in partitions:
            self._recover.add(tp.partition)
            self._carry.pop(tp.partition, None)

    def _on_revoke(self, consumer, partitions) -> None:
        for tp in partitions:
            self._recover.discard(tp.partition)
            self._issued.pop(tp.partition, None)
            self.fences.pop(tp.partition, None)
            self.limiting.forget(tp.partition)
            self._carry.pop(tp.partition, None)

    def _committed(self, p: int) -> int:
        committed = self.consumer.committed([TopicPartition(self.raw_topic, p)], timeout=10)[0].offset
        if committed == OFFSET_INVALID or committed < 0:
            committed = self.consumer.get_watermark_offsets(TopicPartition(self.raw_topic, p), timeout=10)[0]
        return committed

    def recover(self, p: int) -> PartitionFence:
        """What a previous owner of partition p wrote beyond the committed offset."""
        committed = self._committed(p)
        if self._limits is not None:
            self._limits.recover(p, committed)
        self.alerts.recover(p, committed, self.fence_reader)
        fence = PartitionFence(committed)
        outputs = [(ap.topic, ap.position_of) for ap in self.plans.values()] + [
            (self.dlq_topic, clear_position(self.raw_topic))]
        pairs = [(topic, p % self._n_partitions(topic)) for topic, _ in outputs]
        cq = compliance_partition(self.product_id, p, self._n_partitions(topics.COMPLIANCE))
        with self.fence_reader.prefetched(pairs + [(topics.COMPLIANCE, cq)]):
            for (topic, q), (_, position_of) in zip(pairs, outputs):
                last = self.fence_reader.last_source_offset(topic, q, p, position_of)
                if last >= committed:
                    fence.outputs[topic] = last
            fence.batches, fence.event_ids = self.fence_reader.compliance_since(
                topics.COMPLIANCE, cq, self.raw_topic, p, committed)
        if fence.outputs or fence.batches:
            log.warning("partition %d: resuming at %d after a crash; already written: %s, batches %s",
                        p, committed, fence.outputs, [(f, la) for f, la, _ in fence.batches])
        return fence

    # ---- the batch loop ------------------------------------------------------------------

    def run(self, max_idle_s: float | None = None) -> None:
        idle_since = time.monotonic()
        while not self._stopping:
            if self.step() or not self.consumer.assignment():  # joining the group is not idleness
                idle_since = time.monotonic()
            elif max_idle_s is not None and time.monotonic() - idle_since > max_idle_s:
                break

    def _next_batch(self) -> list:
        """Whatever is queued, up to `batch_size`, as soon as there is anything.

        consume(n, timeout) returns only when it has n records or the timeout passed, so at
        a modest rate every record would wait out the whole timeout. Instead: take what the
        prefetch queue already holds; when it is empty, wait for the first record with
        poll() (which returns the moment one arrives) and then take what came with it. The
        batch grows with the load by itself: the longer a batch takes, the more is queued
        for the next one."""
        msgs = self.consumer.consume(self.batch_size, 0)
        if msgs:
            return msgs
        first = self.consumer.poll(self.poll_timeout_s)
        if first is None:
            return []
        return [first] + self.consumer.consume(self.batch_size - 1, 0)

    def step(self) -> int:
        """One batch: returns how many raw records it consumed."""
        msgs = self._next_batch()
        t0 = time.perf_counter()
        msgs = [m for m in msgs if not m.error()]
        if self._limits is not None and self._limits.paused:  # ingress back-pressure
            self._limits.resume_due(self.consumer)
            msgs = [m for m in msgs if m.partition() not in self._limits.paused]
        by_partition: dict[int, list] = {}
        for m in msgs:
            by_partition.setdefault(m.partition(), []).append(m)
        changes = self.feed.sync()
        events_out: list[tuple[int, dict, list]] = []
        if changes:
            from_offsets = {p: ms[0].offset() for p, ms in by_partition.items()}
            for tp in self.consumer.assignment():
                if tp.partition not in from_offsets:
                    pos = self.consumer.position([tp])[0].offset
                    from_offsets[tp.partition] = pos if pos >= 0 else 0
            for ev in self.apply_contract_changes(changes, from_offsets):
                events_out.append((0, ev, []))
        if not msgs:
            self._write_events(events_out)
            if events_out:
                self._flush()
            return 0
        now_ms = int(time.time() * 1000)
        commits = []
        lim = self._limits
        for p, pmsgs in by_partition.items():
            if p in self._recover:
                self.fences[p] = self.recover(p)
                self._recover.discard(p)
            if lim is not None and p not in lim.parts:  # limits switched on after the partition came
                lim.recover(p, self._committed(p))
            fence = self.fences.get(p)
            if p in self._carry:
                pmsgs = self._carry.pop(p) + pmsgs
            done = -1
            while fence is not None and fence.batches and pmsgs:
                # replay a partly written batch exactly as it was: same range, same processing time
                first, last, batch_now = fence.batches[0]
                if pmsgs[0].offset() > last:  # already behind us
                    fence.batches.pop(0)
                    continue
                if pmsgs[-1].offset() < last:  # not all of it consumed yet: wait for the rest
                    self._carry[p] = pmsgs
                    pmsgs = []
                    break
                start = next(i for i, m in enumerate(pmsgs) if m.offset() >= first)
                if start:  # records before it that no written event covers: new records
                    self._process(p, pmsgs[:start], now_ms, fence, events_out, ())
                cut = next(i for i, m in enumerate(pmsgs) if m.offset() >= last) + 1
                self._process(p, pmsgs[start:cut], batch_now, fence, events_out, fence.event_ids)
                done = pmsgs[cut - 1].offset()
                fence.batches.pop(0)
                pmsgs = pmsgs[cut:]
            if pmsgs and lim is not None and lim.holding:
                pmsgs = lim.hold(self.consumer, p, pmsgs, now_ms, events_out)
            if pmsgs:
                self._process(p, pmsgs, now_ms, fence, events_out, ())
                done = pmsgs[-1].offset()
            if done < 0:
                continue
            commits.append(TopicPartition(self.raw_topic, p, done + 1))
            if fence is not None and not fence.batches and all(o <= done for o in fence.outputs.values()):
                self.fences.pop(p, None)  # everything the old owner wrote is behind us now
        if lim is not None and commits:
            lim.persist(commits, now_ms)  # the state goes with the offsets (processors/limiting.py)
        self._write_events(events_out)
        self._flush()
        if commits:
            # The next batch need not wait for the commit's answer: a commit lost to a crash
            # only leaves one more written batch beyond the committed offset, which recovery
            # fences like any other (processors/fencing.py). Limiter state is matched to the
            # committed offset one batch at a time (processors/limiting.py): with limits, wait.
            self.consumer.commit(offsets=commits, asynchronous=lim is None)
            self._issued.update((tp.partition, tp.offset) for tp in commits)
        self.consumed += len(msgs)
        metrics.RECORDS_IN.labels(self.product_id).inc(len(msgs))
        metrics.BATCH_SECONDS.labels(self.product_id).observe(time.perf_counter() - t0)
        return len(msgs)

    def _process(self, p: int, msgs: list, now_ms: int, fence: PartitionFence | None, events_out: list,
                 already_emitted) -> None:
        """Enforce one partition's slice of a batch; compliance events already written before
        a crash (`already_emitted` ids) are not queued again."""
        first, last = msgs[0].offset(), msgs[-1].offset()
        src_p = (H_SRC_PARTITION, str(p).encode())
        batch_headers = [self._src_topic_header, src_p, (H_BATCH_FIRST, str(first).encode()),
                         (H_BATCH_LAST, str(last).encode()), (H_BATCH_NOW, str(now_ms).encode())]
        # limits (processors/limiting.py): ingress drop and the provider breaker take a suffix of
        # the slice off to the dead-letter topic before admission
        part = self._limits.parts.get(p) if self._limits is not None else None
        screened, limit_events = (), []
        if part is not None:
            msgs, screened = self._limits.screen(p, part, msgs, now_ms, first, last, limit_events)
        good, bad = self.admission.admit(msgs)
        if part is not None:
            self._limits.after_admission(p, part, now_ms, len(good), len(bad), first, last, limit_events)
        self.alerts.evaluate(p, good, now_ms, batch_headers)
        produce = self._produce
        fenced = 0
        # dead letters, with the reason
        if bad:
            dlq_q = p % self._n_partitions(self.dlq_topic)
            for r in bad:
                if fence is not None and fence.written(self.dlq_topic, r.offset):
                    fenced += 1
                else:
                    headers = [(k, v) for k, v in (r.msg.headers() or [])] + [
                        (H_RULE, r.rule.encode()), (H_REASON, r.reason.encode()), self._src_topic_header, src_p,
                        (H_SRC_OFFSET, str(r.offset).encode())]
                    produce(self.dlq_topic, r.msg.value(), r.msg.key(), dlq_q, headers)
                trace = r.headers.get(envelope.H_TRACE)
                ev = evidence.reject_event(
                    now_ms, self.product_id, self.provider_id, self.raw_topic, p, r.offset, r.rule, r.reason,
                    envelope.trace_id_of(trace) if trace else None,
                    (r.headers.get(envelope.H_PARTICIPANT) or b"").decode("utf-8", "replace"))
                if ev["event_id"] not in already_emitted:
                    events_out.append((p, ev, batch_headers))
                metrics.REJECTED.labels(self.product_id, r.rule).inc()
        if screened:  # after the rejects: their offsets are higher, the fence needs source order
            dlq_q = p % self._n_partitions(self.dlq_topic)
            for m, rule, reason in screened:
                if fence is not None and fence.written(self.dlq_topic, m.offset()):
                    fenced += 1
                    continue
                headers = list(m.headers() or []) + [
                    (H_RULE, rule.encode()), (H_REASON, reason.encode()), self._src_topic_header, src_p,
                    (H_SRC_OFFSET, b"%d" % m.offset())]
                produce(self.dlq_topic, m.value(), m.key(), dlq_q, headers)
        # every active contract on the admitted records. Hot path: each plan decides and
        # encodes in one pass and hands over whole Kafka records (Plan.deliver: payload, key,
        # headers, timestamp), reusing the source bytes when it changes nothing; what the
        # plans share (decoded records, provenance plaintext) is built once (SourceBatch).
        offsets = [g.offset for g in good]
        batch = policy_enforcer.SourceBatch(
            p, [g.record for g in good], [g.msg.value() for g in good] if self.plans else [], offsets,
            [g.headers.get(envelope.H_TRACE) for g in good] if self.plans else [])
        raw_produce = self.producer.produce
        for ap in self.plans.values():
            result = ap.plan.deliver(batch, now_ms)
            quota = (self._limits.quota(p, part, ap.contract_id, now_ms, result.records, batch.records, first,
                                        last, limit_events) if part is not None and part.quotas else None)
            digest = evidence.BatchDigest()
            add = digest.add
            q = p % ap.partitions
            topic = ap.topic
            written_to = fence.outputs.get(topic, -1) if fence is not None else -1
            for payload, offset, key, hdrs, ts in zip(result.records, offsets, result.keys, result.headers,
                                                      result.timestamps):
                if payload is None:
                    continue
                add(offset, payload)
                if offset <= written_to:
                    fenced += 1
                    continue
                try:
                    raw_produce(topic, payload, key, q, headers=hdrs, timestamp=ts)
                except BufferError:
                    produce(topic, payload, key, q, hdrs, ts)
            counts = dict(result.counts)
            if quota and "drop:quota" in quota:
                counts["drop:quota"] = quota["drop:quota"]
                counts[policy_enforcer.DELIVER] -= quota["drop:quota"]
                if not counts[policy_enforcer.DELIVER]:
                    del counts[policy_enforcer.DELIVER]
            if counts:
                ev = evidence.batch_event(
                    now_ms, self.product_id, self.provider_id, ap.contract_id, ap.contract["version"],
                    ap.contract["consumer_id"], self.raw_topic, p, first, last, counts, digest.hexdigest(), None)
                if ev["event_id"] not in already_emitted:
                    events_out.append((p, ev, batch_headers))
            for key, n in counts.items():
                decision, _, rule = key.partition(":")
                metrics.DECISIONS.labels(self.product_id, ap.contract_id, decision, rule).inc(n)
        for ev in limit_events:
            if ev["event_id"] not in already_emitted:
                events_out.append((p, ev, batch_headers))
        if fenced:
            self.fenced += fenced
            metrics.FENCED.labels(self.product_id).inc(fenced)
            if fence is not None:
                log.info("partition %d: %d output(s) already written before the restart, skipped", p, fenced)

    def _write_events(self, events_out: list) -> None:
        schema = schemas.load("ComplianceEvent")
        n = self._n_partitions(topics.COMPLIANCE)
        for p, ev, batch_headers in events_out:
            q = compliance_partition(self.product_id, p, n) if batch_headers else None
            headers = batch_headers + [(H_EVENT_ID, ev["event_id"].encode())]
            self._produce(topics.COMPLIANCE, schema.encode(ev), f"{self.product_id}:{p}".encode(), q, headers)

    def _produce(self, topic: str, value, key, partition, headers, timestamp: int = 0) -> None:
        while True:
            try:
                if partition is None:
                    self.producer.produce(topic, value, key, headers=headers, timestamp=timestamp)
                else:
                    self.producer.produce(topic, value, key, partition, headers=headers, timestamp=timestamp)
                return
            except BufferError:
                self.producer.poll(0.05)

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self._failed.append((msg.topic(), err))

    def _flush(self) -> None:
        left = self.producer.flush(60)
        if left or self._failed:
            # never commit a batch that is not fully written: crash and let the restart replay it
            raise DeliveryFailed(f"{left} unacknowledged, failures: {self._failed[:3]}")

    def update_lag(self) -> None:
        for tp in self.consumer.assignment():
            pos = self.consumer.position([tp])[0].offset
            _, hi = self.consumer.get_watermark_offsets(tp, cached=True) or (0, 0)
            if pos >= 0 and hi >= 0:
                metrics.LAG.labels(self.product_id, str(tp.partition)).set(max(0, hi - pos))

    def stop(self, *_args) -> None:
        self._stopping = True

    def close(self) -> None:
        if self._issued:  # make sure the last commits landed (they were sent without waiting)
            try:
                self.consumer.commit(offsets=[TopicPartition(self.raw_topic, p, o) for p, o in self._issued.items()],
                                     asynchronous=False)
            except KafkaException as exc:  # a replay after the restart is fenced
                log.warning("final commit failed: %s", exc)
        self.consumer.close()
        self.feed.close()
        self.alerts.close()
        self.fence_reader.close()
        self.producer.flush(30)


# Broker trouble a runner outlives (issue 7: the mesh keeps working when the broker restarts):
# a client call that fails or times out (KafkaException, ContractFeed.sync's TimeoutError) or a
# batch the broker did not acknowledge (DeliveryFailed).
BROKER_TROUBLE = (KafkaException, TimeoutError, DeliveryFailed)


def _abandon(runner: Runner) -> None:
    """Drop a runner after broker trouble without waiting on the broker. Its batch in progress was
    not committed, so the next runner replays it and fences off whatever of it did get written;
    what is still queued here is purged, so it cannot land after that runner read its fences."""
    try:
        runner.producer.purge()
        runner.producer.flush(0)
    except Exception:  # noqa: BLE001 - best effort: the broker is what failed
        pass
    for part in (runner.consumer, runner.feed, runner.alerts, runner.fence_reader):
        try:
            part.close()
        except Exception:  # noqa: BLE001
            pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m processors.runner", description=__doc__.split("\n")[0])
    ap.add_argument("--product", required=True)
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--metrics-port", type=int, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings: Settings = get_settings()
    port = metrics.serve(args.metrics_port if args.metrics_port is not None else settings.metrics_port)

    def build() -> Runner:
        return Runner(args.product, settings.client_config(), settings.keyring_dir, args.batch_size,
                      session_timeout_ms=settings.session_timeout_ms)

    runner: Runner | None = build()  # at start, a product or topic that is not there fails fast (SystemExit)
    # What start-up built (modules, schemas, compiled plans, polygon indexes) lives as long as the
    # process: out of the collector's way, a full collection no longer walks it (measured: gen-2
    # pauses of 20-34 ms every ~10 s at 10k records/s, each one a latency spike)
    gc.freeze()
    log.info("enforcing %s (%d active contracts); metrics on :%d", args.product, len(runner.plans), port)
    stopping = False

    def _stop(*_a) -> None:
        nonlocal stopping
        stopping = True
        if runner is not None:
            runner.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    last_lag = 0.0
    try:
        while runner is not None:
            try:
                while not (runner._stopping or stopping):
                    runner.step()
                    if time.monotonic() - last_lag > 5:
                        runner.update_lag()
                        log.info("progress: %d records consumed, %d outputs fenced", runner.consumed, runner.fenced)
                        last_lag = time.monotonic()
                return 0
            except BROKER_TROUBLE as exc:
                # Start over in-process exactly as a restarted runner would (fresh clients, rejoin
                # the group, resume from the committed offsets behind the fences) instead of
                # exiting and leaving the product unenforced until someone restarts the process.
                # A broker that lost its state (the embedded one keeps it in memory) has no
                # catalog until the operator re-applies the topology, so "not in the catalog"
                # (SystemExit from Runner()) is waited out here too.
                log.warning("broker trouble, starting over from the committed offsets: %s", exc)
                _abandon(runner)
                runner, backoff = None, 1.0
                while runner is None and not stopping:
                    try:
                        runner = build()
                        log.info("enforcing %s again (%d active contracts)", args.product, len(runner.plans))
                    except (*BROKER_TROUBLE, SystemExit) as retry:
                        log.warning("cannot start over yet, retrying in %.0f s: %s", backoff, retry)
                        time.sleep(backoff)
                        backoff = min(backoff * 2, 5.0)
        return 0
    finally:
        if runner is not None:
            runner.close()


if __name__ == "__main__":
    raise SystemExit(main())
