"""CITYMESH_TRANSACTIONS=auto decides by what the broker does, not by its name: a record written
in a transaction that is then aborted, read back as read_committed. The embedded Tansu broker
shows it (so the runners go without transactions there, on the offset fencing alone); Apache
Kafka hides it (so they write each batch in a transaction), as the product's runner principal,
under the transactional ids its ACLs grant."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections import Counter

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

import schemas
from processors import transactions
from processors.transactions import ClientWedged, honours_transactions, transactional_id, wanted
from streams import keyring, topics
from streams.connectors import ProviderConnector
from streams.control import read_table
from streams.simulators import FleetSimulator
from tests.mesh_fixtures import city_yaml, make_city, read_topic, source_of, spawn_kafka_runner
from tests.processors.test_failover_kafka import REGULATOR_ONLY
from tests.processors.test_runner_crash import stop, wait_caught_up, wait_for_log
from topology.access import password_of, services
from topology.apply import apply
from topology.loader import load_topology


def test_the_embedded_broker_shows_aborted_records(tmp_path, client_config, unique):
    city = make_city(tmp_path, client_config, unique)
    state = topics.partition_state(city.provider, city.product)
    tid = transactional_id(f"citymesh-runner.{city.product}")
    assert honours_transactions(client_config, tid, state) is False
    assert wanted("auto", client_config, tid, state) is False
    assert wanted("on", client_config, tid, state) is True  # what the operator says goes
    assert wanted("off", client_config, tid, state) is False
    with pytest.raises(ValueError, match="CITYMESH_TRANSACTIONS"):
        wanted("yes", client_config, tid, state)


def _as_runner(tmp_path, kafka, unique) -> tuple[dict, str, str]:
    """The example city applied with ACLs on Apache Kafka: its UAV runner's client config, the
    product's state topic (what the probe writes to) and the runner's transactional id."""
    f, keys = tmp_path / "city.yaml", tmp_path / "keys"
    f.write_text(city_yaml(unique))
    topo = load_topology(f)
    apply(topo, kafka.admin_config(), keys_dir=keys, with_acls=True)
    product = f"{unique}-uav"
    runner = services(topo)[f"runner-{product}"]
    as_runner = kafka.client_config(runner, password_of(keys, topo, runner))
    state = topics.partition_state(f"{unique}-skyway", product)
    return as_runner, state, transactional_id(f"citymesh-runner.{product}")


@pytest.mark.kafka
def test_apache_kafka_hides_them(tmp_path, kafka, unique):
    as_runner, state, tid = _as_runner(tmp_path, kafka, unique)
    assert wanted("auto", as_runner, tid, state) is True


@pytest.mark.kafka
def test_a_probe_without_an_answer_is_made_again(tmp_path, kafka, unique, caplog):
    """Another producer's transaction left open on the probed partition holds a read_committed
    reader back until the broker times it out: the first probe gets no answer in its share of
    the time, a later one does."""
    as_runner, state, tid = _as_runner(tmp_path, kafka, unique)
    blocker = Producer({**as_runner, "transactional.id": f"{tid}.blocker", "transaction.timeout.ms": 8000})
    blocker.init_transactions(30)
    blocker.begin_transaction()
    blocker.produce(state, None, b"left open", 0)
    assert blocker.flush(30) == 0
    caplog.set_level("WARNING", logger="citymesh.transactions")
    try:  # open for at least 8 s: the first probe (5 s) cannot pass it
        assert honours_transactions(as_runner, f"{tid}.probe", state, timeout_s=60, attempts=12) is True
    finally:
        with contextlib.suppress(KafkaException):  # the broker timed its transaction out: fenced
            blocker.close()
    assert "probe 1 of 12" in caplog.text


@pytest.mark.kafka
def test_a_fenced_producers_flush_raises_its_fatal_error_not_a_system_error(kafka, unique):
    """A producer fenced by a newer one with its transactional id: its flush raises the fatal
    KafkaException (the runner starts over on it), although the delivery reports of its
    failed records, which run in the same flush, touch their messages (confluent-kafka leaves
    the fatal error set while they run: a SystemError caused by it, seen in CI)."""
    from confluent_kafka.admin import AdminClient

    from streams.admin import TopicSpec, ensure_topics
    conf, topic, tid = kafka.admin_config(), f"fenced-{unique}", f"citymesh-runner.fenced-{unique}"
    ensure_topics(AdminClient(conf), [TopicSpec(topic, 3)])
    reports = []
    old = Producer({**conf, **transactions.producer_config(tid), "linger.ms": 50,
                    "on_delivery": lambda err, msg: reports.append((msg.topic(), err))})
    old.init_transactions(30)
    new = Producer({**conf, **transactions.producer_config(tid)})
    new.init_transactions(30)  # the newer producer with this id: `old` is fenced from now on
    old.begin_transaction()
    for i in range(200):
        old.produce(topic, b"%d" % i, partition=i % 3)
    with pytest.raises(KafkaException) as raised:
        transactions.flushed(old, 30)
        old.commit_transaction(30)  # (when the flush saw no report: the commit meets the fence)
    assert raised.value.args[0].fatal(), raised.value
    assert not reports or all(err is not None for _, err in reports), reports[:3]
    new.close()


def test_a_transactional_call_that_does_not_return_is_bounded(monkeypatch):
    monkeypatch.setattr(transactions, "CALL_DEADLINE_S", 0.3)
    assert transactions._bounded("answer", lambda: 42) == 42
    with pytest.raises(KafkaException):  # an error of the call is the caller's
        transactions._bounded("refused", lambda: (_ for _ in ()).throw(KafkaException(KafkaError(KafkaError._FENCED))))
    stuck = threading.Event()
    t0 = time.monotonic()
    with pytest.raises(ClientWedged, match="send_offsets_to_transaction did not return within"):
        transactions._retrying("send_offsets_to_transaction", stuck.wait)
    assert time.monotonic() - t0 < 5
    stuck.set()


# What the runner process runs in the next test: processors.runner's main, with the first
# producer's send_offsets_to_transaction stuck for good, as librdkafka#5511 leaves it
WEDGED_ONCE = """
import os, pathlib, threading
import processors.transactions as t
from processors.runner import main
t.CALL_DEADLINE_S = 3.0
mark = pathlib.Path(os.environ["TEST_WEDGE_MARK"])

