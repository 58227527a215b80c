"""Quota terms and their actions, ingress grants, per-partition shares: no Kafka, time by hand."""

import pytest

from policy_enforcer.quota import (ContractQuota, IngressLimiter, IngressTerms, PartitionLimits, QuotaTerms,
                                   partition_share)


def test_whole_shares_add_up_to_the_limit():
    assert [partition_share(5000, 3, p, whole=True) for p in range(3)] == [1667, 1667, 1666]
    assert sum(partition_share(10, 4, p) for p in range(4)) == 10


def _outs(n):
    return [{"i": i} for i in range(n)]


def test_drop_sample_and_aggregate_on_the_excess():
    drop = ContractQuota(QuotaTerms(records=5, per_ms=1000), 1, 0, None)
    outs = _outs(20)
    assert drop.apply(0, outs, [{}] * 20) == {"drop:quota": 15}
    assert [o is not None for o in outs] == [True] * 5 + [False] * 15

    sample = ContractQuota(QuotaTerms(records=5, per_ms=1000, action="sample", sample_every=5), 1, 0, None)
    outs = _outs(25)
    assert sample.apply(0, outs, [{}] * 25) == {"drop:quota": 16, "quota:sample": 4}

    agg = ContractQuota(QuotaTerms(records=1, per_ms=1000, key="d", action="aggregate", every_ms=10_000), 1, 0, "t")
    inputs = [{"d": d, "t": t} for t in range(0, 30_000, 1000) for d in ("a", "b")]
    outs = _outs(len(inputs))
    counts = agg.apply(0, outs, inputs)
    kept = [inputs[i] for i, o in enumerate(outs) if o is not None]
    # one per drone from the bucket (t=0), then the first of each drone in each later 10 s window
    assert [(r["d"], r["t"]) for r in kept] == [("a", 0), ("b", 0), ("a", 10_000), ("b", 10_000),
                                                ("a", 20_000), ("b", 20_000)]
    assert counts == {"quota:aggregate": 4, "drop:quota": 54}


def test_keyed_quota_is_per_key_and_refills():
    q = ContractQuota(QuotaTerms(records=2, per_ms=1000, key="d"), 3, 1, None)  # keyed: no split
    inputs = [{"d": "a"}] * 4 + [{"d": "b"}] * 4
    outs = _outs(8)
    q.apply(0, outs, inputs)
    assert sum(o is not None for o in outs) == 4
    outs = _outs(8)
    q.apply(500, outs, inputs)  # half a second: one more token per key
    assert sum(o is not None for o in outs) == 2


def test_daily_quota_survives_snapshot_and_restore():
    terms = QuotaTerms(records=10, per_ms=86_400_000)
    a = ContractQuota(terms, 1, 0, None)
    a.apply(1000, _outs(7), [{}] * 7)
    b = ContractQuota(terms, 1, 0, None)
    b.restore(a.snapshot())
    outs = _outs(7)
    assert b.apply(2000, outs, [{}] * 7) == {"drop:quota": 4}


def test_ingress_grants_by_records_and_bytes():
    lim = IngressLimiter(IngressTerms(records_per_s=30, bytes_per_s=3000), 3, 0)  # 10 rec/s, 1000 B/s
    assert lim.grant(0, [100] * 20, [0] * 20) == 10
    lim = IngressLimiter(IngressTerms(records_per_s=300, bytes_per_s=3000), 3, 0)
    assert lim.grant(0, [300] * 20, [0] * 20) == 3
    assert lim.grant(0, [300] * 20, [0] * 20) == 0
    assert lim.wait_ms(300, 17) > 0
    assert lim.grant(1000, [300] * 20, [1000] * 20) == 3


def test_ingress_counts_each_record_when_it_entered_the_broker():
    lim = IngressLimiter(IngressTerms(records_per_s=30), 3, 0)  # 10 rec/s, burst 10
    backlog = [1000 + 200 * i for i in range(50)]  # 10 s written at 5/s, read at once at 60 s
    assert lim.grant(60_000, [100] * 50, backlog) == 50  # hold: nothing waits
    flood = [60_000] * 30  # 30 at one instant: the 1 s since the backlog's last refilled 10 tokens
    assert lim.grant(60_000, [100] * 30, flood) == 10
    assert lim.grant(61_000, [100] * 20, flood[:20]) == 10  # a second later: delayed ones go, at the rate
    lim = IngressLimiter(IngressTerms(records_per_s=30), 3, 0)
    assert lim.conforming(60_000, [100] * 50, backlog) == [True] * 50  # dlq: none of the backlog is excess
    assert lim.conforming(60_000, [100] * 30, flood).count(True) == 10
    assert lim.conforming(61_000, [100] * 20, flood[:20]) == [False] * 20  # excess when they came, for good


def test_bad_terms_are_refused():
    with pytest.raises(ValueError):
        IngressTerms.from_dict({"records_per_s": 10, "on_excess": "explode"})
    with pytest.raises(ValueError):
        IngressTerms.from_dict({"breaker": {"failure_ratio": 0.5, "nonsense": 1}})
    with pytest.raises(ValueError):
        QuotaTerms.from_dict({"records": 10, "per_ms": 86_400_000, "key": "serial_number"})


def test_partition_limits_keep_matching_state_when_terms_change():
    old = PartitionLimits(quotas={"c": ContractQuota(QuotaTerms(records=10, per_ms=86_400_000), 1, 0, None)})
    old.quotas["c"].apply(0, _outs(8), [{}] * 8)
    new = PartitionLimits(quotas={"c": ContractQuota(QuotaTerms(records=12, per_ms=86_400_000), 1, 0, None),
                                  "d": ContractQuota(QuotaTerms(records=5), 1, 0, None)})
    new.restore(old.snapshot())
    assert new.quotas["c"].apply(1, _outs(10), [{}] * 10) == {"drop:quota": 6}
