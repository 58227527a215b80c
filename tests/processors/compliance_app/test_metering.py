"""Metering across a SIGKILL: every BATCH event is counted once, in the table and in the usage.

The app is killed while it meters a backlog (40,000 events: the session's tests share one broker,
kept in memory), so it has written table records past the offsets it committed; the restarted app
reads those events again and must know them by their ids. A runner that wrote some events twice
(same ids, later offsets) is in the same backlog.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.request

from confluent_kafka import Producer

import schemas
from deploy.broker import free_port
from streams import topics
from streams.control import read_table
from tests.mesh_fixtures import read_topic
from tests.processors.test_runner_crash import wait_caught_up
from processors.compliance_app.logic import amount_minor

from .conftest import apply_city, spawn_app, stop_app
from .test_compliance_app import batch

EVENT = schemas.load("ComplianceEvent")
HOUR = 3_600_000


def metered_so_far(port: int) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("citymesh_metered_records_total{"))


def test_a_sigkilled_app_counts_every_batch_event_once(tmp_path, client_config, bootstrap):
    u = "cm" + os.urandom(3).hex()
    apply_city(tmp_path, client_config, u)
    app = type("City", (), {"u": u})  # what `batch` reads of the app fixture
    contract, h0 = f"{u}-buy-uav", 1_790_000_000_000 // HOUR * HOUR
    events = [batch(app, f"{u}-e{i}", contract, f"{u}-uav", h0 + (i % 3) * HOUR + i, 1 + i % 7, nbytes=10)
              for i in range(40_000)]
    p = Producer({**client_config, "linger.ms": 20, "queue.buffering.max.messages": 1_000_000})
    for i, e in enumerate(events):
        p.produce(topics.COMPLIANCE, EVENT.encode(e), f"{u}-uav:{i % 3}".encode())
        if i % 10 == 9:  # a runner that wrote one in ten events twice: same id, later offset
            p.produce(topics.COMPLIANCE, EVENT.encode(e), f"{u}-uav:{i % 3}".encode())
        p.poll(0)
    assert p.flush(60) == 0
    want = {}
    for e in events:
        window = e["time_ms"] - e["time_ms"] % HOUR
        want[window] = want.get(window, 0) + e["counts"]["deliver"]

    app_id, log = f"cm-test-{u}", tmp_path / "app.log"
    port = free_port()
    proc = spawn_app(u, app_id, bootstrap, log, port, ready=False)
    try:
        deadline = time.monotonic() + 120
        while metered_so_far(port) < 1_000:
            assert time.monotonic() < deadline, "the app metered nothing in 120 s"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        ours = {e["event_id"] for e in events}  # (the session's other tests write to cm.compliance too)
        assert read_table(client_config, f"{app_id}-metered", timeout_s=60).keys() & ours < ours, \
            "killed after it had metered everything: nothing was left to count again"
        proc = spawn_app(u, app_id, bootstrap, log, port)
        wait_caught_up(client_config, f"{app_id}-metering", topics.COMPLIANCE, 300)
        table = read_table(client_config, f"{app_id}-metered", timeout_s=60)
        assert table.keys() & ours == ours
        deadline, got = time.monotonic() + 30, {}
        while got != want and time.monotonic() < deadline:
            time.sleep(1)
            usage = {}
            for m in read_topic(client_config, topics.USAGE, settle_s=0.3):
                r = schemas.load("UsageRecord").decode(m.value())
                if r["contract_id"] == contract:
                    usage[r["usage_id"]] = r  # the latest per id, as a compacted table
            got = {r["window_start_ms"]: r["records"] for r in usage.values()}
        assert got == want
        assert all(r["amount_minor"] == amount_minor(r["records"], 50) for r in usage.values())
    finally:
        stop_app(proc)
