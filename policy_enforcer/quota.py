"""Ingress limits, delivery quotas and the provider breaker of one source partition.

The terms come from the topology (a provider's `limits`, a contract's `quota`) as plain
dicts with durations already in ms; this module turns them into limiters from `limits.py`
and applies them to a batch. Like the rest of `policy_enforcer` it knows nothing of Kafka:
the runner hands it record sizes, decoded records and the batch's processing time.

Why per source partition: a limit is global for a product, yet several runner instances
share its partitions and a partition moves between them. Each source partition therefore
gets a fixed share of every non-keyed limit (`partition_share`: the limit divided by the
partition count, the remainder to the lowest partitions, so the shares add up exactly to
the limit) and its own state. Whatever instance owns a partition, the sum of what all of
them let through never exceeds the limit, and the state travels with the partition (the
runner persists it next to the committed offset). A keyed quota ("10 records/s per drone")
is keyed by the product's record key, which Kafka already routes to one partition, so a
per-partition bucket per key is the global bucket for that key and needs no split.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from .limits import CLOSED, OPEN, BreakerConfig, CircuitBreaker, KeyedBuckets, TokenBucket, WindowQuota

HOLD, DLQ = "hold", "dlq"
DROP, SAMPLE, AGGREGATE = "drop", "sample", "aggregate"
CALENDAR_MS = 3_600_000  # quotas over an hour or more count per calendar window (days in UTC+8)
MAX_KEYS = 100_000


def partition_share(limit: float, partitions: int, p: int, whole: bool = False) -> float:
    """Partition p's fixed share of a product-wide limit; the shares add up to the limit."""
    if not whole:
        return limit / partitions
    base, extra = divmod(int(limit), partitions)
    return base + (1 if p < extra else 0)


@dataclass(frozen=True)
class IngressTerms:
    """A provider's ingress limits (topology `participants[].limits`)."""

    records_per_s: float | None = None
    bytes_per_s: float | None = None
    burst_ms: int = 1000  # how much unused rate may accumulate
    on_excess: str = HOLD  # hold: pause the partitions (back-pressure); dlq: drop to the dead-letter topic
    breaker: BreakerConfig | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "IngressTerms":
        unknown = set(d) - {"records_per_s", "bytes_per_s", "burst_ms", "on_excess", "breaker"}
        if unknown:
            raise ValueError(f"unknown limit(s) {sorted(unknown)}")
        for k in ("records_per_s", "bytes_per_s"):
            if d.get(k) is not None and float(d[k]) <= 0:
                raise ValueError(f"{k} must be positive")
        if d.get("on_excess", HOLD) not in (HOLD, DLQ):
            raise ValueError(f"on_excess must be {HOLD} or {DLQ}")
        b = d.get("breaker")
        breaker = None
        if b is not None:
            extra = set(b) - set(BreakerConfig.__dataclass_fields__)
            if extra:
                raise ValueError(f"unknown breaker setting(s) {sorted(extra)}")
            breaker = BreakerConfig(**b)
            if not 0 < breaker.failure_ratio <= 1:
                raise ValueError("breaker.failure_ratio must be in (0, 1]")
        return cls(d.get("records_per_s"), d.get("bytes_per_s"), int(d.get("burst_ms", 1000)),
                   d.get("on_excess", HOLD), breaker)

    @property
    def limited(self) -> bool:
        return self.records_per_s is not None or self.bytes_per_s is not None


@dataclass(frozen=True)
class QuotaTerms:
    """A contract's delivery quota (topology `contracts[].quota`): at most `records` per
    `per_ms`, per value of `key` when given; `action` on the excess: drop it, deliver 1 in
    `sample_every`, or aggregate (deliver the first record per key per `every_ms`)."""

    records: int
    per_ms: int = 1000
    key: str | None = None
    action: str = DROP
    sample_every: int = 10
    every_ms: int = 10_000

    @classmethod
    def from_dict(cls, d: dict) -> "QuotaTerms":
        t = cls(**d)
        if t.records < 1 or t.per_ms < 1 or t.sample_every < 1 or t.every_ms < 1:
            raise ValueError("quota numbers must be positive")
        if t.action not in (DROP, SAMPLE, AGGREGATE):
            raise ValueError(f"quota action must be {DROP}, {SAMPLE} or {AGGREGATE}")
        if t.key is not None and t.per_ms >= CALENDAR_MS:
            raise ValueError("a keyed quota is a rate (per < 1h); calendar quotas are per contract")
        return t


