"""Exactly-once delivery without broker transactions: find what a crashed runner already wrote.

Why: the embedded broker shows records of aborted transactions to read_committed readers
(seen here), so transactions cannot be what makes delivery exactly-once on every broker.
Instead, every record the runner writes carries its source partition and offset in headers
(in clear on the mesh's own topics; sealed under the contract's key on a delivery topic, so
consumers cannot compare them: policy_enforcer/provenance.py, opened here by the runner),
the outputs of one source partition go to one output partition, in source order, from an
idempotent producer (so a crash can only lose a suffix, never a record in the middle), and
offsets are committed only after each batch is acknowledged. After a restart, the
last record from source partition p in each output partition says up to which source offset
that output is complete (the *fence*); replaying from the committed offset skips what is
at or below it. Compliance events are fenced the same way, by their event ids, and carry
the batch's offset range and processing time so a replayed batch decides (and is counted)
exactly as the original was.

There can be more than one uncommitted batch per source partition: a restarted runner
replays a partly written batch and goes on with new records in the same step (one commit),
and can crash before that commit; and the runner does not wait for a commit's answer, so
the last batch or two may be written but not yet committed. Each such batch is replayed with its own range and
processing time, so every compliance event id comes out again the same and is skipped;
merging them into one range would mint a new event id and count the records twice.
A batch none of whose events reached the broker was never counted: it is simply processed
again as new records (its outputs already written are fenced by offset).
"""

from __future__ import annotations

import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field

from typing import Callable

from confluent_kafka import Consumer, IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from schemas.errors import CitymeshError
from schemas.headers import BATCH_FIRST as H_BATCH_FIRST
from schemas.headers import BATCH_LAST as H_BATCH_LAST
from schemas.headers import BATCH_NOW as H_BATCH_NOW
from schemas.headers import EVENT_ID as H_EVENT_ID
from schemas.headers import RUNNER_GROUP as H_RUNNER_GROUP
from schemas.headers import SRC_OFFSET as H_SRC_OFFSET
from schemas.headers import SRC_PARTITION as H_SRC_PARTITION
from schemas.headers import SEAL as H_SEAL
from schemas.headers import SRC_TOPIC as H_SRC_TOPIC
from streams.offsets import EndOffsetTimeout, end_offsets

SCAN_WINDOW = 2000

# headers of an output record -> (source partition, source offset), or None for a record
# from another source
PositionOf = Callable[[dict], "tuple[int, int] | None"]


def clear_position(src_topic: str) -> PositionOf:
    """How the mesh's own topics (dead letters) name a record's source: in clear."""
    want_t = src_topic.encode()

    def position(h: dict) -> tuple[int, int] | None:
        if h.get(H_SRC_TOPIC) != want_t or H_SRC_PARTITION not in h:
            return None
        return int(h[H_SRC_PARTITION]), int(h[H_SRC_OFFSET])

    return position


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
    sealed: dict[str, int] = field(default_factory=dict)  # delivery topic -> last source offset sealed
    # (first offset, last offset, processing time) of every batch whose compliance events
    # were (partly) written beyond the committed offset, oldest first
    batches: list[tuple[int, int, int]] = field(default_factory=list)
    event_ids: set[str] = field(default_factory=set)

    def written(self, topic: str, offset: int) -> bool:
        return offset <= self.outputs.get(topic, -1)


READER_GROUP = "citymesh-fence-reader"  # group-less readers' group id (never joined; topology/access.py)
# A fence read that brings nothing for this long is broker trouble, not the end of the data: it
# raises FenceReadTimeout (the runner starts over) rather than fence from part of what is
# there, which writes the rest again (seen in CI, on a loaded machine, as duplicated alerts).
READ_TIMEOUT_S = 30.0


class FenceReadTimeout(CitymeshError, TimeoutError):
    """A fence read made no progress for READ_TIMEOUT_S: what was written is not known."""


