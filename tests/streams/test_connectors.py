"""Publish through the connector, read the raw topic back with a plain confluent-kafka
consumer, and decode with fastavro and the .avsc file alone: the wire format is standard."""

import io
import json
import os
import time

import fastavro
import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

import schemas
from streams import envelope, keyring, topics
from deploy.broker import free_port
from streams.admin import TopicSpec, ensure_topics
from streams.connectors import ConsumerConnector, NotAllowed, ProviderConnector, PublishError
from streams.simulators import FleetSimulator


def _catalog(provider: str, product: str) -> dict:
    s = schemas.load("UavTelemetry")
    return {product: {"product_id": product, "provider_id": provider, "name": "t", "schema_name": s.full_name,
                      "schema_fingerprint": s.fingerprint, "classification": "IMPORTANT", "partitions": 3,
                      "retention_ms": 3_600_000, "raw_topic": topics.raw(provider, product),
                      "key_field": "serial_number", "event_time_field": "timestamp_ms", "description": "",
                      "updated_ms": 0}}


def _read_all(client_config: dict, topic: str, n: int, timeout_s: float = 30.0) -> list:
    c = Consumer({**client_config, "group.id": f"plain-{topic}", "auto.offset.reset": "earliest",
                  "session.timeout.ms": 6000})
    c.subscribe([topic])
    out, deadline = [], time.monotonic() + timeout_s
    try:
        while len(out) < n and time.monotonic() < deadline:
            out += [m for m in c.consume(500, 0.5) if not m.error()]
    finally:
        c.close()
    return out


@pytest.fixture
def provider(tmp_path, client_config, unique):
    pid, product = f"prov-{unique}", "uav"
    ring, _ = keyring.create(tmp_path, pid)
    ensure_topics(AdminClient(client_config), [TopicSpec(topics.raw(pid, product), 3)])
    conn = ProviderConnector(ring, client_config, catalog=_catalog(pid, product))
    yield conn, ring, product
    conn.close()


def test_publish_then_decode_with_the_avsc_file_alone(provider, client_config):
    conn, ring, product = provider
    records = FleetSimulator(drones=10, violators=0).tick(30)
    for r in records:
        conn.publish(product, r)
    conn.flush()
    msgs = _read_all(client_config, topics.raw(ring.participant_id, product), len(records))
    assert len(msgs) == len(records)

    with open(schemas.SCHEMA_DIR / "UavTelemetry.avsc") as fh:
        parsed = fastavro.parse_schema(json.load(fh))
    fp = fastavro.schema.fingerprint(fastavro.schema.to_parsing_canonical_form(parsed), "CRC-64-AVRO")
    decoded = []
    for m in msgs:
        v = m.value()
        assert v[:2] == b"\xc3\x01" and v[2:10].hex() == fp  # Avro single-object encoding
        rec = fastavro.schemaless_reader(io.BytesIO(v[10:]), parsed)
        rec["timestamp_ms"] = int(rec["timestamp_ms"].timestamp() * 1000)  # logicalType timestamp-millis
        decoded.append(rec)
        h = dict(m.headers())
        assert h["cm.participant"] == ring.participant_id.encode()
        assert h["cm.schema"].decode() == fp
        assert h["cm.event_time"] == str(rec["timestamp_ms"]).encode()
        assert m.key() == rec["serial_number"].encode()
        assert m.timestamp()[1] == rec["timestamp_ms"]
        assert h["traceparent"].count(b"-") == 3
    key = lambda r: (r["serial_number"], r["timestamp_ms"])
    assert sorted(decoded, key=key) == sorted(records, key=key)


