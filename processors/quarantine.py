"""Partitions the broker keeps refusing: held, not retried forever.

A record no stage can take is set aside by the runner itself (``quarantine:poison``), and an
output too large for any broker by the contracts stage (``quarantine:unwritable``). What
neither can see coming is the broker refusing an output the runner thought writable: an
operator set a delivery topic's ``max.message.bytes`` below the broker's, a topic policy
refuses it, its timestamp is outside the topic's bounds. The batch is then not committed
and the runner starts over from the committed offsets (``runner.main``), where it meets the
same refusal again, forever: the partition stalled while ``citymesh status`` said running.

So the runner process counts start-overs caused by refusals per source partition (a refused
output is traced back to the source partitions that write to its topic partition, and to the
range of offsets each had in the refused batch, which holds the record refused), and the
``HOLD_AFTER``-th before the partition got past that range holds it: it is paused while the
others go on, a QUARANTINE compliance event and a HIGH alert say so, ``citymesh status`` shows
it, and every ``retry_s`` the runner tries it again, so an operator who fixed the topic need
not restart anything. A try that is refused again leaves it held (one start-over per try); a
commit past the refused range releases it. Nothing is dropped or skipped: the held records
stay in the raw topic behind the committed offset. Trouble that is not about the record
(timeouts, a broker restart, a topic not there yet, authorisation) never holds a partition;
the runner waits that out as before.

Counted by range, not by the batch's first offset: a start-over's first batch may end before
the refused record and commit what precedes it (CI: the count started over there and the
partition showed as not held while it was being refused again).

The holds live as long as the runner process, across its start-overs, as long as it is
assigned the partition: a rebalance that moves a held partition to another instance drops
the hold and the count here (that instance meets the refusal and holds it itself), so
``citymesh status`` does not show this instance holding what it no longer reads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, TopicPartition

# the broker's answers about an output itself: the same output meets them again on a replay
REFUSALS = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_RECORD,
                      KafkaError.INVALID_MSG, KafkaError.INVALID_MSG_SIZE, KafkaError.POLICY_VIOLATION,
                      KafkaError.INVALID_TIMESTAMP})
HOLD_AFTER = 3
RETRY_S = 300.0  # the default of the CITYMESH_HOLD_RETRY_S setting
RULE_HELD = "quarantine:partition"


@dataclass
class Refusal:
    """What the broker refused of one source partition's part of a batch: its offsets first..last
    (the refused record is among them) and why."""
    first: int
    last: int
    reason: str


@dataclass
class Hold:
    partition: int
    offset: int  # the committed offset: the first record not yet written
    reason: str
    since_ms: int
    retry_at: float  # time.monotonic() of the next try
    trying: bool = False  # resumed for a try, until a refusal or a commit past the refused ranges decides

    def describe(self) -> dict:
        return {"partition": self.partition, "offset": self.offset, "reason": self.reason,
                "since_ms": self.since_ms, "retry_in_s": max(0, round(self.retry_at - time.monotonic())),
                "trying": self.trying}


class Holds:
    """The partitions one runner process holds, and the refusals counted toward holding one.
    Kept by runner.main across start-overs (each builds a new Runner)."""

    def __init__(self, retry_s: float = RETRY_S, after: int = HOLD_AFTER):
        self.retry_s, self.after = retry_s, after
        # p -> (last offset of the refused ranges, start-overs): a commit past it clears both the strikes and a hold
        self.strikes: dict[int, tuple[int, int]] = {}
        self.held: dict[int, Hold] = {}
        self._paused: dict[int, int] = {}  # p -> offset, paused in the current consumer

    def count(self, refused: dict[int, Refusal]) -> list[Hold]:
        """One start-over's refusals by source partition; returns the holds they begin. A held
        partition refused again (its try failed) stays held, paused until its next try."""
        out = []
        for p, r in sorted(refused.items()):
            upto, n = self.strikes.get(p, (r.last, 0))
            self.strikes[p] = (max(upto, r.last), n + 1)
            hold = self.held.get(p)
            if hold is not None:
                hold.trying, hold.reason = False, r.reason
            elif n + 1 >= self.after:
                self.held[p] = Hold(p, r.first, r.reason, int(time.time() * 1000), time.monotonic() + self.retry_s)
                out.append(self.held[p])
        return out

    @property
    def active(self) -> bool:
        """Whether the runner's consumer must be filtered (a partition held, or one to resume)."""
        return bool(self.held or self._paused)

    def new_consumer(self) -> None:
        """The runner started over with a fresh consumer: nothing is paused in it yet."""
        self._paused.clear()

    def filter(self, consumer, topic: str, msgs: list) -> list:
        """msgs without those of held partitions (paused and rewound, so nothing is lost);
        partitions whose retry is due are resumed first and their records let through."""
        now = time.monotonic()
        for p, hold in self.held.items():
            if not hold.trying and hold.retry_at <= now:
                hold.trying, hold.retry_at = True, now + self.retry_s
                at = self._paused.pop(p, None)
                if at is not None:
                    tp = TopicPartition(topic, p, at)
                    consumer.resume([tp])
                    consumer.seek(tp)
        waiting = {p for p, hold in self.held.items() if not hold.trying}
        if not waiting:
            return msgs
        keep, first = [], {}
        for m in msgs:
            p = m.partition()
            if p in waiting:
                first.setdefault(p, m.offset())
            else:
                keep.append(m)
        for p, offset in first.items():
            tp = TopicPartition(topic, p, self._paused.get(p, offset))
            consumer.pause([tp])
            consumer.seek(tp)
            self._paused.setdefault(p, offset)
        return keep

    def forget(self, p: int) -> None:
        """Partition p was revoked from this consumer (a start-over revokes them all: the
        hold stays until an assignment without p says it went elsewhere)."""
        self._paused.pop(p, None)

    def assigned(self, partitions: set[int]) -> None:
        """The consumer's whole new assignment (the runner's group protocol is eager: every
        assignment is complete): holds and counts of partitions not in it are dropped."""
        for p in [p for p in self.held if p not in partitions]:
            del self.held[p]
        for p in [p for p in self.strikes if p not in partitions]:
            del self.strikes[p]

    def progressed(self, p: int, offset: int) -> None:
        """p committed up to `offset`: past the refused ranges, what was refused was overcome."""
        at = self.strikes.get(p)
        if at is not None and offset > at[0]:
            del self.strikes[p]
            self.held.pop(p, None)

    def describe(self) -> list[dict]:
        return [h.describe() for h in sorted(self.held.values(), key=lambda h: h.partition)]
