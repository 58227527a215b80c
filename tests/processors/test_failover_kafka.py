"""Failover on three Apache Kafka nodes (replication 3, min.insync.replicas=2).

A provider publishes at 5,000 records/s through a runner; the node leading most raw partitions
is SIGKILLed, later restarted, then the node leading most delivery partitions likewise. An
independent consumer then finds every published record in the delivery topic exactly once:
0 lost, 0 duplicated. The end-to-end latency (publish -> delivery written) during the
failovers is reported (p50/p99/max; printed, and appended to test-output/failover-kafka.txt),
not asserted: a timed test would only measure the machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from deploy.broker import _die_with_parent
from confluent_kafka.admin import AdminClient

import schemas
from streams import keyring, topics
from streams.connectors import ProviderConnector
from streams.control import read_table
from tests.mesh_fixtures import city_yaml, publish_paced, read_topic, source_of
from tests.processors.test_runner_crash import ROOT, stop, wait_caught_up, wait_for_log
from topology.access import password_of, services
from topology.apply import apply
from topology.loader import load_topology

pytestmark = pytest.mark.kafka
RATE = 5000
REGULATOR_ONLY = """
  - id: {u}-regulator
    product: {u}-uav
    consumer: {u}-regulator
    purposes: [airspace-supervision]
    policy:
      permission:
        constraints:
          - {{type: purpose, in: [airspace-supervision]}}
"""


def leaders(admin: AdminClient, topic: str) -> Counter:
    return Counter(p.leader for p in admin.list_topics(topic, timeout=10).topics[topic].partitions.values())


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def test_failover_loses_and_duplicates_nothing(tmp_path, kafka3, unique):
    u, keys, f = unique, tmp_path / "keys", tmp_path / "city.yaml"
    admin_cfg = kafka3.admin_config()
    f.write_text(city_yaml(u, REGULATOR_ONLY))
    topo = load_topology(f)
    apply(topo, admin_cfg, replication=3, keys_dir=keys, with_acls=True)
    product, provider = f"{u}-uav", f"{u}-skyway"
    raw, dlv = topics.raw(provider, product), topics.delivery(f"{u}-regulator")
    admin = AdminClient(admin_cfg)
    assert all(len(p.replicas) == 3 for p in admin.list_topics(raw, timeout=10).topics[raw].partitions.values())
    runner_user = services(topo)[f"runner-{product}"]
    log_path = tmp_path / "runner.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "processors.runner", "--product", product, "--metrics-port", "0"], cwd=ROOT,
            env={**os.environ, **kafka3.env(runner_user, password_of(keys, topo, runner_user)),
                 "CITYMESH_STATE_DIR": str(tmp_path / "state"), "CITYMESH_KEYS_DIR": str(keys), "PYTHONPATH": str(ROOT)},
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)  # no orphan if pytest dies
    stopping = threading.Event()
    errors: list[BaseException] = []
    sent: list[tuple[str, int]] = []  # (serial, timestamp_ms) of every record the broker acknowledged

    def publish() -> None:
        try:
            ring = keyring.load(keys, provider)
            with ProviderConnector(ring, kafka3.client_config(provider, ring.sasl_password)) as conn:
                publish_paced(conn, product, RATE, stopping, drones=400, seed=9, sent=sent)
            # close() flushed: every record acknowledged (or PublishError, failing the test)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    pub = threading.Thread(target=publish, daemon=True)
    windows = []  # (kill, back) wall-clock seconds of each failover
    try:
        wait_for_log(log_path, "assigned partitions", 0, 60, proc)
        pub.start()
        t_pub = time.monotonic()
        time.sleep(4)
        for topic in (raw, dlv):
            victim = leaders(admin, topic).most_common(1)[0][0]
            t_kill = time.time()
            kafka3.kill(victim)
            time.sleep(6)
            kafka3.start_node(victim)
            kafka3.wait_ready(300)  # a JVM start and catch-up, on a loaded 2-core machine
            windows.append((topic, victim, t_kill, time.time()))
            assert not errors, errors
            time.sleep(3)
        stopping.set()
        published_s = time.monotonic() - t_pub
        pub.join(120)
        assert not pub.is_alive() and not errors, errors
        try:
            wait_caught_up(admin_cfg, f"citymesh-runner.{product}", raw, 120)
        except AssertionError as exc:  # what the runner was doing: its own lines, not librdkafka's
            lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if not ln.startswith("%")]
            raise AssertionError(f"{exc}\nrunner log:\n" + "\n".join(lines[-60:])) from None
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    finally:
        stopping.set()
        stop(proc)

    contract = read_table(admin_cfg, topics.CONTROL_CONTRACTS)[f"{u}-regulator"]
    telemetry = schemas.RecordSchema.from_definition(json.loads(contract["delivery_schema_json"]))
    delivered = read_topic(admin_cfg, dlv, expect=len(sent), timeout_s=60)
    got = Counter()
    latency = []  # (publish time s, seconds until the runner wrote the delivery)
    for m in delivered:
        r = telemetry.decode(m.value())
        got[(r["serial_number"], r["timestamp_ms"])] += 1
        latency.append((r["timestamp_ms"] / 1000, (m.timestamp()[1] - r["timestamp_ms"]) / 1000))
    # (a burst after a stall can publish one drone's fix twice in one millisecond: the same
    # (serial, timestamp) sent twice is wanted twice)
    want = Counter(sent)
    lost, duplicated = want - got, got - want
    sources = [source_of(m, keys) for m in delivered]  # (the sealed source position, opened as the operator would)
    during = [lat for t, lat in latency if any(k <= t <= b + 5 for _, _, k, b in windows)]
    quiet = [lat for t, lat in latency if not any(k - 1 <= t <= b + 5 for _, _, k, b in windows)]
    report = (f"failover at {RATE} records/s ({len(sent) / published_s:.0f}/s achieved), {len(sent)} published, {len(delivered)} delivered; "
          + "; ".join(f"{t.split('.')[1]} leader node {v} killed, back after {b - k:.1f} s" for t, v, k, b in windows)
          + f"\nlatency during failover: p50 {percentile(during, .5) * 1000:.0f} ms, p99 "
          f"{percentile(during, .99) * 1000:.0f} ms, max {max(during) * 1000:.0f} ms ({len(during)} records); "
          f"otherwise p50 {percentile(quiet, .5) * 1000:.0f} ms, p99 {percentile(quiet, .99) * 1000:.0f} ms")
    print("\n" + report)  # and kept where a CI run leaves it (test-output/ is not committed)
    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    with open(out / "failover-kafka.txt", "a") as fh:
        fh.write(time.strftime("%Y-%m-%d %H:%M:%S ") + report + "\n")
    assert len(sent) > 5 * RATE
    assert not lost and not duplicated, (sum(lost.values()), sum(duplicated.values()))
    assert len(sources) == len(set(sources)) == len(sent)