class IngressLimiter:
    """Records/s and bytes/s buckets of one partition's share."""

    def __init__(self, terms: IngressTerms, partitions: int, p: int):
        burst_s = terms.burst_ms / 1000
        self.records = self.bytes = None
        if terms.records_per_s is not None:
            r = partition_share(terms.records_per_s, partitions, p)
            self.records = TokenBucket(r, max(1.0, r * burst_s))
        if terms.bytes_per_s is not None:
            b = partition_share(terms.bytes_per_s, partitions, p)
            self.bytes = TokenBucket(b, max(1.0, b * burst_s))

    def grant(self, now_ms: int, sizes: list[int], times: list[int]) -> int:
        """How many of these records (in order) may pass now (back-pressure, on_excess hold);
        takes their tokens. A record counts as of its own time (``times``: when each entered
        the broker, capped at now) and, if it finds no token then, as of now: delayed, not
        refused. The first that finds none now and the ones after it wait."""
        n = 0
        for t, size in zip(times, sizes):
            t = min(t, now_ms)
            if not (self._take(t, size) or (t < now_ms and self._take(now_ms, size))):
                break
            n += 1
        return n

    def conforming(self, now_ms: int, sizes: list[int], times: list[int]) -> list[bool]:
        """Whether each record was within the limit when it entered the broker (on_excess dlq),
        taking the tokens of those that were. ``times`` are capped at now (a record stamped in
        the future mints no tokens) and the buckets never run backwards, so a provider gains
        nothing by its stamps but the time its partition was idle; a backlog it wrote within
        its limit while no runner read it (a crash, an upgrade) is all within it."""
        take = self._take
        return [take(min(t, now_ms), size) for t, size in zip(times, sizes)]

    def _take(self, t_ms: int, size: int) -> bool:
        """One record against both buckets as of t_ms: it takes a token (and its bytes) of
        each or of neither. A record larger than the byte burst passes alone on a full bucket."""
        rb, bb = self.records, self.bytes
        if rb is not None:
            rb._refill(t_ms)
            if rb.tokens < 1:
                return False
        if bb is not None:
            bb._refill(t_ms)
            if size > bb.tokens and bb.tokens < bb.burst:
                return False
            bb.tokens -= min(size, bb.tokens)
        if rb is not None:
            rb.tokens -= 1
        return True

    def wait_ms(self, next_size: int, held: int = 1) -> int:
        """Until `held` records (at most half the burst) may pass, the next one at least."""
        w = 0
        if self.records is not None:
            w = self.records.wait_ms(max(1.0, min(held, self.records.burst / 2)))
        if self.bytes is not None:
            w = max(w, self.bytes.wait_ms(min(max(next_size, self.bytes.burst / 2), self.bytes.burst)))
        return max(1, w)

    def snapshot(self) -> dict:
        return {k: b.snapshot() for k, b in (("records", self.records), ("bytes", self.bytes)) if b is not None}

    def restore(self, s: dict) -> None:
        for k, b in (("records", self.records), ("bytes", self.bytes)):
            if b is not None and k in s:
                b.restore(s[k])


