"""Limiters and breakers with time driven by hand: deterministic, so replays decide the same."""

import pytest

from policy_enforcer.limits import (CLOSED, HALF_OPEN, OPEN, BreakerConfig, CircuitBreaker, KeyedBuckets,
                                    TokenBucket, WindowQuota)


def test_token_bucket_holds_a_flood_to_its_rate():
    b = TokenBucket(rate=100, burst=100, now_ms=0)
    granted = sum(b.take_upto(t, 1000) for t in range(0, 10_001, 100))  # 10x the rate, offered every 100 ms
    assert 100 + 1000 - 10 <= granted <= 100 + 1000  # the burst plus 10 s at 100/s
    assert b.wait_ms(5) == pytest.approx(50, abs=1)


def test_token_bucket_survives_a_restart_through_its_snapshot():
    b = TokenBucket(rate=10, burst=10, now_ms=0)
    assert b.take_upto(0, 10) == 10
    again = TokenBucket(rate=10, burst=10, now_ms=0)  # a fresh bucket would grant 10 at once
    again.restore(b.snapshot())
    assert again.take_upto(0, 10) == 0 and again.take_upto(500, 10) == 5


def test_window_quota_resets_at_local_midnight():
    q = WindowQuota(limit=5000)
    day = 86_400_000
    midnight_cst = 20 * day - 8 * 3_600_000  # 00:00 in UTC+8
    assert q.take_upto(midnight_cst - 1, 4000) == 4000
    assert q.take_upto(midnight_cst - 1, 4000) == 1000
    assert q.take_upto(midnight_cst, 4000) == 4000
    restored = WindowQuota(limit=5000)
    restored.restore(q.snapshot())
    assert restored.take_upto(midnight_cst + 10, 4000) == 1000


def test_keyed_buckets_limit_each_drone_separately():
    k = KeyedBuckets(rate=10, burst=10, max_keys=2)
    assert sum(k.take("a", 0) for _ in range(20)) == 10
    assert sum(k.take("b", 0) for _ in range(20)) == 10
    k.take("c", 0)  # evicts the least recently used key
    assert len(k.snapshot()) == 2


def test_breaker_opens_on_garbage_and_recovers_through_half_open():
    br = CircuitBreaker(BreakerConfig(failure_ratio=0.3, window_ms=10_000, min_samples=100, open_ms=5_000,
                                      probe_samples=20))
    assert br.record(0, 60, 10) is None and br.allow(0) == CLOSED
    assert br.record(1000, 50, 50) == (CLOSED, OPEN)  # 60/170 failed > 0.3
    assert br.allow(2000) == OPEN and br.allow(5999) == OPEN
    assert br.allow(6000) == HALF_OPEN
    assert br.record(6000, 5, 15) == (HALF_OPEN, OPEN)  # probes still bad: open again
    assert br.allow(11_000) == HALF_OPEN
    assert br.record(11_000, 10, 0) is None and br.allow(11_000) == HALF_OPEN
    assert br.record(11_100, 10, 0) == (HALF_OPEN, CLOSED)
    assert br.allow(11_200) == CLOSED


def test_breaker_forgets_failures_outside_its_window_and_restores():
    br = CircuitBreaker(BreakerConfig(failure_ratio=0.5, window_ms=2_000, min_samples=10))
    assert br.record(0, 0, 9) is None  # too few samples to judge
    assert br.record(5000, 10, 1) is None  # the old failures have left the window
    copy = CircuitBreaker(br.config)
    copy.restore(br.snapshot())
    assert copy.snapshot() == br.snapshot()
