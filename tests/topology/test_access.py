"""Least privilege on Apache Kafka, tried with every principal's real credentials.

`apply` (with ACLs) gives every participant and mesh service a SCRAM credential and the ACLs
topology/access.py derives. Here each participant, and each product's runner, tries to read,
write and describe every topic of the city; the allowed set must equal the one written out
below from the rules of issue 16 (not computed by the code under test): no other grant,
nothing missing. Anonymous and wrong-password clients are refused. Only a product's runner
may open transactions under its transactional ids.
"""

from __future__ import annotations

import contextlib
import textwrap
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from processors.transactions import transactional_id
from streams import topics
from tests.mesh_fixtures import EXAMPLES
from streams.control import read_table
from topology.access import cluster_grants, grants, namespace, password_of, principals, runner_principal
from topology.apply import apply
from topology.loader import load_topology

pytestmark = pytest.mark.kafka


def city(u: str, pricing_state: str = "SUSPENDED") -> str:
    purpose = "policy: {{permission: {{constraints: [{{type: purpose, in: [{p}]}}]}}}}"
    return textwrap.dedent(f"""
    participants:
      - {{id: {u}-op, name: Operator, roles: [operator]}}
      - {{id: {u}-sky, name: SkyWay, roles: [provider]}}
      - {{id: {u}-hot, name: Hotline, roles: [provider]}}
      - {{id: {u}-logi, name: Logistics, roles: [consumer]}}
      - {{id: {u}-ins, name: Insurance, roles: [consumer]}}
      - {{id: {u}-reg, name: Regulator, roles: [regulator]}}
    products:
      - {{id: {u}-uav, provider: {u}-sky, name: UAV, schema: UavTelemetry, partitions: 2, retention: 1d,
         key_field: serial_number, event_time_field: timestamp_ms}}
      - {{id: {u}-tickets, provider: {u}-hot, name: Tickets, schema: HotlineTicket, partitions: 1, retention: 1d,
         key_field: order_no, event_time_field: call_time}}
    geofences:
      urban: {{file: {EXAMPLES / 'geo' / 'shenzhen-urban.geojson'}}}
    contracts:
      - {{id: {u}-routes, product: {u}-uav, consumer: {u}-logi, purposes: [route-planning],
         {purpose.format(p='route-planning')}}}
      - {{id: {u}-pricing, product: {u}-uav, consumer: {u}-ins, purposes: [insurance-pricing], state: {pricing_state},
         {purpose.format(p='insurance-pricing')}}}
      - {{id: {u}-supervision, product: {u}-uav, consumer: {u}-reg, purposes: [airspace-supervision],
         {purpose.format(p='airspace-supervision')}}}
      - {{id: {u}-op-uav, product: {u}-uav, consumer: {u}-op, purposes: [city-operations],
         {purpose.format(p='city-operations')}}}
      - {{id: {u}-op-tickets, product: {u}-tickets, consumer: {u}-op, purposes: [city-operations],
         {purpose.format(p='city-operations')}}}
    """)


