"""`apply` against the real broker: creates the data-flow topics, fills the control topics,
and a second apply of the same file changes nothing."""

import json
import textwrap
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
from topology.apply import AppliedRecords, apply, control_records
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


def _two_products(u: str, *, insurer: bool = True, second: bool = True, routes: bool = True) -> str:
    """A city of two products of one provider, a contract on each, operator rules on the second;
    the flags leave out the insurer, the second product (its contract and rules with it), or
    the routes contract."""
    text = city_yaml(u, "") if not insurer else city_yaml(
        u, "", extra_participants=f"  - {{id: {u}-insurer, name: Insurer, roles: [consumer]}}")
    if second:
        text = text.replace("geofences:", textwrap.dedent(f"""\
              - id: {u}-uav2
                provider: {u}-skyway
                name: more UAV telemetry
                schema: UavTelemetry
                partitions: 1
                retention: 1d
            geofences:"""), 1)
    contracts = f"""
  - id: {u}-regulator
    product: {u}-uav
    consumer: {u}-regulator
    purposes: [airspace-supervision]
    policy: {{permission: {{constraints: [{{type: purpose, in: [airspace-supervision]}}]}}}}
"""
    if routes:
        contracts += f"""
  - id: {u}-routes
    product: {u}-uav
    consumer: {u}-logistics
    purposes: [route-planning]
    policy: {{permission: {{constraints: [{{type: purpose, in: [route-planning]}}]}}}}
"""
    if second and insurer:
        contracts += f"""
  - id: {u}-insure
    product: {u}-uav2
    consumer: {u}-insurer
    purposes: [insurance]
    policy: {{permission: {{constraints: [{{type: purpose, in: [insurance]}}]}}}}
"""
    text += contracts
    if second:
        text += f"""
operator_rules:
  - product: {u}-uav2
    rules:
      - {{id: height-120, type: max, severity: HIGH, field: height_agl_m, max: 120, unit: m}}
"""
    return text


def test_what_the_topology_no_longer_has_is_taken_back(tmp_path, client_config, unique):
    u, f, keys = unique, tmp_path / "city.yaml", tmp_path / "keys"
    f.write_text(_two_products(u))
    first = apply(load_topology(f), client_config, keys_dir=keys)
    assert not first.retired
    assert read_table(client_config, topics.CONTROL_RULES)[f"{u}-uav2"]

    # the routes contract, the insurer and the second product (its contract and rules) go
    f.write_text(_two_products(u, insurer=False, second=False, routes=False))
    second = apply(load_topology(f), client_config, keys_dir=keys)
    assert second.retired == {topics.CONTROL_PARTICIPANTS: [f"{u}-insurer"], topics.CONTROL_CATALOG: [f"{u}-uav2"],
                              topics.CONTROL_RULES: [f"{u}-uav2"],
                              topics.CONTROL_CONTRACTS: [f"{u}-insure", f"{u}-routes"]}
    assert second.retired_lines()[-1] == f"{topics.CONTROL_CONTRACTS}: revoked {u}-insure, {u}-routes (no longer in the topology)"
    contracts = read_table(client_config, topics.CONTROL_CONTRACTS)
    assert {k: contracts[k]["state"] for k in (f"{u}-routes", f"{u}-insure", f"{u}-regulator")} == {
        f"{u}-routes": "REVOKED", f"{u}-insure": "REVOKED", f"{u}-regulator": "ACTIVE"}
    assert contracts[f"{u}-routes"]["policy_json"] == json.dumps(
        {"permission": {"constraints": [{"type": "purpose", "in": ["route-planning"]}]}}, sort_keys=True)
    assert f"{u}-uav2" not in read_table(client_config, topics.CONTROL_CATALOG)
    assert f"{u}-uav" in read_table(client_config, topics.CONTROL_CATALOG)
    assert f"{u}-insurer" not in read_table(client_config, topics.CONTROL_PARTICIPANTS)
    assert f"{u}-uav2" not in read_table(client_config, topics.CONTROL_RULES)

    ends = {t: _end_offsets(client_config, t) for t in topics.CONTROL_TOPICS}
    third = apply(load_topology(f), client_config, keys_dir=keys)
    assert third.changes == 0 and not third.retired
    assert {t: _end_offsets(client_config, t) for t in topics.CONTROL_TOPICS} == ends  # nothing written

    # an apply without the keys dir that wrote them takes nothing back (another operator's, say)
    other = tmp_path / "other.yaml"
    other.write_text(city_yaml(u, "  []"))
    assert not apply(load_topology(other), client_config, keys_dir=tmp_path / "other-keys").retired
    assert read_table(client_config, topics.CONTROL_CONTRACTS)[f"{u}-regulator"]["state"] == "ACTIVE"


def test_a_negotiated_contract_is_taken_back_only_with_its_consumer_or_product(tmp_path, unique):
    """No broker: `AppliedRecords.retired` over tables as read. A contract negotiated over DSP
    (an agreement names it) is the control plane's while its consumer and product remain."""
    u, keys = unique, tmp_path / "keys"
    keys.mkdir()
    before = load_topology_text(tmp_path, _two_products(u))
    desired = control_records(before, None)
    AppliedRecords(keys).save(desired)
    tables = {t: dict(entries) for t, entries in desired.items()}
    negotiated = {f"{u}-dsp-logistics": f"{u}-logistics", f"{u}-dsp-insurer": f"{u}-insurer"}
    for cid, consumer in negotiated.items():
        tables[topics.CONTROL_CONTRACTS][cid] = {**desired[topics.CONTROL_CONTRACTS][f"{u}-regulator"],
                                                 "contract_id": cid, "consumer_id": consumer}
    agreements = {f"a-{cid}": {"contract_id": cid, "consumer_id": consumer} for cid, consumer in negotiated.items()}

    after = load_topology_text(tmp_path, _two_products(u, insurer=False))
    retired = AppliedRecords(keys).retired(after, control_records(after, None), tables, lambda: agreements)
    assert retired[topics.CONTROL_PARTICIPANTS] == {f"{u}-insurer": None}
    assert sorted(retired[topics.CONTROL_CONTRACTS]) == [f"{u}-dsp-insurer", f"{u}-insure"]
    assert {r["state"] for r in retired[topics.CONTROL_CONTRACTS].values()} == {"REVOKED"}
    assert topics.CONTROL_CATALOG not in retired  # the second product stays

    # a contract already ended is left as it is
    tables[topics.CONTROL_CONTRACTS][f"{u}-dsp-insurer"]["state"] = "EXPIRED"
    retired = AppliedRecords(keys).retired(after, control_records(after, None), tables, lambda: agreements)
    assert sorted(retired[topics.CONTROL_CONTRACTS]) == [f"{u}-insure"]


def load_topology_text(tmp_path, text: str):
    f = tmp_path / "t.yaml"
    f.write_text(text)
    return load_topology(f)
