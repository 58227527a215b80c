"""`apply` against the real broker: creates the data-flow topics, fills the control topics,
and a second apply of the same file changes nothing."""

import json
import time

import pytest
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

import schemas
from streams import topics
from streams.admin import TopicSpec, ensure_topics
from streams.control import read_table
from streams.simulators import FleetSimulator
from tests.mesh_fixtures import City, city_yaml, read_topic
from topology.access import grants
from topology.apply import apply
from topology.loader import load_topology


def _end_offsets(client, topic):
    c = Consumer({**client, "group.id": "probe"})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.partitions]
    finally:
        c.close()


def test_apply_twice_is_idempotent(tmp_path, client_config, unique):
    f = tmp_path / "city.yaml"
    f.write_text(city_yaml(unique))
    topo = load_topology(f)
    first = apply(topo, client_config)
    product, provider = f"{unique}-uav", f"{unique}-skyway"
    expected = {topics.raw(provider, product), topics.dead_letter(provider, product),
                topics.delivery(f"{unique}-routes"), topics.delivery(f"{unique}-regulator")}
    assert expected <= {t for t, s in first.topics.items() if s == "created"}
    assert first.written[topics.CONTROL_CONTRACTS] == [f"{unique}-routes", f"{unique}-regulator"]
    ends = {t: _end_offsets(client_config, t) for t in topics.CONTROL_TOPICS}

    second = apply(load_topology(f), client_config)
    assert all(s == "exists" for s in second.topics.values())
    assert all(not keys for keys in second.written.values())
    assert second.changes == 0
    assert {t: _end_offsets(client_config, t) for t in topics.CONTROL_TOPICS} == ends  # nothing written

    admin = AdminClient(client_config)
    md = admin.list_topics(timeout=10)
    assert len(md.topics[topics.raw(provider, product)].partitions) == 3
    assert len(md.topics[topics.delivery(f"{unique}-routes")].partitions) == 3
    cfg = admin.describe_configs([ConfigResource("topic", topics.CONTROL_CONTRACTS)])
    assert list(cfg.values())[0].result()["cleanup.policy"].value == "compact"

    catalog = read_table(client_config, topics.CONTROL_CATALOG)[product]
    assert catalog["schema_fingerprint"] == schemas.load("UavTelemetry").fingerprint
    assert catalog["raw_topic"] == topics.raw(provider, product) and catalog["classification"] == "GENERAL"
    contract = read_table(client_config, topics.CONTROL_CONTRACTS)[f"{unique}-routes"]
    assert contract["state"] == "ACTIVE" and contract["purposes"] == ["route-planning"]
    delivered = json.loads(contract["delivery_schema_json"])
    assert "operator_id" not in [fl["name"] for fl in delivered["fields"]]
    participants = read_table(client_config, topics.CONTROL_PARTICIPANTS)
    assert participants[f"{unique}-regulator"]["roles"] == ["REGULATOR"]


def test_a_change_is_written_once_and_grows_partitions(tmp_path, client_config, unique):
    f = tmp_path / "city.yaml"
    f.write_text(city_yaml(unique))
    apply(load_topology(f), client_config)
    f.write_text(city_yaml(unique).replace("partitions: 3", "partitions: 4").replace(
        "purposes: [airspace-supervision]", "purposes: [airspace-supervision]\n    state: SUSPENDED"))
    report = apply(load_topology(f), client_config)
    assert report.written[topics.CONTROL_CONTRACTS] == [f"{unique}-regulator"]
    assert report.written[topics.CONTROL_CATALOG] == [f"{unique}-uav"]
    # Apache Kafka grows the topic; the embedded broker has no CreatePartitions and apply says so
    assert report.topics[topics.raw(f"{unique}-skyway", f"{unique}-uav")] in ("grown", "cannot-grow")
    assert read_table(client_config, topics.CONTROL_CONTRACTS)[f"{unique}-regulator"]["state"] == "SUSPENDED"


def _settings(client: dict, topic: str) -> dict[str, str]:
    res, admin = ConfigResource("topic", topic), AdminClient(client)
    return {k: v.value for k, v in admin.describe_configs([res])[res].result().items()}


