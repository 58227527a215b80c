"""A mesh that heals: `citymesh up` restarts any of its processes that dies.

Each process `up` started (runners, adapters, ledger sink, compliance app, dashboard, control
plane) is SIGKILLed in turn while a provider publishes: each is back within 5 s, `status`
shows its restart and how it died, and the regulator's delivery topic holds every published
record exactly once. `down` signals a pid only while it is still the process that was
started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter

from deploy.state import MeshState
from deploy.supervisor import identity, identity_of_started, is_same, stop_verified
from streams import keyring, topics
from streams.connectors import ProviderConnector
from streams.settings import Settings
from streams.simulators import FleetSimulator
from tests.deploy.test_cli import _env, _topology, citymesh
from tests.mesh_fixtures import read_topic, source_of


def test_every_process_up_started_comes_back_and_delivery_stays_exactly_once(tmp_path):
    env = _env(tmp_path, None)
    settings = Settings(state_dir=tmp_path / "state")
    citymesh(env, "up", "--topology", _topology(tmp_path))
    stop, sent, errors = threading.Event(), [0], []
    try:
        state = MeshState.load(settings)
        client = {"bootstrap.servers": state.bootstrap}
        conn = ProviderConnector(keyring.load(settings.keyring_dir, "skyway"), client)
        fleet = FleetSimulator(drones=30, seed=8, violators=0.0, start_ms=int(time.time() * 1000))

        def publish() -> None:
            try:
                while not stop.is_set():
                    for r in fleet.tick(1.0):
                        conn.publish("uav-telemetry", r)
                        sent[0] += 1
                    conn.flush()
                    stop.wait(0.2)
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)

        pub = threading.Thread(target=publish, daemon=True)
        pub.start()
        killed = [n for n in state.processes if n not in ("broker", "supervisor")]
        assert {"runner-uav-telemetry", "runner-hotline-tickets", "ledger-sink", "compliance-app", "dashboard",
                "dataspace", "source-skyway-ground-station", "source-hotline-open311"} <= set(killed)
        for name in killed:
            old = MeshState.load(settings).processes[name]
            os.kill(old, signal.SIGKILL)
            t0, back = time.monotonic(), None
            while time.monotonic() - t0 < 5.0:
                st = MeshState.load(settings)
                pid = st.processes.get(name)
                if pid and pid != old and is_same(pid, st.identities.get(name)):
                    back = time.monotonic() - t0
                    break
                time.sleep(0.05)
            assert back is not None, f"{name} was not back within 5 s"
            print(f"{name}: back in {back:.2f} s")
            time.sleep(1.0)
        status = json.loads(citymesh(env, "status", "--json").stdout)
        for name in killed:
            p = status["processes"][name]
            assert p["running"] and p["restarts"] == 1 and p["last_exit"] == "killed by SIGKILL", (name, p)
        text = citymesh(env, "status").stdout
        assert "restarts 1, last killed by SIGKILL" in text

        time.sleep(3)
        stop.set()
        pub.join(30)
        conn.close()
        assert not errors, errors
        # every record published through the kills, delivered to the regulator exactly once
        raw = read_topic(client, topics.raw("skyway", "uav-telemetry"), sent[0])
        originals = {(m.partition(), m.offset()) for m in raw}
        deadline, got = time.monotonic() + 90, Counter()
        while time.monotonic() < deadline:
            got = Counter(source_of(m, settings.keyring_dir)
                          for m in read_topic(client, topics.delivery("regulator-uav"), len(originals)))
            if len(got) >= len(originals):
                break
            time.sleep(2)
        assert max(got.values()) == 1, "a record was delivered twice"
        assert set(got) == originals, f"{len(originals - set(got))} of {len(originals)} records not delivered"
    finally:
        stop.set()
        pids = dict(MeshState.load(settings).processes) if MeshState.load(settings) else {}
        citymesh(env, "down", check=False)
        left = [n for n, pid in pids.items() if identity(pid) is not None]
        assert not left, f"still running after down: {left}"


def test_down_never_signals_a_pid_that_is_no_longer_the_process_started(tmp_path):
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        # (once it has exec'd: read at once, CI saw the empty command line of a child mid-exec)
        real = identity_of_started(bystander.pid, ["sleep", "60"])
        assert is_same(bystander.pid, real)
        # the pid recorded for "runner" now belongs to a program that started later: not signalled
        recorded = [real[0] - 1, real[1]]
        assert stop_verified({"runner": bystander.pid}, {"runner": recorded}, timeout_s=1.0) == []
        assert bystander.poll() is None
        assert stop_verified({"runner": bystander.pid}, {"runner": [real[0], "python -m processors.runner"]},
                             timeout_s=1.0) == []
        assert bystander.poll() is None
        assert stop_verified({"runner": bystander.pid}, {"runner": real}, timeout_s=5.0) == ["runner"]
        assert bystander.wait(5) is not None
    finally:
        if bystander.poll() is None:
            bystander.kill()
