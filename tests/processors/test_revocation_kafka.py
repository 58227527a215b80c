"""Revocation on Apache Kafka: the broker takes the revoked consumer's access away.

A provider publishes at 2,000 records/s through a runner running as its own service principal;
the consumer reads its delivery topic with its own credentials. Re-applying the topology with
the contract REVOKED removes the consumer's read ACL in the same step that stops delivery: its
next fetch fails with an authorization error within a second, and no record produced after the
revocation is in its delivery topic (the runner's offset-exact cut still holds).
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

import schemas
from streams import keyring, topics
from streams.connectors import ConsumerConnector, ProviderConnector
from tests.mesh_fixtures import CONTRACTS, city_yaml, publish_paced, read_topic, source_of, spawn_kafka_runner
from tests.processors.test_runner_crash import stop, wait_caught_up, wait_for_log
from topology.access import password_of
from topology.apply import apply
from topology.loader import load_topology

pytestmark = pytest.mark.kafka
RATE = 2000


def compliance_of(client: dict, product: str) -> list[dict]:
    """Compliance events about one product (records other tests left that are no events are skipped)."""
    s, out = schemas.load("ComplianceEvent"), []
    for m in read_topic(client, topics.COMPLIANCE):
        try:
            e = s.decode(m.value())
        except Exception:  # noqa: BLE001 - another test's probe record
            continue
        if e["product_id"] == product:
            out.append(e)
    return out


def test_revoked_consumer_is_refused_by_the_broker(tmp_path, kafka, unique):
    u, keys, f = unique, tmp_path / "keys", tmp_path / "city.yaml"
    admin_cfg = kafka.admin_config()
    f.write_text(city_yaml(u))
    topo = load_topology(f)
    apply(topo, admin_cfg, keys_dir=keys, with_acls=True)
    product, provider, regulator = f"{u}-uav", f"{u}-skyway", f"{u}-regulator"
    raw = topics.raw(provider, product)
    log_path = tmp_path / "runner.log"
    proc = spawn_kafka_runner(kafka, topo, keys, product, tmp_path / "state", log_path)
    stopping = threading.Event()
    errors: list[BaseException] = []
    refused: list[tuple[float, KafkaError]] = []
    received: list = []

    def consume() -> None:
        """The regulator reading its delivery topic, as itself, until the broker refuses it."""
        try:
            conn = ConsumerConnector(regulator, regulator, kafka.client_config(regulator,
                                                                                 password_of(keys, topo, regulator)))
            try:
                while not stopping.is_set() and not refused:
                    for m in conn._consumer.consume(500, 0.1):
                        if m.error() is None:
                            received.append(m)
                        elif m.error().code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                            refused.append((time.time(), m.error()))
            finally:
                conn.close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def publish() -> None:
        try:
            ring = keyring.load(keys, provider)
            with ProviderConnector(ring, kafka.client_config(provider, ring.sasl_password)) as conn:
                publish_paced(conn, product, RATE, stopping, drones=300, seed=5)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=consume, daemon=True), threading.Thread(target=publish, daemon=True)]
    try:
        wait_for_log(log_path, "assigned partitions", 0, 60, proc)
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(received) < 3 * RATE // 2 and time.monotonic() < deadline:  # the consumer reads while allowed
            time.sleep(0.1)
        assert received and not refused and not errors, (len(received), refused, errors)
        revoked = CONTRACTS.replace("    consumer: {u}-regulator\n    purposes: [airspace-supervision]",
                                    "    consumer: {u}-regulator\n    purposes: [airspace-supervision]\n"
                                    "    state: REVOKED")
        f.write_text(city_yaml(u, revoked))
        t_start = time.time()
        apply(load_topology(f), admin_cfg, keys_dir=keys, with_acls=True)
        t_revoked = time.time()  # the ACL is gone and the REVOKED record written by now
        admin = AdminClient(admin_cfg)  # (kept: futures of a collected client never complete)
        ends = admin.list_offsets(
            {TopicPartition(raw, p): OffsetSpec.latest() for p in range(3)}, request_timeout=10)
        cut = {tp.partition: fut.result().offset for tp, fut in ends.items()}
        deadline = time.monotonic() + 5
        while not refused and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(2.0)
        stopping.set()
        for t in threads:
            t.join(15)
        assert not errors, errors
        assert refused, "the revoked consumer was never refused by the broker"
        wait_caught_up(admin_cfg, f"citymesh-runner.{product}", raw, 60)
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    finally:
        stopping.set()
        stop(proc)
    # the revocation: the REVOKED contract record apply wrote (its broker timestamp)
    written = max(m.timestamp()[1] for m in read_topic(admin_cfg, topics.CONTROL_CONTRACTS)
                  if m.key() == regulator.encode()) / 1000
    refused_after = refused[0][0] - written
    print(f"apply took {t_revoked - t_start:.3f} s; the consumer's fetch was refused ({refused[0][1].name()}) "
          f"{refused[0][0] - t_start:.3f} s after apply began, {refused_after:+.3f} s after the REVOKED record "
          f"was written, {refused[0][0] - t_revoked:+.3f} s after apply returned")
    assert refused_after <= 1.0 and refused[0][0] - t_revoked <= 1.0

    raw_records = read_topic(admin_cfg, raw)
    produced_at = {(m.partition(), m.offset()): m.timestamp()[1] for m in raw_records}
    after = [k for k in produced_at if k[1] >= cut[k[0]]]
    assert len(after) > RATE, "too few records published after the revocation to tell anything"
    delivered = read_topic(admin_cfg, topics.delivery(regulator))
    got = {source_of(m, keys) for m in delivered}
    late = [k for k in got if k[1] >= cut[k[0]] or produced_at[k] > t_revoked * 1000]
    assert not late, f"{len(late)} records produced after the revocation are in the delivery topic"
    change = next(e for e in compliance_of(admin_cfg, product)
                  if e["kind"] == "CONTRACT_CHANGE" and e["contract_id"] == regulator and e["rule"] == "state:REVOKED")
    from_offsets = dict(tuple(map(int, x.split(":"))) for x in change["details"]["from_offsets"].split(","))
    assert got == {k for k in produced_at if k[1] < from_offsets.get(k[0], 0)}  # the offset-exact cut
