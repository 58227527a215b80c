"""The ingress stage on its own (no broker): the provider's rate limit sends the records that
were over it when they entered the broker to the dead-letter topic, its breaker quarantines
while open, and the limiter state persisted with the offsets decides the same after a restart."""

from __future__ import annotations

import json

from processors.limiting import RULE_INGRESS, RULE_QUARANTINE, Limiting, ingress_terms
from processors.stages.base import PartitionSlice
from processors.stages.ingress import Ingress
from tests.processors.stages.samples import NOW, PARTICIPANTS, UAV, Provider, uav

PROVIDER = PARTICIPANTS[UAV["provider_id"]]


def limiting(limits: dict, partitions: int = 1, reports: bool = True) -> Limiting:
    """The product's limits as the runner builds them from the provider's participant record,
    with partition 0 assigned (restored from no state); `reports=False` as a sharded product's
    runner groups other than the lead build them."""
    terms = ingress_terms({**PROVIDER, "limits_json": json.dumps(limits)}, 1)
    lim = Limiting(UAV["product_id"], UAV["provider_id"], UAV["raw_topic"], partitions, UAV["event_time_field"], terms,
                   reports)
    lim.restore(0, {})
    return lim


def run(lim: Limiting, provider: Provider, first: int, n: int, bad: tuple = (), now: int = NOW,
        stamps: list[int] | None = None) -> PartitionSlice:
    """n records from offset `first`, processed at `now`, through admission and ingress; offsets
    in `bad` are refused by admission (not Avro). The records entered the broker at `stamps`
    (ms), by default all half a second before `now`."""
    stamps = stamps or [now - 500] * n
    msgs = [provider.message(uav(o, timestamp_ms=t), o, payload=b"not avro" if o in bad else None)
            for o, t in zip(range(first, first + n), stamps)]
    s = PartitionSlice(0, msgs, now)
    provider.admission().process(s)
    Ingress(lim).process(s)
    return s


def outcome(s: PartitionSlice) -> tuple[list[int], list[int], dict[int, str]]:
    return [g.offset for g in s.good], [r.offset for r in s.rejected], {d.offset: d.rule for d in s.dead}


def test_over_the_limit_the_rest_of_the_slice_goes_to_the_dead_letter_topic():
    lim, provider = limiting({"records_per_s": 4, "on_excess": "dlq"}), Provider()
    s = run(lim, provider, 0, 7, bad=(2, 5))
    # 4 tokens: offsets 0..3 are processed (2 refused by admission); 4..6 are over the limit,
    # whatever admission said about them
    assert outcome(s) == ([0, 1, 3], [2], {4: RULE_INGRESS, 5: RULE_INGRESS, 6: RULE_INGRESS})
    assert all(d.reason == "over the provider's ingress limit" and not d.event for d in s.dead)
    [event] = s.events
    assert event.kind == "RATE_LIMIT" and event.rule == RULE_INGRESS
    assert event.counts == {"drop:ratelimit": 3} and (event.first_offset, event.last_offset) == (0, 6)
    # no tokens left in the same second; a second later the bucket holds 4 again
    assert outcome(run(lim, provider, 7, 2)) == ([], [], {7: RULE_INGRESS, 8: RULE_INGRESS})
    assert outcome(run(lim, provider, 9, 5, now=NOW + 1000)) == ([9, 10, 11, 12], [], {13: RULE_INGRESS})


def test_a_backlog_written_within_the_limit_passes_whole_however_late_it_is_read():
    """What counts is when a record entered the broker, not when a runner reads it: a backlog
    the provider wrote at 2 records/s under a limit of 4/s while no runner read it passes at
    once, a minute later; the records over the limit when they came need not be the last."""
    lim, provider = limiting({"records_per_s": 4, "on_excess": "dlq"}), Provider()
    stamps = [NOW - 60_000 + 500 * i for i in range(100)]  # 50 s at 2/s
    assert outcome(run(lim, provider, 0, 100, now=NOW, stamps=stamps)) == (list(range(100)), [], {})
    # a burst of 6 at one instant (4 tokens), then one record a second later: the burst's last
    # two are over the limit, the later one is not
    s = run(lim, provider, 100, 7, now=NOW, stamps=[NOW - 5000] * 6 + [NOW - 4000])
    assert outcome(s) == ([100, 101, 102, 103, 106], [], {104: RULE_INGRESS, 105: RULE_INGRESS})
    assert s.events[0].counts == {"drop:ratelimit": 2}


def test_a_record_stamped_in_the_future_mints_no_tokens():
    lim, provider = limiting({"records_per_s": 4, "on_excess": "dlq"}), Provider()
    assert outcome(run(lim, provider, 0, 4, stamps=[NOW - 500] * 4))[0] == [0, 1, 2, 3]
    s = run(lim, provider, 4, 2, now=NOW, stamps=[NOW + 3_600_000] * 2)  # an hour ahead: counted as now
    assert outcome(s) == ([4, 5], [], {})  # the 0.5 s since the first four refilled 2 tokens, no more
    assert outcome(run(lim, provider, 6, 1, now=NOW, stamps=[NOW + 3_600_000]))[2] == {6: RULE_INGRESS}


