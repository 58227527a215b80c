"""Rate limiters and circuit breakers, free of Kafka and of the wall clock.

Every method takes the time (ms) from the caller: the runner passes the batch's
processing time (the ingress buckets: each record's time of entry into the broker, capped
at it), so a replayed batch takes the same decisions, and tests drive time by hand. State
is a small dict (`snapshot()` / `restore()`) so a runner can persist it and a restart is not
a way to reset a quota.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


class TokenBucket:
    """`rate` tokens per second, up to `burst`; one token per record (or per byte)."""

    __slots__ = ("rate", "burst", "tokens", "last_ms")

    def __init__(self, rate: float, burst: float | None = None, now_ms: int = 0):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        self.tokens = self.burst
        self.last_ms = now_ms

    def _refill(self, now_ms: int) -> None:
        if now_ms > self.last_ms:
            self.tokens = min(self.burst, self.tokens + (now_ms - self.last_ms) * self.rate / 1000.0)
            self.last_ms = now_ms

    def take_upto(self, now_ms: int, n: float) -> int:
        """Take up to n whole tokens; returns how many were granted."""
        self._refill(now_ms)
        granted = int(min(n, self.tokens))
        self.tokens -= granted
        return granted

    def take(self, now_ms: int, n: float = 1) -> bool:
        self._refill(now_ms)
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    def wait_ms(self, n: float = 1) -> int:
        """How long until n tokens are there (for back-pressure: pause that long)."""
        return 0 if self.tokens >= n else int((n - self.tokens) * 1000 / self.rate) + 1

    def snapshot(self) -> dict:
        return {"tokens": self.tokens, "last_ms": self.last_ms}

    def restore(self, state: dict) -> None:
        self.tokens = min(self.burst, float(state["tokens"]))
        self.last_ms = int(state["last_ms"])


class WindowQuota:
    """At most `limit` per calendar window (e.g. 5,000 tickets per day, days in UTC+8)."""

    __slots__ = ("limit", "window_ms", "offset_ms", "window", "used")

    def __init__(self, limit: int, window_ms: int = 86_400_000, utc_offset_ms: int = 8 * 3_600_000):
        self.limit, self.window_ms, self.offset_ms = int(limit), int(window_ms), int(utc_offset_ms)
        self.window, self.used = None, 0

    def take_upto(self, now_ms: int, n: int) -> int:
        w = (now_ms + self.offset_ms) // self.window_ms
        if w != self.window:
            self.window, self.used = w, 0
        granted = max(0, min(n, self.limit - self.used))
        self.used += granted
        return granted

    def snapshot(self) -> dict:
        return {"window": self.window, "used": self.used}

    def restore(self, state: dict) -> None:
        self.window, self.used = state["window"], int(state["used"])


class KeyedBuckets:
    """One token bucket per key ("≤ 10 records/s per drone"), at most `max_keys` remembered."""

    def __init__(self, rate: float, burst: float | None = None, max_keys: int = 100_000):
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._buckets: OrderedDict = OrderedDict()

    def take(self, key, now_ms: int) -> bool:
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = TokenBucket(self.rate, self.burst, now_ms)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return b.take(now_ms)

    def snapshot(self) -> dict:
        return {str(k): b.snapshot() for k, b in self._buckets.items()}

    def restore(self, state: dict) -> None:
        self._buckets.clear()
        for k, s in state.items():
            b = self._buckets[k] = TokenBucket(self.rate, self.burst)
            b.restore(s)


CLOSED, OPEN, HALF_OPEN = "CLOSED", "OPEN", "HALF_OPEN"


@dataclass
class BreakerConfig:
    """Thresholds from the topology: open when the failure share over the last `window_ms`
    exceeds `failure_ratio` with at least `min_samples`; stay open `open_ms`; then let
    `probe_samples` through half-open and close if their failure share is under the ratio."""

    failure_ratio: float = 0.5
    window_ms: int = 10_000
    min_samples: int = 100
    open_ms: int = 30_000
    probe_samples: int = 50


class CircuitBreaker:
    """closed → open → half-open → closed (or back to open), over sliding one-second buckets."""

    def __init__(self, config: BreakerConfig | None = None):
        self.config = config or BreakerConfig()
        self.state = CLOSED
        self.opened_ms = 0
        self._buckets: dict[int, list[int]] = {}  # second -> [ok, failed]
        self._probe = [0, 0]

    def allow(self, now_ms: int) -> str:
        """CLOSED: process normally; OPEN: quarantine without processing; HALF_OPEN: probe."""
        if self.state == OPEN and now_ms - self.opened_ms >= self.config.open_ms:
            self.state, self._probe = HALF_OPEN, [0, 0]
        if self.state == HALF_OPEN and sum(self._probe) >= self.config.probe_samples:
            return OPEN  # enough probes in flight: the rest waits for the verdict
        return self.state

    def probe_budget(self) -> int:
        """HALF_OPEN: how many more records may go through as probes before the verdict."""
        return max(0, self.config.probe_samples - sum(self._probe))

    def record(self, now_ms: int, ok: int, failed: int) -> tuple[str, str] | None:
        """Account for processed records; returns (old, new) state on a transition."""
        c = self.config
        if self.state == HALF_OPEN:
            self._probe[0] += ok
            self._probe[1] += failed
            if sum(self._probe) >= c.probe_samples:
                if self._probe[1] / sum(self._probe) > c.failure_ratio:
                    self.state, self.opened_ms = OPEN, now_ms
                    return HALF_OPEN, OPEN
                self.state, self._buckets = CLOSED, {}
                return HALF_OPEN, CLOSED
            return None
        if self.state == OPEN:
            return None
        sec = now_ms // 1000
        b = self._buckets.setdefault(sec, [0, 0])
        b[0] += ok
        b[1] += failed
        horizon = sec - c.window_ms // 1000
        for old in [s for s in self._buckets if s <= horizon]:
            del self._buckets[old]
        total_ok = sum(v[0] for v in self._buckets.values())
        total_bad = sum(v[1] for v in self._buckets.values())
        n = total_ok + total_bad
        if n >= c.min_samples and total_bad / n > c.failure_ratio:
            self.state, self.opened_ms, self._buckets = OPEN, now_ms, {}
            return CLOSED, OPEN
        return None

    def snapshot(self) -> dict:
        return {"state": self.state, "opened_ms": self.opened_ms, "probe": list(self._probe),
                "buckets": {str(k): v for k, v in self._buckets.items()}}

    def restore(self, s: dict) -> None:
        self.state, self.opened_ms, self._probe = s["state"], int(s["opened_ms"]), list(s["probe"])
        self._buckets = {int(k): list(v) for k, v in s["buckets"].items()}