def expected(u: str) -> set[tuple[str, str, str]]:
    """(user, topic, operation) allowed, from issue 16's rules; Read and Write each imply Describe."""
    raw_uav, raw_tix = topics.raw(f"{u}-sky", f"{u}-uav"), topics.raw(f"{u}-hot", f"{u}-tickets")
    allow: set[tuple[str, str, str]] = set()

    def grant(user, topic, *ops):
        for op in ops:
            allow.add((user, topic, op))
            allow.add((user, topic, "describe"))

    # a provider may only write its raw topics (and reads the catalog to find them)
    grant(f"{u}-sky", raw_uav, "write")
    grant(f"{u}-hot", raw_tix, "write")
    for p in ("sky", "hot"):
        grant(f"{u}-{p}", topics.CONTROL_CATALOG, "read")
    # a consumer reads the delivery topics of its ACTIVE contracts (pricing is SUSPENDED), and
    # while it has one the contracts table (delivery schemas) and the participants table (the
    # operator's key that signs the seals of its deliveries)
    for user, contracts in ((f"{u}-logi", ["routes"]), (f"{u}-reg", ["supervision"]),
                            (f"{u}-op", ["op-uav", "op-tickets"])):
        for c in contracts:
            grant(user, topics.delivery(f"{u}-{c}"), "read")
        grant(user, topics.CONTROL_CONTRACTS, "read")
        grant(user, topics.CONTROL_PARTICIPANTS, "read")
    # the regulator reads compliance and alerts
    grant(f"{u}-reg", topics.COMPLIANCE, "read")
    grant(f"{u}-reg", topics.ALERTS, "read")
    # only the runner of a product reads its raw topic; nobody but it writes the product's outputs
    for product, provider, raw, contracts in (("uav", "sky", raw_uav, ["routes", "pricing", "supervision", "op-uav"]),
                                              ("tickets", "hot", raw_tix, ["op-tickets"])):
        runner = f"{u}-op.runner.{u}-{product}"
        grant(runner, raw, "read")
        for t in [topics.delivery(f"{u}-{c}") for c in contracts] + [
                topics.dead_letter(f"{u}-{provider}", f"{u}-{product}"),
                topics.partition_state(f"{u}-{provider}", f"{u}-{product}"), topics.COMPLIANCE, topics.ALERTS]:
            grant(runner, t, "read", "write")
        for t in topics.CONTROL_TOPICS:
            grant(runner, t, "read")
    return allow


def probe(config: dict, names: list[str]) -> set[tuple[str, str]]:
    """(topic, operation) this client may do: describe (the topic is in its metadata), read (a
    fetch answers a record or end-of-partition, not an authorization error), write (the
    broker acknowledges a record)."""
    found = set()
    c = Consumer({**config, "group.id": "probe-never-joined", "enable.partition.eof": True,
                  "enable.auto.commit": False, "socket.timeout.ms": 5000})
    try:
        md = c.list_topics(timeout=10)
        found |= {(t, "describe") for t in names if t in md.topics and md.topics[t].error is None}
        c.assign([TopicPartition(t, 0, OFFSET_BEGINNING) for t in names])
        # every topic is tried; one this client cannot even describe answers no fetch at all, so
        # the wait ends when the describable ones are decided (and a grace second for the rest)
        undecided = set(names)
        deadline, grace_until = time.monotonic() + 15, None
        while undecided and time.monotonic() < deadline:
            for m in c.consume(500, 0.2):
                err = m.error()
                if err is None or err.code() == KafkaError._PARTITION_EOF:
                    if m.topic() in undecided:
                        found.add((m.topic(), "read"))
                    undecided.discard(m.topic())
                elif err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                    undecided.discard(m.topic())
            if grace_until is None and all((t, "describe") not in found for t in undecided):
                grace_until = time.monotonic() + 1.0
            if grace_until is not None and time.monotonic() > grace_until:
                break
        assert all((t, "describe") not in found for t in undecided), f"no answer for reads of {undecided}"
    finally:
        c.close()
    p = Producer({**config, "enable.idempotence": False, "acks": "all", "message.timeout.ms": 10000,
                  "retries": 0})
    acked: set[str] = set()

    def on_delivery(err, msg):
        if err is None:
            acked.add(msg.topic())
        elif err.code() not in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError._MSG_TIMED_OUT):
            raise AssertionError(f"unexpected produce error on {msg.topic()}: {err}")

    for t in names:
        p.produce(t, b"probe", b"probe", partition=0, on_delivery=on_delivery)
    assert p.flush(20) == 0
    return found | {(t, "write") for t in acked}


