"""Negotiated contracts on Apache Kafka: the consumer's read access follows its transfer.

The control plane runs as its own principal (`<operator>.dataspace`, no super user), the
runner as its product's, the provider and the consumer as themselves (SCRAM over TLS). The
consumer negotiates two agreements over DSP through its connector's management API and
starts both streams; it reads each delivery topic through ConsumerConnector with the delivery
key its connector took from the data address, and every record verifies "ok". Suspending one
stream: the consumer's next fetch is refused within a second and nothing produced after the
suspension is delivered; resuming: it reads again. Terminating the other: refused. A second
`citymesh apply` of the topology (which knows nothing of either contract) keeps the resumed
contract's grants and does not bring back the terminated one's; the cluster holds exactly
what is written out below.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from dataspace.api import create_app
from dataspace.client import ConnectorClient
from dataspace.plane import ControlPlane
from deploy.broker import _die_with_parent
from streams import keyring, topics
from streams.connectors import ConsumerConnector, NotAllowed, ProviderConnector
from streams.control import read_table
from streams.settings import Settings
from tests.dataspace.harness import ServerThread, city_yaml, free_port
from tests.mesh_fixtures import publish_paced, read_topic, source_of
from tests.processors.test_revocation_kafka import compliance_of
from tests.processors.test_runner_crash import ROOT, stop, wait_caught_up, wait_for_log
from topology.access import CONTROL_READER_GROUP, Grant, cluster_grants, grants, negotiated, password_of, services
from topology.apply import apply, contract_delivery_key
from topology.loader import load_topology

pytestmark = pytest.mark.kafka
RATE = 1000  # records/s published throughout


class Reader(threading.Thread):
    """The consumer reading one contract's delivery topic as itself, until the broker refuses it."""

    def __init__(self, config: dict, keys, consumer: str, contract: str):
        super().__init__(daemon=True)
        self.config, self.keys, self.consumer, self.contract = config, keys, consumer, contract
        self.got: list = []
        self.refused: tuple[float, KafkaError] | None = None
        self.failed: list[BaseException] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            with ConsumerConnector(self.consumer, self.contract, self.config, keys_dir=self.keys) as conn:
                while not self.stopping.is_set():
                    try:
                        self.got += conn.poll(500, 0.1)
                    except NotAllowed as exc:
                        self.refused = (time.time(), exc.error)
                        return
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.failed.append(exc)

    def wait_for(self, n: int, timeout_s: float = 60, after_ms: int = 0) -> None:
        """Until `n` deliveries of records published after `after_ms` (event time) are read."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self.failed and self.refused is None:
            if sum(1 for d in self.got if d.record["timestamp_ms"] > after_ms) >= n:
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.contract}: {len(self.got)} read, refused {self.refused}, failed {self.failed}")

    def wait_live(self, within_s: float = 1.0, timeout_s: float = 60) -> float:
        """Until the consumer reads records published less than `within_s` ago: it has caught up
        with what was delivered before it started, so its next fetch is the one that counts.
        Returns its lag (s)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self.failed and self.refused is None:
            if self.got and time.time() - self.got[-1].record["timestamp_ms"] / 1000 < within_s:
                return time.time() - self.got[-1].record["timestamp_ms"] / 1000
            time.sleep(0.05)
        raise AssertionError(f"{self.contract}: not caught up ({len(self.got)} read, refused {self.refused}, "
                             f"failed {self.failed})")

    def wait_refused(self, timeout_s: float = 5) -> tuple[float, KafkaError]:
        self.join(timeout_s)
        assert not self.failed, self.failed
        assert self.refused is not None, f"{self.consumer} was never refused {self.contract}"
        return self.refused


