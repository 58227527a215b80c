"""The enforcement runner: one per data product, the mesh's data plane.

A batch loop on confluent-kafka: consume up to `batch_size` raw records, bring contracts up
to date (at the batch boundary), admit the records, evaluate every ACTIVE contract's
compiled plan on the batch, write what each contract grants to its delivery topic and
what was rejected to the dead-letter topic, emit the batch's compliance events, wait for
the broker's acknowledgements, then commit the source offsets (without waiting for the
commit's answer: see step()). Each partition's slice of a batch passes through a chain of
stages, one file each in processors/stages/ (admission → replay → ingress → rules →
contracts → seal → sinks). More instances in the same consumer group share the product's partitions;
more groups share its contracts (processors/sharding.py).

Exactly-once: see processors/fencing.py. Decisions are a function of the record, the
contract version and the batch's processing time; a restarted runner fences off what a
crashed one already wrote, so each delivery topic holds each permitted record once, in
source order per partition, whatever moment the crash came at. Where the broker honours
transactions (Apache Kafka) each batch is also one transaction with its offsets, so a
zombie (a runner expelled from its group but still running) is fenced by the broker:
processors/transactions.py.

    python -m processors.runner --product uav-telemetry
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import signal
import sys
import time
import uuid
from typing import NoReturn

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

import schemas
from schemas.errors import CitymeshError
from streams import keyring, topics
from streams.admin import max_message_bytes
from streams.control import read_table
from streams.offsets import fetched_high, take
from streams.settings import Settings, get_settings, group_session

from . import evidence, limiting, metrics, status
from .contract_feed import ContractFeed
from .fencing import (H_BATCH_FIRST, H_BATCH_LAST, H_BATCH_NOW, H_EVENT_ID, H_RUNNER_GROUP, H_SRC_PARTITION,
                      H_SRC_TOPIC, ComplianceFloors, FenceReader, PartitionFence, clear_position, compliance_partition)
from .partition_state import PartitionStates
from .quarantine import HOLD_AFTER, REFUSALS, RULE_HELD, Hold, Holds, Refusal
from .sharding import RunnerGroup, RunnerGroupError
from .stages import DeadLetter, PartitionSlice, Stage
from .stages.admission import DEFAULT_MAX_BYTES, Admission
from .stages.contracts import RULE_UNWRITABLE, ActivePlan, Contracts
from .stages.ingress import Ingress
from .stages.replay import Replay
from .stages.rules import Rules, RulesFeed
from .stages.seal import Seal
from .stages.sinks import Sinks
from .transactions import (ClientWedged, TransactionAborted, Transactions, flushed, producer_config,
                           transactional_id, wanted)

log = logging.getLogger("citymesh.runner")


@contextlib.contextmanager
def collector_paused():
    """No cyclic garbage collection inside the block (unless it was off already); at its end,
    the collection that became due meanwhile, if any.

    Why: a batch allocates tens of container objects per record and contract (the consumed
    messages, header dicts, records, header lists), and the collector runs every 700 of them,
    each run walking every container still alive: the batch's own, which reference counting
    frees as soon as the batch returns. Measured (bench/RESULTS.md, "The cyclic collector
    paused for each batch"): 7-13 % of an in-process runner's time, 1,400 (one contract) to
    3,200 (five) collections per 60k records. A batch makes no reference cycles (none found
    after 60k records); one that did is collected at the block's end, when it is due."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        _collect_if_due()


def _collect_if_due() -> None:
    """The collection the collector would have started at the next container's allocation: of
    the oldest generation past its threshold, once the youngest is (CPython's rule, less its
    check that a full collection has enough new long-lived objects to be worth it)."""
    counts, thresholds = gc.get_count(), gc.get_threshold()
    if thresholds[0] and counts[0] > thresholds[0]:
        gc.collect(next(g for g in (2, 1, 0) if counts[g] > thresholds[g]))


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
RULE_POISON = "quarantine:poison"
# A batch holds at most this many outputs (records x contracts): each delivery is a payload and
# a list of headers held until the batch is flushed, so with 50 contracts a 5,000-record batch
# held 250,000 of them (issue 14: peak RSS 626 MB). 25,000 is the default batch at 5 contracts.
OUTPUTS_PER_BATCH = 25_000


def batch_limit(batch_size: int, contracts: int) -> int:
    """How many raw records a batch takes with this many contracts (`batch_size` at most, and
    not fewer than 100 unless `batch_size` asks for fewer)."""
    return min(batch_size, max(100, OUTPUTS_PER_BATCH // max(1, contracts)))


class DeliveryFailed(CitymeshError, RuntimeError):
    """The broker did not acknowledge an output; the batch is not committed and will be replayed."""


class GroupJoinStuck(CitymeshError, TimeoutError):
    """The consumer was given no partitions (not even none) long after it joined its group: a
    join that will not finish (CI, after a broker failover: never assigned in 1.5-2 min). Broker
    trouble: main starts over with a new consumer."""


def join_deadline_s(session_timeout_ms: int) -> float:
    """How long a member may wait for its first assignment: a join waits for the group's other
    members to rejoin, or for a dead one's session to end (a few seconds); far longer is stuck."""
    return max(30.0, 5 * session_timeout_ms / 1000)


class Runner:
    """Enforces one product: consumes its raw topic and passes every partition's slice of a
    batch through the chain of stages (processors/stages/)."""

    def __init__(self, product_id: str, client_config: dict, keys_dir, batch_size: int = 5000,
                 max_record_bytes: int = DEFAULT_MAX_BYTES, session_timeout_ms: int = 6000,
                 group_id: str | None = None, poll_timeout_s: float = 0.1, transactions: str = "off",
                 instance: str | None = None, holds: Holds | None = None,
                 runner_group: RunnerGroup = RunnerGroup(), join_deadline: float | None = None):
        self.product_id = product_id
        self.runner_group = runner_group
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        catalog = read_table(client_config, topics.CONTROL_CATALOG)
        entry = catalog.get(product_id)
        if entry is None:
            raise SystemExit(f"product {product_id!r} is not in the catalog; apply the topology first")
        provider = entry["provider_id"]
        schema = schemas.load(entry["schema_name"])
        self.raw_topic = entry["raw_topic"]
        # one delivery callback for every record this producer writes (outputs, dead letters,
        # compliance events, partition state): a failure anywhere fails the batch (_flush), and
        # a producer-wide callback costs less per record than one passed to each produce()
        dlq = topics.dead_letter(provider, product_id)
        # the largest record the broker takes, so nothing is ever written that it refuses
        # (stages/contracts.py and stages/sinks.py keep every output within it)
        max_bytes = max_message_bytes(AdminClient(client_config), dlq)
        group_id = group_id or runner_group.consumer_group(product_id)
        self.consumer = Consumer({
            **client_config, "group.id": group_id,
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            **group_session(session_timeout_ms), "enable.partition.eof": False,
            # a broker answers a connection's requests in order: a commit waits behind a
            # long-poll fetch for up to fetch.wait.max.ms
            "fetch.wait.max.ms": FETCH_WAIT_MS,
            # (librdkafka's default, said here because it matters: the committed offsets it
            # fetches are stable ones, never those of a transaction still open)
            "isolation.level": "read_committed",
        })
        # joining the group takes a second or more (a restart waits for the killed member's
        # session, bench/RESULTS.md "A restart within 5 s"): librdkafka joins in the
        # background while the rest is set up; the callbacks run only in step()'s poll
        self.consumer.subscribe([self.raw_topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        self.group_id = group_id
        self._assigned = False  # (set by the first assignment, even of no partitions)
        self._join_by = time.monotonic() + (join_deadline if join_deadline is not None
                                            else join_deadline_s(session_timeout_ms))
        tid = transactional_id(group_id, instance)
        in_transactions = wanted(transactions, client_config, tid, topics.partition_state(provider, product_id))
        self.producer = Producer({**client_config, **PRODUCER_CONFIG, "message.max.bytes": max(max_bytes, 1_000_000),
                                  "on_delivery": self._on_delivery,
                                  **(producer_config(tid) if in_transactions else {})})
        # the write path with transactions (None: flush, then commit the offsets)
        self.txn = Transactions(self.producer, self.consumer, product_id, tid) if in_transactions else None
        self.feed = ContractFeed(client_config, product_id, runner_group.owns)
        self.fence_reader = FenceReader(client_config)
        self._partitions = {name: len(t.partitions) for name, t in self.producer.list_topics(timeout=10).topics.items()}
        self.states = PartitionStates(product_id, provider, self.producer, self.fence_reader,
                                      lambda p: runner_group.state_key(product_id, p))
        self.floors = ComplianceFloors(self.fence_reader._admin, topics.COMPLIANCE)
        # p -> the compliance floor p was recovered with: a partition still fenced writes no
        # newer one, since the previous owner's events of a batch it replays lie below that
        self._recovered_floor: dict[int, int | None] = {}
        # rate limits, quotas, provider breaker (processors/limiting.py): every group applies the
        # provider's limits and breaker to what its contracts get; the lead reports what they did
        participants = read_table(client_config, topics.CONTROL_PARTICIPANTS)
        lead = runner_group.lead
        self.limiting = limiting.Limiting(
            product_id, provider, self.raw_topic, self._n_partitions(self.raw_topic), entry.get("event_time_field"),
            limiting.ingress_terms(participants.get(provider),
                                   sum(1 for e in catalog.values() if e["provider_id"] == provider)), reports=lead)
        self.contracts = Contracts(entry, keyring.mesh_secret(keys_dir), self.limiting, self._n_partitions, max_bytes)
        self.sinks = Sinks(product_id, provider, self.raw_topic, dlq, self.producer, self._produce, self._n_partitions,
                           max_bytes, product_wide=lead)
        # operator rules -> cm.alerts, in the same pass as the contracts (the lead group's)
        self.alerts = Rules(product_id, schema, self.raw_topic, entry.get("event_time_field"), self.fence_reader,
                            self._n_partitions(topics.ALERTS), RulesFeed(client_config, product_id)) if lead else None
        # the chain a partition's slice of a batch goes through (processors/stages/__init__.py)
        self.replay = Replay(product_id, entry.get("event_time_window_ms"))
        # (the stages that decide, then the one that writes)
        self.chain: list[Stage] = [stage for stage in (
            Admission(product_id, provider, schema, keyring.load(keys_dir, provider), max_record_bytes),
            self.replay,
            Ingress(self.limiting),
            self.alerts,
            self.contracts,
            Seal(_operator_signer(keys_dir, participants)),
            self.sinks,
        ) if stage is not None]
        self.decide = self.chain[:-1]
        self.quarantined: list[dict] = []  # records set aside as poison by this instance (for `status`)
        # what keeps per-partition state (snapshot/restore), persisted with the offsets
        self.stateful = [obj for obj in (self.limiting, self.replay, self.alerts) if obj is not None]
        self.fences: dict[int, PartitionFence] = {}
        self._recover: set[int] = set()
        self._carry: dict[int, list] = {}
        self._failed: list = []
        # partitions the broker keeps refusing, kept by main across start-overs (processors/quarantine.py)
        self.holds = holds if holds is not None else Holds()
        self.holds.new_consumer()
        self._refused: list[tuple[str, int, str]] = []  # (topic, partition, why) of outputs the broker refused
        self._batch_range: dict[int, tuple[int, int]] = {}  # partition -> its offsets in the batch in progress
        self._issued: dict[int, int] = {}  # partition -> the last offset a commit was sent for
        self._stopping = False
        self.consumed = 0  # raw records consumed by this instance
        self.contracts.apply(self.feed.sync(), {})

    @property
    def plans(self) -> dict[str, ActivePlan]:
        return self.contracts.plans

    @property
    def fenced(self) -> int:
        """Outputs skipped because a previous owner of their partition had written them."""
        return self.sinks.fenced

    def _n_partitions(self, topic: str) -> int:
        if topic not in self._partitions:
            md = self.producer.list_topics(topic, timeout=10).topics[topic]
            if md.error is not None:
                raise SystemExit(f"topic {topic} does not exist; apply the topology first")
            self._partitions[topic] = len(md.partitions)
        return self._partitions[topic]

    # ---- partitions and recovery ---------------------------------------------------------

    def _on_assign(self, consumer, partitions) -> None:
        log.info("assigned partitions %s of %s", sorted(tp.partition for tp in partitions), self.raw_topic)
        self._assigned = True
        self.holds.assigned({tp.partition for tp in partitions})
        for tp in partitions:
            self._recover.add(tp.partition)
            self._carry.pop(tp.partition, None)

    def _on_revoke(self, consumer, partitions) -> None:
        for tp in partitions:
            p = tp.partition
            self._recover.discard(p)
            self._issued.pop(p, None)
            self.fences.pop(p, None)
            self._recovered_floor.pop(p, None)
            self._carry.pop(p, None)
            self.limiting.forget(p)
            self.states.forget(p)
            self.holds.forget(p)
            for stage in self.chain:
                stage.revoke(p)

    def _committed(self, p: int) -> int | None:
        """p's committed offset in this runner's group; None when the group has committed none."""
        committed = self.consumer.committed([TopicPartition(self.raw_topic, p)], timeout=10)[0].offset
        return None if committed == OFFSET_INVALID or committed < 0 else committed

    def recover(self, p: int, resumed_at: int) -> PartitionFence:
        """Restore partition p's state as of the offset consumption resumed from and find what
        was written beyond it.

        `resumed_at`: the offset of p's first record since it was assigned. It is the committed
        offset as the consumer fetched it at the assignment, which can be older than the one
        the group holds when it is read here: an asynchronous commit of this runner's that was
        still under way when the partitions were revoked lands in between. The records from
        there on were processed and written already, so the fence starts at the lower of the two."""
        started = time.monotonic()
        committed = self._committed(p)
        if committed is None:  # the group has committed nothing: it resumed at the topic's start
            committed = resumed_at
        elif resumed_at < committed:
            log.warning("partition %d: resumed at %d, below the committed offset %d (a commit landed after the "
                        "assignment): fenced from %d", p, resumed_at, committed, resumed_at)
            committed = resumed_at
        states, floor = self.states.recover(p, committed)
        self._recovered_floor[p] = floor
        for obj in self.stateful:
            obj.restore(p, states.get(obj.name, {}))
        for stage in self.chain:
            stage.assign(p, committed)
        fence = PartitionFence(committed)
        reader, dlq = self.fence_reader, self.sinks.dlq_topic
        deliveries = [(ap.topic, p % ap.partitions, ap.position_of) for ap in self.plans.values()]
        dlq_q = p % self._n_partitions(dlq) if self.runner_group.lead else None  # (dead letters: the lead's)
        cq = self._compliance_of(p)
        with reader.prefetched([(t, q) for t, q, _ in deliveries] + [(topics.COMPLIANCE, cq)]
                               + ([(dlq, dlq_q)] if dlq_q is not None else [])):
            for topic, q, position_of in deliveries:
                last, sealed = reader.delivery_tail(topic, q, p, position_of, committed)
                if last >= committed:
                    fence.outputs[topic] = last
                fence.sealed[topic] = sealed
            if dlq_q is not None:
                last = reader.last_source_offset(dlq, dlq_q, p, clear_position(self.raw_topic))
                if last >= committed:
                    fence.outputs[dlq] = last
            fence.batches, fence.event_ids = self.fence_reader.compliance_since(
                topics.COMPLIANCE, cq, self.raw_topic, p, committed, floor, self.runner_group.marker)
        if fence.outputs or fence.batches:
            log.warning("partition %d: resuming at %d after a crash; already written: %s, batches %s",
                        p, committed, fence.outputs, [(f, la) for f, la, _ in fence.batches])
        log.info("partition %d: recovered at offset %d in %.2f s (compliance floor %s of partition %d)", p, committed,
                 time.monotonic() - started, floor, cq)
        return fence

    # ---- the batch loop ------------------------------------------------------------------

    def run(self, max_idle_s: float | None = None) -> None:
        idle_since = time.monotonic()
        while not self._stopping:
            if self.step() or not self.consumer.assignment():  # joining the group is not idleness
                idle_since = time.monotonic()
            elif max_idle_s is not None and time.monotonic() - idle_since > max_idle_s:
                break

    def step(self) -> int:
        """One batch: returns how many raw records it consumed."""
        with collector_paused():
            return self._step()

    def _step(self) -> int:
        # as soon as anything is in, up to `batch_size` (fewer with many contracts: OUTPUTS_PER_BATCH)
        msgs = take(self.consumer, batch_limit(self.batch_size, len(self.contracts.plans)), self.poll_timeout_s)
        if not self._assigned and time.monotonic() > self._join_by:
            raise GroupJoinStuck(f"no partitions of {self.raw_topic} from group {self.group_id} (member "
                                 f"{self.consumer.memberid()}) since it joined")
        t0 = time.perf_counter()
        self._refresh_floors()
        msgs = [m for m in msgs if not m.error()]
        if self.holds.active:
            msgs = self.holds.filter(self.consumer, self.raw_topic, msgs)
        lim = self.limiting
        if lim.paused:  # ingress back-pressure
            lim.resume_due(self.consumer)
            msgs = [m for m in msgs if m.partition() not in lim.paused]
        by_partition: dict[int, list] = {}
        for m in msgs:
            by_partition.setdefault(m.partition(), []).append(m)
        changes = self.feed.sync()
        events_out: list[tuple[int, evidence.ComplianceEvent, list]] = []
        if changes:
            from_offsets = {p: ms[0].offset() for p, ms in by_partition.items()}
            for tp in self.consumer.assignment():
                if tp.partition not in from_offsets:
                    pos = self.consumer.position([tp])[0].offset
                    from_offsets[tp.partition] = pos if pos >= 0 else 0
            for ev in self.contracts.apply(changes, from_offsets):
                events_out.append((0, ev, []))
        if not msgs:
            if events_out:
                self._begin()
                self._write_events(events_out)
                self._commit([])
            return 0
        now_ms = int(time.time() * 1000)
        commits = []
        self._begin()
        self._batch_range = {}
        fenced = set()  # partitions that began this batch fenced: their state keeps the recovered floor
        for p, pmsgs in by_partition.items():
            if p in self._recover:
                self.fences[p] = self.recover(p, pmsgs[0].offset())
                self._recover.discard(p)
            if lim.active and p not in lim.parts:  # limits switched on after the partition came
                lim.restore(p, self.states.last(p).get(lim.name, {}))
            fence = self.fences.get(p)
            if fence is not None:
                fenced.add(p)
            if p in self._carry:
                pmsgs = self._carry.pop(p) + pmsgs
            self._batch_range[p] = (pmsgs[0].offset(), pmsgs[-1].offset())
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
            if pmsgs and lim.holding:
                pmsgs = lim.hold(self.consumer, p, pmsgs, now_ms, events_out)
            if pmsgs:
                self._process(p, pmsgs, now_ms, fence, events_out, ())
                done = pmsgs[-1].offset()
            if done < 0:
                continue
            commits.append(TopicPartition(self.raw_topic, p, done + 1))
            if fence is not None and not fence.batches and all(o <= done for o in fence.outputs.values()):
                self.fences.pop(p, None)  # everything the old owner wrote is behind us now
        for tp in commits:  # the state goes with the offsets (processors/partition_state.py)
            states = {obj.name: snap for obj in self.stateful if (snap := obj.snapshot(tp.partition)) is not None}
            if states or tp.partition in self.states.saved:
                floor = (self._recovered_floor.get(tp.partition) if tp.partition in fenced else
                         self.floors.known.get(self._compliance_of(tp.partition)))
                self.states.persist(tp.partition, tp.offset, states, now_ms, floor)
        self._write_events(events_out)
        self._commit(commits)
        self.consumed += len(msgs)
        metrics.RECORDS_IN.labels(self.product_id).inc(len(msgs))
        metrics.BATCH_SECONDS.labels(self.product_id).observe(time.perf_counter() - t0)
        return len(msgs)

    def _compliance_of(self, p: int) -> int:
        return compliance_partition(self.product_id, p, self._n_partitions(topics.COMPLIANCE))

    def _refresh_floors(self) -> None:
        """Keep the compliance floors fresh; an idle partition's state is written again with
        the newer floor once a second (processors/partition_state.py), so a restart's search
        of the shared compliance topic does not grow with what other products write there."""
        mine = [tp.partition for tp in self.consumer.assignment()]
        if not self.floors.refresh({self._compliance_of(p) for p in mine}) or self.txn is not None:
            return
        now, now_ms = time.monotonic(), int(time.time() * 1000)
        for p in mine:
            floor = self.floors.known.get(self._compliance_of(p))
            if (floor is not None and p in self.states.saved and p not in self.fences and p not in self._recover
                    and now - self.states.written_at.get(p, 0.0) >= ComplianceFloors.INTERVAL_S):
                self.states.refresh(p, floor, now_ms)

    def _begin(self) -> None:
        """Before a batch's first output: with transactions, the batch's transaction begins."""
        if self.txn is not None:
            self.txn.begin()

    def _commit(self, commits: list) -> None:
        """The batch's end: its outputs acknowledged, then its offsets committed."""
        if self.txn is not None:
            # outputs and offsets in one transaction. Offsets go even with none to commit (the
            # ones already committed), so that every transaction is one the group coordinator
            # accepts only from a current member: a zombie commits nothing, not even events
            self.txn.commit(commits or [TopicPartition(self.raw_topic, p, o) for p, o in self._issued.items()])
            self._committed_to(commits)
            return
        self._flush()
        if commits:
            # The next batch need not wait for the commit's answer: a commit lost to a crash
            # only leaves one more written batch beyond the committed offset, which recovery
            # fences like any other (processors/fencing.py), and whose partition state
            # recovery passes over to the state of the committed offset.
            self.consumer.commit(offsets=commits, asynchronous=True)
            self._committed_to(commits)

    def _committed_to(self, commits: list) -> None:
        self._issued.update((tp.partition, tp.offset) for tp in commits)
        if self.holds.strikes:
            for tp in commits:
                self.holds.progressed(tp.partition, tp.offset)

    def _slice(self, p: int, msgs: list, now_ms: int, fence: PartitionFence | None, emitted) -> PartitionSlice:
        marker = self.runner_group.marker  # (recovery finds its own group's batches by it)
        return PartitionSlice(p, msgs, now_ms, fence, emitted, [
            (H_SRC_TOPIC, self.raw_topic.encode()), (H_SRC_PARTITION, str(p).encode()),
            (H_BATCH_FIRST, str(msgs[0].offset()).encode()), (H_BATCH_LAST, str(msgs[-1].offset()).encode()),
            (H_BATCH_NOW, str(now_ms).encode()), *([(H_RUNNER_GROUP, marker)] if marker else [])])

    def _process(self, p: int, msgs: list, now_ms: int, fence: PartitionFence | None, events_out: list,
                 already_emitted) -> None:
        """One partition's slice of a batch through the chain; compliance events already
        written before a crash (`already_emitted` ids) are not queued again.

        A record no stage can take (a stage raises on it: a bug, or input nobody foresaw) must
        not stall its partition: the stages that decide run again record by record from the
        state the slice started with, and the record that still raises is quarantined to the
        dead-letter topic with an event and an alert (deterministically: a replay after a
        crash quarantines it again, with the same ids). Broker trouble is not the record's
        fault and goes up as it is."""
        s = self._slice(p, msgs, now_ms, fence, already_emitted)
        exc = self._decide(s)
        if exc is not None:
            log.error("partition %d: a stage failed on offsets %d..%d; going through them one by one", p,
                      msgs[0].offset(), msgs[-1].offset(), exc_info=exc)
            for m in msgs:
                self._process_alone(p, m, now_ms, fence, events_out, already_emitted)
            return
        self._write(s, events_out)

    def _decide(self, s: PartitionSlice) -> Exception | None:
        """Run the deciding stages over a slice; what a stage raised (broker trouble excepted, it
        goes up), with the stages' state of the partition put back as it was, or None."""
        before = self._snapshot(s.p)
        try:
            for stage in self.decide:
                stage.process(s)
        except BROKER_TROUBLE:
            raise
        except Exception as exc:  # noqa: BLE001 - see _process: a record no stage can take
            self._restore(s.p, before)
            return exc
        return None

    def _process_alone(self, p: int, m, now_ms: int, fence, events_out: list, already_emitted) -> None:
        s = self._slice(p, [m], now_ms, fence, already_emitted)
        exc = self._decide(s)
        if exc is not None:  # this record is the poison
            reason = f"{type(exc).__name__}: {exc}"[:500]
            log.error("partition %d: offset %d quarantined, no stage can take it: %s", p, m.offset(), reason)
            metrics.QUARANTINED_RECORDS.labels(self.product_id, RULE_POISON).inc()
            s = self._slice(p, [m], now_ms, fence, already_emitted)
            if not self.runner_group.lead:  # dead letters, their events and alerts are the lead group's
                self._write(s, events_out)
                return
            s.dead.append(DeadLetter(m, m.offset(), RULE_POISON, reason))
            s.events.append(evidence.quarantine_event(now_ms, self.product_id, self.limiting.provider,
                                                      self.raw_topic, p, m.offset(), RULE_POISON, reason))
            s.alerts.append((evidence.runner_alert(now_ms, self.product_id, RULE_POISON, "HIGH",
                                                   f"{self.product_id}:{p}",
                                                   f"record at offset {m.offset()} quarantined: {reason}",
                                                   self.raw_topic, p, m.offset()),
                             f"{self.product_id}:{p}".encode(), m.offset()))
        self._write(s, events_out)

    def _write(self, s: PartitionSlice, events_out: list) -> None:
        self.sinks.process(s)
        self.quarantined += [{"partition": s.p, "offset": d.offset, "rule": d.rule, "reason": d.reason}
                             for d in s.dead if d.rule in (RULE_POISON, RULE_UNWRITABLE)]
        events_out += [(s.p, ev, s.batch_headers) for ev in s.events if ev.event_id not in s.emitted]

    def _snapshot(self, p: int) -> dict:
        return {obj.name: obj.snapshot(p) for obj in self.stateful}

    def _restore(self, p: int, states: dict) -> None:
        for obj in self.stateful:
            obj.restore(p, states.get(obj.name) or {})

    def _write_events(self, events_out: list) -> None:
        schema = schemas.load("ComplianceEvent")
        n = self._n_partitions(topics.COMPLIANCE)
        for p, ev, batch_headers in events_out:
            q = compliance_partition(self.product_id, p, n) if batch_headers else None
            headers = batch_headers + [(H_EVENT_ID, ev.event_id.encode())]
            self._produce(topics.COMPLIANCE, schema.encode(ev.record()), f"{self.product_id}:{p}".encode(), q, headers)

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
            if err.code() in REFUSALS:
                self._refused.append((msg.topic(), msg.partition(), err.str()))

    def refused(self) -> dict[int, Refusal]:
        """The source partitions of the batch in progress whose outputs the broker refused, with
        their offsets in the batch: those that write to a refused output's topic partition
        (deliveries, dead letters, compliance events; alerts go by subject and are traced to no
        partition). Read by main after the batch failed."""
        try:
            self.producer.poll(0)  # delivery reports of the failed batch still queued
        except Exception:  # noqa: BLE001 - the producer's own failure is already on its way up; its reports are what is read here
            pass
        out: dict[int, Refusal] = {}
        by_source = {ap.topic: (lambda p, n=ap.partitions: p % n) for ap in self.plans.values()}
        by_source[self.sinks.dlq_topic] = lambda p: p % self._n_partitions(self.sinks.dlq_topic)
        by_source[topics.COMPLIANCE] = lambda p: compliance_partition(self.product_id, p,
                                                                      self._n_partitions(topics.COMPLIANCE))
        for topic, q, why in self._refused:
            to = by_source.get(topic)
            for p, (first, last) in self._batch_range.items():
                if to is not None and to(p) == q:
                    out.setdefault(p, Refusal(first, last, f"{topic}[{q}]: {why}"))
        return out

    def announce(self, hold: Hold) -> None:
        """A partition just held (processors/quarantine.py): its QUARANTINE compliance event
        and HIGH alert, written now."""
        p, now_ms = hold.partition, int(time.time() * 1000)
        why = (f"partition held at offset {hold.offset}: the broker refused its outputs {HOLD_AFTER} times "
               f"({hold.reason}); tried again every {self.holds.retry_s:.0f} s, nothing skipped")
        log.error("partition %d: %s", p, why)
        subject = f"{self.product_id}:{p}"
        alert = evidence.runner_alert(now_ms, self.product_id, RULE_HELD, "HIGH", subject, why, self.raw_topic, p,
                                      hold.offset)
        self._begin()
        self._write_events([(p, evidence.quarantine_event(now_ms, self.product_id, self.limiting.provider,
                                                          self.raw_topic, p, hold.offset, RULE_HELD, why), [])])
        self._produce(topics.ALERTS, schemas.load("Alert").encode(alert), subject.encode(), None,
                      [(H_EVENT_ID, alert["alert_id"].encode())])
        self._commit([])

    def _flush(self) -> None:
        left = flushed(self.producer, 60)
        if left or self._failed:
            # never commit a batch that is not fully written: crash and let the restart replay it
            raise DeliveryFailed(f"{left} unacknowledged, failures: {self._failed[:3]}")

    def update_lag(self) -> None:
        for tp in self.consumer.assignment():
            pos = self.consumer.position([tp])[0].offset
            hi = fetched_high(self.consumer, tp.topic, tp.partition)
            if pos >= 0 and hi >= 0:
                metrics.LAG.labels(self.product_id, str(tp.partition)).set(max(0, hi - pos))

    def stop(self, *_args) -> None:
        self._stopping = True

    def close(self) -> None:
        if self.txn is not None:  # every batch was committed with its transaction (or is aborted here)
            self.txn.abort()
        elif self._issued:  # make sure the last commits landed (they were sent without waiting)
            try:
                self.consumer.commit(offsets=[TopicPartition(self.raw_topic, p, o) for p, o in self._issued.items()],
                                     asynchronous=False)
            except KafkaException as exc:  # a replay after the restart is fenced
                log.warning("final commit failed: %s", exc)
        self.consumer.close()
        self.feed.close()
        for stage in self.chain:
            stage.close()
        self.fence_reader.close()
        self.producer.flush(30)
        self.producer.close()  # its threads and connections now, not when the object is collected


def _operator_signer(keys_dir, participants: dict):
    """(participant id, Ed25519 key) of the operator who signs the batch seals: CITYMESH_OPERATOR,
    else the one OPERATOR participant whose keyring is in the keys directory. None (tags
    without seals) when there is no such operator."""
    from .ledger.config import OPERATOR_ENV
    pid = os.environ.get(OPERATOR_ENV)
    if not pid:
        ops = [p for p, rec in participants.items() if "OPERATOR" in (rec.get("roles") or [])
               and keyring.keyring_path(keys_dir, p).exists()]
        if len(ops) != 1:
            log.warning("deliveries are tagged but not sealed: no single operator keyring (found %s)", ops or "none")
            return None
        pid = ops[0]
    try:
        return pid, keyring.load(keys_dir, pid).signer()
    except keyring.KeyringError as exc:
        log.warning("deliveries are tagged but not sealed: %s", exc)
        return None


# Broker trouble a runner outlives (issue 7: the mesh keeps working when the broker restarts):
# a client call that fails or times out (KafkaException, ContractFeed.sync's TimeoutError), a
# batch the broker did not acknowledge (DeliveryFailed) or whose transaction it aborted
# (TransactionAborted: a zombie's, among others).
BROKER_TROUBLE = (KafkaException, TimeoutError, DeliveryFailed, TransactionAborted)


def _abandon(runner: Runner) -> None:
    """Drop a runner after broker trouble without waiting on the broker. Its batch in progress was
    not committed, so the next runner replays it and fences off whatever of it did get written;
    what is still queued here is purged, so it cannot land after that runner read its fences."""
    try:
        runner.producer.purge()
        runner.producer.flush(0)
    except Exception:  # noqa: BLE001 - best effort: the broker is what failed
        pass
    for part in (runner.consumer, runner.feed, *runner.chain, runner.fence_reader):
        try:
            part.close()
        except Exception:  # noqa: BLE001
            pass


def _execute_again(instance: str) -> NoReturn:
    """Replace this process by a fresh run of its own command line (same pid, so a supervisor
    sees no exit), as the same transactional instance: the new producer's init_transactions
    aborts the transaction the wedged one left open. Threads, clients and sockets go with the
    old image; nothing is lost, as after a crash (the fences and the committed offsets)."""
    logging.shutdown()
    os.environ["CITYMESH_RUNNER_INSTANCE"] = instance
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m processors.runner", description=__doc__.split("\n")[0])
    ap.add_argument("--product", required=True)
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--metrics-port", type=int, default=None)
    ap.add_argument("--group", type=int, default=0, help="this runner's group of --groups (processors/sharding.py)")
    ap.add_argument("--groups", type=int, default=1, help="how many runner groups share the product's contracts")
    ap.add_argument("--instance", help="this instance's name in its group, kept across restarts "
                                       "(default: CITYMESH_RUNNER_INSTANCE, else a fresh one)")
    ap.add_argument("--name", help="the name `citymesh status` shows (default: runner-<product>)")
    args = ap.parse_args(argv)
    try:
        runner_group = RunnerGroup(args.group, args.groups)
    except RunnerGroupError as exc:
        ap.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings: Settings = get_settings()
    port = metrics.serve(args.metrics_port if args.metrics_port is not None else settings.metrics_port)
    # this instance's name, kept by every start-over of this process (its transactional id)
    instance = args.instance or settings.runner_instance or uuid.uuid4().hex[:12]
    name = args.name or f"runner-{args.product}"
    holds = Holds(settings.hold_retry_s)  # partitions the broker keeps refusing (processors/quarantine.py)

    def build() -> Runner:
        return Runner(args.product, settings.client_config(), settings.keyring_dir, args.batch_size,
                      session_timeout_ms=settings.session_timeout_ms, transactions=settings.transactions,
                      instance=instance, holds=holds, runner_group=runner_group)

    stopping = False

    def build_when_possible(waits_for: tuple, then=lambda _runner: None) -> Runner | None:
        """build() (and `then` on what it built), again after 1, 2, 4, 5, 5 ... s while that
        raises one of `waits_for`; None when told to stop meanwhile."""
        backoff = 1.0
        while not stopping:
            built = None
            try:
                built = build()
                then(built)
                return built
            except waits_for as exc:
                log.warning("cannot start yet, retrying in %.0f s: %s", backoff, exc)
                if built is not None:
                    _abandon(built)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        return None

    # at start, a product or topic that is not there fails fast (SystemExit); a broker that does
    # not answer is waited for (CI: a runner that executed itself again after a wedge met a node
    # being restarted, and died here)
    runner: Runner | None = build_when_possible(BROKER_TROUBLE)
    # What start-up built (modules, schemas, compiled plans, polygon indexes) lives as long as the
    # process: out of the collector's way, a full collection no longer walks it (measured: gen-2
    # pauses of 20-34 ms every ~10 s at 10k records/s, each one a latency spike)
    gc.freeze()
    log.info("enforcing %s (%d active contracts, %s%s); metrics on :%d", args.product, len(runner.plans),
             "in transactions" if runner.txn is not None else "without transactions",
             f", runner group {runner_group.index} of {runner_group.count}" if runner_group.count > 1 else "", port)

    def _stop(signum, _frame) -> None:
        nonlocal stopping
        log.info("%s received: stopping after the batch in progress", signal.Signals(signum).name)
        stopping = True
        if runner is not None:
            runner.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    last_lag = 0.0
    health = {"product": args.product, "started_ms": int(time.time() * 1000), "consumed": 0, "fenced": 0,
              "start_overs": 0, "last_error": None, "quarantined": [], "held": []}

    def report() -> None:
        """Progress to the log and to `citymesh status` (processors/status.py)."""
        runner.update_lag()
        log.info("progress: %d records consumed, %d outputs fenced", runner.consumed, runner.fenced)
        health.update(consumed=health["consumed"] + runner.consumed - health.get("_seen", 0),
                      fenced=runner.fenced, quarantined=runner.quarantined[-20:], held=holds.describe())
        metrics.HELD_PARTITIONS.labels(args.product).set(len(holds.held))
        health["_seen"] = runner.consumed
        status.write(settings.state_dir, name, {k: v for k, v in health.items()
                                                                      if not k.startswith("_")})

    try:
        while runner is not None:
            try:
                while not (runner._stopping or stopping):
                    runner.step()
                    if time.monotonic() - last_lag > 5:
                        report()
                        last_lag = time.monotonic()
                return 0
            except BROKER_TROUBLE as exc:
                health.update(start_overs=health["start_overs"] + 1, last_error=f"{type(exc).__name__}: {exc}"[:500],
                              last_error_ms=int(time.time() * 1000), _seen=0)
                # Start over in-process exactly as a restarted runner would (fresh clients, rejoin
                # the group, resume from the committed offsets behind the fences) instead of
                # exiting and leaving the product unenforced until someone restarts the process.
                # A broker that lost its state (the embedded one keeps it in memory) has no
                # catalog until the operator re-applies the topology, so "not in the catalog"
                # (SystemExit from Runner()) is waited out here too.
                log.warning("broker trouble, starting over from the committed offsets: %s", exc)
                held = holds.count(runner.refused())  # the partitions it refused once too often
                _abandon(runner)

                def resume(new: Runner) -> None:
                    log.info("enforcing %s again (%d active contracts)", args.product, len(new.plans))
                    for hold in held:
                        new.announce(hold)

                runner = build_when_possible((*BROKER_TROUBLE, SystemExit), resume)
                if held:
                    report()
        return 0
    except ClientWedged as exc:
        log.error("%s: this process executes itself again", exc)
        runner = None  # (not closed: a call is stuck in its producer)
        _execute_again(instance)
    finally:
        if runner is not None:
            runner.close()


if __name__ == "__main__":
    raise SystemExit(main())
