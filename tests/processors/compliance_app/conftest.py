"""One running compliance app (a real subprocess) over a small unique city, shared by the module.

The app is started with short timers where the test would otherwise wait minutes (quiet period,
usage flush) but the production defaults for what the tests are about (30 s escalation, 10 s
lost link, 20 tickets per 10 min). It is stopped with SIGTERM and killed if it does not stop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import schemas
from deploy.broker import free_port, stop_pid
from streams import keyring, topics
from streams.control import read_table
from topology.apply import apply
from topology.loader import load_topology

ROOT = Path(__file__).resolve().parents[3]


def city_yaml(u: str) -> str:
    return textwrap.dedent(f"""
    participants:
      - {{id: {u}-op, name: Operator, roles: [operator]}}
      - {{id: {u}-skyway, name: SkyWay, roles: [provider]}}
      - {{id: {u}-hotline, name: Hotline, roles: [provider]}}
      - {{id: {u}-buyer, name: Buyer, roles: [consumer]}}
    products:
      - {{id: {u}-uav, provider: {u}-skyway, name: UAV, schema: UavTelemetry, partitions: 3, retention: 1d,
          key_field: serial_number, event_time_field: timestamp_ms}}
      - {{id: {u}-tickets, provider: {u}-hotline, name: Tickets, schema: HotlineTicket, partitions: 2,
          retention: 1d, key_field: order_no, event_time_field: call_time}}
    contracts:
      - id: {u}-op-uav
        product: {u}-uav
        consumer: {u}-op
        purposes: [city-operations]
        policy: {{permission: {{constraints: [{{type: purpose, in: [city-operations]}}]}}}}
      - id: {u}-op-hotline
        product: {u}-tickets
        consumer: {u}-op
        purposes: [city-operations]
        policy:
          permission:
            fields: [order_no, call_time, category_code, category_name, district, status, deadline, completed_time]
            constraints: [{{type: purpose, in: [city-operations]}}]
      - id: {u}-buy-uav
        product: {u}-uav
        consumer: {u}-buyer
        purposes: [route-planning]
        price_per_1000: 0.50
        policy: {{permission: {{constraints: [{{type: purpose, in: [route-planning]}}]}}}}
      - id: {u}-buy-tickets
        product: {u}-tickets
        consumer: {u}-buyer
        purposes: [analysis]
        price_per_1000: 2.00
        policy: {{permission: {{constraints: [{{type: purpose, in: [analysis]}}]}}}}
    """)


class RunningApp:
    def __init__(self, u: str, client: dict, proc: subprocess.Popen, log: Path, metrics_port: int):
        self.u, self.client, self.proc, self.log, self.metrics_port = u, client, proc, log, metrics_port
        self.contracts = read_table(client, topics.CONTROL_CONTRACTS)

    def delivery_schema(self, contract: str) -> schemas.RecordSchema:
        return schemas.RecordSchema.from_definition(json.loads(self.contracts[contract]["delivery_schema_json"]))

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def apply_city(tmp: Path, client_config: dict, u: str) -> None:
    path = tmp / "city.yaml"
    path.write_text(city_yaml(u))
    topo = load_topology(path)
    for p in topo.participants:
        keyring.create(tmp / "keys", p.id)
    apply(topo, client_config, keys_dir=tmp / "keys")


def spawn_app(u: str, app_id: str, bootstrap: str, log: Path, port: int, ready: bool = True) -> subprocess.Popen:
    """The app over city `u` (short quiet period and usage flush), logging to `log`; returns once faust's
    worker is Ready (`ready`), or at once (metering starts before the worker)."""
    env = {**os.environ, "CITYMESH_BOOTSTRAP": bootstrap, "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "processors.compliance_app", "--app-id", app_id,
            "--uav-contract", f"{u}-op-uav", "--hotline-contract", f"{u}-op-hotline", "--quiet-s", "4",
            "--flush-s", "1", "--metrics-port", str(port)]
    since = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + 60
    while ready and "Ready" not in log.read_bytes()[since:].decode(errors="replace"):
        text = log.read_text(errors="replace")[-4000:]
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_app(proc)
            raise AssertionError(f"app not ready in 60 s (exit code {proc.poll()}):\n{text}")
        time.sleep(0.2)
    return proc


def stop_app(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL for an app that does not stop within 20 s."""
    if proc.poll() is None:
        stop_pid(proc.pid, 20, proc)


@pytest.fixture(scope="module")
def app(tmp_path_factory, client_config, bootstrap):
    u = "ca" + os.urandom(3).hex()
    tmp = tmp_path_factory.mktemp("compliance-app")
    apply_city(tmp, client_config, u)
    log, port = tmp / "app.log", free_port()
    proc = spawn_app(u, f"cm-test-{u}", bootstrap, log, port)
    try:
        yield RunningApp(u, client_config, proc, log, port)
    finally:
        stop_app(proc)