def test_auth_tag_verifies_and_detects_tampering(provider, client_config):
    conn, ring, product = provider
    rec = FleetSimulator(drones=1, violators=0).tick(30)[0]
    conn.publish(product, rec)
    conn.flush()
    m = _read_all(client_config, topics.raw(ring.participant_id, product), 1)[0]
    tagger, key_id, h = envelope.Tagger(ring.hmac_key), ring.key_id.encode(), dict(m.headers())
    assert envelope.tag_problem(tagger, key_id, h, m.value()) is None
    tampered = bytearray(m.value())
    tampered[-1] ^= 1
    assert envelope.tag_problem(tagger, key_id, h, bytes(tampered)) == "bad-auth-tag"
    assert envelope.tag_problem(tagger, key_id, {**h, "cm.product": b"other"}, m.value()) == "bad-auth-tag"
    assert envelope.tag_problem(tagger, key_id, {**h, "cm.seq": b"x:0:1"}, m.value()) == "bad-auth-tag"
    assert envelope.tag_problem(tagger, b"other-key", h, m.value()) == "unknown-key-id"
    no_tag = {k: v for k, v in h.items() if k != "cm.auth"}
    assert envelope.tag_problem(tagger, key_id, no_tag, m.value()) == "missing-auth-tag"
    other = keyring.Keyring.generate(ring.participant_id)
    assert envelope.tag_problem(envelope.Tagger(other.hmac_key), key_id, h, m.value()) == "bad-auth-tag"


def test_invalid_record_raises_and_sends_nothing(provider, client_config):
    conn, ring, product = provider
    rec = FleetSimulator(drones=1, violators=0).tick(30)[0]
    with pytest.raises(schemas.RecordInvalid, match="height_agl_m"):
        conn.publish(product, {**rec, "height_agl_m": "high"})
    with pytest.raises(NotAllowed, match="does not provide"):
        conn.publish("someone-elses-product", rec)
    conn.flush()
    assert conn.sent == 0
    c = Consumer({**client_config, "group.id": "probe"})
    from confluent_kafka import TopicPartition
    assert all(c.get_watermark_offsets(TopicPartition(topics.raw(ring.participant_id, product), p), 5)[1] == 0
               for p in range(3))
    c.close()


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_close_delivers_then_releases_the_producer(provider, client_config):
    conn, ring, product = provider
    records = FleetSimulator(drones=5, violators=0).tick(10)
    for r in records:
        conn.publish(product, r)
    conn.close()
    assert len(_read_all(client_config, topics.raw(ring.participant_id, product), len(records))) == len(records)
    conn.close()  # a second close is a no-op
    with pytest.raises(PublishError, match="closed"):
        conn.publish(product, records[0])
    with pytest.raises(PublishError, match="closed"):
        conn.flush()


def test_close_without_a_broker_reports_the_loss_and_stops_reconnecting(tmp_path, unique):
    """A connector whose broker is gone: close() says how many records were not acknowledged,
    within its timeout, and the producer's threads are gone after it (they would otherwise
    keep reconnecting, and logging each refusal, for as long as the process lives)."""
    ring, _ = keyring.create(tmp_path, f"prov-{unique}")
    before = _threads()
    conn = ProviderConnector(ring, {"bootstrap.servers": f"127.0.0.1:{free_port()}"},
                             catalog=_catalog(ring.participant_id, "uav"))
    assert _threads() > before
    conn.publish("uav", FleetSimulator(drones=1, violators=0).tick(30)[0])
    t0 = time.monotonic()
    with pytest.raises(PublishError, match="1 record"):
        conn.close(1.0)
    assert time.monotonic() - t0 < 5
    deadline = time.monotonic() + 5
    while _threads() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _threads() == before


def test_consumer_connector_reads_its_delivery_topic(client_config, unique):
    contract = f"c-{unique}"
    ensure_topics(AdminClient(client_config), [TopicSpec(topics.delivery(contract), 2)])
    from confluent_kafka import Producer
    s = schemas.load("UavTelemetry")
    recs = FleetSimulator(drones=4, violators=0).tick(30)
    p = Producer(client_config)
    for r in recs:
        p.produce(topics.delivery(contract), s.encode(r), headers=[("cm.contract", contract.encode())])
    p.flush()
    got = []
    with ConsumerConnector("consumer-x", contract, client_config,
                           contract={"consumer_id": "consumer-x", "delivery_schema_json": None}) as cc:
        deadline = time.monotonic() + 30
        while len(got) < len(recs) and time.monotonic() < deadline:
            got += cc.poll()
    assert sorted(d.record["serial_number"] for d in got) == sorted(r["serial_number"] for r in recs)
    assert all(d.headers["cm.contract"] == contract.encode() for d in got)
    with pytest.raises(NotAllowed):
        ConsumerConnector("intruder", contract, client_config, contract={"consumer_id": "consumer-x"})