def test_a_changed_retention_reaches_the_topics_and_raw_topics_stamp_arrival(tmp_path, client_config, unique):
    """The topology's settings reach topics that exist (a retention changed in the file once
    stayed as the topics were first created), and a raw topic stamps its records itself."""
    f = tmp_path / "city.yaml"
    f.write_text(city_yaml(unique))
    apply(load_topology(f), client_config)
    raw, dlq = topics.raw(f"{unique}-skyway", f"{unique}-uav"), topics.dead_letter(f"{unique}-skyway", f"{unique}-uav")
    assert _settings(client_config, raw)["message.timestamp.type"] == "LogAppendTime"
    assert _settings(client_config, topics.delivery(f"{unique}-routes")).get("message.timestamp.type") in (
        None, "CreateTime")  # a delivery's tag covers the timestamp its runner gave it
    f.write_text(city_yaml(unique).replace("retention: 1d", "retention: 2d"))
    report = apply(load_topology(f), client_config)
    assert report.topics[raw] == report.topics[dlq] == "reconfigured"
    assert report.topics[topics.CONTROL_CONTRACTS] == "exists"
    assert _settings(client_config, raw)["retention.ms"] == str(2 * 86_400_000)
    assert all(s == "exists" for s in apply(load_topology(f), client_config).topics.values())


@pytest.mark.kafka
def test_on_apache_kafka_a_raw_record_is_stamped_when_it_arrived_not_when_its_provider_says(tmp_path, kafka,
                                                                                            unique):
    """A provider's connector stamps a record with its event time; on the raw topic Apache Kafka
    replaces that by its own time of arrival (LogAppendTime), which the provider's ingress limit
    counts by and retention runs from: a work order of last year imported today is neither
    deleted at the next retention check nor a way to back-date records past the limit. A raw
    topic of an older deployment (created with the producer's stamps) gets it on apply."""
    admin_cfg = kafka.admin_config()
    city = City(unique, tmp_path / "city.yaml", tmp_path / "keys", admin_cfg)
    raw = city.raw
    ensure_topics(AdminClient(admin_cfg), [TopicSpec(raw, 3, {"retention.ms": 86_400_000})])  # as before
    assert _settings(admin_cfg, raw)["message.timestamp.type"] == "CreateTime"
    report = city.apply(city_yaml(unique))
    assert report.topics[raw] == "reconfigured"
    assert _settings(admin_cfg, raw)["message.timestamp.type"] == "LogAppendTime"
    year_ago = int(time.time() * 1000) - 365 * 86_400_000
    fleet = FleetSimulator(drones=1, seed=1)
    record = {**next(r for _ in range(100) for r in fleet.tick(1.0)), "timestamp_ms": year_ago}
    with city.connector() as conn:
        conn.publish(city.product, record)
    before = int(time.time() * 1000)
    [m] = read_topic(admin_cfg, raw, expect=1)
    kind, ts = m.timestamp()
    assert kind == TIMESTAMP_LOG_APPEND_TIME and before - 60_000 <= ts <= int(time.time() * 1000)
    assert dict(m.headers())["cm.event_time"] == b"%d" % year_ago  # (the event time is the record's)
    assert all(s == "exists" for s in city.apply().topics.values())


def test_acls_grant_least_privilege(tmp_path, unique):
    f = tmp_path / "city.yaml"
    f.write_text(city_yaml(unique))
    by_principal = {}
    for g in grants(load_topology(f)):
        by_principal.setdefault(g.user, []).append((g.name, g.operation))
    provider = by_principal[f"{unique}-skyway"]
    assert (topics.raw(f"{unique}-skyway", f"{unique}-uav"), "Write") in provider
    assert not any(op == "Read" and name.startswith("cm.dlv.") for name, op in provider)
    logistics = by_principal[f"{unique}-logistics"]
    assert (topics.delivery(f"{unique}-routes"), "Read") in logistics
    assert (topics.delivery(f"{unique}-regulator"), "Read") not in logistics
    assert not any(name.startswith("cm.raw.") for name, _ in logistics)
