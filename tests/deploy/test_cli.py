"""The `citymesh` command as a user runs it: real processes, the embedded broker or CITYMESH_BOOTSTRAP."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path


from deploy import supervisor
from deploy.broker import GROUP_SESSION_MS, pid_alive
from streams.simulators import FleetSimulator

ROOT = Path(__file__).resolve().parents[2]


def citymesh(env: dict, *args: str, timeout: float = 90, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "deploy.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"citymesh {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _env(tmp_path: Path, bootstrap: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYMESH_")}
    env["CITYMESH_STATE_DIR"] = str(tmp_path / "state")
    if bootstrap:
        env["CITYMESH_BOOTSTRAP"] = bootstrap
    return env


def _topology(tmp_path: Path) -> str:
    """The example city with its adapters on free ports, so a demo running meanwhile does not collide."""
    from deploy.broker import free_port
    text = (ROOT / "examples" / "city.yaml").read_text().replace("file: geo/", f"file: {ROOT}/examples/geo/")
    text = text.replace("127.0.0.1:14550", f"127.0.0.1:{free_port()}").replace("127.0.0.1:8311",
                                                                              f"127.0.0.1:{free_port()}")
    path = tmp_path / "city.yaml"
    path.write_text(text)
    return str(path)


def _state(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "state" / "mesh.json").read_text())


def _session_settings(tmp_path: Path) -> set:
    """The CITYMESH_SESSION_TIMEOUT_MS `up` gave the processes it supervises (None: none)."""
    table = json.loads((tmp_path / "state" / supervisor.TABLE_FILE).read_text())
    return {spec["env"].get("CITYMESH_SESSION_TIMEOUT_MS") for spec in table.values()}


def test_up_publish_tail_dry_run_down_on_the_embedded_broker(tmp_path):
    env = _env(tmp_path, None)
    try:
        out = citymesh(env, "up", "--topology", _topology(tmp_path)).stdout
        assert "embedded broker (Tansu)" in out and "the mesh is up" in out
        assert "NO access control" in out  # said plainly: the quick engine enforces nothing at the broker
        state = _state(tmp_path)
        assert state["embedded"] and {"broker", "runner-uav-telemetry", "runner-hotline-tickets",
                                      "source-skyway-ground-station", "source-hotline-open311", "ledger-sink",
                                      "compliance-app"
                                      } <= set(state["processes"])
        assert all(pid_alive(pid) for pid in state["processes"].values())
        # group sessions as short as the embedded broker's group protocol wants (deploy/broker.py)
        assert _session_settings(tmp_path) == {str(GROUP_SESSION_MS)}
        assert "already up" in citymesh(env, "up").stdout

        catalog = citymesh(env, "catalog").stdout
        assert "uav-telemetry" in catalog and "citymesh.UavTelemetry" in catalog and "IMPORTANT" in catalog
        contracts = citymesh(env, "contracts").stdout
        assert "logistics-routes" in contracts and "ACTIVE" in contracts and "0.50 CNY/1k" in contracts

        sample = tmp_path / "flights.jsonl"
        records = FleetSimulator(drones=20, violators=0, start_ms=int(time.time() * 1000)).tick(40)
        sample.write_text("\n".join(json.dumps(r) for r in records) + "\n{\"serial_number\": 1}\nnot json\n")
        pub = citymesh(env, "publish", "uav-telemetry", str(sample), "--as", "skyway", check=False)
        assert pub.returncode == 1  # two bad lines, reported by line number; the good ones went out
        assert f"published {len(records)} record(s)" in pub.stdout
        assert f"flights.jsonl:{len(records) + 1}:" in pub.stderr and f"flights.jsonl:{len(records) + 2}:" in pub.stderr
        not_provider = citymesh(env, "publish", "uav-telemetry", str(sample), "--as", "swift-logistics", check=False)
        assert not_provider.returncode != 0 and "does not provide" in not_provider.stderr

        deadline, delivered = time.monotonic() + 60, []
        while time.monotonic() < deadline and len(delivered) < 5:  # the runner enforces the regulator's contract
            tail = citymesh(env, "tail", "cm.dlv.regulator-uav", "-n", "5").stdout
            delivered = [json.loads(line) for line in tail.splitlines() if line.strip()]
            time.sleep(1)
        assert len(delivered) == 5, delivered
        assert delivered[0]["headers"]["cm.contract"] == "regulator-uav;v=1"
        assert delivered[0]["value"]["serial_number"] in {r["serial_number"] for r in records}

        dry = citymesh(env, "contract", "dry-run", "logistics-routes", "--sample", str(sample.with_suffix(".ok")),
                       check=False)
        assert dry.returncode != 0  # no such file: a clear error, not a traceback
        sample.with_suffix(".ok").write_text("\n".join(json.dumps(r) for r in records))
        dry = citymesh(env, "contract", "dry-run", "logistics-routes", "--sample", str(sample.with_suffix(".ok")))
        lines = [json.loads(line) for line in dry.stdout.splitlines()]
        summary = lines[-1]["summary"]
        assert summary["records"] == len(records) and sum(summary["counts"].values()) == len(records)
        delivered = [ln for ln in lines[:-1] if ln["decision"] == "deliver"]
        assert delivered and all(set(ln["delivered"]) <= {"serial_number", "flight_id", "timestamp_ms", "lat", "lon",
                                                            "alt_msl_m", "height_agl_m", "speed_h_mps", "speed_v_mps",
                                                            "heading_deg", "uav_class"} for ln in delivered)
        assert all(ln["rule"] == "constraint:geofence" for ln in lines[:-1] if ln["decision"] == "drop")

        recent = citymesh(env, "contract", "dry-run", "emergency-uav", "--from-topic", "12")
        lines = [json.loads(line) for line in recent.stdout.splitlines()]
        assert lines[-1]["summary"]["records"] == 12
        assert all(ln["decision"] == "deliver" and ln["delivered"]["serial_number"] in {r["serial_number"] for r in records}
                   for ln in lines[:-1])

        nyc = citymesh(env, "import", "hotline-tickets", str(ROOT.parent / "shared/fixtures/nyc311/311_nyc_sample.csv"),
                       "--as", "hotline-12345", "--mapping", "nyc311", check=False)
        assert "999" in nyc.stdout, nyc.stdout + nyc.stderr

        deadline, report = time.monotonic() + 30, {}
        while time.monotonic() < deadline and not report.get("height"):  # the ledger sink chains the evidence
            report = json.loads(citymesh(env, "audit", "verify", "--json").stdout)
            time.sleep(1)
        assert report["ok"] and report["height"] > 0, report
        export = citymesh(env, "audit", "export", "--since", "2020-01-01T00:00:00Z", "--until", "2100-01-01T00:00:00Z",
                          "--format", "json")
        assert json.loads(export.stdout)

        status = citymesh(env, "status").stdout
        assert "runner-uav-telemetry" in status and "running" in status and "cm.raw.skyway.uav-telemetry" in status
    finally:
        down = citymesh(env, "down", check=False)
    assert "stopped broker" in down.stdout
    assert not any(pid_alive(pid) for pid in state["processes"].values())
    assert "mesh is down" in citymesh(env, "status", check=False).stdout


def test_up_with_citymesh_bootstrap_starts_no_broker(tmp_path, bootstrap):
    env = _env(tmp_path, bootstrap)
    try:
        out = citymesh(env, "up", "--topology", _topology(tmp_path)).stdout
        assert "embedded broker" not in out
        state = _state(tmp_path)
        assert not state["embedded"] and state["bootstrap"] == bootstrap and "broker" not in state["processes"]
        assert _session_settings(tmp_path) == {None}  # a broker of the operator's: the settings' session
        assert "uav-telemetry" in citymesh(env, "catalog").stdout
        assert "dataspace (DSP): http://" in out and "management API: http://" in out
        status = json.loads(citymesh(env, "status", "--json").stdout)
        assert status["dsp"].endswith("/dsp") and status["api"].endswith("/api")
        assert status["processes"]["dataspace"]["running"] and "cm.control.negotiations" in status["topics"]
        import httpx
        assert httpx.get(status["api"] + "/health", timeout=10).status_code == 200
        versions = httpx.get(status["dsp"].removesuffix("/dsp") + "/.well-known/dspace-version", timeout=10).json()
        assert {v["serviceId"] for v in versions["protocolVersions"]} >= {"skyway", "swift-logistics"}
    finally:
        citymesh(env, "down", check=False)
    assert not any(pid_alive(pid) for pid in state["processes"].values())


def test_keys_and_a_bad_topology_file(tmp_path):
    env = _env(tmp_path, None)
    out = citymesh(env, "keys").stdout
    assert out.count("created") == 8 + 1  # the participants, then the CA and broker certificate
    assert out.count("exists") == 0 and citymesh(env, "keys").stdout.count("exists") == 8 + 1
    ring = json.loads((tmp_path / "state" / "keys" / "skyway.json").read_text())
    assert len(bytes.fromhex(ring["ed25519_public"])) == 32 and len(ring["sasl_password"]) == 48
    assert oct((tmp_path / "state" / "keys" / "tls" / "broker.pem").stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "state" / "keys" / "skyway.json").stat().st_mode & 0o777) == "0o600"
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "examples" / "city.yaml").read_text().replace("consumer: anxin-insurance", "consumer: ghost"))
    res = citymesh({**env, "CITYMESH_BOOTSTRAP": "127.0.0.1:1"}, "apply", str(bad), check=False)
    assert res.returncode != 0 and "bad.yaml:" in res.stderr and "unknown participant 'ghost'" in res.stderr
    assert "Traceback" not in res.stderr