class FenceReader:
    """Reads output partitions backwards from their end with a group-less consumer.

    Watermarks come from an admin client: on the consumer's own connection a ListOffsets
    request waits behind the consumer's fetch (a broker answers a connection's requests in
    order). Between reads the consumer is left unassigned, so it does not go on fetching
    (and buffering) the last partition it read, which is often one the runner writes to.

    It reads as read_committed: what an aborted transaction wrote (processors/transactions.py)
    was never written as far as any consumer can tell, so it must not fence anything off. Such
    a partition has offsets no record is read at (transaction markers, aborted records): a read
    is complete when the consumer's position, which librdkafka moves past them, reaches the end."""

    def __init__(self, client_config: dict):
        self._consumer = Consumer({**client_config, "group.id": READER_GROUP, "isolation.level": "read_committed",
                                   "enable.auto.commit": False, "enable.partition.eof": False,
                                   "fetch.wait.max.ms": 10})
        self._admin = AdminClient(client_config)
        self._prefetched: dict[tuple[str, int], tuple[int, int]] = {}

    def close(self) -> None:
        self._consumer.close()

    @contextmanager
    def prefetched(self, pairs: list[tuple[str, int]]):
        """Within the block, scans of these (topic, partition) pairs start from watermarks asked
        for all at once, in two ListOffsets requests (earliest, latest), instead of one query
        per pair. A recovery scans every output topic of a source partition; a round trip each
        made a restart (or a rebalance) wait on as many round trips as there are topics."""
        self._prefetched = self._watermarks(pairs)
        try:
            yield
        finally:
            self._prefetched = {}

    def _watermarks(self, pairs: list[tuple[str, int]]) -> dict[tuple[str, int], tuple[int, int]]:
        """(low, high) ListOffsets answers of (topic, partition) pairs: the earliest and the
        latest requests are in flight together. KafkaException when the broker cannot answer.
        High as read_committed: the last stable offset, below any transaction still open."""
        tps = [TopicPartition(t, p) for t, p in pairs]
        low, high = (self._admin.list_offsets({tp: spec() for tp in tps}, request_timeout=10,
                                              isolation_level=IsolationLevel.READ_COMMITTED)
                     for spec in (OffsetSpec.earliest, OffsetSpec.latest))
        found = {(tp.topic, tp.partition): (low[tp].result().offset, high[tp].result().offset) for tp in tps}
        return {k: (lo, hi) for k, (lo, hi) in found.items() if 0 <= lo <= hi}

    def _true_end(self, topic: str, partition: int) -> tuple[int, int]:
        """(low, high): high is where a read_committed read of the partition ends, the
        ListOffsets answers read on past where the embedded broker's fall short
        (streams/offsets.py)."""
        key = (topic, partition)
        listed = self._prefetched.pop(key, None) or self._watermarks([key]).get(key)  # used once
        try:
            return end_offsets(self._consumer, [TopicPartition(topic, partition)], READ_TIMEOUT_S,
                               listed={key: listed} if listed else None)[key]
        except EndOffsetTimeout as exc:
            raise FenceReadTimeout(str(exc)) from exc

    def _position(self, tp: TopicPartition) -> int:
        return self._consumer.position([tp])[0].offset

    def _scan_back(self, topic: str, partition: int, stop_below: int | None = None):
        """Yield messages newest-first-window by window (each window oldest-first), none
        below offset `stop_below`."""
        lo, hi = self._true_end(topic, partition)  # (a short end would fence too low: duplicates)
        lo = max(lo, stop_below or 0)
        end = hi
        try:
            while end > lo:
                start = max(lo, end - SCAN_WINDOW)
                tp = TopicPartition(topic, partition, start)
                self._consumer.assign([tp])
                window, idle_since = [], time.monotonic()
                while (not window or window[-1].offset() < end - 1) and self._position(tp) < end:
                    # consume() waits for num_messages or the timeout: ask for what the window lacks
                    want = end - (window[-1].offset() + 1 if window else start)
                    msgs = self._consumer.consume(max(1, min(want, SCAN_WINDOW)), 0.1)
                    if msgs:
                        idle_since = time.monotonic()
                    elif time.monotonic() - idle_since > READ_TIMEOUT_S:
                        raise FenceReadTimeout(f"{topic}[{partition}]: nothing read at {self._position(tp)} "
                                               f"(of {start}..{end - 1}) for {READ_TIMEOUT_S:.0f} s")
                    window += [m for m in msgs if not m.error() and m.offset() < end]
                yield window
                end = start
        finally:
            self._consumer.unassign()

    def last_source_offset(self, topic: str, partition: int, src_partition: int, position_of: PositionOf) -> int:
        """The highest source offset from `src_partition` written to topic/partition, or -1;
        `position_of` reads a record's source position from its headers."""
        for window in self._scan_back(topic, partition):
            for m in reversed(window):
                pos = position_of(dict(m.headers() or ()))
                if pos is not None and pos[0] == src_partition:
                    return pos[1]
        return -1

    def delivery_tail(self, topic: str, partition: int, src_partition: int, position_of: PositionOf,
                      committed: int) -> tuple[int, int]:
        """(the last source offset written, the last one sealed) of `src_partition`'s deliveries
        in topic/partition. Every batch below the committed offset was sealed before it was
        committed, so the scan stops there at the latest: (-1 or less, committed - 1)."""
        last = -1
        for window in self._scan_back(topic, partition):
            for m in reversed(window):
                h = dict(m.headers() or ())
                pos = position_of(h)
                if pos is None or pos[0] != src_partition:
                    continue
                last = max(last, pos[1])
                if H_SEAL in h:
                    return last, pos[1]
                if pos[1] < committed:
                    return last, committed - 1
        return last, committed - 1

    def compliance_since(self, topic: str, partition: int, src_topic: str, src_partition: int,
                         committed: int, floor: int | None = None,
                         runner_group: bytes | None = None) -> tuple[list[tuple[int, int, int]], set[str]]:
        """([(batch first, batch last, processing time)] oldest first, event ids) of the
        compliance events one runner group (its cm.runner.group marker, None for the lead's:
        processors/sharding.py) wrote about source offsets at or after `committed`. `floor`: an
        offset below which none of them can be (ComplianceFloors); the compliance topic is
        shared by every product, so without it the search walks back through all their events
        since this partition's last one (issue 14: 68-71 s per partition at 300k)."""
        want_p, want_t = str(src_partition).encode(), src_topic.encode()
        batches: dict[tuple[int, int], int] = {}
        ids: set[str] = set()
        for window in self._scan_back(topic, partition, floor):
            for m in reversed(window):
                h = dict(m.headers() or ())
                if (h.get(H_SRC_PARTITION) != want_p or h.get(H_SRC_TOPIC) != want_t or H_BATCH_FIRST not in h
                        or h.get(H_RUNNER_GROUP) != runner_group):
                    continue
                last = int(h[H_BATCH_LAST])
                if last < committed:  # older than the committed offset: nothing more to find
                    return sorted((f, la, now) for (f, la), now in batches.items()), ids
                batches[(int(h[H_BATCH_FIRST]), last)] = int(h[H_BATCH_NOW])
                ids.add(h[H_EVENT_ID].decode())
        return sorted((f, la, now) for (f, la), now in batches.items()), ids

    def timestamp_at(self, topic: str, partition: int, offset: int) -> int | None:
        """The timestamp (ms) of the record at `offset`, or None when there is none (yet)."""
        lo, hi = self._true_end(topic, partition)
        if not lo <= offset < hi:
            return None
        tp = TopicPartition(topic, partition, offset)
        self._consumer.assign([tp])
        try:
            deadline = time.monotonic() + READ_TIMEOUT_S
            while self._position(tp) < hi:  # (past it without a record: a transaction marker)
                for m in self._consumer.consume(1, 0.1):
                    if not m.error() and m.offset() >= offset:
                        return m.timestamp()[1]
                if time.monotonic() > deadline:
                    raise FenceReadTimeout(f"{topic}[{partition}]: offset {offset} not read within "
                                           f"{READ_TIMEOUT_S:.0f} s")
            return None
        finally:
            self._consumer.unassign()

    def ids_since(self, topic: str, partition: int, src_topic: str, src_partition: int, committed: int,
                  not_before_ms: int) -> set[str]:
        """Event ids (H_EVENT_ID) of records in topic/partition about source offsets at or after
        `committed` of (src_topic, src_partition), for outputs spread over partitions by key
        (alerts): scans back until a record stamped before `not_before_ms` (everything older
        was written before the source record at `committed` existed, so cannot be about it).

        Not until the first record about an older batch: two crashes in a row put records
        about offsets beyond `committed` *below* such a record. Owner A writes alerts of a
        batch reaching past offset x and dies before that batch's compliance events are
        written; B, finding no batch to replay, skips A's alerts by id, commits a batch
        ending before x, writes alerts of the next one and dies too; C, resuming at B's
        commit, finds B's alerts newest, then B's older batch, and only below those A's
        alerts about offsets C is about to process (CI: 23 alerts written twice)."""
        want_p, want_t = str(src_partition).encode(), src_topic.encode()
        ids: set[str] = set()
        for window in self._scan_back(topic, partition):
            for m in reversed(window):
                if m.timestamp()[1] < not_before_ms:
                    return ids
                h = dict(m.headers() or ())
                if h.get(H_SRC_PARTITION) != want_p or h.get(H_SRC_TOPIC) != want_t or H_EVENT_ID not in h:
                    continue
                if int(h[H_SRC_OFFSET]) >= committed:
                    ids.add(h[H_EVENT_ID].decode())
        return ids


