"""Lost link across a restart: a drone that falls silent while the app is down is still reported."""

from __future__ import annotations

import os
import signal
import time

from confluent_kafka import Producer

from deploy.broker import free_port
from streams import topics
from streams.control import read_table

from .conftest import apply_city, spawn_app, stop_app, RunningApp
from .test_compliance_app import app_alerts, uav


def test_a_drone_silent_while_the_app_was_down_is_reported_after_its_restart(tmp_path, client_config, bootstrap):
    u = "ll" + os.urandom(3).hex()
    apply_city(tmp_path, client_config, u)
    app_id, log, port = f"cm-test-{u}", tmp_path / "app.log", free_port()
    proc = spawn_app(u, app_id, bootstrap, log, port)
    try:
        running = RunningApp(u, client_config, proc, log, port)
        schema = running.delivery_schema(f"{u}-op-uav")
        p = Producer({**client_config, "linger.ms": 5})
        flying, landed, t0 = f"FLY-{u}", f"GND-{u}", int(time.time() * 1000)
        for i in range(3):
            p.produce(topics.delivery(f"{u}-op-uav"), schema.encode(uav(running, flying, t0 + i * 1000, 60.0)),
                      flying.encode(), partition=0)
            p.flush(5)
        for i in range(3):  # the partition goes on after the drone's last fix
            p.produce(topics.delivery(f"{u}-op-uav"), schema.encode(uav(running, landed, t0 + i * 1000, 0.0)),
                      landed.encode(), partition=0)
            p.flush(5)
        time.sleep(2)
        os.killpg(proc.pid, signal.SIGKILL)  # well before its 10 s of silence
        proc.wait(10)
        assert not app_alerts(running, lambda a: a["subject"] == flying)
        time.sleep(10)
        proc = spawn_app(u, app_id, bootstrap, log, port)
        found = app_alerts(running, lambda a: a["rule_id"] == "uav-lost-link" and a["subject"] == flying,
                           expect=1, timeout_s=30)
        assert [a["evidence"]["last_seen_ms"] for a in found] == [str(t0 + 2000)]
        assert read_table(client_config, topics.CONTROL_CONTRACTS)[f"{u}-op-uav"]["product_id"] == found[0]["product_id"]
    finally:
        stop_app(proc)
