"""The replay stage on its own (no broker): which provider records it refuses, and that its
state survives a snapshot and restore the way the runner persists it with the offsets."""

from __future__ import annotations

import json

from processors.stages.admission import Admitted
from processors.stages.base import PartitionSlice
from processors.stages.replay import RULE_EVENT_TIME, RULE_REPLAY, Replay
from schemas.headers import EVENT_TIME, SEQUENCE

NOW = 1_800_000_000_000


def admitted(offset: int, seq: bytes | None, event_time: int = NOW) -> Admitted:
    headers = {EVENT_TIME: b"%d" % event_time}
    if seq is not None:
        headers[SEQUENCE] = seq
    return Admitted(None, offset, {}, headers, None)


def run(stage: Replay, p: int, records: list[Admitted], now: int = NOW) -> tuple[list[int], dict[int, str]]:
    """The offsets the stage keeps, and offset -> rule + reason of those it refuses."""
    s = PartitionSlice(p, [], now, good=list(records))
    stage.process(s)
    return [g.offset for g in s.good], {r.offset: f"{r.rule} {r.reason}" for r in s.rejected}


def test_each_sequence_is_accepted_once_per_producer_and_partition():
    stage = Replay("uav")
    kept, refused = run(stage, 1, [admitted(0, b"a:1:1"), admitted(1, b"a:1:2"), admitted(2, b"b:1:1"),
                                   admitted(3, b"a:1:2"), admitted(4, b"a:1:1"), admitted(5, b"a:1:3")])
    assert kept == [0, 1, 2, 5]
    assert set(refused) == {3, 4}
    assert refused[3].startswith(RULE_REPLAY) and "sequence 2 of producer a already seen (last accepted 2)" in refused[3]
    # a later batch: the same records again are all replays, the next sequence is new
    kept, refused = run(stage, 1, [admitted(6, b"a:1:3"), admitted(7, b"b:1:1"), admitted(8, b"a:1:4")])
    assert kept == [8] and set(refused) == {6, 7}
    # another partition keeps its own sequences
    assert run(stage, 2, [admitted(0, b"a:2:1")]) == ([0], {})


def test_a_copy_moved_to_another_partition_and_a_malformed_sequence_are_refused():
    stage = Replay("uav")
    kept, refused = run(stage, 1, [admitted(0, b"a:2:1"), admitted(1, b"a:1"), admitted(2, b":1:1"),
                                   admitted(3, b"a:1:x"), admitted(4, b"a:1:1:1"), admitted(5, b"a:01:1")])
    assert kept == [5]  # (a partition written as 01 is partition 1)
    assert refused[0] == f"{RULE_REPLAY} written for partition 2, found in partition 1"
    assert all(refused[o].startswith(f"{RULE_REPLAY} malformed cm.seq") for o in (1, 2, 3, 4))


def test_records_without_a_sequence_pass_for_this_release():
    assert run(Replay("uav"), 0, [admitted(0, None), admitted(1, None)]) == ([0, 1], {})


def test_event_times_outside_the_window_are_refused():
    stage = Replay("uav", event_time_window_ms=60_000)
    kept, refused = run(stage, 0, [admitted(0, b"a:0:1", NOW - 59_000), admitted(1, b"a:0:2", NOW - 61_000),
                                   admitted(2, b"a:0:3", NOW + 61_000), admitted(3, b"a:0:4", NOW)])
    assert kept == [0, 3]
    assert refused[1].startswith(RULE_EVENT_TIME) and "±60000 ms" in refused[1]
    assert set(refused) == {1, 2}


def test_the_state_persisted_with_the_offsets_restores_what_was_seen():
    stage = Replay("uav")
    run(stage, 0, [admitted(0, b"a:0:5"), admitted(1, b"\xe9t\xe9:0:7")])
    state = json.loads(json.dumps(stage.snapshot(0)))  # as partition_state writes and reads it
    restarted = Replay("uav")
    restarted.restore(0, state)
    kept, refused = run(restarted, 0, [admitted(2, b"a:0:5"), admitted(3, b"\xe9t\xe9:0:7"), admitted(4, b"a:0:6")])
    assert kept == [4] and set(refused) == {2, 3}
    restarted.revoke(0)
    assert restarted.snapshot(0) is None


def test_producers_silent_for_twice_the_window_are_forgotten():
    stage = Replay("uav", event_time_window_ms=1_000)
    run(stage, 0, [admitted(0, b"old:0:1")])
    run(stage, 0, [admitted(1, b"new:0:1", NOW + 2_500)], now=NOW + 2_500)
    assert set(stage.snapshot(0)["producers"]) == {"new"}