class ContractQuota:
    """One contract's quota on one partition's share; `apply` edits a batch's outputs."""

    def __init__(self, terms: QuotaTerms, partitions: int, p: int, event_time_field: str | None):
        self.terms = terms
        self.time_field = event_time_field
        if terms.key is not None:
            self.limiter = KeyedBuckets(terms.records * 1000 / terms.per_ms, terms.records, MAX_KEYS)
        elif terms.per_ms >= CALENDAR_MS:
            self.limiter = WindowQuota(int(partition_share(terms.records, partitions, p, whole=True)),
                                       terms.per_ms)
        else:
            r = partition_share(terms.records * 1000 / terms.per_ms, partitions, p)
            self.limiter = TokenBucket(r, max(1.0, partition_share(terms.records, partitions, p)))
        self.excess = 0  # excess records seen (for 1-in-N sampling)
        self.last_window: OrderedDict = OrderedDict()  # key -> aggregate window last delivered

    def apply(self, now_ms: int, outputs: list, inputs: list) -> dict[str, int]:
        """Replace the outputs over the quota by None (or keep a sample / one per window);
        returns counts: drop:quota, quota:sample, quota:aggregate (kept ones are still delivered;
        processors/evidence.py has the grammar of these keys)."""
        t, lim = self.terms, self.limiter
        idx = [i for i, o in enumerate(outputs) if o is not None]
        if not idx:
            return {}
        if t.key is None:
            granted = lim.take_upto(now_ms, len(idx))
            over = idx[granted:]
        else:
            key = t.key
            over = [i for i in idx if not lim.take(str(inputs[i].get(key)), now_ms)]
        if t.action == AGGREGATE:  # what the quota let through counts as its key's record of the window
            over_set = set(over)
            for i in idx:
                if i not in over_set:
                    self._first_in_window(now_ms, inputs[i])
        if not over:
            return {}
        counts: dict[str, int] = {}
        for i in over:
            keep = False
            if t.action == SAMPLE:
                self.excess += 1
                keep = self.excess % t.sample_every == 0
            elif t.action == AGGREGATE:
                keep = self._first_in_window(now_ms, inputs[i])
            if keep:
                counts[f"quota:{t.action}"] = counts.get(f"quota:{t.action}", 0) + 1
            else:
                outputs[i] = None
                counts["drop:quota"] = counts.get("drop:quota", 0) + 1
        return counts

    def _first_in_window(self, now_ms: int, rec: dict) -> bool:
        ts = rec.get(self.time_field) if self.time_field else None
        w = (ts if isinstance(ts, int) else now_ms) // self.terms.every_ms
        k = str(rec.get(self.terms.key)) if self.terms.key else ""
        if self.last_window.get(k) == w:
            return False
        self.last_window[k] = w
        self.last_window.move_to_end(k)
        if len(self.last_window) > MAX_KEYS:
            self.last_window.popitem(last=False)
        return True

    def snapshot(self) -> dict:
        return {"limiter": self.limiter.snapshot(), "excess": self.excess, "windows": dict(self.last_window)}

    def restore(self, s: dict) -> None:
        self.limiter.restore(s["limiter"])
        self.excess = int(s.get("excess", 0))
        self.last_window = OrderedDict(s.get("windows", {}))


@dataclass
class PartitionLimits:
    """Everything limited on one source partition; its snapshot is one JSON-able dict."""

    ingress: IngressLimiter | None = None
    breaker: CircuitBreaker | None = None
    quotas: dict[str, ContractQuota] = field(default_factory=dict)

    def snapshot(self) -> dict:
        s: dict = {"quotas": {cid: q.snapshot() for cid, q in self.quotas.items()}}
        if self.ingress is not None:
            s["ingress"] = self.ingress.snapshot()
        if self.breaker is not None:
            s["breaker"] = self.breaker.snapshot()
        return s

    def restore(self, s: dict) -> None:
        """Take over what matches the current terms; limiters that are new start fresh."""
        if self.ingress is not None and "ingress" in s:
            self.ingress.restore(s["ingress"])
        if self.breaker is not None and "breaker" in s:
            self.breaker.restore(s["breaker"])
        for cid, qs in s.get("quotas", {}).items():
            if cid in self.quotas:
                try:
                    self.quotas[cid].restore(qs)
                except (KeyError, TypeError, ValueError):  # the quota's kind changed: start it fresh
                    pass

    def admit_share(self, now_ms: int, n: int) -> tuple[int, str, str | None]:
        """Breaker: how many of n records are processed (the rest quarantined), and the
        state before/after `allow` (OPEN -> HALF_OPEN happens here)."""
        b = self.breaker
        if b is None:
            return n, CLOSED, None
        before = b.state
        state = b.allow(now_ms)
        after = b.state if b.state != before else None
        if state == OPEN:
            return 0, before, after
        if b.state == "HALF_OPEN":
            return min(n, b.probe_budget()), before, after
        return n, before, after
