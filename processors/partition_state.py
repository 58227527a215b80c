"""The runner's per-partition state, written with the offsets it commits.

Some stages decide by state: the ingress limiter's tokens, the provider breaker, contract
quotas, the replay check's last sequence per producer, the alert folding. A batch replayed
after a crash must decide exactly as the original did (processors/fencing.py), so it must
start from the state the original started from: the state as of the committed offset.

How: every batch that touches source partition p writes ONE record (schema PartitionState,
key ``<product>:<p>``, ``<product>.<group>:<p>`` for a runner group other than the lead:
processors/sharding.py) to the compacted topic cm.state.<provider>.<product>, carrying every
stage's state as of the offset the batch started from (``offset_before``) and as of the
offset it is about to commit (``offset_after``); it is flushed with the batch's outputs,
before the offsets are committed. The runner does not wait for a commit's answer, so the
committed offset may lag by a batch or two; a restarted owner therefore scans p's state
records newest first for the one whose ``offset_after`` or ``offset_before`` equals the
committed offset, and restores that state. The scan is short: the records it passes are of
batches written but not committed, at most as many as commits were lost in the crash.

Each record also carries the compliance floor (processors/fencing.py: ComplianceFloors):
an offset of the shared compliance partition below which none of the batch's events, nor
those of a later batch, can be. A partition that stays idle gets a new record with the same
state and a newer floor once a second (not with transactions: a record needs a transaction
of its own there), so a restart's search of the compliance topic stays short however much
other products write to it meanwhile.

A product whose stages keep no state writes nothing here.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Callable

import schemas
from streams import topics

from .fencing import FenceReader

log = logging.getLogger("citymesh.state")


class PartitionStates:
    """Reads and writes one product's partition states (the runner's producer writes them)."""

    def __init__(self, product: str, provider: str, producer, fence_reader: FenceReader,
                 key_of: Callable[[int], bytes] | None = None):
        self.product = product
        self.key_of = key_of or (lambda p: f"{product}:{p}".encode())
        self.topic = topics.partition_state(provider, product)
        self.producer = producer
        self.fence_reader = fence_reader
        self.schema = schemas.load("PartitionState")
        # the records written before the compliance floor: the same fields without it
        before_floor = schemas.RecordSchema.from_definition({**self.schema.definition, "fields": [
            f for f in self.schema.definition["fields"] if f["name"] != "compliance_floor"]})
        self.registry = schemas.Registry([self.schema, before_floor, schemas.load("LimiterState")])
        self.saved: dict[int, tuple[int, str]] = {}  # p -> (offset, states json) last restored or written
        self.written_at: dict[int, float] = {}  # p -> time.monotonic() of its last record
        self._partitions: int | None = None

    def _partition(self, p: int) -> int:
        if self._partitions is None:
            md = self.producer.list_topics(self.topic, timeout=10).topics[self.topic]
            if md.error is not None or not md.partitions:
                raise SystemExit(f"topic {self.topic} does not exist; apply the topology again")
            self._partitions = len(md.partitions)
        return p % self._partitions

    def _decode(self, value: bytes) -> dict:
        schema, rec = self.registry.decode(value)
        if schema.name == "LimiterState":  # written before the stages had one record between them
            for k in ("state_before_json", "state_after_json"):
                rec[k] = json.dumps({"limits": json.loads(rec[k])})
        return rec

    def recover(self, p: int, committed: int) -> tuple[dict[str, dict], int | None]:
        """Every stage's state of partition p as of the committed offset ({} when none was
        saved), and the compliance floor of the record it came from (None: not known)."""
        key = self.key_of(p)
        found = floor = None
        for window in self.fence_reader._scan_back(self.topic, self._partition(p)):
            for m in reversed(window):
                if m.key() != key or not m.value():
                    continue
                s = self._decode(m.value())
                floor = s.get("compliance_floor")
                if s["offset_after"] == committed:
                    found = s["state_after_json"]
                elif s["offset_before"] == committed:
                    found = s["state_before_json"]
                    log.warning("partition %d: state of a batch from %d that was not committed discarded", p, committed)
                elif s["offset_after"] < committed:
                    # nothing kept state for a while (no limits, say): the newest state there is
                    found = s["state_after_json"]
                    log.warning("partition %d: newest state is of offset %d, committed %d", p, s["offset_after"],
                                committed)
                else:  # a batch beyond the committed offset whose commit was lost: look further back
                    continue
                break
            if found is not None:
                break
        states = json.loads(found) if found is not None else {}
        self.saved[p] = (committed, json.dumps(states, separators=(",", ":"), sort_keys=True))
        return states, floor if found is not None else None

    def last(self, p: int) -> dict[str, dict]:
        """The state last restored or written for p (a stage switched on mid-way starts from it)."""
        return json.loads(self.saved[p][1]) if p in self.saved else {}

    def forget(self, p: int) -> None:
        self.saved.pop(p, None)
        self.written_at.pop(p, None)

    def persist(self, p: int, offset: int, states: dict[str, dict], now_ms: int, floor: int | None = None) -> None:
        """Write p's state as of `offset` (the offset about to be committed), with the state it
        started from; call before the batch is flushed and committed, and before its compliance
        events are written (`floor`: see the module's docstring)."""
        self._write(p, self.saved.get(p, (offset, "{}")), offset, json.dumps(states, separators=(",", ":"),
                                                                              sort_keys=True), now_ms, floor)

    def refresh(self, p: int, floor: int, now_ms: int) -> None:
        """The state p was last saved with again, with a newer compliance floor (an idle
        partition: nothing was written for it since its last record)."""
        offset, states = self.saved[p]
        self._write(p, (offset, states), offset, states, now_ms, floor)

    def _write(self, p: int, before: tuple[int, str], offset: int, after: str, now_ms: int, floor: int | None) -> None:
        rec = {"product_id": self.product, "partition": p, "offset_before": before[0], "offset_after": offset,
               "time_ms": now_ms, "state_before_json": before[1], "state_after_json": after,
               "compliance_floor": floor}
        value, key, q = self.schema.encode(rec), self.key_of(p), self._partition(p)
        while True:
            try:
                self.producer.produce(self.topic, value, key, q)
                break
            except BufferError:
                self.producer.poll(0.05)
        self.saved[p] = (offset, after)
        self.written_at[p] = time.monotonic()


def read_states(client_config: dict, provider: str, product: str, reader: FenceReader | None = None
                ) -> dict[int, dict]:
    """Partition -> every stage's newest persisted state (the lead runner group's), with its
    offset and time (for `citymesh status`). A sharded product's other groups keep the quotas
    of the contracts they enforce in their own records: those are merged in, so every
    contract's quota shows whichever group enforces it. `reader`: one to reuse (and leave
    open) when reading many products, instead of a consumer and an admin client each."""
    own = reader is None
    reader = reader or FenceReader(client_config)
    store = PartitionStates(product, provider, None, reader)
    newest: dict[tuple[int, bytes], dict] = {}  # (partition, key of a runner group) -> its newest record
    try:
        md = reader._consumer.list_topics(store.topic, timeout=10).topics.get(store.topic)
        if md is None or md.error is not None:
            return {}
        for q in md.partitions:
            for window in reader._scan_back(store.topic, q):
                for m in reversed(window):
                    if m.value():
                        s = store._decode(m.value())
                        newest.setdefault((s["partition"], m.key()), s)
                break  # the newest window holds the newest state of the partitions written there
    finally:
        if own:
            reader.close()
    out: dict[int, dict] = {}
    for (p, key), s in sorted(newest.items(), key=lambda kv: kv[0][1] != store.key_of(kv[0][0])):  # the lead's first
        state = json.loads(s["state_after_json"])
        if p not in out:
            out[p] = {**state, "offset": s["offset_after"], "time_ms": s["time_ms"]}
        elif state.get("limits", {}).get("quotas"):
            out[p].setdefault("limits", {}).setdefault("quotas", {}).update(state["limits"]["quotas"])
    return out
