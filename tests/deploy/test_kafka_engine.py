"""`citymesh up --engine kafka`: the mesh on Apache Kafka, as a user runs it.

(kcat runs on the librdkafka of the confluent-kafka wheel: Debian's own cannot do SCRAM with
Kafka 4, see deploy.kafka.kcat_env.)

Every process logs in as its own service principal under the ACLs apply derived; a provider
publishes with its own credentials; Debian's kcat reads the consumer's delivery topic with the
consumer's credentials (and is refused the raw topic); `citymesh down` then `up --engine kafka`
keeps topics, contracts, committed offsets and delivered records, and the runner resumes
without delivering anything twice.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from deploy.broker import pid_alive
from deploy.kafka import kcat_env
from streams import keyring, topics
from streams.simulators import FleetSimulator
from streams.tls import TlsFiles
from tests.deploy.test_cli import _env, _state, citymesh
from tests.mesh_fixtures import city_yaml, read_topic, source_of

pytestmark = pytest.mark.kafka

OPERATOR_CONTRACT = """
  - id: {u}-ops
    product: {u}-uav
    consumer: {u}-op
    purposes: [city-operations]
    policy:
      permission:
        constraints:
          - {{type: purpose, in: [city-operations]}}
"""


def _admin(state_dir) -> dict:
    keys = state_dir / "keys"
    return {"bootstrap.servers": json.loads((state_dir / "mesh.json").read_text())["bootstrap"],
            "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "mesh.admin",
            "sasl.password": keyring.service_password(keys, "mesh.admin"),
            "ssl.ca.location": str(TlsFiles.at(keys).ca_cert)}


def _kcat(state_dir, user: str, topic: str) -> subprocess.CompletedProcess:
    keys = state_dir / "keys"
    return subprocess.run(
        ["kcat", "-b", _admin(state_dir)["bootstrap.servers"], "-X", "security.protocol=SASL_SSL",
         "-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", f"sasl.username={user}",
         "-X", f"sasl.password={keyring.load(keys, user).sasl_password}",
         "-X", f"ssl.ca.location={TlsFiles.at(keys).ca_cert}", "-C", "-t", topic, "-e", "-q",
         "-f", "%p:%o %h\\n"], capture_output=True, text=True, timeout=60, env=kcat_env())


def _publish(env, tmp_path, u: str, n_drones: int, start_ms: int) -> int:
    records = FleetSimulator(drones=n_drones, violators=0, start_ms=start_ms, seed=start_ms % 1000).tick(20)
    sample = tmp_path / f"flights-{start_ms}.jsonl"
    sample.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    out = citymesh(env, "publish", f"{u}-uav", str(sample), "--as", f"{u}-skyway").stdout
    assert f"published {len(records)} record(s)" in out
    return len(records)


def _delivered(admin: dict, topic: str, expect: int) -> list:
    deadline, got = time.monotonic() + 90, []
    while time.monotonic() < deadline:
        got = read_topic(admin, topic, settle_s=0.5, timeout_s=10)
        if len(got) >= expect:
            break
        time.sleep(1)
    return got


def _committed(admin: dict, group: str, topic: str) -> dict[int, int]:
    c = Consumer({**admin, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(topic, p) for p in range(3)]
        return {tp.partition: tp.offset for tp in c.committed(parts, timeout=10)}
    finally:
        c.close()


def test_up_kafka_secured_durable_across_down_and_up(tmp_path):
    u = "k" + str(int(time.time()))[-6:]
    f = tmp_path / "city.yaml"
    f.write_text(city_yaml(u, extra_participants=f"  - {{id: {u}-op, name: Operator, roles: [operator]}}")
                 .replace("contracts:\n", "contracts:\n" + OPERATOR_CONTRACT.format(u=u), 1))
    env = {**_env(tmp_path, None), "CITYMESH_DASHBOARD_LISTEN": "127.0.0.1:0"}
    state_dir = tmp_path / "state"
    routes, raw = topics.delivery(f"{u}-routes"), topics.raw(f"{u}-skyway", f"{u}-uav")
    try:
        out = citymesh(env, "up", "--engine", "kafka", "--topology", str(f), timeout=240).stdout
        assert "Apache Kafka node" in out and "access control on" in out and "NO access control" not in out
        state = _state(tmp_path)
        assert state["engine"] == "kafka" and all(pid_alive(p) for p in state["processes"].values())
        assert f"as {u}-op.runner.{u}-uav" in out and f"as {u}-op.ledger-sink" in out
        admin = _admin(state_dir)
        n1 = _publish(env, tmp_path, u, 30, int(time.time() * 1000))
        regulator_first = _delivered(admin, topics.delivery(f"{u}-regulator"), n1)
        assert len(regulator_first) == n1  # the regulator's contract delivers every record
        first = read_topic(admin, routes)  # (written in the same batches, acknowledged before those)
        # Debian's kcat, with the consumer's own credentials: its delivery topic, and not the raw one
        kc = _kcat(state_dir, f"{u}-logistics", routes)
        assert kc.returncode == 0, kc.stderr
        assert len([line for line in kc.stdout.splitlines() if line.strip()]) == len(first) > 0
        denied = _kcat(state_dir, f"{u}-logistics", raw)
        assert denied.returncode != 0 and "authoriz" in (denied.stdout + denied.stderr).lower()
        committed = _committed(admin, f"citymesh-runner.{u}-uav", raw)
        assert sum(committed.values()) == n1
        contracts_before = citymesh(env, "contracts").stdout

        assert "stopped broker" in citymesh(env, "down", timeout=120).stdout
        assert not any(pid_alive(p) for p in state["processes"].values())  # no JVM, no process left

        out = citymesh(env, "up", "--engine", "kafka", "--topology", str(f), timeout=240).stdout
        assert " 0 change(s)," in out and " 0 credential(s) set" in out, out  # topics, records, grants kept
        admin = _admin(state_dir)
        assert citymesh(env, "contracts").stdout == contracts_before
        status = citymesh(env, "status").stdout
        assert "(Apache Kafka, started by up)" in status and f"{routes} " in status
        assert _committed(admin, f"citymesh-runner.{u}-uav", raw) == committed
        assert {(m.partition(), m.offset()) for m in read_topic(admin, routes)} == \
            {(m.partition(), m.offset()) for m in first}
        n2 = _publish(env, tmp_path, u, 30, int(time.time() * 1000) + 60_000)
        after = _delivered(admin, topics.delivery(f"{u}-regulator"), n1 + n2)
        time.sleep(3)  # anything delivered twice would show up by now
        after = read_topic(admin, topics.delivery(f"{u}-regulator"))
        sources = [source_of(m, state_dir / "keys") for m in after]
        assert len(sources) == len(set(sources)) == n1 + n2  # resumed without redelivery
        logs = "".join(p.read_text(errors="replace") for p in (state_dir / "logs").glob("*.log"))
        assert "AUTHORIZATION_FAILED" not in logs and "Authorization failed" not in logs, \
            [line for line in logs.splitlines() if "uthoriz" in line][:5]
    finally:
        citymesh(env, "down", timeout=120, check=False)
