"""The one interface every stage implements, and the slice of a batch they pass along."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class DeadLetter:
    """A raw record for the dead-letter topic, with the rule that sent it there and why.
    ``event`` says whether it also gets a REJECT compliance event of its own (admission
    rejects do; limits and the breaker count their records in one event per slice)."""

    msg: object  # confluent_kafka.Message
    offset: int
    rule: str
    reason: str
    event: bool = False
    headers: dict | None = None


@dataclass(slots=True)
class PartitionSlice:
    """One source partition's records of a batch, and what the stages decided about them.

    ``now_ms`` is the batch's processing time; a batch replayed after a crash keeps the time
    it had (processors/fencing.py), so every decision comes out the same. ``emitted`` holds
    the ids of the compliance events such a batch already wrote."""

    p: int
    msgs: list
    now_ms: int
    fence: object = None  # processors.fencing.PartitionFence of a partition recovered after a crash
    emitted: frozenset | set = frozenset()
    batch_headers: list = field(default_factory=list)
    good: list = field(default_factory=list)        # admitted records (processors.stages.admission.Admitted)
    rejected: list = field(default_factory=list)    # refused by admission (processors.stages.admission.Rejected)
    dead: list = field(default_factory=list)        # DeadLetter, from limits and the breaker
    alerts: list = field(default_factory=list)      # (alert record, subject, source offset)
    deliveries: list = field(default_factory=list)  # (ActivePlan, BatchResult, its BATCH event or None)
    events: list = field(default_factory=list)      # compliance events (processors.evidence.ComplianceEvent)

    @property
    def first(self) -> int:
        return self.msgs[0].offset()

    @property
    def last(self) -> int:
        return self.msgs[-1].offset()


class Stage:
    """A step of the chain. Every hook but ``process`` is optional.

    State: a stage that keeps per-partition state returns it from ``snapshot(p)`` (a JSON-able
    dict, or None for none) and takes it back in ``restore(p, state)``; the runner persists it
    with the offsets and restores what matches the committed offset before the partition's
    first slice (``assign``)."""

    name = "stage"

    def process(self, s: PartitionSlice) -> None:
        raise NotImplementedError

    def assign(self, p: int, committed: int) -> None:
        """Partition p was assigned and resumes at `committed` (after restore)."""

    def revoke(self, p: int) -> None:
        """Partition p went to another instance: drop what is kept about it."""

    def snapshot(self, p: int) -> dict | None:
        return None

    def restore(self, p: int, state: dict) -> None:
        """Take back the state `snapshot(p)` returned for the committed offset ({} for none)."""

    def close(self) -> None:
        """Release clients the stage holds."""