def test_access_matrix_equals_the_topology(tmp_path, kafka, unique):
    u = unique
    f = tmp_path / "city.yaml"
    f.write_text(city(u))
    topo = load_topology(f)
    keys = tmp_path / "keys"
    report = apply(topo, kafka.admin_config(), keys_dir=keys, with_acls=True)
    assert report.acls == len(grants(topo)) and report.acls_created == report.acls
    assert set(report.credentials) == set(principals(topo))
    admin = AdminClient(kafka.admin_config())
    assert cluster_grants(admin, set(principals(topo))) == grants(topo)  # exactly what was derived
    names = list(topics.CONTROL_TOPICS + topics.SHARED_TOPICS) + sorted(
        t for t in admin.list_topics(timeout=10).topics if u in t)
    # control, shared; raw, dead-letter, state per product; a delivery per contract
    assert len(names) == len(topics.CONTROL_TOPICS) + len(topics.SHARED_TOPICS) + 2 * 3 + 5
    users = [p.id for p in topo.participants] + [f"{u}-op.runner.{u}-uav", f"{u}-op.runner.{u}-tickets"]
    seen = set()
    for user in users:
        seen |= {(user, t, op) for t, op in probe(kafka.client_config(user, password_of(keys, topo, user)), names)}
    want = expected(u)
    assert seen - want == set(), f"granted beyond the topology: {sorted(seen - want)}"
    assert want - seen == set(), f"missing grants: {sorted(want - seen)}"

    # a second apply of the same file changes no credential and no ACL
    again = apply(load_topology(f), kafka.admin_config(), keys_dir=keys, with_acls=True)
    assert (again.acls_created, again.acls_deleted, again.credentials) == (0, 0, [])


def test_anonymous_and_wrong_password_are_refused(tmp_path, kafka, unique):
    f = tmp_path / "city.yaml"
    f.write_text(city(unique))
    topo = load_topology(f)
    apply(topo, kafka.admin_config(), keys_dir=tmp_path / "keys", with_acls=True)
    user = f"{unique}-logi"
    right = kafka.client_config(user, password_of(tmp_path / "keys", topo, user))
    assert topics.delivery(f"{unique}-routes") in Consumer({**right, "group.id": "x"}).list_topics(timeout=10).topics
    tls_only = {k: v for k, v in right.items() if not k.startswith("sasl.")} | {"security.protocol": "SSL"}
    internal = f"127.0.0.1:{kafka.ports[0].internal}"  # the replication listener wants the broker's certificate
    for name, config in (("wrong password", {**right, "sasl.password": "not-" + right["sasl.password"]}),
                         ("no credentials (TLS only)", tls_only),
                         ("plaintext", {"bootstrap.servers": right["bootstrap.servers"]}),
                         ("internal listener without a client certificate", {**tls_only, "bootstrap.servers": internal}),
                         ("unknown user", {**right, "sasl.username": f"{unique}-nobody"})):
        errors = []
        c = Consumer({**config, "group.id": "x", "error_cb": errors.append, "socket.timeout.ms": 3000,
                      "reconnect.backoff.max.ms": 1000})
        with pytest.raises(KafkaException):
            c.list_topics(timeout=4)
        c.close()
        assert errors, f"{name}: connected without an error"
        if "password" in name or "unknown" in name:
            assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), f"{name}: {errors}"


def test_suspension_and_removal_follow_the_topology(tmp_path, kafka, unique):
    """Re-activating a contract restores its consumer's read grant; removing a participant
    deletes its credential and every ACL it had."""
    u = unique
    f, keys = tmp_path / "city.yaml", tmp_path / "keys"
    f.write_text(city(u))
    apply(load_topology(f), kafka.admin_config(), keys_dir=keys, with_acls=True)
    f.write_text(city(u, pricing_state="ACTIVE"))
    topo = load_topology(f)
    report = apply(topo, kafka.admin_config(), keys_dir=keys, with_acls=True)
    assert report.acls_created >= 1 and report.acls_deleted == 0
    admin = AdminClient(kafka.admin_config())
    held = cluster_grants(admin, {f"{u}-ins"})
    assert (f"{u}-ins", "topic", topics.delivery(f"{u}-pricing"), "literal", "Read") in held
    # the insurer leaves the mesh (with its contract)
    text = city(u, pricing_state="ACTIVE")
    text = "\n".join(line for line in text.splitlines() if f"{u}-ins" not in line and "insurance-pricing" not in line)
    f.write_text(text)
    report = apply(load_topology(f), kafka.admin_config(), keys_dir=keys, with_acls=True)
    assert report.credentials_deleted == [f"{u}-ins"]
    assert cluster_grants(admin, {f"{u}-ins"}) == set()
    users = admin.describe_user_scram_credentials(request_timeout=10).result()
    assert f"{u}-ins" not in users and f"{u}-logi" in users