def test_within_the_limit_nothing_changes_and_no_event_is_written():
    lim, provider = limiting({"records_per_s": 100, "on_excess": "dlq"}), Provider()
    s = run(lim, provider, 0, 5, bad=(1,))
    assert outcome(s) == ([0, 2, 3, 4], [1], {}) and s.events == []


def test_hold_is_back_pressure_before_the_batch_not_a_decision_of_the_stage():
    lim, provider = limiting({"records_per_s": 2, "on_excess": "hold"}), Provider()
    assert lim.holding
    assert outcome(run(lim, provider, 0, 5)) == ([0, 1, 2, 3, 4], [], {})


def test_without_limits_the_stage_passes_everything():
    lim = Limiting(UAV["product_id"], UAV["provider_id"], UAV["raw_topic"], 1, UAV["event_time_field"], None)
    s = run(lim, Provider(), 0, 3, bad=(1,))
    assert outcome(s) == ([0, 2], [1], {}) and s.events == []


def test_the_limiter_state_persisted_with_the_offsets_decides_the_same_after_a_restart():
    limits = {"records_per_s": 4, "on_excess": "dlq"}
    lim, provider = limiting(limits), Provider()
    run(lim, provider, 0, 3)
    state = json.loads(json.dumps(lim.snapshot(0)))  # as partition_state writes and reads it
    restarted = limiting(limits)
    restarted.restore(0, state)
    assert outcome(run(restarted, provider, 3, 3)) == ([3], [], {4: RULE_INGRESS, 5: RULE_INGRESS})
    # a fresh limiter (no state) would have let all three through
    assert outcome(run(limiting(limits), provider, 3, 3)) == ([3, 4, 5], [], {})


def test_the_breaker_opens_on_rejects_quarantines_then_probes_and_closes():
    breaker = {"min_samples": 4, "failure_ratio": 0.5, "open_ms": 10_000, "probe_samples": 2}
    lim, provider = limiting({"breaker": breaker}), Provider()
    s = run(lim, provider, 0, 4, bad=(0, 1, 2))  # 3 of 4 refused: over the failure ratio
    assert outcome(s) == ([3], [0, 1, 2], {})
    assert [(e.kind, e.rule, e.reason) for e in s.events] == [("BREAKER", "breaker:OPEN", "CLOSED -> OPEN")]
    # open: the slice is quarantined unprocessed, admitted or not
    s = run(lim, provider, 4, 3, bad=(5,), now=NOW + 1)
    assert outcome(s) == ([], [], {4: RULE_QUARANTINE, 5: RULE_QUARANTINE, 6: RULE_QUARANTINE})
    assert [(e.kind, e.counts) for e in s.events] == [("QUARANTINE", {"quarantine": 3})]
    assert s.dead[0].reason == "provider breaker OPEN"
    # after open_ms: half-open lets probe_samples through; good probes close it
    s = run(lim, provider, 7, 4, now=NOW + 10_001)
    assert outcome(s) == ([7, 8], [], {9: RULE_QUARANTINE, 10: RULE_QUARANTINE})
    assert [e.rule for e in s.events] == ["breaker:HALF_OPEN", RULE_QUARANTINE, "breaker:CLOSED"]
    assert outcome(run(lim, provider, 11, 3, now=NOW + 10_002)) == ([11, 12, 13], [], {})


def test_a_sharded_products_other_groups_keep_back_the_same_records_without_a_word():
    """A runner group other than the lead applies the provider's limit and breaker to what its
    own contracts get, deciding as the lead does on the same records, but writes no event
    (nor, in the sinks, any dead letter): no contract gets what the provider was not allowed
    to send, whichever group enforces it, and nothing is reported twice."""
    limits = {"records_per_s": 4, "on_excess": "dlq",
              "breaker": {"min_samples": 4, "failure_ratio": 0.5, "open_ms": 10_000, "probe_samples": 2}}
    lead, other, provider = limiting(limits), limiting(limits, reports=False), Provider()
    slices = [(0, 7, (), NOW, None),  # over the limit: 4..6
              (7, 4, (7, 8, 9), NOW + 11_000, None),  # 3 of 4 refused: the breaker opens
              (11, 3, (), NOW + 11_001, None),  # open: quarantined
              (14, 4, (), NOW + 21_002, [NOW + 21_000] * 4)]  # half-open: two probes, then closed
    for first, n, bad, now, stamps in slices:
        s_lead, s_other = (run(lim, provider, first, n, bad, now, stamps) for lim in (lead, other))
        assert outcome(s_other) == outcome(s_lead)
        assert s_lead.events and s_other.events == []
    assert {d.rule for d in s_other.dead} == {RULE_QUARANTINE}
    assert other.snapshot(0) == lead.snapshot(0)