class Publisher(threading.Thread):
    """The provider publishing simulated flights at RATE, as itself, with the time as event time."""

    def __init__(self, keys, provider: str, product: str, config: dict):
        super().__init__(daemon=True)
        self.ring = keyring.load(keys, provider)
        self.product, self.config = product, config
        self.stopping = threading.Event()
        self.failed: list[BaseException] = []

    def run(self) -> None:
        try:
            with ProviderConnector(self.ring, self.config) as conn:
                publish_paced(conn, self.product, RATE, self.stopping, drones=100, seed=11, violators=0.0)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.failed.append(exc)


def consumer_expected(consumer: str, *active: str) -> set[Grant]:
    """The consumer's grants with these contracts ACTIVE, written out from the rules (not derived)."""
    if not active:
        return set()
    return {Grant(consumer, "topic", topics.delivery(c), "literal", "Read") for c in active} | {
        Grant(consumer, "topic", topics.CONTROL_CONTRACTS, "literal", "Read"),
        Grant(consumer, "topic", topics.CONTROL_PARTICIPANTS, "literal", "Read"),
        Grant(consumer, "group", f"{consumer}.", "prefixed", "Read"),
        Grant(consumer, "group", CONTROL_READER_GROUP, "literal", "Describe")}


def test_negotiated_access_follows_the_transfer(tmp_path, kafka, unique):
    u, keys, f = unique, tmp_path / "keys", tmp_path / "city.yaml"
    f.write_text(city_yaml(u))
    topo = load_topology(f)
    for p in topo.participants:  # as `citymesh up` does: keyrings first, so apply registers their public keys
        keyring.create(keys, p.id)
    admin_cfg = kafka.admin_config()
    apply(topo, admin_cfg, keys_dir=keys, with_acls=True)
    admin = AdminClient(admin_cfg)
    consumer, provider, product = f"{u}-logistics", f"{u}-skyway", f"{u}-uav"
    raw = topics.raw(provider, product)
    svc = services(topo)
    runner_user, plane_user = svc[f"runner-{product}"], svc["dataspace"]

    def creds(user: str) -> dict:
        return kafka.client_config(user, password_of(keys, topo, user))

    port = free_port()
    plane = ControlPlane(creds(plane_user), keys, f"http://127.0.0.1:{port}", acls=True).start()
    server = ServerThread(create_app(plane), port).start()
    api = ConnectorClient(Settings(api_url=server.url, keys_dir=keys, state_dir=tmp_path / "state"), consumer)
    log_path = tmp_path / "runner.log"
    with open(log_path, "ab") as log:
        runner = subprocess.Popen(
            [sys.executable, "-m", "processors.runner", "--product", product, "--metrics-port", "0"], cwd=ROOT,
            env={**os.environ, **kafka.env(runner_user, password_of(keys, topo, runner_user)),
                 "CITYMESH_STATE_DIR": str(tmp_path / "state"), "CITYMESH_KEYS_DIR": str(keys),
                 "PYTHONPATH": str(ROOT)},
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    publisher = Publisher(keys, provider, product, creds(provider))
    readers: list[Reader] = []

    def reader(contract: str) -> Reader:
        r = Reader(creds(consumer), keys, consumer, contract)
        readers.append(r)
        r.start()
        return r

    try:
        wait_for_log(log_path, "assigned partitions", 0, 60, runner)
        publisher.start()

        # two agreements, inside the offer's auto-accept range: FINALIZED, contracts AGREED
        contract, agreement = {}, {}
        for name, decimals in (("a", 2), ("b", 3)):
            rec = api.call("POST", "/negotiations", {"product": product, "offer": "logistics",
                                                     "params": {"decimals": decimals}})
            rec = api.wait("negotiations", rec["negotiation_id"], "FINALIZED,TERMINATED", 30)
            assert rec["state"] == "FINALIZED", rec
            agreement[name] = rec["agreement_id"]
            contract[name] = read_table(admin_cfg, topics.CONTROL_AGREEMENTS)[rec["agreement_id"]]["contract_id"]
        a, b = contract["a"], contract["b"]
        assert cluster_grants(admin, {consumer}) == set()  # agreed is not active
        assert {Grant(runner_user, "topic", topics.delivery(c), "literal", op) for c in (a, b)
                for op in ("Read", "Write")} <= cluster_grants(admin, {runner_user})

        # both streams start: the data address says how to log in and how to verify
        transfer = {}
        for name in ("a", "b"):
            rec = api.call("POST", "/transfers", {"agreement": agreement[name]})
            rec = api.wait("transfers", rec["transfer_id"], "STARTED,TERMINATED", 30)
            assert rec["state"] == "STARTED", rec
            transfer[name] = rec["transfer_id"]
        address = api.call("GET", f"/transfers/{transfer['a']}")["data_address"]
        props = {p["name"]: p["value"] for p in address["endpointProperties"]}
        assert address["endpoint"] == kafka.bootstrap and props["topic"] == topics.delivery(a)
        assert (props["securityProtocol"], props["authType"], props["saslMechanism"], props["username"]) == (
            "SASL_SSL", "sasl", "SCRAM-SHA-512", consumer)
        assert props["passwordRef"] == "keyring#sasl_password"
        assert password_of(keys, topo, consumer) not in json.dumps(address)  # a reference, never the password
        assert props["caCertificate"] == kafka.tls.ca_cert.read_text()
        key = contract_delivery_key(keys, a)
        assert key.hex() not in json.dumps(address)  # sealed to the consumer's key, not in clear
        assert keyring.open_delivery_key(keyring.load(keys, consumer), a, props["deliveryKeySealed"]) == key
        assert keyring.delivery_keys(keys, consumer)[a] == key  # the consumer's connector kept it
        bureau = keyring.load(keys, f"{u}-bureau")
        assert props["sealKeys"] == f"{u}-bureau:{bureau.public_key_hex}"
        assert cluster_grants(admin, {consumer}) == consumer_expected(consumer, a, b)

        # the consumer reads both with its own credentials; every record is the mesh's
        ra, rb = reader(a), reader(b)
        ra.wait_for(500)
        rb.wait_for(200)
        assert {d.verdict for d in ra.got + rb.got} == {"ok"}
        assert ra.refused is None and rb.refused is None

        # suspend a: refused within a second, nothing produced after it delivered
        lag = ra.wait_live()
        t_call = time.time()
        assert api.call("POST", f"/transfers/{transfer['a']}/suspend", {"reason": "pause"})["state"] == "SUSPENDED"
        t_suspended = time.time()
        answers = admin.list_offsets({TopicPartition(raw, p): OffsetSpec.latest() for p in range(3)},
                                     request_timeout=10)
        produced_by_then = {tp.partition: fut.result().offset for tp, fut in answers.items()}
        refused_at, error = ra.wait_refused()
        written = max(m.timestamp()[1] for m in read_topic(admin_cfg, topics.CONTROL_CONTRACTS)
                      if m.key() == a.encode()) / 1000
        print(f"reading {lag:.3f} s behind the provider; suspend took {t_suspended - t_call:.3f} s; "
              f"the consumer's fetch was refused ({error.name()}) "
              f"{refused_at - t_call:+.3f} s after the call, {refused_at - written:+.3f} s after the SUSPENDED "
              f"record was written, {refused_at - t_suspended:+.3f} s after the answer")
        assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
        assert refused_at > t_call and refused_at - written <= 1.0 and refused_at - t_suspended <= 1.0
        assert cluster_grants(admin, {consumer}) == consumer_expected(consumer, b)
        assert {d.verdict for d in ra.got} == {"ok"}
        time.sleep(2.0)  # ~2,000 records published while suspended

        # resume a: it reads again (from where its group left off), and what is new verifies
        resume_ms = int(time.time() * 1000)
        assert api.call("POST", f"/transfers/{transfer['a']}/resume", {})["state"] == "STARTED"
        ra2 = reader(a)
        ra2.wait_for(300, after_ms=resume_ms)
        assert {d.verdict for d in ra2.got} == {"ok"}

        # terminate b: refused for good
        assert api.call("POST", f"/transfers/{transfer['b']}/terminate", {"reason": "done"})["state"] == "TERMINATED"
        assert rb.wait_refused()[1].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
        assert read_table(admin_cfg, topics.CONTROL_CONTRACTS)[b]["state"] == "REVOKED"
        assert cluster_grants(admin, {consumer}) == consumer_expected(consumer, a)

        # apply the topology again: a's grants survive, b's stay gone; exactly the derived set
        again = apply(load_topology(f), admin_cfg, keys_dir=keys, with_acls=True)
        assert (again.acls_created, again.acls_deleted) == (0, 0)
        assert cluster_grants(admin, {consumer}) == consumer_expected(consumer, a)
        held = negotiated(topo, read_table(admin_cfg, topics.CONTROL_CONTRACTS),
                          read_table(admin_cfg, topics.CONTROL_AGREEMENTS))
        assert {(h.id, h.active) for h in held} == {(a, True), (b, False)}
        users = {p.id for p in topo.participants} | set(svc.values())
        assert cluster_grants(admin, users) == grants(topo, held)
        seen = len(ra2.got)
        ra2.wait_for(seen + 200)  # still reading after the apply
        assert ra2.refused is None and {d.verdict for d in ra2.got} == {"ok"}

        # the last ACTIVE contract ends: the consumer holds nothing
        assert api.call("POST", f"/transfers/{transfer['a']}/terminate", {})["state"] == "TERMINATED"
        ra2.wait_refused()
        assert cluster_grants(admin, {consumer}) == set()

        # the runner's offset-exact cut: it stopped a at offsets no later than what had been
        # published when the suspension was answered, and delivered nothing from there until the
        # offsets where it read the resumption (records it had not read yet by then, some of them
        # published while suspended, are the resumed contract's)
        publisher.stopping.set()
        publisher.join(15)
        wait_caught_up(admin_cfg, f"citymesh-runner.{product}", raw, 60)
        changes = sorted((e for e in compliance_of(admin_cfg, product)
                          if e["kind"] == "CONTRACT_CHANGE" and e["contract_id"] == a), key=lambda e: e["time_ms"])
        suspension = next(e for e in changes if e["rule"] == "state:SUSPENDED")
        resumption = next(e for e in changes if e["rule"] == "state:ACTIVE" and e["time_ms"] >= suspension["time_ms"])
        suspended_from, resumed_from = (dict(tuple(map(int, x.split(":"))) for x in e["details"]["from_offsets"]
                                             .split(",")) for e in (suspension, resumption))
        assert all(suspended_from[p] <= produced_by_then[p] for p in suspended_from), (suspended_from, produced_by_then)
        gap = sum(resumed_from[p] - produced_by_then[p] for p in resumed_from)
        assert gap > RATE, f"only {gap} records published during the suspension were cut: too few to tell anything"
        late = [src for src in (source_of(m, keys) for m in read_topic(admin_cfg, topics.delivery(a)))
                if suspended_from[src[0]] <= src[1] < resumed_from[src[0]]]
        assert not late, f"{len(late)} records between the suspension and the resumption were delivered"
        raw_ts = {(m.partition(), m.offset()): m.timestamp()[1] for m in read_topic(admin_cfg, raw)}
        late_read = sum(1 for (p, o), ts in raw_ts.items() if t_suspended * 1000 < ts < resume_ms and o >= resumed_from[p])
        print(f"{gap} records published during the suspension were cut; {late_read} published during it, but read by "
              "the runner after it read the resumption, were evaluated under the resumed contract")
    finally:
        publisher.stopping.set()
        publisher.join(15)
        for r in readers:
            r.stopping.set()
        stop(runner)
        api.close()
        server.stop()
        plane.close()
    assert not publisher.failed, publisher.failed

