"""A zombie runner is fenced by the broker (Apache Kafka, transactions on).

Two runner processes of one product in one consumer group, each as the product's runner
principal, with CITYMESH_TRANSACTIONS at its default (auto: the probe finds that Apache Kafka
hides aborted records, so each batch is one transaction with its offsets). The first is
SIGSTOPped while it drains a backlog, that is inside a transaction, until the group expels it
(session timeout); the second takes its partitions over and commits batches of them; then the
first is SIGCONTed. It goes on with the batch it was in, and the broker refuses it: the group
coordinator takes no offsets from a generation that is gone, or the transaction coordinator has
already aborted its transaction (timeout) and fenced its producer. Either way it aborts and
starts over, and nothing it wrote is visible to a read_committed consumer.

Checked with independent read_committed readers: every delivery topic holds each record its
contract permits exactly once (by the sealed source position, opened with the mesh's secret),
byte for byte what the contract's compiled plan makes of the raw record, in source order; the
compliance events count every delivery once. A read_uncommitted reader sees more: the aborted
copies are in the log, hidden.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

import schemas
from deploy.broker import _die_with_parent
from streams import keyring, topics
from streams.connectors import ProviderConnector
from streams.control import read_table
from tests.mesh_fixtures import city_yaml, read_topic, source_of
from tests.processors.test_revocation_kafka import compliance_of
from tests.processors.test_runner_crash import (ROOT, Publisher, compile_contract, delivered_once, flights,
                                                permitted, stop, wait_caught_up, wait_for_log)
from topology.access import password_of, services
from topology.apply import apply
from topology.loader import load_topology

pytestmark = pytest.mark.kafka
BURST = 30_000  # records published at once before a stop, so the runner is busy (in a transaction)
TRIES = 10  # stops per attempt that found the burst already drained (SIGCONT at once, another burst)
RATE = 500  # records a second all along, so the successor and the zombie always have work
ATTEMPTS = 3  # a stop that falls between two transactions fences nothing: stop again (rarely needed)
FENCED = ("transaction aborted", "the producer is unusable")


class RunnerProcess:
    def __init__(self, name: str, product: str, env: dict, log: Path):
        self.name, self.log = name, log
        log.touch()
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "processors.runner", "--product", product, "--metrics-port", "0"], cwd=ROOT,
                env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)  # no orphan if pytest dies

    def mark(self) -> int:
        return len(self.log.read_text(errors="replace"))

    def since(self, mark: int) -> str:
        return self.log.read_text(errors="replace")[mark:]

    def wait_for(self, text: str, since: int, timeout_s: float) -> None:
        wait_for_log(self.log, text, since, timeout_s, self.proc)


def committed(admin: AdminClient, group: str, raw: str, n: int) -> dict[int, int]:
    tps = [TopicPartition(raw, p) for p in range(n)]
    fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)])[group]
    return {tp.partition: tp.offset for tp in fut.result(timeout=15).topic_partitions}


def ends(admin: AdminClient, raw: str, n: int) -> dict[int, int]:
    fut = admin.list_offsets({TopicPartition(raw, p): OffsetSpec.latest() for p in range(n)}, request_timeout=15)
    return {tp.partition: f.result().offset for tp, f in fut.items()}


def test_zombie_runner_writes_nothing_visible(tmp_path, kafka, unique):
    t_start = time.monotonic()
    rnd = random.Random(20261202)
    u, keys, f = unique, tmp_path / "keys", tmp_path / "city.yaml"
    admin_cfg = kafka.admin_config()
    f.write_text(city_yaml(u))
    topo = load_topology(f)
    apply(topo, admin_cfg, keys_dir=keys, with_acls=True)
    product, provider = f"{u}-uav", f"{u}-skyway"
    raw, group = topics.raw(provider, product), f"citymesh-runner.{product}"
    runner_user = services(topo)[f"runner-{product}"]
    env = {**os.environ, **kafka.env(runner_user, password_of(keys, topo, runner_user)),
           "CITYMESH_STATE_DIR": str(tmp_path / "state"), "CITYMESH_KEYS_DIR": str(keys), "PYTHONPATH": str(ROOT)}
    env.pop("CITYMESH_TRANSACTIONS", None)  # the default, auto, is what is tested
    admin = AdminClient(admin_cfg)
    ring = keyring.load(keys, provider)
    conn = ProviderConnector(ring, kafka.client_config(provider, ring.sasl_password))
    records = flights(drones=300, seed=23, violators=0.3)
    lock, published = threading.Lock(), [0]

    def publish(n: int) -> int:
        """n records, from the test (a burst) or the publisher thread (paced): one at a time, so
        the connector's sequences stay in order"""
        with lock:
            for _ in range(n):
                r = next(records)
                r["timestamp_ms"] = int(time.time() * 1000)  # Apache Kafka keeps 1 d of records: stamp them now
                conn.publish(product, r)
            conn.flush()
            published[0] += n
        return n

    zombie = RunnerProcess("zombie", product, env, tmp_path / "zombie.log")
    successor: RunnerProcess | None = None
    pub = Publisher(RATE, lambda: publish(200))
    landed, report = None, []
    try:
        zombie.wait_for("assigned partitions", 0, 90)
        zombie.wait_for("in transactions", 0, 5)  # auto found Apache Kafka honours them
        pub.start()
        for attempt in range(1, ATTEMPTS + 1):
            for _ in range(TRIES):  # stop the zombie while it drains a burst: inside one of its transactions
                at_burst = committed(admin, group, raw, 3)
                publish(BURST)
                burst_end = ends(admin, raw, 3)
                deadline = time.monotonic() + 60
                while committed(admin, group, raw, 3) == at_burst and time.monotonic() < deadline:
                    time.sleep(0.05)  # the runner is draining the burst, batch after batch
                time.sleep(rnd.uniform(0.0, 0.3))
                zombie.proc.send_signal(signal.SIGSTOP)
                t_stop = time.monotonic()
                at_stop = committed(admin, group, raw, 3)
                if any(at_stop[p] < burst_end[p] for p in at_stop):
                    break  # still draining: a transaction is likely open
                report.append(f"attempt {attempt}: the burst was drained before the stop; again")
                zombie.proc.send_signal(signal.SIGCONT)
            if successor is None:
                successor = RunnerProcess("successor", product, env, tmp_path / "successor.log")
                mark = 0
            else:
                mark = successor.mark()
            # the group waits out the zombie's session, then the successor has every partition
            successor.wait_for("assigned partitions [0, 1, 2]", mark, 120)
            t_taken = time.monotonic()
            deadline = time.monotonic() + 120
            while True:  # and commits batches of them: the zombie's partitions too
                now = committed(admin, group, raw, 3)
                if all(now[p] > at_stop[p] for p in now):
                    break
                assert time.monotonic() < deadline, f"the successor committed nothing of {at_stop}: {now}"
                time.sleep(0.2)
            t_processed = time.monotonic()
            mark = zombie.mark()
            zombie.proc.send_signal(signal.SIGCONT)
            zombie.wait_for("assigned partitions", mark, 120)  # back in the group, as a new member
            after = zombie.since(mark)
            landed = next((line for line in after.splitlines() if any(s in line for s in FENCED)), None)
            report.append(f"attempt {attempt}: stopped {t_taken - t_stop:.1f} s until the successor had every "
                          f"partition, {t_processed - t_taken:.1f} s more until it had committed batches of each; "
                          f"on SIGCONT the zombie " + (f"was fenced: {landed.split(' ', 3)[-1]}" if landed else
                                                       "had no transaction open (nothing to fence)"))
            if landed:
                break
        time.sleep(3)  # both members process new records for a while
        pub.stop.set()
        pub.join(60)
        assert not pub.is_alive() and not pub.errors, pub.errors
        wait_caught_up(admin_cfg, group, raw, 120)
        for r in (zombie, successor):
            r.proc.send_signal(signal.SIGTERM)
            r.proc.wait(30)
    finally:
        pub.stop.set()
        conn.close()
        for r in (zombie, successor):
            if r is not None:
                if r.proc.poll() is None:
                    r.proc.send_signal(signal.SIGCONT)
                stop(r.proc)
    print("\n" + "\n".join(report))
    assert landed, f"no stop out of {ATTEMPTS} caught the zombie inside a transaction"
    assert "in transactions" in successor.log.read_text()
    for r in (zombie, successor):
        assert "Traceback" not in r.log.read_text(errors="replace"), r.log.read_text(errors="replace")[-3000:]
    assert not any(s in successor.log.read_text() for s in FENCED), "the successor had a transaction aborted"

    # what should be there: every raw record, decided by the contracts compiled here
    schema = schemas.load("UavTelemetry")
    by_partition: dict[int, list] = {}
    for m in read_topic(admin_cfg, raw, published[0]):
        by_partition.setdefault(m.partition(), []).append((m.offset(), schema.decode(m.value())))
    contracts = read_table(admin_cfg, topics.CONTROL_CONTRACTS)
    events = compliance_of(admin_cfg, product)
    assert len({e["event_id"] for e in events}) == len(events), "a compliance event is there twice"
    hidden = 0
    for cid in (f"{u}-routes", f"{u}-regulator"):
        expected = permitted(compile_contract(contracts[cid], schema, keys), by_partition)
        topic = topics.delivery(cid)
        # read_committed (librdkafka's default)
        got = delivered_once(cid, read_topic(admin_cfg, topic, len(expected)), keys, expected)
        counted = sum(e["counts"].get("deliver", 0) for e in events if e["kind"] == "BATCH" and e["contract_id"] == cid)
        assert counted == len(expected), f"{cid}: compliance counts {counted} deliveries, the topic holds {len(got)}"
        # the aborted copies are in the log: a read_uncommitted reader sees them, each one a copy
        # of a record delivered once above
        everything = Counter(source_of(m, keys) for m in
                             read_topic({**admin_cfg, "isolation.level": "read_uncommitted"}, topic, len(got)))
        assert set(everything) == set(got)
        hidden += sum(everything.values()) - len(got)
        print(f"{cid}: {len(got)} delivered exactly once, counted {counted}; "
              f"{sum(everything.values()) - len(got)} aborted copies hidden")
    assert hidden > 0, "no aborted write in the delivery topics: the zombie wrote nothing after all"
    print(f"total {time.monotonic() - t_start:.1f} s")