def test_only_a_runner_opens_its_transactions(tmp_path, kafka, unique):
    """A runner may use the transactional ids under its product's prefix, as
    processors/transactions.py names them; no participant may use one, nor another product's runner."""
    u, f, keys = unique, tmp_path / "city.yaml", tmp_path / "keys"
    f.write_text(city(u))
    topo = load_topology(f)
    apply(topo, kafka.admin_config(), keys_dir=keys, with_acls=True)

    def opens(user: str, tid: str) -> bool:
        p = Producer({**kafka.client_config(user, password_of(keys, topo, user)), "transactional.id": tid})
        try:
            p.init_transactions(20)
            return True
        except KafkaException as exc:
            assert exc.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, f"{user}, {tid}: {exc}"
            return False
        finally:
            with contextlib.suppress(KafkaException):  # (a producer refused its id is in a fatal state)
                p.close()

    uav, tickets = (f"{u}-op.runner.{u}-{p}" for p in ("uav", "tickets"))
    uav_tid, tickets_tid = (transactional_id(f"citymesh-runner.{u}-{p}") for p in ("uav", "tickets"))
    assert opens(uav, uav_tid) and opens(tickets, tickets_tid)
    assert not opens(uav, tickets_tid) and not opens(tickets, uav_tid)
    for user in (f"{u}-sky", f"{u}-logi", f"{u}-reg", f"{u}-op"):
        assert not opens(user, uav_tid), f"{user} may write in the runner's transactions"


def test_a_contract_taken_out_of_the_file_keeps_its_runners_grants_until_it_is_revoked(tmp_path, kafka, unique):
    """The consumer's read goes in the apply that takes the contract out; the runner's write and
    read stay until the next apply (it writes until the REVOKED record reaches it), then go."""
    u = unique
    f, keys = tmp_path / "city.yaml", tmp_path / "keys"
    f.write_text(city(u, pricing_state="ACTIVE"))
    topo = load_topology(f)
    apply(topo, kafka.admin_config(), keys_dir=keys, with_acls=True)
    admin = AdminClient(kafka.admin_config())
    runner, topic = runner_principal(namespace(topo), f"{u}-uav"), topics.delivery(f"{u}-routes")
    runners = {(runner, "topic", topic, "literal", op) for op in ("Write", "Read")}
    assert runners <= cluster_grants(admin, {runner})
    f.write_text("\n".join(line for line in city(u, pricing_state="ACTIVE").splitlines() if "route-planning" not in line))
    report = apply(load_topology(f), kafka.admin_config(), keys_dir=keys, with_acls=True)
    assert report.retired == {topics.CONTROL_CONTRACTS: [f"{u}-routes"]}
    assert read_table(kafka.admin_config(), topics.CONTROL_CONTRACTS)[f"{u}-routes"]["state"] == "REVOKED"
    assert (f"{u}-logi", "topic", topic, "literal", "Read") not in cluster_grants(admin, {f"{u}-logi"})
    assert runners <= cluster_grants(admin, {runner})
    apply(load_topology(f), kafka.admin_config(), keys_dir=keys, with_acls=True)
    assert not runners & cluster_grants(admin, {runner})
