"""Runner → compliance app end to end: the enforcement runner's own alerts and compliance
events (no hand-made ones) feed the app; a drone above the ceiling for 30+ s becomes ONE
escalated incident, and metered usage equals what the delivery topics hold, exactly."""

from __future__ import annotations

import threading
import time

import yaml

import schemas
from processors.compliance_app import bills
from processors.runner import Runner
from streams import topics
from streams.connectors import ProviderConnector
from streams import keyring
from tests.mesh_fixtures import read_topic
from topology.apply import apply
from topology.loader import load_topology

from .conftest import city_yaml

ALERT = schemas.load("Alert")
RULES = [{"id": "uav-height-120", "type": "max", "severity": "HIGH", "field": "height_agl_m", "max": 120,
          "when": {"uav_class": ["LIGHT", "SMALL"]}}]


def uav(serial: str, t_ms: int, h: float) -> dict:
    return {"serial_number": serial, "uin": "UAS1", "operator_id": "OP1", "uav_class": "LIGHT",
            "flight_id": f"{serial}-1", "timestamp_ms": t_ms, "lat": 22.54, "lon": 113.93, "alt_msl_m": h + 10,
            "height_agl_m": h, "speed_h_mps": 10.0, "speed_v_mps": 0.0, "heading_deg": 90.0, "battery_pct": 80.0,
            "source": "SIMULATOR"}


def test_runner_alerts_escalate_once_and_usage_equals_deliveries(app):
    u, client = app.u, app.client
    tmp = app.log.parent
    # the app's city, plus operator rules on its UAV product
    path = tmp / "city-rules.yaml"
    # one alert per hit (fold: false): the app's own escalation of a hit stream is what this tests
    path.write_text(city_yaml(u) + yaml.safe_dump({"operator_rules": [{"product": f"{u}-uav", "rules": RULES,
                                                                        "fold": False}]}))
    apply(load_topology(path), client, keys_dir=tmp / "keys")
    runner = Runner(f"{u}-uav", client, tmp / "keys")
    assert runner.alerts.rules is not None
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            while not stop.is_set():
                runner.step()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    high, ok = f"HIGH-{u}", f"OK-{u}"
    t0 = int(time.time() * 1000) - 40_000
    try:
        with ProviderConnector(keyring.load(tmp / "keys", f"{u}-skyway"), client) as conn:
            # 40 s of flight at 1 Hz (event time): HIGH above 120 m for 33 s, OK always below
            for i in range(40):
                conn.publish(f"{u}-uav", uav(ok, t0 + i * 1000, 90.0))
                conn.publish(f"{u}-uav", uav(high, t0 + i * 1000, 130.0 if 3 <= i < 37 else 100.0))
                conn.flush()
                time.sleep(0.05)
        found = []
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            found = [a for a in (ALERT.decode(m.value()) for m in read_topic(client, topics.ALERTS, settle_s=0.3))
                     if a["subject"] in (high, ok)]
            if sum(1 for a in found if a["escalated"]) >= 2:
                break
            time.sleep(1)
    finally:
        stop.set()
        th.join(10)
        runner.close()
    assert not errors, errors
    hits = [a for a in found if not a["escalated"]]
    assert {a["subject"] for a in hits} == {high} and len(hits) == 34  # one per second above 120 m
    incidents = [a for a in found if a["escalated"]]
    assert [a["evidence"]["phase"] for a in incidents] == ["open", "closed"], incidents
    opened, closed = incidents
    assert opened["incident_id"] == closed["incident_id"] and opened["subject"] == high
    assert opened["first_seen_ms"] == t0 + 3000 and opened["last_seen_ms"] - opened["first_seen_ms"] >= 30_000
    assert closed["count"] == 34 and closed["last_seen_ms"] == t0 + 36_000

    # usage: every record each contract delivered, no more, no less
    delivered = {c: len(read_topic(client, topics.delivery(c), expect=80, settle_s=0.3)) for c in (f"{u}-op-uav",
                                                                                       f"{u}-buy-uav")}
    assert delivered == {f"{u}-op-uav": 80, f"{u}-buy-uav": 80}
    now = int(time.time() * 1000)
    deadline = time.monotonic() + 30
    while True:
        lines = {ln["contract_id"]: ln for b in bills(client, now - 86_400_000, now + 86_400_000)
                 for ln in b["lines"] if ln["contract_id"] in delivered}
        if {c: ln["records"] for c, ln in lines.items()} == delivered or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert {c: ln["records"] for c, ln in lines.items()} == delivered
    assert lines[f"{u}-buy-uav"]["amount_minor"] == 4  # 80 records at 0.50 CNY per 1,000, rounded half up
