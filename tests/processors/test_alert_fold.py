"""Alert hygiene end to end: a drone that stays in a no-fly zone is one episode, not a flood.

Five drones hold position inside the airport's prohibited zone for 10 s (one position a
second each) under the example city's rules and folding (a reminder a minute, cleared after
30 s): the runner raises one CRITICAL alert per drone, not fifty; then they fly 40 s clear of
every zone and each episode is cleared, its counts adding up to the ten hits. The runner is
restarted in the middle: no alert is lost or written twice (the folding state goes with the
offsets).
"""

from __future__ import annotations

import copy

import pytest
import yaml

import schemas
from processors.runner import Runner
from streams import topics
from tests.mesh_fixtures import City, read_topic
from tests.processors.test_alerts import AIRPORT, EXAMPLE, OPEN, T0, fix, topology

ALERT = schemas.load("Alert")


@pytest.fixture
def city(tmp_path, client_config, unique) -> City:
    text = topology(unique)
    doc = yaml.safe_load(text)
    for e in doc["operator_rules"]:  # the example city's folding, as it ships
        example = next(x for x in EXAMPLE["operator_rules"] if x["product"] == "uav-telemetry")
        e["fold"] = copy.deepcopy(example["fold"])
    c = City(unique, tmp_path / "city.yaml", tmp_path / "keys", client_config)
    c.apply(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return c


def _drain(city) -> None:
    runner = Runner(city.product, city.client, city.keys)
    try:
        runner.run(max_idle_s=2.0)
    finally:
        runner.close()


def test_five_drones_in_a_no_fly_zone_are_five_episodes_not_fifty_alerts(city, client_config):
    drones = [f"{city.u}-d{i}" for i in range(5)]
    inside = [fix(d, T0 + t * 1000, h=30.0, where=AIRPORT) for t in range(10) for d in drones]
    outside = [fix(d, T0 + t * 1000, h=30.0, where=OPEN) for t in range(10, 50) for d in drones]
    with city.connector() as conn:
        for r in inside[:25]:
            conn.publish(city.product, r)
    _drain(city)  # a runner, stopped half way through the episodes: the next one takes over
    with city.connector() as conn:
        for r in inside[25:] + outside:
            conn.publish(city.product, r)
    _drain(city)

    alerts = [a for a in (ALERT.decode(m.value()) for m in read_topic(client_config, topics.ALERTS, settle_s=0.5))
              if a["product_id"] == city.product]
    assert len({a["alert_id"] for a in alerts}) == len(alerts), "an alert was written twice"
    by = {(a["subject"], a["evidence"]["phase"]): a for a in alerts if a["rule_id"] == "uav-zone-prohibited"}
    assert len([a for a in alerts if a["rule_id"] == "uav-zone-prohibited"]) == 10, alerts  # raised + cleared each
    for d in drones:
        raised, cleared = by[(d, "raised")], by[(d, "cleared")]
        assert raised["severity"] == "CRITICAL" and raised["time_ms"] == T0 and raised["count"] == 1
        assert cleared["count"] == 9 and cleared["last_seen_ms"] == T0 + 9_000
        assert cleared["time_ms"] >= T0 + 9_000 + 30_000
        assert raised["count"] + cleared["count"] == 10  # every hit accounted for
