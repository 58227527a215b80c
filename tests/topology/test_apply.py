"""`apply` against the real broker: creates the data-flow topics, fills the control topics,
and a second apply of the same file changes nothing."""

import json

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

import schemas
from streams import topics
from streams.control import read_table
from tests.mesh_fixtures import city_yaml
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