class WedgedOnce:
    def __init__(self, producer):
        self._producer = producer
    def __getattr__(self, name):
        return getattr(self._producer, name)
    def send_offsets_to_transaction(self, *args):
        mark.touch()
        threading.Event().wait()

real_init = t.Transactions.__init__
def init(self, producer, *args, **kwargs):
    real_init(self, producer, *args, **kwargs)
    if not mark.exists():
        self.producer = WedgedOnce(producer)
t.Transactions.__init__ = init
raise SystemExit(main())
"""


@pytest.mark.kafka
def test_a_wedged_commit_restarts_the_process_and_loses_and_duplicates_nothing(tmp_path, kafka, unique):
    """A runner whose send_offsets_to_transaction never returns (librdkafka#5511, seen in a
    broker failover) executes itself again: same pid, same transactional id (so the stuck
    transaction is aborted at once), and every published record is delivered exactly once."""
    u, keys, f = unique, tmp_path / "keys", tmp_path / "city.yaml"
    admin_cfg = kafka.admin_config()
    f.write_text(city_yaml(u, REGULATOR_ONLY))
    topo = load_topology(f)
    apply(topo, admin_cfg, keys_dir=keys, with_acls=True)
    product, provider = f"{u}-uav", f"{u}-skyway"
    raw, dlv = topics.raw(provider, product), topics.delivery(f"{u}-regulator")
    sent: list[tuple[str, int]] = []
    ring = keyring.load(keys, provider)
    fleet = FleetSimulator(drones=200, seed=5, violators=0.1)
    with ProviderConnector(ring, kafka.client_config(provider, ring.sasl_password)) as conn:
        while len(sent) < 3000:
            for r in fleet.tick(1.0):
                r["timestamp_ms"] = int(time.time() * 1000) - 60_000 + len(sent)
                conn.publish(product, r)
                sent.append((r["serial_number"], r["timestamp_ms"]))
    mark, log_path = tmp_path / "wedged", tmp_path / "runner.log"
    proc = spawn_kafka_runner(kafka, topo, keys, product, tmp_path / "state", log_path,
                              launcher=("-c", WEDGED_ONCE), TEST_WEDGE_MARK=str(mark))
    try:
        wait_for_log(log_path, "this process executes itself again", 0, 120, proc)
        assert mark.exists()
        since = log_path.read_text().index("executes itself again")
        wait_for_log(log_path, "assigned partitions", since, 120, proc)  # the new image, same pid
        wait_caught_up(admin_cfg, f"citymesh-runner.{product}", raw, 120)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        stop(proc)
    log = log_path.read_text()
    assert "send_offsets_to_transaction did not return within 3 s" in log
    contract = read_table(admin_cfg, topics.CONTROL_CONTRACTS)[f"{u}-regulator"]
    telemetry = schemas.RecordSchema.from_definition(json.loads(contract["delivery_schema_json"]))
    delivered = read_topic(admin_cfg, dlv, expect=len(sent), timeout_s=60)  # (read_committed)
    got = Counter((r["serial_number"], r["timestamp_ms"]) for r in (telemetry.decode(m.value()) for m in delivered))
    assert got == Counter(sent)
    sources = [source_of(m, keys) for m in delivered]
    assert len(sources) == len(set(sources)) == len(sent)
