"""Restart cost against the data other products wrote: a SIGKILLed runner resumes delivery
within seconds however many compliance events share its compliance partitions.

The shared cm.compliance topic carries every product's events. A runner that restarts looks
for what its crashed predecessor wrote beyond its committed offsets (processors/fencing.py);
for a partition that has been idle while other products wrote N events, that search must not
read those N events. Per N: a runner of product A delivers a few records on every partition,
then N compliance events of another product are written to cm.compliance, the runner is
SIGKILLed and started again, and the time from its start to its first new delivery is taken.
The baseline is the same restart with N = 0, in the same run; the ratio is restart(N) /
restart(0) (1.0: the cost does not grow with the data). The runner's group session is the one
`citymesh up` gives the processes of a mesh on the embedded broker (deploy/broker.py), unless
CITYMESH_SESSION_TIMEOUT_MS says otherwise.

    .venv/bin/python bench/bench_restart.py [--events 300000 1000000]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import apply_city, machine
from confluent_kafka import Consumer, Producer, TopicPartition

import schemas
from deploy.broker import GROUP_SESSION_MS, EmbeddedBroker
from processors.evidence import event_id
from streams import topics
from streams.offsets import end_offsets
from streams.simulators import FleetSimulator

ROOT = Path(__file__).resolve().parent.parent
CITY = """
participants:
  - {{id: bench-skyway, name: SkyWay, roles: [provider]}}
  - {{id: bench-other, name: Other, roles: [provider]}}
  - {{id: bench-reg, name: Regulator, roles: [regulator]}}
products:
  - {{id: {p}-uav, provider: bench-skyway, name: UAV, schema: UavTelemetry, partitions: 3, retention: 1d,
      key_field: serial_number, event_time_field: timestamp_ms}}
  - {{id: {p}-other, provider: bench-other, name: Other, schema: UavTelemetry, partitions: 3, retention: 1d}}
contracts:
  - id: {p}-reg
    product: {p}-uav
    consumer: bench-reg
    purposes: [airspace-supervision]
    policy: {{permission: {{constraints: [{{type: purpose, in: [airspace-supervision]}}]}}}}
