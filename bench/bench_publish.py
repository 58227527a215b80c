"""Connector publish rate vs raw confluent-kafka produce of the same bytes (goal: ratio >= 0.5),
and the per-record cost of the authenticity options (HMAC-SHA256 tag vs Ed25519 signatures).

    .venv/bin/python bench/bench_publish.py [--records 200000]
"""

from __future__ import annotations

import argparse
import hmac
import statistics
import tempfile
from pathlib import Path

from common import Timer, cluster, machine
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import schemas
from streams import envelope, keyring, topics
from streams.admin import TopicSpec, ensure_topics
from streams.connectors import PRODUCER_DEFAULTS, ProviderConnector
from streams.simulators import FleetSimulator


def make_records(n: int) -> list[dict]:
    fleet, out = FleetSimulator(drones=500, violators=0.1), []
    while len(out) < n:
        out += fleet.tick(1.0)
    return out[:n]


def raw_produce(conf: dict, topic: str, prepared: list) -> float:
    p = Producer({**conf, **PRODUCER_DEFAULTS})
    with Timer() as t:
        for i, (value, key, headers, ts) in enumerate(prepared):
            while True:
                try:
                    p.produce(topic, value, key, headers=headers, timestamp=ts)
                    break
                except BufferError:
                    p.poll(0.05)
            if i & 0x3FF == 0:
                p.poll(0)
        assert p.flush(60) == 0
    return len(prepared) / t.seconds


def connector_publish(conn: ProviderConnector, product: str, records: list[dict]) -> float:
    with Timer() as t:
        for r in records:
            conn.publish(product, r)
        conn.flush(60)
    return len(records) / t.seconds


def auth_costs(n: int = 20000) -> dict[str, float]:
    payload = schemas.load("UavTelemetry").encode(make_records(1)[0])
    key = b"k" * 32
    sk = Ed25519PrivateKey.generate()
    pk = sk.public_key()
    out = {}
    tagger = envelope.Tagger(key)
    with Timer() as t:
        for _ in range(n):
            tagger.tag(b"skyway", b"uav-telemetry", b"1790000000000", payload)
    out["hmac_sha256_tag"] = n / t.seconds
    with Timer() as t:
        for _ in range(n):
            hmac.compare_digest(tagger.tag(b"skyway", b"uav-telemetry", b"1790000000000", payload), b"x" * 16)
    out["hmac_sha256_verify"] = n / t.seconds
    sigs = []
    with Timer() as t:
        for _ in range(n // 4):
            sigs.append(sk.sign(payload))
    out["ed25519_sign"] = (n // 4) / t.seconds
    with Timer() as t:
        for s in sigs:
            pk.verify(s, payload)
    out["ed25519_verify"] = len(sigs) / t.seconds
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    records = make_records(args.records)
    with cluster() as bootstrap, tempfile.TemporaryDirectory() as keys:
        conf = {"bootstrap.servers": bootstrap}
        provider, product = "bench-provider", "uav-telemetry"
        ring, _ = keyring.create(Path(keys), provider)
        s = schemas.load("UavTelemetry")
        catalog = {product: {"product_id": product, "provider_id": provider, "name": "bench",
                             "schema_name": s.full_name, "schema_fingerprint": s.fingerprint,
                             "classification": "IMPORTANT", "partitions": 6, "retention_ms": 3_600_000,
                             "raw_topic": topics.raw(provider, product), "key_field": "serial_number",
                             "event_time_field": "timestamp_ms", "description": "", "updated_ms": 0}}
        base_topic = "bench.raw-baseline"
        ensure_topics(AdminClient(conf), [TopicSpec(topics.raw(provider, product), 6), TopicSpec(base_topic, 6)])
        # the baseline sends exactly the bytes the connector sends: payload, key, the same headers
        conn = ProviderConnector(ring, conf, catalog=catalog)
        traces, tagger = envelope.TraceIds(), envelope.Tagger(ring.hmac_key)
        prepared = []
        for r in records:
            payload = s.encode(r)
            et = str(r["timestamp_ms"]).encode()
            prepared.append((payload, r["serial_number"].encode(), [
                ("cm.participant", provider.encode()), ("cm.product", product.encode()),
                ("cm.schema", s.fingerprint.encode()), ("cm.event_time", et), ("traceparent", traces.next()),
                ("cm.auth", f"{ring.key_id}:".encode() + tagger.tag(provider.encode(),
                                                                       product.encode(), et, payload).hex().encode())],
                             r["timestamp_ms"]))
        raw, pub = [], []
        for _ in range(args.rounds):
            raw.append(raw_produce(conf, base_topic, prepared))
            pub.append(connector_publish(conn, product, records))
        raw_m, pub_m = statistics.median(raw), statistics.median(pub)
        print(f"machine: {machine()}; broker: {'external' if 'CITYMESH_BOOTSTRAP' in __import__('os').environ else 'embedded Tansu'}")
        print(f"records: {args.records} UavTelemetry ({len(prepared[0][0])} B payload, 6 headers), {args.rounds} rounds, median")
        print(f"raw confluent-kafka produce (baseline): {raw_m:>10,.0f} records/s")
        print(f"ProviderConnector.publish:              {pub_m:>10,.0f} records/s")
        print(f"ratio publish/raw: {pub_m / raw_m:.2f}  (goal >= 0.5)")
        costs = auth_costs()
        print("authenticity cost per record (single core, same run):")
        for name, rate in costs.items():
            print(f"  {name:<20} {rate:>12,.0f} /s  ({1e6 / rate:6.2f} µs)")
        print(f"  ed25519_verify / hmac_verify speed ratio: {costs['ed25519_verify'] / costs['hmac_sha256_verify']:.3f}")


if __name__ == "__main__":
    main()
