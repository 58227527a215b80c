"""The replay stage: every provider record is accepted once.

The authenticity tag proves who wrote a record, not that it is new: a valid record
re-produced byte for byte (same headers, same tag) would be delivered again. So a provider
record carries what makes it unique under its tag (streams/envelope.py, header cm.seq):
``<producer>:<partition>:<sequence>``, a random id of the provider's connector session,
the raw-topic partition it wrote to and a sequence per producer and partition (1, 2, 3 …).
This stage, after the tag was checked (a forged cm.seq cannot advance anything), rejects
with ``reject:replay``:

- a record whose sequence is not above the last one accepted from its producer on this
  partition (a replay, immediate or late, or a re-publish of the same record by the
  application: a record the application publishes again gets a new sequence and is a new
  record; the idempotent producer's own retries never reach the topic twice);
- a record written for another partition than the one it is in (a copy moved elsewhere);

and with ``reject:event-time`` a record whose event time is further than the product's
``event_time_window`` from the batch's processing time, when the product sets one.

State: per source partition, producer -> [last sequence, processing time last seen],
persisted with the offsets (processors/partition_state.py) so a restart neither forgets a
sequence nor rejects a record it had not yet accepted. It stays small: a producer silent for
twice the event-time window is forgotten (its old records are outside the window anyway);
without a window the least recently seen producers beyond MAX_PRODUCERS are (a replay of a
record of a producer so long gone is then accepted: set a window to close that).

Records without cm.seq (connectors of the previous release) are accepted for this release,
counted in ``citymesh_runner_unsequenced_total``; their tag is checked without a sequence.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter

from schemas.headers import EVENT_TIME, SEQUENCE

from .admission import Rejected
from .base import PartitionSlice, Stage

log = logging.getLogger("citymesh.replay")

MAX_PRODUCERS = 1024
RULE_REPLAY = "reject:replay"
RULE_EVENT_TIME = "reject:event-time"
UNSEQUENCED = Counter("citymesh_runner_unsequenced_total",
                      "Provider records without a sequence (cm.seq), accepted for one release", ["product"])


def parse_sequence(value: bytes) -> tuple[bytes, int, int] | None:
    """(producer, partition, sequence) of a cm.seq header, or None when it is malformed."""
    parts = value.split(b":")
    if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return parts[0], int(parts[1]), int(parts[2])


class Replay(Stage):
    name = "replay"

    def __init__(self, product_id: str, event_time_window_ms: int | None = None):
        self.product_id = product_id
        self.window_ms = event_time_window_ms
        self.seen: dict[int, dict[bytes, list[int]]] = {}  # p -> producer -> [last sequence, last seen ms]

    def process(self, s: PartitionSlice) -> None:
        if not s.good:
            return
        seen = self.seen.setdefault(s.p, {})
        now, window, p, here = s.now_ms, self.window_ms, s.p, b"%d" % s.p
        keep, refused = [], []
        for g in s.good:
            h = g.headers
            if window is not None:
                et = h.get(EVENT_TIME)
                if et is None or not et.isdigit() or abs(int(et) - now) > window:
                    refused.append(Rejected(g.msg, g.offset, RULE_EVENT_TIME,
                                            f"event time {et and et.decode('ascii', 'replace')} is outside the "
                                            f"accepted window of ±{window} ms around the processing time {now}", h))
                    continue
            raw = h.get(SEQUENCE)
            if raw is None:
                UNSEQUENCED.labels(self.product_id).inc()
                keep.append(g)
                continue
            # hot path: a well-formed cm.seq written for this partition (parse_sequence says
            # what is wrong with any other)
            producer, _, rest = raw.partition(b":")
            written_for, _, n = rest.partition(b":")
            if written_for != here or not producer or not n.isdigit():
                why = self._misplaced(raw, p)
                if why is not None:
                    refused.append(Rejected(g.msg, g.offset, RULE_REPLAY, why, h))
                    continue
            n = int(n)
            last = seen.get(producer)
            if last is None:
                seen[producer] = [n, now]
            elif n > last[0]:
                last[0], last[1] = n, now
            else:
                refused.append(Rejected(g.msg, g.offset, RULE_REPLAY,
                                        f"sequence {n} of producer {producer.decode('ascii', 'replace')} already "
                                        f"seen (last accepted {last[0]})", h))
                continue
            keep.append(g)
        if refused:
            s.good = keep
            s.rejected += refused
        self._expire(seen, now)

    @staticmethod
    def _misplaced(raw: bytes, p: int) -> str | None:
        """Why a cm.seq the hot path did not take is refused, or None when it is well formed
        for this partition after all (a partition written as 07)."""
        seq = parse_sequence(raw)
        if seq is None:  # the tag covers cm.seq, so only the provider could have written this
            return f"malformed cm.seq {raw[:40]!r}"
        if seq[1] != p:
            return f"written for partition {seq[1]}, found in partition {p}"
        return None

    def _expire(self, seen: dict[bytes, list[int]], now: int) -> None:
        if self.window_ms is not None:
            gone = [k for k, (_, t) in seen.items() if now - t > 2 * self.window_ms]
        elif len(seen) > MAX_PRODUCERS:
            gone = sorted(seen, key=lambda k: seen[k][1])[:len(seen) - MAX_PRODUCERS]
        else:
            return
        for k in gone:
            del seen[k]

    def snapshot(self, p: int) -> dict | None:
        seen = self.seen.get(p)
        return {"producers": {k.decode("latin-1"): list(v) for k, v in seen.items()}} if seen else None

    def restore(self, p: int, state: dict) -> None:
        self.seen[p] = {k.encode("latin-1"): list(v) for k, v in state.get("producers", {}).items()}

    def revoke(self, p: int) -> None:
        self.seen.pop(p, None)
