"""Build a small, uniquely named city for one test: topology file, keys, applied to the broker."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

import schemas
from deploy.broker import _die_with_parent
from streams import keyring, topics
from streams.connectors import ProviderConnector
from topology.access import password_of, services
from topology.apply import apply
from topology.loader import load_topology

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

CONTRACTS = """
  - id: {u}-routes
    product: {u}-uav
    consumer: {u}-logistics
    purposes: [route-planning]
    policy:
      permission:
        fields: [serial_number, flight_id, timestamp_ms, lat, lon, height_agl_m, speed_h_mps, uav_class]
        constraints:
          - {{type: purpose, in: [route-planning]}}
          - {{type: geofence, inside: urban}}
          - {{type: value, field: height_agl_m, op: "<=", value: 120}}
      duties:
        - {{type: pseudonymise, field: serial_number}}
        - {{type: generalise, field: lat, decimals: 3}}
        - {{type: generalise, field: lon, decimals: 3}}
  - id: {u}-regulator
    product: {u}-uav
    consumer: {u}-regulator
    purposes: [airspace-supervision]
    policy:
      permission:
        constraints:
          - {{type: purpose, in: [airspace-supervision]}}
"""


def city_yaml(u: str, contracts: str = CONTRACTS, extra_participants: str = "") -> str:
    return textwrap.dedent(f"""
    participants:
      - {{id: {u}-skyway, name: SkyWay, roles: [provider]}}
      - {{id: {u}-logistics, name: Swift logistics, roles: [consumer]}}
      - {{id: {u}-regulator, name: Regulator, roles: [regulator]}}
    {extra_participants}
    products:
      - id: {u}-uav
        provider: {u}-skyway
        name: UAV telemetry
        schema: UavTelemetry
        partitions: 3
        retention: 1d
        key_field: serial_number
        event_time_field: timestamp_ms
    geofences:
      urban: {{file: {EXAMPLES / 'geo' / 'shenzhen-urban.geojson'}}}
    contracts:
    """) + contracts.format(u=u)


@dataclass
class City:
    u: str
    path: Path
    keys: Path
    client: dict

    @property
    def product(self) -> str:
        return f"{self.u}-uav"

    @property
    def provider(self) -> str:
        return f"{self.u}-skyway"

    @property
    def raw(self) -> str:
        return topics.raw(self.provider, self.product)

    @property
    def dlq(self) -> str:
        return topics.dead_letter(self.provider, self.product)

    def apply(self, text: str | None = None):
        if text is not None:
            self.path.write_text(text)
        topo = load_topology(self.path)
        for p in topo.participants:
            keyring.create(self.keys, p.id)
        return apply(topo, self.client, keys_dir=self.keys)

    def connector(self) -> ProviderConnector:
        return ProviderConnector(keyring.load(self.keys, self.provider), self.client)


def make_city(tmp_path: Path, client: dict, u: str, contracts: str = CONTRACTS) -> City:
    city = City(u, tmp_path / "city.yaml", tmp_path / "keys", client)
    city.apply(city_yaml(u, contracts))
    return city


def read_topic(client: dict, topic: str, expect: int | None = None, timeout_s: float = 30.0,
               settle_s: float = 1.0) -> list:
    """Every record of a topic (group-less), waiting for `expect` records or until it settles."""
    c = Consumer({**client, "group.id": "test-reader", "enable.auto.commit": False})
    try:
        deadline = time.monotonic() + 10
        while True:  # metadata of a young topic can come back empty for a moment
            md = c.list_topics(topic, timeout=10).topics[topic]
            if (md.partitions and md.error is None) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert md.partitions, f"topic {topic} has no partitions: {md.error}"
        c.assign([TopicPartition(topic, p, 0) for p in md.partitions])
        out, deadline, last_new = [], time.monotonic() + timeout_s, time.monotonic()
        while time.monotonic() < deadline:
            batch = [m for m in c.consume(5000, 0.3) if not m.error()]
            if batch:
                out += batch
                last_new = time.monotonic()
            elif (expect is None or len(out) >= expect) and time.monotonic() - last_new > settle_s:
                break
        return out
    finally:
        c.close()


def headers(msg) -> dict:
    return {k: v for k, v in (msg.headers() or [])}


def source_of(msg, keys_dir: Path) -> tuple[int, int]:
    """(source partition, source offset) of a delivery, from its sealed cm.src header, opened
    with the mesh's secret as the operator would (processors/provenance.py)."""
    from processors.provenance import Resolver
    from streams.keyring import mesh_secret
    origin = Resolver(mesh_secret(keys_dir)).origin(headers(msg))
    assert origin is not None, f"delivery without a source reference of its contract: {headers(msg)}"
    return origin.partition, origin.offset


def compliance_events(client: dict, product: str, **kw) -> list[dict]:
    s = schemas.load("ComplianceEvent")
    return [e for e in (s.decode(m.value()) for m in read_topic(client, topics.COMPLIANCE, **kw))
            if e["product_id"] == product]


def raw_producer(client: dict) -> Producer:
    return Producer({**client, "enable.idempotence": True, "linger.ms": 5})


def publish_paced(conn: ProviderConnector, product: str, rate: float, stopping: threading.Event, *,
                  drones: int, seed: int, violators: float = 0.1, sent: list | None = None) -> None:
    """Publish simulated fleet telemetry at `rate` records/s until `stopping` is set, each
    record stamped with the wall clock at publish (= its Kafka timestamp); `sent` gets the
    (serial, timestamp_ms) of each. Pacing by a target count per elapsed time, so the rate
    holds when a publish call is slow now and then."""
    from streams.simulators import FleetSimulator
    fleet, buf = FleetSimulator(drones=drones, seed=seed, violators=violators), []
    t0, n = time.monotonic(), 0
    while not stopping.is_set():
        while n < int((time.monotonic() - t0) * rate) and not stopping.is_set():
            while not buf:
                buf = fleet.tick(1.0)
            r = buf.pop()
            r["timestamp_ms"] = int(time.time() * 1000)
            conn.publish(product, r)
            if sent is not None:
                sent.append((r["serial_number"], r["timestamp_ms"]))
            n += 1
        conn._producer.poll(0)
        time.sleep(0.002)


def spawn_kafka_runner(kafka, topo, keys: Path, product: str, state_dir: Path, log_path: Path,
                       launcher: tuple[str, ...] = ("-m", "processors.runner"), **env: str) -> subprocess.Popen:
    """`product`'s runner process on Apache Kafka, logged in as its own service principal
    (`env`: more CITYMESH_* settings; `launcher`: what python runs, processors.runner's main
    or a script that calls it); it dies with pytest, so no runner is left behind."""
    user = services(topo)[f"runner-{product}"]
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, *launcher, "--product", product, "--metrics-port", "0"], cwd=ROOT,
            env={**os.environ, **kafka.env(user, password_of(keys, topo, user)), "CITYMESH_STATE_DIR": str(state_dir),
                 "CITYMESH_KEYS_DIR": str(keys), "PYTHONPATH": str(ROOT), **env},
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
