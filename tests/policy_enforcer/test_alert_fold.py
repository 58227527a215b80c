"""Folding repeated rule hits (policy_enforcer/alert_fold.py): episodes, counts, determinism."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from policy_enforcer.alert_fold import CLEARED, RAISED, REMINDER, AlertFold, FoldTerms


@dataclass
class Hit:  # what policy_enforcer.rules gives the fold: rule, subject, severity, record index
    rule_id: str
    subject: str
    index: int
    severity: str = "CRITICAL"


def run(fold: AlertFold, stream: list[tuple[int, list[tuple[str, str]]]]) -> list:
    """stream: (record time, [(rule, subject) hits of that record]) per record."""
    hits = [Hit(r, s, i) for i, (_, hs) in enumerate(stream) for r, s in hs]
    return fold.fold(hits, [t for t, _ in stream])


def test_an_episode_is_raised_reminded_and_cleared_and_its_counts_add_up():
    fold = AlertFold(FoldTerms(remind_every_ms=60_000, clear_after_ms=30_000))
    # a drone in a no-fly zone for 150 s at 1 Hz, then 40 s of clean positions
    stream = [(t * 1000, [("zone", "D1")]) for t in range(150)] + [(t * 1000, []) for t in range(150, 190)]
    out = run(fold, stream)
    assert [f.phase for f in out] == [RAISED, REMINDER, REMINDER, CLEARED]
    assert [f.time_ms for f in out] == [0, 60_000, 120_000, 179_000]
    assert sum(f.count for f in out) == 150  # every hit is counted once
    assert (out[1].first_seen_ms, out[1].last_seen_ms) == (1_000, 60_000)
    assert out[3].count == 29 and out[3].last_seen_ms == 149_000 and out[3].severity == "CRITICAL"
    assert fold.episodes == {}


def test_subjects_and_rules_fold_apart_and_a_new_episode_starts_after_a_clear():
    fold = AlertFold(FoldTerms(remind_every_ms=60_000, clear_after_ms=10_000))
    stream = [(t * 1000, [("zone", "D1"), ("height", "D1"), ("zone", "D2")]) for t in range(5)]
    stream += [(t * 1000, []) for t in range(5, 20)] + [(20_000, [("zone", "D1")])]
    out = run(fold, stream)
    assert [(f.phase, f.key) for f in out] == [
        (RAISED, ("zone", "D1")), (RAISED, ("height", "D1")), (RAISED, ("zone", "D2")),
        (CLEARED, ("height", "D1")), (CLEARED, ("zone", "D1")), (CLEARED, ("zone", "D2")),
        (RAISED, ("zone", "D1"))]


def test_off_raises_every_hit():
    fold = AlertFold(FoldTerms.from_dict({"off": True}))
    out = run(fold, [(t * 1000, [("zone", "D1")]) for t in range(10)])
    assert [f.phase for f in out] == [RAISED] * 10
    assert fold.episodes == {}


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5_000), st.lists(st.sampled_from(
    [("zone", "D1"), ("zone", "D2"), ("speed", "D1")]), unique=True, max_size=3)), min_size=1, max_size=80),
    st.integers(0, 80))
def test_folding_in_two_parts_through_a_snapshot_equals_folding_at_once(steps, cut):
    """A restart restores the state persisted with the committed offset: the alerts of the
    replayed rest come out exactly as if nothing had happened."""
    t, stream = 0, []
    for dt, hs in steps:
        t += dt
        stream.append((t, hs))
    cut = min(cut, len(stream))
    terms = FoldTerms(remind_every_ms=3_000, clear_after_ms=2_000)
    at_once = AlertFold(terms)
    whole = [(f.phase, f.key, f.time_ms, f.count) for f in run(at_once, stream)]
    first = AlertFold(terms)
    part = [(f.phase, f.key, f.time_ms, f.count) for f in run(first, stream[:cut])]
    second = AlertFold(terms)
    second.restore(first.snapshot() or {})
    part += [(f.phase, f.key, f.time_ms, f.count) for f in run(second, stream[cut:])]
    assert part == whole
    # every hit is in exactly one alert's count, or still pending in an open episode
    pending = sum(ep[3] for ep in at_once.episodes.values())
    assert sum(c for *_, c in whole) + pending == sum(len(hs) for _, hs in stream)