"""


def spawn(bootstrap: str, keys: Path, product: str, log: Path) -> subprocess.Popen:
    env = {"CITYMESH_SESSION_TIMEOUT_MS": str(GROUP_SESSION_MS),  # as `citymesh up` runs it on this broker
           **os.environ, "CITYMESH_BOOTSTRAP": bootstrap, "CITYMESH_KEYS_DIR": str(keys),
           "CITYMESH_STATE_DIR": str(keys.parent), "PYTHONPATH": str(ROOT)}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "processors.runner", "--product", product,
                                 "--metrics-port", "0"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def other_events(bootstrap: str, product: str, n: int) -> float:
    """n BATCH events of another product into cm.compliance, as its runner writes them; seconds."""
    schema = schemas.load("ComplianceEvent")
    raw = topics.raw("bench-other", product)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10000,
                  "compression.type": "lz4", "queue.buffering.max.messages": 1_000_000})
    t0 = time.monotonic()
    for i in range(n):
        part = i % 3
        ev = {"event_id": event_id("batch", product, part, i, i, "x", 1), "time_ms": int(time.time() * 1000),
              "kind": "BATCH", "product_id": product, "provider_id": "bench-other", "contract_id": "x",
              "contract_version": 1, "consumer_id": "c", "rule": None, "reason": None, "counts": {"deliver": 1},
              "source_topic": raw, "source_partition": part, "first_offset": i, "last_offset": i, "digest": None,
              "trace_id": None, "details": {}}
        headers = [("cm.src.topic", raw.encode()), ("cm.src.partition", b"%d" % part), ("cm.batch.first", b"%d" % i),
                   ("cm.batch.last", b"%d" % i), ("cm.batch.now", b"%d" % ev["time_ms"]),
                   ("cm.event.id", ev["event_id"].encode())]
        while True:
            try:
                p.produce(topics.COMPLIANCE, schema.encode(ev), f"{product}:{part}".encode(), headers=headers)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(120) == 0
    return time.monotonic() - t0


def restart_seconds(n_events: int, tmp: Path) -> tuple[float, float, float]:
    """(seconds from the restarted runner's start to its first new delivery, of them the seconds
    from its partition assignment (the group first waits out the killed member's session), and
    the seconds it took to write the events)."""
    with EmbeddedBroker() as broker:
        conf = {"bootstrap.servers": broker.bootstrap}
        p = f"r{n_events}"
        (tmp / p).mkdir(parents=True, exist_ok=True)
        _, keys, conn = apply_city(conf, CITY.format(p=p), tmp / p)
        fleet = FleetSimulator(drones=30, seed=3, violators=0.0, start_ms=int(time.time() * 1000))
        first = []
        while len(first) < 60:  # (drones spend their first seconds on the ground: no records)
            first += fleet.tick(1.0)
        for r in first:
            conn.publish(f"{p}-uav", r)
        conn.flush()
        log = tmp / f"{p}.log"
        runner = spawn(broker.bootstrap, keys, f"{p}-uav", log)
        dlv = topics.delivery(f"{p}-reg")
        watch = Consumer({**conf, "group.id": f"watch-{p}", "enable.auto.commit": False})
        watch.assign([TopicPartition(dlv, q, 0) for q in range(3)])
        deadline = time.monotonic() + 60
        while len([m for m in watch.consume(100, 0.5) if not m.error()]) == 0:
            assert time.monotonic() < deadline, "the runner delivered nothing before the kill"
        time.sleep(3)  # every batch committed; the partitions go idle
        wrote = other_events(broker.bootstrap, f"{p}-other", n_events) if n_events else 0.0
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
        # a new reader from the ends as they are now: one reassigned would still hand out what
        # it had fetched before (a restart of 0.5 s, measured on deliveries of the killed runner)
        watch.close()
        watch = Consumer({**conf, "group.id": f"watch-{p}", "enable.auto.commit": False})
        ends = end_offsets(watch, [TopicPartition(dlv, q) for q in range(3)])
        watch.assign([TopicPartition(dlv, q, ends[(dlv, q)][1]) for q in range(3)])
        since = len(log.read_bytes())
        t0 = time.monotonic()
        runner = spawn(broker.bootstrap, keys, f"{p}-uav", log)
        try:
            got, assigned = [], None
            while not got and time.monotonic() - t0 < 300:
                if assigned is None and b"assigned partitions" in log.read_bytes()[since:]:
                    assigned = time.monotonic()
                for r in fleet.tick(1.0)[:3]:
                    conn.publish(f"{p}-uav", r)
                conn.flush()
                got = [m for m in watch.consume(100, 0.05) if not m.error()]
            assert got, "no delivery after the restart"
            done = time.monotonic()
            return done - t0, done - (assigned or t0), wrote
        finally:
            watch.close()
            conn.close()
            runner.send_signal(signal.SIGTERM)
            runner.wait(20)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, nargs="+", default=[300_000, 1_000_000])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        base, base_assigned, _ = restart_seconds(0, tmp)
        print(f"machine: {machine()}")
        print("command: .venv/bin/python bench/bench_restart.py --events " + " ".join(map(str, args.events)))
        print(f"group session: {os.environ.get('CITYMESH_SESSION_TIMEOUT_MS', GROUP_SESSION_MS)} ms")
        print(f"restart with no other events (baseline): first delivery {base:.2f} s after the runner started, "
              f"{base_assigned:.2f} s after its partitions were assigned")
        for n in args.events:
            s, after, wrote = restart_seconds(n, tmp)
            print(f"restart after {n:,} other products' events ({wrote:.0f} s to write them): first delivery "
                  f"{s:.2f} s after the runner started, {after:.2f} s after assignment; ratio {s / base:.2f}")


if __name__ == "__main__":
    main()
