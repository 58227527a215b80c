"""Idempotent, batched appends to the hash chain, and signed checkpoints.

One call to `append` is one database transaction holding the batch's entries, the Kafka
positions it consumed up to, and a checkpoint if one fell due. A crash anywhere before the
commit leaves the ledger and its positions exactly as before the batch, so a restarted
sink re-reads the same records and writes them once; a crash after it leaves both
advanced together. Two guards stay on anyway, because a ledger outlives its sink's
bookkeeping (a re-created topic, an upstream replay under a new offset):
- a record below the stored position of its partition is fenced (already accounted for);
- an event whose (kind, event id) is already in the chain is a duplicate: skipped, counted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from streams.keyring import Keyring

from .chain import checkpoint_message, entry_hash
from .store import CheckpointRow, EntryRow, LedgerStore


@dataclass(frozen=True)
class Incoming:
    """A decoded event and where it came from, ready to be chained."""

    topic: str
    partition: int
    offset: int
    kind: str
    event_id: str
    time_ms: int
    event_json: str


@dataclass
class AppendResult:
    appended: dict[str, int] = field(default_factory=dict)  # by kind
    duplicates: int = 0
    fenced: int = 0
    head_seq: int = 0
    head_hash: str = ""
    checkpoint: CheckpointRow | None = None

    @property
    def total(self) -> int:
        return sum(self.appended.values())


class Ledger:
    def __init__(self, store: LedgerStore, signer: Keyring | None = None, checkpoint_every: int = 1000):
        self.store = store
        self.signer = signer
        self.checkpoint_every = checkpoint_every

    def append(self, records: list[Incoming], positions: dict[tuple[str, int], int] | None = None) -> AppendResult:
        """Chain `records` (in order) and store `positions` (next offset per source partition) atomically.

        `positions` may cover more than `records` (records the sink could not decode are
        consumed too); without it, positions follow from the records themselves."""
        if positions is None:
            positions = {}
            for r in records:
                key = (r.topic, r.partition)
                positions[key] = max(positions.get(key, 0), r.offset + 1)
        result = AppendResult()
        with self.store.writer() as w:
            stored = w.offsets()
            fresh = []
            for r in records:
                if r.offset < stored.get((r.topic, r.partition), 0):
                    result.fenced += 1
                else:
                    fresh.append(r)
            known: dict[str, set[str]] = {}
            for kind in {r.kind for r in fresh}:
                known[kind] = w.existing_ids(kind, {r.event_id for r in fresh if r.kind == kind})
            seq, prev = w.head()
            rows = []
            for r in fresh:
                ids = known.setdefault(r.kind, set())
                if r.event_id in ids:
                    result.duplicates += 1
                    continue
                ids.add(r.event_id)  # a replay inside the same batch is a duplicate too
                seq += 1
                h = entry_hash(prev, seq, r.topic, r.partition, r.offset, r.event_id, r.kind, r.time_ms, r.event_json)
                rows.append(EntryRow(seq, r.topic, r.partition, r.offset, r.event_id, r.kind, r.time_ms,
                                     r.event_json, prev, h))
                result.appended[r.kind] = result.appended.get(r.kind, 0) + 1
                prev = h
            w.add_entries(rows)
            w.set_offsets({k: max(v, stored.get(k, 0)) for k, v in positions.items()})
            if self.signer is not None and rows and seq - w.last_checkpoint_seq() >= self.checkpoint_every:
                result.checkpoint = self._sign(seq, prev)
                w.add_checkpoint(result.checkpoint)
        result.head_seq, result.head_hash = seq, prev
        return result

    def checkpoint(self) -> CheckpointRow | None:
        """Sign the current head unless it is already signed (clean shutdown, idle interval)."""
        if self.signer is None:
            raise RuntimeError("no operator key: this ledger cannot sign checkpoints")
        with self.store.writer() as w:
            seq, head = w.head()
            if seq == 0 or w.last_checkpoint_seq() >= seq:
                return None
            cp = self._sign(seq, head)
            w.add_checkpoint(cp)
        return cp

    def _sign(self, seq: int, head: str) -> CheckpointRow:
        now = int(time.time() * 1000)
        sig = self.signer.sign(checkpoint_message(seq, head, now))
        return CheckpointRow(seq, head, now, self.signer.public_key_hex, sig.hex())