class ComplianceFloors:
    """Where the shared compliance topic's partitions end, asked once a second, so that every
    partition state record can say below which offset none of its batch's events (nor those
    of any later batch) can be: the runner writes a batch's events after its state record,
    so the end known when the record is written is below them (processors/partition_state.py).
    A restart then searches the compliance partition down to that floor only, however much
    other products wrote there since. Non-blocking: a ListOffsets request is in flight at most
    once, and its answer is taken when it is there."""

    INTERVAL_S = 1.0

    def __init__(self, admin: AdminClient, topic: str):
        self._admin, self._topic = admin, topic
        self.known: dict[int, int] = {}  # compliance partition -> an end offset it had
        self._asked: dict | None = None
        self._asked_at = 0.0

    def refresh(self, partitions: set[int]) -> bool:
        """Take a new answer if one came, ask again when due; True when `known` changed."""
        changed = False
        if self._asked is not None and all(f.done() for f in self._asked.values()):
            for tp, f in self._asked.items():
                if f.exception() is None:  # (an error: the next request answers)
                    self.known[tp.partition] = f.result().offset
                    changed = True
            self._asked = None
        now = time.monotonic()
        if self._asked is None and partitions and now - self._asked_at >= self.INTERVAL_S:
            self._asked_at = now
            self._asked = self._admin.list_offsets(
                {TopicPartition(self._topic, q): OffsetSpec.latest() for q in sorted(partitions)}, request_timeout=10)
        return changed

