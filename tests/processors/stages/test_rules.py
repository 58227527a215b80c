"""The rules stage on its own (no broker): the example city's operator rules, as `citymesh
apply` writes them to cm.control.rules, raise alerts on admitted records, fold repeated hits
into episodes, and the episodes persisted with the offsets fold the same after a restart.

(Which alerts a crashed owner already wrote is read from cm.alerts by `assign`: that needs
the broker and is tested in tests/processors/test_alerts.py.)"""

from __future__ import annotations

import json

import pytest

from processors.fencing import FenceReader
from processors.stages.rules import Rules
from tests.processors.stages.samples import NOW, RULES, SCHEMA, UAV, Provider, admitted_slice, uav

HIGH = {"height_agl_m": 130.0}  # a LIGHT drone above the 120 m ceiling


@pytest.fixture
def reader():
    """The stage's fence reader: a real one with no broker to read (this stage is never assigned here)."""
    r = FenceReader({})
    yield r
    r.close()


def rules_stage(reader, record=RULES["uav-telemetry"]) -> Rules:
    stage = Rules(UAV["product_id"], SCHEMA, UAV["raw_topic"], UAV["event_time_field"], reader, 3)
    stage.install(record)
    return stage


def alerts(stage: Rules, records: list[dict], first: int, now: int = NOW) -> list[tuple]:
    """(rule, subject, source offset, phase) of each alert the stage raises on this slice."""
    s = admitted_slice(Provider(), records, first=first, now=now)
    stage.process(s)
    return [(a["rule_id"], subject.decode(), offset, a["evidence"]["phase"]) for a, subject, offset in s.alerts]


def test_rule_hits_become_alerts_about_their_subject_and_source_record(reader):
    stage = rules_stage(reader)
    s = admitted_slice(Provider(), [uav(0), uav(1, **HIGH), uav(2, uin=None), uav(3, lat=22.65, lon=113.8)], first=10)
    stage.process(s)
    assert [(a["rule_id"], a["severity"], subject, offset) for a, subject, offset in s.alerts] == [
        ("uav-height-120", "HIGH", b"SN000000000001", 11), ("uav-unregistered", "HIGH", b"SN000000000002", 12),
        ("uav-zone-prohibited", "CRITICAL", b"SN000000000003", 13)]
    alert = s.alerts[0][0]
    assert alert["time_ms"] == uav(1)["timestamp_ms"]  # the record's event time, not the batch's
    assert alert["message"] == "LIGHT UAV at 130.0 m true height, above the 120 m open-airspace ceiling"
    assert (alert["source_topic"], alert["source_partition"], alert["source_offset"]) == (UAV["raw_topic"], 0, 11)
    assert stage.raised == 3
    # a replay of the slice (a fresh stage, the same input) raises the same alerts, ids included
    again = admitted_slice(Provider(), [uav(0), uav(1, **HIGH), uav(2, uin=None), uav(3, lat=22.65, lon=113.8)],
                           first=10)
    rules_stage(reader).process(again)
    assert [a["alert_id"] for a, _, _ in again.alerts] == [a["alert_id"] for a, _, _ in s.alerts]


def test_repeated_hits_fold_into_an_episode_with_reminders_and_a_clearance(reader):
    stage = rules_stage(reader)  # the city folds: a reminder at most every 60 s, cleared after 30 s without a hit
    t = uav(1)["timestamp_ms"]
    assert alerts(stage, [uav(1, **HIGH)], 0) == [("uav-height-120", "SN000000000001", 0, "raised")]
    assert alerts(stage, [uav(1, **HIGH, timestamp_ms=t + 20_000), uav(1, **HIGH, timestamp_ms=t + 40_000)], 1) == []
    assert alerts(stage, [uav(1, **HIGH, timestamp_ms=t + 61_000)], 3) == [
        ("uav-height-120", "SN000000000001", 3, "reminder")]
    # 30 s without a hit on that drone: the next record seen (any drone) clears the episode
    assert alerts(stage, [uav(9, timestamp_ms=t + 92_000)], 4) == [("uav-height-120", "SN000000000001", 4, "cleared")]
    # and a hit after that is a new episode
    assert alerts(stage, [uav(1, **HIGH, timestamp_ms=t + 93_000)], 5) == [
        ("uav-height-120", "SN000000000001", 5, "raised")]


def test_the_rules_records_fold_terms_apply_and_a_new_record_changes_episodes_under_way(reader):
    t = uav(1)["timestamp_ms"]
    unfolded = rules_stage(reader, {**RULES["uav-telemetry"], "fold_json": json.dumps({"off": True})})
    assert [a[3] for a in alerts(unfolded, [uav(1, **HIGH), uav(1, **HIGH, timestamp_ms=t + 1)], 0)] == ["raised"] * 2
    stage = rules_stage(reader)
    alerts(stage, [uav(1, **HIGH)], 0)
    stage.install({**RULES["uav-telemetry"], "fold_json": json.dumps({"clear_after_ms": 5_000})})
    assert alerts(stage, [uav(9, timestamp_ms=t + 6_000)], 1) == [("uav-height-120", "SN000000000001", 1, "cleared")]


def test_the_episodes_persisted_with_the_offsets_fold_the_same_after_a_restart(reader):
    stage = rules_stage(reader)
    t = uav(1)["timestamp_ms"]
    alerts(stage, [uav(1, **HIGH)], 0)
    state = json.loads(json.dumps(stage.snapshot(0)))  # as partition_state writes and reads it
    restarted = rules_stage(reader)
    restarted.restore(0, state)
    assert alerts(restarted, [uav(1, **HIGH, timestamp_ms=t + 20_000)], 1) == []
    # without the state the same hit would be raised as a new episode
    assert alerts(rules_stage(reader), [uav(1, **HIGH, timestamp_ms=t + 20_000)], 1)[0][3] == "raised"
    restarted.revoke(0)
    assert restarted.snapshot(0) is None


def test_without_rules_or_after_a_tombstone_nothing_is_raised(reader):
    assert alerts(rules_stage(reader, None), [uav(1, **HIGH)], 0) == []
    stage = rules_stage(reader)
    stage.install({"tombstone": True})
    assert stage.rules is None and alerts(stage, [uav(1, **HIGH)], 0) == []
