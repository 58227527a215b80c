"""The whole mesh as `citymesh up` runs it, against its UAV runner alone, in one script.

Issue 14: with the dashboard, the ledger sink, the compliance app, alerts and the dataspace
running too, the mesh must sustain at least 0.6 of the rate the runner reaches alone for the
example city's contracts. Both runs take examples/city.yaml without the providers' limits
and the ingestion sources (an outside provider publishes instead), each on a fresh embedded
broker:

(a) the runner of uav-telemetry alone (its five contracts), no other mesh process;
(b) `citymesh up` with the same topology: every process it starts, supervised.

In each, once the runner has its partitions, N fleet records are published as fast as the
provider connector goes, and the rate is N / (the moment the runner's group has committed
them all - the first publish). The CPU seconds each process spent in that window say which
one bounds the mesh (the broker and the publisher share the two cores with them).

    .venv/bin/python bench/bench_mesh.py [--records 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from bench_runner import RunnerProcess, drained_at, make_records
from common import apply_city, machine

from deploy.broker import EmbeddedBroker
from streams import keyring, topics
from streams.connectors import ProviderConnector

ROOT = Path(__file__).resolve().parent.parent
PRODUCT, PROVIDER = "uav-telemetry", "skyway"
CLK = os.sysconf("SC_CLK_TCK")


def city_text() -> str:
    """The example city without limits and sources, its geofence files where they are."""
    doc = yaml.safe_load((ROOT / "examples" / "city.yaml").read_text())
    doc.pop("sources", None)
    for p in doc["participants"]:
        p.pop("limits", None)
    for g in doc.get("geofences", {}).values():
        g["file"] = str(ROOT / "examples" / g["file"])
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """Name -> user + system CPU seconds of the process and its waited-for children so far."""
    out = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        out[name] = sum(int(f) for f in fields[11:15]) / CLK  # utime stime cutime cstime
    return out


def timed_publish(conf: dict, conn, records: list[dict], pids: dict[str, int]) -> tuple[float, dict[str, float], float]:
    """(records/s from the first publish to the runner's last commit, CPU seconds per process
    in that window, the window's seconds)."""
    pids = {**pids, "publisher (this script)": os.getpid()}
    before = cpu_seconds(pids)
    t0 = time.perf_counter()
    for r in records:
        conn.publish(PRODUCT, r)
    conn.flush(120)
    t1 = drained_at(conf, f"citymesh-runner.{PRODUCT}", topics.raw(PROVIDER, PRODUCT), timeout_s=600)
    after = cpu_seconds(pids)
    return len(records) / (t1 - t0), {k: after[k] - before[k] for k in after if k in before}, t1 - t0


def runner_alone(text: str, records: list[dict], tmp: Path) -> tuple[float, dict[str, float], float]:
    tmp.mkdir(parents=True)
    with EmbeddedBroker() as broker:
        conf = {"bootstrap.servers": broker.bootstrap}
        _, keys, conn = apply_city(conf, text, tmp, provider=PROVIDER)
        rp = RunnerProcess(PRODUCT, broker.bootstrap, keys.parent, tmp / "runner.log")
        try:
            rp.wait_assigned()
            return timed_publish(conf, conn, records, {"runner-uav-telemetry": rp.proc.pid,
                                                        "broker": broker.pid})
        finally:
            rp.stop()
            conn.close()


def whole_mesh(text: str, records: list[dict], tmp: Path) -> tuple[float, dict[str, float], float]:
    tmp.mkdir(parents=True)
    state = tmp / "mesh"
    path = tmp / "city.yaml"
    path.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYMESH_")}
    env.update(CITYMESH_STATE_DIR=str(state), CITYMESH_DASHBOARD_LISTEN="127.0.0.1:0", PYTHONPATH=str(ROOT))
    cli = [sys.executable, "-m", "deploy.cli"]
    subprocess.run(cli + ["up", "--topology", str(path)], env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    try:
        mesh = json.loads((state / "mesh.json").read_text())
        conf = {"bootstrap.servers": mesh["bootstrap"]}
        log = state / "logs" / f"runner-{PRODUCT}.log"
        deadline = time.monotonic() + 60
        while b"assigned partitions" not in (log.read_bytes() if log.exists() else b""):
            assert time.monotonic() < deadline, "the mesh's runner got no partitions"
            time.sleep(0.1)
        conn = ProviderConnector(keyring.load(state / "keys", PROVIDER), conf)
        try:
            # read again: the supervisor writes its children's pids once they are up
            return timed_publish(conf, conn, records, json.loads((state / "mesh.json").read_text())["processes"])
        finally:
            conn.close()
    finally:
        subprocess.run(cli + ["down"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)


def show(name: str, rate: float, cpu: dict[str, float], seconds: float) -> None:
    print(f"{name}: {rate:,.0f} records/s ({seconds:.1f} s); CPU seconds in that window (share of one core):")
    for proc, s in sorted(cpu.items(), key=lambda kv: -kv[1]):
        if s >= 0.05:
            print(f"    {proc:<28} {s:6.1f} s  ({s / seconds:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    args = ap.parse_args()
    text = city_text()
    records = make_records(args.records)
    print(f"machine: {machine()}")
    print(f"command: .venv/bin/python bench/bench_mesh.py --records {args.records}")
    with tempfile.TemporaryDirectory() as d:
        alone = runner_alone(text, records, Path(d) / "alone")
        show("(a) runner of uav-telemetry alone, 5 contracts", *alone)
        mesh = whole_mesh(text, records, Path(d) / "mesh")
        show("(b) the whole mesh (`citymesh up`)", *mesh)
    print(f"ratio b/a: {mesh[0] / alone[0]:.2f}  (goal >= 0.6)")


if __name__ == "__main__":
    main()
