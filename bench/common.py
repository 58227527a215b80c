"""Shared benchmark plumbing: a broker for the run (embedded unless CITYMESH_BOOTSTRAP) and
a results printer. Benchmarks report ratios against a baseline measured in the same run."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deploy.broker import EmbeddedBroker  # noqa: E402
from streams.offsets import take  # noqa: E402


@contextlib.contextmanager
def cluster():
    external = os.environ.get("CITYMESH_BOOTSTRAP")
    if external:
        yield external
        return
    with EmbeddedBroker() as b:
        yield b.bootstrap


@contextlib.contextmanager
def kafka_cluster(tmp: Path):
    """One secured Apache Kafka node (deploy/kafka.py: SCRAM over TLS, StandardAuthorizer) whose
    data lives in tmp; yields the KafkaCluster (`admin_config()`, `client_config(user, pw)`, `env`)."""
    from deploy.kafka import KafkaCluster
    from streams import keyring, tls
    files, _ = tls.ensure(tmp / "tls-keys")
    with KafkaCluster(tmp / "kafka", files, keyring.new_password()) as kc:
        yield kc


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def publish_fleet_paced(conn, product: str, rate: float, seconds: float, drones: int = 500,
                        violators: float = 0.1) -> int:
    """Publish simulated fleet telemetry at `rate` records/s for `seconds`, each record stamped
    with its publish time (the latency benchmarks measure from it); returns how many were sent.

    Pacing by a target count per elapsed time, not by sleeping per record, so the rate holds
    even when a publish call is slow now and then."""
    from streams.simulators import FleetSimulator
    fleet = FleetSimulator(drones=drones, seed=9, violators=violators)
    t0, sent, buf = time.monotonic(), 0, []
    while time.monotonic() - t0 < seconds:
        if not buf:
            buf = fleet.tick(1.0)
        target = int((time.monotonic() - t0) * rate)
        while sent < target and buf:
            r = buf.pop()
            r["timestamp_ms"] = int(time.time() * 1000)
            conn.publish(product, r)
            sent += 1
        conn._producer.poll(0)
        time.sleep(0.001)
    conn.flush(30)
    return sent


def apply_city(conf: dict, text: str, tmp: Path, provider: str = "bench-skyway", secured=None):
    """Write a benchmark's topology to tmp/bench.yaml, give every participant a key under
    tmp/state/keys and apply it; returns (the YAML's path, the keys folder, a connector of
    `provider`). The path is for benchmarks that re-apply a changed topology. `secured`: a
    KafkaCluster, whose principals then get credentials and ACLs, the provider publishing as itself."""
    from streams import keyring
    from streams.connectors import ProviderConnector
    from topology.apply import apply
    from topology.loader import load_topology
    path, keys = tmp / "bench.yaml", tmp / "state" / "keys"
    path.write_text(text)
    topo = load_topology(path)
    for part in topo.participants:
        keyring.create(keys, part.id)
    apply(topo, conf, keys_dir=keys, with_acls=secured is not None)
    ring = keyring.load(keys, provider)
    return path, keys, ProviderConnector(ring, secured.client_config(provider, ring.sasl_password) if secured else conf)


def delivery_schema(conf: dict, contract_id: str):
    """The output schema the runner writes for a contract (from the contracts control topic)."""
    import json

    import schemas
    from streams import topics
    from streams.control import read_table
    contract = read_table(conf, topics.CONTROL_CONTRACTS)[contract_id]
    return schemas.RecordSchema.from_definition(json.loads(contract["delivery_schema_json"]))


def tail_consumer(conf: dict, topic: str):
    """A group-less reader of `topic` from its current end: what a consumer sees from now on."""
    from confluent_kafka import Consumer, TopicPartition

    from streams.offsets import end_offsets
    c = Consumer({**conf, "group.id": f"bench-tail-{time.time_ns()}", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 10})
    parts = [TopicPartition(topic, q) for q in c.list_topics(topic, timeout=10).topics[topic].partitions]
    ends = end_offsets(c, parts)
    c.assign([TopicPartition(topic, tp.partition, ends[(topic, tp.partition)][1]) for tp in parts])
    return c


def receive_latencies(c, decode, stop, out: list, measure_from: list, sent_at: list | None = None) -> None:
    """Until stop: append receive time - decode(value) (ms) for every record whose time is at or
    after measure_from[0]; decode returns None for records that do not count. A consumer that
    reacts to each record: it takes what is queued, else waits for the next one. With
    `sent_at`, each record's own time goes there too (for `per_second`)."""
    while not stop.is_set():
        msgs = take(c, 1000, 0.05)
        now = time.time() * 1000
        for m in msgs:
            if m.error():
                continue
            t = decode(m.value())
            if t is not None and t >= measure_from[0]:
                out.append(now - t)
                if sent_at is not None:
                    sent_at.append(t)


def per_second(sent_at: list, lat: list) -> str:
    """p50/p99 per second of publish time: a stall or a growing backlog shows as a trend that
    one percentile over the whole run hides."""
    if not sent_at:
        return "no records"
    t0, by = min(sent_at), {}
    for t, ms in zip(sent_at, lat):
        by.setdefault(int((t - t0) // 1000), []).append(ms)
    cells = []
    for s in sorted(by):
        v = sorted(by[s])
        cells.append(f"{s}s {v[len(v) // 2]:.0f}/{v[int(len(v) * 0.99)]:.0f}")
    return "p50/p99 ms per second: " + ", ".join(cells)
