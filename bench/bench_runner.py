"""The enforcement runner against the practical limit of a Python data plane.

(a) baseline: a raw confluent-kafka consume -> produce loop over the same raw bytes, made
    as fair as possible: the same batch size, the runner's producer settings, the source
    partition/offset headers the runner adds, flush per batch and a commit per batch
    (without waiting for its answer, as the runner);
(b) the runner, one contract (drop 3 fields, pseudonymise 1, round coordinates, geofence);
(c) the runner, five contracts on the same product;
ratios b/a (goal >= 0.5) and c/a (goal >= 0.3); the runner's peak memory with five
contracts (goal <= 300 MB; VmHWM of the runner process); end-to-end p99 latency provider
publish -> consumer receive at 10k records/s through the one-contract runner (goal <= 100 ms),
next to the same measurement on a raw topic with no runner in the path (the broker's own
latency, the floor on this machine).

Runners (b), (c) and (d) run as processes (`python -m processors.runner`), as in
production; throughput is the raw records drained from a pre-published backlog divided by
the time from the runner's partition assignment to its last commit.

    .venv/bin/python bench/bench_runner.py [--records 200000] [--profile] [--engine tansu|kafka]
                                           [--transactions off|on|both] [--stage-cost ROUNDS]
                                           [--latency-only] [--ceiling ROUNDS] [--heap ROUNDS]
                                           [--collector ROUNDS]

--stage-cost ROUNDS also runs a five-contract runner in process, ROUNDS times with the whole chain
and ROUNDS times without the replay and seal stages (issue 15's replay protection, delivery tags
and seals), alternating which goes first, and prints the ratio of the medians, the runner thread's
CPU time per record and each stage's time per record.

--contracts 1,5,20,50 runs only issue 14's scaling part, in one run: per number of contracts N, the raw
fan-out (the baseline loop writing the same bytes to N topics, the limit of N contracts), the runner
with N contracts (one process), and with --runner-groups G also G runner groups sharing the N contracts
(processors/sharding.py; G processes on a product of their own with the same records); the per-record
cost of one more contract above the fan-out's, peak RSS, and a plot (PNG, --plot) of throughput
against contracts.

With --contracts, --ceiling 1 also runs, per N, the fan-out plus only the C calls of N contracts.

--ceiling ROUNDS runs only the bound of issue 14's b/a: ROUNDS times, in an order that turns, (a) the
raw loop, (a') the raw loop plus only the C calls a one-contract runner makes per record and slice
(tag check, decode, encode, sealed references, delivery tags, its header list), and (b) the runner.

--heap ROUNDS runs only the raw loop with the benchmark process's heap as it is (the records it
published, the city) and frozen as the runner's is, alternating: what the freeze in baseline() changes.

--collector ROUNDS runs only in-process runners with 1 and 5 contracts, ROUNDS times each with the
cyclic collector paused for each batch (as the runner runs) and with the pause taken out, alternating:
what the pause saves, and the collections that run without it. The baseline loop pauses it too.

--latency-only runs only the end-to-end latency at 10k records/s (publish -> consumer receive):
the raw topic with no runner, then a one-contract runner per --transactions mode.

--engine kafka runs the same on one Apache Kafka node with SASL_SSL (SCRAM-SHA-512 over TLS) and
the topology's ACLs: the provider publishes as itself, each runner logs in as its own service
principal, the baseline loop as the operator's bootstrap account (the same SASL_SSL costs).

--transactions on runs the runners with CITYMESH_TRANSACTIONS=on (each batch one transaction
with its offsets, processors/transactions.py) and the baseline the same way (begin, produce,
send_offsets_to_transaction, commit per batch: the floor of exactly-once by transactions);
`both` measures off then on in the same run, and prints on/off ratios too.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

from common import (Timer, apply_city, cluster, delivery_schema, kafka_cluster, machine, per_second,
                    publish_fleet_paced, receive_latencies, tail_consumer)
from confluent_kafka import Consumer, Producer, TopicPartition

import schemas
from processors.runner import FETCH_WAIT_MS, PRODUCER_CONFIG, collector_paused
from processors.transactions import producer_config
from streams import topics
from streams.offsets import end_offsets
from streams.simulators import FleetSimulator

ROOT = Path(__file__).resolve().parent.parent
GEO = ROOT / "examples" / "geo" / "shenzhen-urban.geojson"
BATCH = 5000

ONE = """
  - id: {p}-c0
    product: {p}-uav
    consumer: bench-consumer
    purposes: [route-planning]
    policy:
      permission:
        constraints:
          - {{type: purpose, in: [route-planning]}}
          - {{type: geofence, inside: urban}}
      duties:
        - {{type: drop, fields: [uin, operator_id, battery_pct]}}
        - {{type: pseudonymise, field: serial_number}}
        - {{type: generalise, field: lat, decimals: 3}}
        - {{type: generalise, field: lon, decimals: 3}}
"""
MORE = """
  - id: {p}-c1
    product: {p}-uav
    consumer: bench-consumer
    purposes: [research]
    policy:
      permission:
        fields: [flight_id, timestamp_ms, lat, lon, height_agl_m, uav_class]
        constraints: [{{type: purpose, in: [research]}}, {{type: value, field: height_agl_m, op: "<=", value: 120}}]
      duties: [{{type: generalise, field: lat, decimals: 2}}, {{type: generalise, field: lon, decimals: 2}}]
  - id: {p}-c2
    product: {p}-uav
    consumer: bench-regulator
    purposes: [airspace-supervision]
    policy: {{permission: {{constraints: [{{type: purpose, in: [airspace-supervision]}}]}}}}
  - id: {p}-c3
    product: {p}-uav
    consumer: bench-consumer
    purposes: [insurance]
    policy:
      permission:
        fields: [serial_number, flight_id, timestamp_ms, speed_h_mps, uav_class, height_agl_m]
        constraints: [{{type: purpose, in: [insurance]}}, {{type: geofence, inside: urban}}]
      duties: [{{type: pseudonymise, field: serial_number}}, {{type: mask, field: flight_id, keep_first: 4}}]
  - id: {p}-c4
    product: {p}-uav
    consumer: bench-consumer
    purposes: [dashboards]
    policy:
      permission:
        fields: [timestamp_ms, lat, lon, uav_class, speed_h_mps]
        constraints: [{{type: purpose, in: [dashboards]}}]
      duties: [{{type: generalise, field: lat, decimals: 3}}, {{type: generalise, field: lon, decimals: 3}}]
"""


def topology(products: dict[str, str]) -> str:
    text = textwrap.dedent(f"""
    participants:
      - {{id: bench-operator, name: Operator, roles: [operator]}}   # signs the deliveries' seals, as in a city
      - {{id: bench-skyway, name: SkyWay, roles: [provider]}}
      - {{id: bench-consumer, name: Consumer, roles: [consumer]}}
      - {{id: bench-regulator, name: Regulator, roles: [regulator]}}
    geofences:
      urban: {{file: {GEO}}}
    products:
    """)
    for p in products:
        text += textwrap.indent(textwrap.dedent(f"""
        - id: {p}-uav
          provider: bench-skyway
          name: bench {p}
          schema: UavTelemetry
          partitions: 3
          retention: 1d
          key_field: serial_number
          event_time_field: timestamp_ms
        """), "  ")
    return text + "contracts:\n" + "".join(c.format(p=p) for p, c in products.items())


def make_records(n: int, seed: int = 5) -> list[dict]:
    # event times from now on: the provider stamps records with them, and Apache Kafka deletes
    # records older than the raw topic's retention (1 d here) from the first segment check on
    fleet, out = FleetSimulator(drones=500, seed=seed, violators=0.1, start_ms=int(time.time() * 1000)), []
    while len(out) < n:
        out += fleet.tick(1.0)
    return out[:n]


def publish(conn, product: str, records: list[dict]) -> None:
    for r in records:
        conn.publish(product, r)
    conn.flush(120)


def baseline(conf: dict, src: str, dst: str | list[str], n: int, transactional: bool = False,
             freeze: bool = True) -> float:
    """consume -> produce of the same bytes, batch loop like the runner's (see module doc), to
    one topic or to each of several (the raw fan-out: the limit of a runner with as many
    contracts); `transactional`: each batch one transaction with its offsets, as the runner's
    with transactions. `freeze=False` only for --heap, which measures what it changes."""
    # What this process built before (the records, the city) out of the collector's way, as
    # the runner process freezes its start-up heap: a full collection walking 200k record
    # dicts made this loop 1.05-1.18x slower (--heap; RESULTS, "The baseline's heap"), so
    # the ratios against it flattered the runner
    if freeze:
        gc.freeze()
    dsts = [dst] if isinstance(dst, str) else dst
    group = f"bench-baseline-{time.time_ns()}"
    producer = Producer({**conf, **PRODUCER_CONFIG, **(producer_config(f"{group}.0") if transactional else {})})
    if transactional:
        producer.init_transactions()
    src_topic = ("cm.src.topic", src.encode())

    def write(msgs: list) -> dict[int, int]:
        commits = {}
        for m in msgs:
            if m.error():
                continue
            p = m.partition()
            hdrs = (m.headers() or []) + [src_topic, ("cm.src.partition", b"%d" % p),
                                          ("cm.src.offset", b"%d" % m.offset())]
            for dst in dsts:
                _produce(producer, dst, m.value(), m.key(), p, hdrs)
            commits[p] = m.offset() + 1
        return commits
    return _batch_loop(conf, group, src, n, BATCH, producer, write, transactional)


def _batch_loop(conf: dict, group: str, src: str, n: int, batch: int, producer: Producer, write,
                transactional: bool = False) -> float:
    """The batch loop of baseline() and ceiling(), as the runner's: consume up to `batch`,
    `write(msgs)` (-> partition: next offset), then flush and commit without waiting for the
    answer, or with `transactional` one transaction with its offsets. Records/s from the first
    batch until n records."""
    consumer = Consumer({**conf, "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                         "fetch.wait.max.ms": FETCH_WAIT_MS,
                         "enable.partition.eof": False})
    consumer.subscribe([src])
    done, t0 = 0, None
    try:
        while done < n:
            with collector_paused():  # as the runner's step
                msgs = consumer.consume(batch, 0.1)
                if not msgs:
                    continue
                if t0 is None:
                    t0 = time.perf_counter()
                if transactional:
                    producer.begin_transaction()
                offsets = [TopicPartition(src, p, o) for p, o in write(msgs).items()]
                if transactional:
                    producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata())
                    producer.commit_transaction()
                else:
                    assert producer.flush(60) == 0
                    consumer.commit(offsets=offsets, asynchronous=True)
            done += len(msgs)
        return done / (time.perf_counter() - t0)
    finally:
        consumer.close()


def _produce(producer: Producer, topic: str, value, key, partition: int, headers: list, timestamp: int = 0) -> None:
    while True:
        try:
            producer.produce(topic, value, key, partition, None, None, timestamp, headers)  # as the runner's
            return
        except BufferError:
            producer.poll(0.05)


def ceiling(conf: dict, src: str, dsts: list[str], n: int, product: str, keys: Path) -> float:
    """baseline()'s loop plus only the C calls a runner makes, with the runner's own objects
    (a `Runner` built in process for `product`, then closed): per record the headers as a
    dict, the admission's tag check and Avro decode, one Avro encode (shared by every
    contract: the most sharing there can be); per contract and slice the sealed source
    references and traceparents, the header lists and the delivery tags, and a produce with
    the delivery's five headers (to dsts[i]) of each record its plan delivers, in batches as
    large as the runner's (bounded by its outputs: processors/runner.py). Which records
    each plan delivers is decided in a pass before the timed loop; no policy, stage, event or
    state is timed. What any runner on confluent-kafka's Python API pays at least."""
    from itertools import compress, repeat

    from policy_enforcer.plan import SOURCE_REF_AT, TRACE_AT, SourceBatch
    from processors.runner import Runner, batch_limit
    from schemas.headers import AUTH, SOURCE_REF, TRACE
    from streams.delivery import tag_deliveries
    from streams.envelope import H_AUTH, H_EVENT_TIME, H_SEQUENCE, signed_time

    r = Runner(product, conf, keys, group_id=f"bench-ceiling-objects-{time.time_ns()}")
    try:
        admission = next(stage for stage in r.chain if stage.name == "admission")
        plans = list(r.plans.values())
    finally:
        r.close()
    assert len(plans) == len(dsts), (len(plans), len(dsts))
    gc.freeze()  # as baseline()
    provider, product_b, header = admission.provider, admission.product, admission.header
    read, encode, hlen = admission.schema.body_reader, admission.schema.encode, len(admission.header)
    matches, prefix_len = admission._tagger.matches, len(admission._key_id) + 1
    # per plan and partition: the offsets its plan delivers (decided here, not timed)
    delivers: list[dict[int, set]] = [{} for _ in plans]
    now_ms = int(time.time() * 1000)
    msgs = _read_all(conf, src, n)
    for at in range(0, len(msgs), BATCH):
        chunk = msgs[at:at + BATCH]
        recs = [read(m.value(), hlen)[0] for m in chunk]
        for ap, mine in zip(plans, delivers):
            for m, out in zip(chunk, ap.plan.evaluate(recs, now_ms).records):
                if out is not None:
                    mine.setdefault(m.partition(), set()).add(m.offset())
    del msgs
    share = sum(len(offsets) for d in delivers for offsets in d.values()) / n / len(plans)
    print(f"  (a') {len(plans)} contract(s) deliver {share:.0%} of the records on average", flush=True)
    producer = Producer({**conf, **PRODUCER_CONFIG})

    def write(msgs: list) -> dict[int, int]:
        ts = int(time.time() * 1000)
        by_partition: dict[int, list] = {}
        for m in msgs:
            by_partition.setdefault(m.partition(), []).append(m)
        commits = {}
        for p, pmsgs in by_partition.items():
            outs, keys_, offsets, traceparents = [], [], [], []
            for m in pmsgs:
                v, h = m.value(), dict(m.headers() or ())
                assert matches(provider, product_b, signed_time(h[H_EVENT_TIME], h.get(H_SEQUENCE)), v,
                               h[H_AUTH], prefix_len)
                rec, _ = read(v, hlen)
                outs.append(header + encode(rec)[hlen:])
                keys_.append(m.key())
                offsets.append(m.offset())
                traceparents.append(h.get(TRACE))
            batch = SourceBatch(p, [], outs, offsets, traceparents)
            sources = batch.sources()
            for ap, dst, mine in zip(plans, dsts, delivers):
                plan, (c_hdr, s_hdr) = ap.plan, ap.plan.static_headers
                refs, traces = plan.source_refs.seal(sources), plan.trace_ids.seal(batch.traces(), sources)
                hdrs = list(map(list, zip(repeat(c_hdr), repeat(s_hdr), zip(repeat(SOURCE_REF), refs),
                                          zip(repeat(TRACE), traces))))
                mask = list(map(mine.get(p, set()).__contains__, offsets))
                payloads, pkeys, phdrs = (list(compress(x, mask)) for x in (outs, keys_, hdrs))
                tag_deliveries(ap.tagger, c_hdr[1], ts, payloads, pkeys, phdrs, SOURCE_REF_AT, TRACE_AT, AUTH)
                q = p % ap.partitions
                for payload, key, hs in zip(payloads, pkeys, phdrs):
                    _produce(producer, dst, payload, key, q, hs, ts)
            commits[p] = offsets[-1] + 1
        return commits
    # in the runner's batches: 5,000 records up to 5 contracts, 500 at 50
    return _batch_loop(conf, f"bench-ceiling-{time.time_ns()}", src, n, batch_limit(BATCH, len(plans)), producer,
                       write)


def _read_all(conf: dict, topic: str, n: int) -> list:
    """The first n records of `topic` (group-less)."""
    c = Consumer({**conf, "group.id": f"bench-read-{time.time_ns()}", "enable.auto.commit": False})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        out, deadline = [], time.monotonic() + 120
        while len(out) < n and time.monotonic() < deadline:
            out += [m for m in c.consume(5000, 0.5) if not m.error()]
        return out
    finally:
        c.close()


def heap_rounds(conf: dict, u: str, records: list[dict], rounds: int, tmp: Path) -> None:
    """The raw loop with this process's heap as the benchmark leaves it (the records it
    published, the city) and frozen, alternating, ROUNDS times each (--heap)."""
    _, _, conn = apply_city(conf, topology({f"{u}heap": ONE}), tmp)
    publish(conn, f"{u}heap-uav", records)
    from confluent_kafka.admin import AdminClient

    from streams.admin import TopicSpec, ensure_topics
    out, raw = f"bench.heap-out.{u}", topics.raw("bench-skyway", f"{u}heap-uav")
    ensure_topics(AdminClient(conf), [TopicSpec(out, 3)])
    print(f"machine: {machine()}; command: .venv/bin/python bench/bench_runner.py --records {len(records)} "
          f"--heap {rounds}", flush=True)
    got: dict[bool, list[float]] = {False: [], True: []}
    for i in range(rounds):
        for frozen in ((False, True) if i % 2 == 0 else (True, False)):
            if not frozen:
                gc.unfreeze()
            got[frozen].append(baseline(conf, raw, out, len(records), freeze=frozen))
        print(f"round {i + 1}: heap as it is {got[False][-1]:,.0f}/s, frozen {got[True][-1]:,.0f}/s "
              f"({got[True][-1] / got[False][-1]:.2f}x)", flush=True)
    a, b = statistics.median(got[False]), statistics.median(got[True])
    print(f"medians: the raw loop {a:,.0f}/s with the heap as it is, {b:,.0f}/s frozen ({b / a:.2f}x)")


def ceiling_rounds(conf: dict, bootstrap: str, u: str, records: list[dict], rounds: int, tmp: Path) -> None:
    """(a), (a') and (b) of --ceiling, in an order that turns each round; (b) on a product of
    its own per round (a runner's group resumes where it left), (a) and (a') on the first."""
    products = {f"{u}ce{i}": ONE for i in range(rounds)}
    _, keys, conn = apply_city(conf, topology(products), tmp)
    for p in products:
        publish(conn, f"{p}-uav", records)
    from confluent_kafka.admin import AdminClient

    from streams.admin import TopicSpec, ensure_topics
    out = f"bench.ceiling-out.{u}"
    ensure_topics(AdminClient(conf), [TopicSpec(out, 3)])
    first, n = next(iter(products)), len(records)
    raw = topics.raw("bench-skyway", f"{first}-uav")
    print(f"machine: {machine()}; command: .venv/bin/python bench/bench_runner.py --records {n} --ceiling {rounds}",
          flush=True)
    got: dict[str, list[float]] = {"a": [], "a'": [], "b": []}
    for i, product in enumerate(products):
        runs = {"a": lambda: baseline(conf, raw, out, n),
                "a'": lambda: ceiling(conf, raw, [out], n, f"{first}-uav", keys),
                "b": lambda: runner_rate(conf, bootstrap, f"{product}-uav",
                                         topics.raw("bench-skyway", f"{product}-uav"), n, tmp / "state",
                                         tmp / "runner.log")[0]}
        order = list(runs)[i % 3:] + list(runs)[:i % 3]
        for k in order:
            got[k].append(runs[k]())
        a, a2, b = got["a"][-1], got["a'"][-1], got["b"][-1]
        print(f"round {i + 1} ({' '.join(order)}): (a) {a:,.0f}/s, (a') {a2:,.0f}/s, (b) {b:,.0f}/s; "
              f"a'/a {a2 / a:.2f}, b/a {b / a:.2f}", flush=True)
    a, a2, b = (statistics.median(got[k]) for k in ("a", "a'", "b"))
    print(f"medians: (a) raw loop {a:,.0f}/s, (a') raw loop + the runner's C calls {a2:,.0f}/s, (b) runner "
          f"{b:,.0f}/s; a'/a {a2 / a:.2f} (the most a runner on this API reaches), b/a {b / a:.2f} (issue 14: "
          f">= 0.85); per record: raw {1e6 / a:.2f} us, + C calls {1e6 / a2 - 1e6 / a:.2f} us, + the runner's "
          f"Python {1e6 / b - 1e6 / a2:.2f} us")


class RunnerProcess:
    def __init__(self, product: str, bootstrap: str, state: Path, log: Path, extra_env: dict | None = None,
                 args: tuple[str, ...] = ()):
        env = {**os.environ, "CITYMESH_BOOTSTRAP": bootstrap, "CITYMESH_STATE_DIR": str(state),
               "PYTHONPATH": str(ROOT), **(extra_env or {})}
        self.log = log
        # the log may hold earlier runners' lines: only what this process writes counts
        self._log_from = log.stat().st_size if log.exists() else 0
        with open(log, "ab") as f:
            self.proc = subprocess.Popen([sys.executable, "-m", "processors.runner", "--product", product,
                                          "--metrics-port", "0", *args], cwd=ROOT, env=env, stdout=f,
                                         stderr=subprocess.STDOUT)

    def wait_assigned(self, timeout_s: float = 60) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if b"assigned partitions" in self.log.read_bytes()[self._log_from:]:
                return time.perf_counter()
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_bytes()[self._log_from:][-3000:].decode(errors="replace"))
            time.sleep(0.01)
        raise TimeoutError("runner not assigned")

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def drained_at(conf: dict, group: str, topic: str, timeout_s: float = 300) -> float:
    c = Consumer({**conf, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(topic, p) for p in c.list_topics(topic, timeout=10).topics[topic].partitions]
        ends = {p: hi for (_, p), (_, hi) in end_offsets(c, parts).items()}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = {tp.partition: tp.offset for tp in c.committed(parts, timeout=10)}
            if all(done[p] >= hi for p, hi in ends.items()):
                return time.perf_counter()
            time.sleep(0.02)
        raise TimeoutError(f"not drained: {done} < {ends}")
    finally:
        c.close()


def runner_rate(conf: dict, bootstrap: str, product: str, raw: str, n: int, state: Path, log: Path,
                env: dict | None = None) -> tuple[float, float]:
    run = groups_run(conf, bootstrap, product, raw, n, state, log, 1, env)
    return run["rate"], run["rss"]


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time a process has used so far (/proc/<pid>/stat), 0 when unknown."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError, TypeError):
        return 0.0
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def broker_pid(bootstrap: str) -> int | None:
    """The embedded broker's pid (its command line names its listener), None for another broker."""
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and f"tcp://{bootstrap}".encode() in (d / "cmdline").read_bytes():
                return int(d.name)
        except OSError:
            continue
    return None


def groups_run(conf: dict, bootstrap: str, product: str, raw: str, n: int, state: Path, log: Path, groups: int,
               env: dict | None = None) -> dict[str, float]:
    """`groups` runner groups, one process each, splitting the product's contracts
    (processors/sharding.py; 1: the plain runner): raw records/s from the first assignment to
    the last group's last commit, the largest peak RSS among them, and the cores the runners
    and the embedded broker kept busy meanwhile (CPU seconds per second)."""
    args = [("--group", str(k), "--groups", str(groups)) if groups > 1 else () for k in range(groups)]
    rps = [RunnerProcess(product, bootstrap, state, log, env, a) for a in args]
    broker = broker_pid(bootstrap)
    try:
        t0 = min([rp.wait_assigned() for rp in rps])
        cpu0, b0 = sum(cpu_seconds(rp.proc.pid) for rp in rps), cpu_seconds(broker)
        names = [f"citymesh-runner.{product}"] + [f"citymesh-runner.{product}.{k}" for k in range(1, groups)]
        t1 = max([drained_at(conf, g, raw) for g in names])
        cpu1, b1 = sum(cpu_seconds(rp.proc.pid) for rp in rps), cpu_seconds(broker)
        return {"rate": n / (t1 - t0), "rss": max(rp.peak_rss_mb() for rp in rps),
                "runner_cores": (cpu1 - cpu0) / (t1 - t0), "broker_cores": (b1 - b0) / (t1 - t0)}
    finally:
        for rp in rps:
            rp.stop()


def contracts(n: int) -> str:
    """n contracts on product {p}: the five of (c) over and over, each under its own id."""
    templates = [("  - id:" + t) for t in (ONE + MORE).split("  - id:")[1:]]
    out = []
    for i in range(n):
        t = templates[i % len(templates)]
        out.append(t.replace(f"{{p}}-c{i % len(templates)}\n", f"{{p}}-c{i}\n", 1))
    return "".join(out)


def scaling(conf: dict, bootstrap: str, u: str, products: dict[str, int], n: int, state: Path, log: Path,
            groups: int, plot: Path, keys: Path | None = None) -> None:
    """Issue 14's goals against contracts: the raw fan-out (the same bytes to N topics, the
    limit of N contracts) and the runner with N contracts, N in `products` (product -> N),
    in one run; the per-record cost of each extra contract above the raw fan-out's; the
    runner's peak RSS; with `groups` > 1 also that many runner groups sharing the contracts;
    with `keys` also ceiling(): the fan-out plus only the C calls of N contracts;
    a plot of throughput against contracts."""
    from confluent_kafka.admin import AdminClient

    from streams.admin import TopicSpec, ensure_topics
    most = max(products.values())
    outs = [f"bench.fanout.{u}.{i}" for i in range(most)]
    ensure_topics(AdminClient(conf), [TopicSpec(t, 3) for t in outs])
    rows = []
    for product, k in products.items():
        raw = topics.raw("bench-skyway", f"{product}-uav")
        broker, w0 = broker_pid(bootstrap), time.perf_counter()
        b0 = cpu_seconds(broker)
        fan = baseline(conf, raw, outs[:k], n)
        fan_broker = (cpu_seconds(broker) - b0) / (time.perf_counter() - w0)
        one = groups_run(conf, bootstrap, f"{product}-uav", raw, n, state, log, 1)
        run, rss = one["rate"], one["rss"]
        # (a product of its own, the same contracts and records: the lead group is the one-process runner's group)
        twin = f"{product}s"
        shard = (groups_run(conf, bootstrap, f"{twin}-uav", topics.raw("bench-skyway", f"{twin}-uav"), n, state, log,
                            groups) if groups > 1 else None)
        bound = ceiling(conf, raw, outs[:k], n, f"{product}-uav", keys) if keys is not None else float("nan")
        rows.append((k, fan, run, rss, shard["rate"] if shard else float("nan"), bound))
        print(f"{k:>3} contracts: raw fan-out to {k} topics {fan:>9,.0f}/s (broker {fan_broker:.2f} cores)   "
              f"runner {run:>9,.0f}/s ({run / fan:.2f} of the fan-out; runner {one['runner_cores']:.2f} + broker "
              f"{one['broker_cores']:.2f} cores), peak RSS {rss:.0f} MB"
              + (f"   fan-out + the C calls {bound:>9,.0f}/s ({bound / fan:.2f} of the fan-out)" if keys else "")
              + (f"   {groups} runner groups {shard['rate']:>9,.0f}/s ({shard['rate'] / run:.2f}x one; runners "
                 f"{shard['runner_cores']:.2f} + broker {shard['broker_cores']:.2f} cores), peak RSS {shard['rss']:.0f} MB"
                 if shard else ""), flush=True)
    (k1, f1, r1, *_), (kn, fn, rn, rssn, *_) = rows[0], rows[-1]
    per_raw = (1 / fn - 1 / f1) / (kn - k1) * 1e6
    per_run = (1 / rn - 1 / r1) / (kn - k1) * 1e6
    print(f"per-record cost of one more contract, {k1} -> {kn}: runner {per_run:.2f} us, raw fan-out {per_raw:.2f} us,"
          f" above it {per_run - per_raw:.2f} us (goal <= 0.5 us above)")
    if keys is not None:
        bn, b1 = rows[-1][5], rows[0][5]
        per_bound = (1 / bn - 1 / b1) / (kn - k1) * 1e6
        print(f"  the fan-out plus only the C calls of each contract: {per_bound:.2f} us per contract, "
              f"{per_bound - per_raw:.2f} us above the fan-out's")
    five = next((r for r in rows if r[0] == 5), None)
    print(f"goals: runner(1)/raw(1) {r1 / f1:.2f} (>= 0.85)"
          + (f"; runner(5)/raw(5 copies) {five[2] / five[1]:.2f} (>= 0.6)" if five else "")
          + f"; peak RSS with {kn} contracts {rssn:.0f} MB (<= 250 MB)")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ks = [r[0] for r in rows]
    ax.plot(ks, [r[1] for r in rows], "o-", label="raw fan-out (same bytes to N topics)")
    ax.plot(ks, [r[2] for r in rows], "s-", label="runner, one process")
    if groups > 1:
        ax.plot(ks, [r[4] for r in rows], "^-", label=f"runner, {groups} groups sharing the contracts")
    ax.set(xscale="log", yscale="log", xlabel="contracts on the product", ylabel="source records/s")
    ax.set_title(f"citymesh runner against contracts ({n:,} records, {os.cpu_count()} cores)", fontsize=10)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(plot, dpi=110)
    print(f"plot: {plot}")


def latency(conf: dict, bootstrap: str, product: str, conn, state: Path, log: Path, rate: int = 10_000,
            seconds: float = 10.0, warmup_s: float = 3.0, through_runner: bool = True, env: dict | None = None,
            ) -> tuple[list[float], list[float]]:
    """ms from publish (record timestamp_ms = wall clock at publish) to a consumer's receive,
    in steady state: records published in the first `warmup_s` are not counted (a runner
    that has just joined drains the first second's backlog with cold caches; measured
    separately by the start-up figure). Returns the latencies and each record's publish time.

    through_runner=False is the baseline: the same publisher and reader on the product's raw
    topic with no runner in the path, the broker's own publish -> receive latency."""
    rp = RunnerProcess(product, bootstrap, state, log, env) if through_runner else None
    contract_id = f"{product.removesuffix('-uav')}-c0"
    if through_runner:
        c, schema = tail_consumer(conf, topics.delivery(contract_id)), delivery_schema(conf, contract_id)
    else:
        c, schema = tail_consumer(conf, topics.raw("bench-skyway", product)), schemas.load("UavTelemetry")
    lat: list[float] = []
    sent_at: list[float] = []
    stop = threading.Event()
    measure_from = [float("inf")]
    try:
        if rp is not None:
            rp.wait_assigned()
        time.sleep(1.0)
        th = threading.Thread(target=receive_latencies, daemon=True,
                              args=(c, lambda v: schema.decode(v)["timestamp_ms"], stop, lat, measure_from, sent_at))
        th.start()
        measure_from[0] = time.time() * 1000 + warmup_s * 1000
        publish_fleet_paced(conn, product, rate, seconds + warmup_s)
        time.sleep(1.5)
        stop.set()
        th.join(5)
        return lat, sent_at
    finally:
        stop.set()
        if rp is not None:
            rp.stop()
        c.close()


def percentiles(lat: list[float]) -> list[float]:
    """The 1st to 99th percentiles of `lat` (sorted in place, its max is then lat[-1])."""
    lat.sort()
    return statistics.quantiles(lat, n=100) if len(lat) > 100 else [float("nan")] * 99


def profile_in_process(conf: dict, product: str, keys: Path, n: int) -> None:
    import cProfile
    import pstats

    from processors.runner import Runner
    r = Runner(product, conf, keys, group_id=f"bench-profile-{time.time_ns()}")
    pr = cProfile.Profile()
    try:
        while not r.consumer.assignment():
            r.step()
        pr.enable()
        with Timer() as t:
            while r.consumed < n:
                r.step()
        pr.disable()
    finally:
        r.close()
    print(f"in-process runner (profiled, {r.consumed} records): {r.consumed / t.seconds:,.0f} records/s")
    pstats.Stats(pr).sort_stats("tottime").print_stats(25)


ISSUE15_STAGES = ("replay", "seal")  # replay protection; delivery tags and seals


def stage_cost(conn, conf: dict, keys: Path, products: list[str], records: list[dict]) -> None:
    """What each stage costs a five-contract runner, and what the runner gains without replay
    protection and delivery tags (issue 15's goal: they cost <= 10 %). In process, the same
    backlog for every run; each round runs the whole chain and the chain without those two
    stages, alternating which goes first (a machine that slows down favours the first)."""
    from processors.runner import Runner
    rates: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}  # the runner thread's CPU seconds per record
    spent: dict[bool, dict[str, float]] = {True: {}, False: {}}
    done = {True: 0, False: 0}
    for i, product in enumerate(products):
        whole = (i % 4) in (0, 3)
        publish(conn, product, records)
        r = Runner(product, conf, keys, group_id=f"bench-stages-{time.time_ns()}")
        if not whole:
            r.chain = [st for st in r.chain if st.name not in ISSUE15_STAGES]
            r.decide = r.chain[:-1]
        for st in r.chain:
            st.process = _timed(st.process, st.name, spent[whole])
        try:
            while not r.consumer.assignment():
                r.step()
            in_stages = sum(spent[whole].values())
            cpu0 = time.thread_time()
            with Timer() as t:
                while r.consumed < len(records):
                    r.step()
            cpu[whole].append((time.thread_time() - cpu0) / r.consumed)
        finally:
            r.close()
        done[whole] += r.consumed
        # consuming, flushing, committing, the state records: what the runner does around the chain
        spent[whole]["outside"] = spent[whole].get("outside", 0.0) + t.seconds - (sum(spent[whole].values()) - in_stages)
        rates[whole].append(r.consumed / t.seconds)
        print(f"in-process runner, 5 contracts, {'whole chain' if whole else 'without ' + ' and '.join(ISSUE15_STAGES)}: "
              f"{rates[whole][-1]:,.0f} records/s", flush=True)
    w, wo = statistics.median(rates[True]), statistics.median(rates[False])
    print(f"stage cost, in-process runner, 5 contracts, {len(records)} records, {len(products) // 2} rounds: "
          f"whole chain {w:,.0f} / without {' and '.join(ISSUE15_STAGES)} {wo:,.0f} records/s (medians) = {w / wo:.2f}"
          f" (issue 15 goal >= 0.90)")
    cw, cwo = statistics.median(cpu[True]) * 1e6, statistics.median(cpu[False]) * 1e6
    print(f"  the runner thread's CPU time per record (medians; less exposed to what else runs): whole chain "
          f"{cw:.1f} us / without {cwo:.1f} us = {cwo / cw:.2f}")
    for whole in (True, False):
        print(f"  us per source record, {'whole chain' if whole else 'without'}: "
              + ", ".join(f"{k} {v / done[whole] * 1e6:.1f}" for k, v in spent[whole].items()))


def split_rounds(conn, conf: dict, keys: Path, products: list[str], records: list[dict], n_contracts: int) -> None:
    """What computing the unkeyed part of keyed plans once per slice (Plan.split_key) saves,
    or costs, a runner with `n_contracts` contracts (the templates' keyed ones share a policy
    ten at a time at 50; at 1 and 5 each is alone): in process, the same backlog each run,
    alternately with every keyed plan split (even a lone one, which the runner does not do)
    and with every keyed plan on its own path; the runner thread's CPU time per record and
    the contracts stage's time per record (--split ROUNDS --split-contracts N)."""
    from processors.runner import Runner
    cpu: dict[bool, list[float]] = {True: [], False: []}
    stage: dict[bool, list[float]] = {True: [], False: []}
    for i, product in enumerate(products):
        split = (i % 4) in (0, 3)  # alternating which goes first
        publish(conn, product, records)
        r = Runner(product, conf, keys, group_id=f"bench-split-{time.time_ns()}")
        keyed = [ap.plan for ap in r.plans.values() if ap.plan.split_key is not None]
        contracts_stage = next(st for st in r.chain if st.name == "contracts")
        spent: dict[str, float] = {}
        contracts_stage.process = _timed(contracts_stage.process, "contracts", spent)
        try:
            while not r.consumer.assignment():
                r.step()
            split_keys = frozenset(plan.split_key for plan in keyed) if split else frozenset()
            contracts_stage._split_keys = split_keys  # what SourceBatch.split_keys says to split
            spent.clear()
            cpu0 = time.thread_time()
            while r.consumed < len(records):
                r.step()
            cpu[split].append((time.thread_time() - cpu0) / r.consumed)
            stage[split].append(spent.get("contracts", 0.0) / r.consumed)
            assert contracts_stage._split_keys is split_keys  # no contract change set it back meanwhile
        finally:
            r.close()
        print(f"in-process runner, {n_contracts} contracts ({len(keyed)} keyed), keyed plans "
              f"{'split' if split else 'each on its own'}: {cpu[split][-1] * 1e6:.1f} us CPU per record, "
              f"contracts stage {stage[split][-1] * 1e6:.1f} us", flush=True)
    c1, c0 = (statistics.median(cpu[k]) * 1e6 for k in (True, False))
    s1, s0 = (statistics.median(stage[k]) * 1e6 for k in (True, False))
    print(f"split keyed plans, {n_contracts} contracts, {len(records)} records, {len(products) // 2} rounds (medians): "
          f"runner thread {c1:.1f} / {c0:.1f} us CPU per record = {c1 / c0:.2f}; contracts stage {s1:.1f} / "
          f"{s0:.1f} us = {s1 / s0:.2f}; {(c0 - c1) / n_contracts:.2f} us less per record and contract")


def collector_rounds(conn, conf: dict, keys: Path, products: list[str], records: list[dict], n_contracts: int) -> None:
    """What pausing the cyclic collector for a batch (processors/runner.py, collector_paused)
    saves a runner with `n_contracts` contracts: in process, the same backlog each run,
    alternately as the runner runs and with the pause taken out; the collections that started
    and their time, the runner thread's CPU time per record and the rate (--collector ROUNDS)."""
    import processors.runner as runner_module
    cpu: dict[bool, list[float]] = {True: [], False: []}
    rates: dict[bool, list[float]] = {True: [], False: []}
    started: list[float] = []
    spent = {"collections": 0, "seconds": 0.0}

    def count(phase, info):
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            spent["collections"] += 1
            spent["seconds"] += time.perf_counter() - started.pop()
    paused = runner_module.collector_paused
    gc.callbacks.append(count)
    try:
        for i, product in enumerate(products):
            pause = (i % 4) in (0, 3)  # alternating which goes first
            runner_module.collector_paused = paused if pause else contextlib.nullcontext
            publish(conn, product, records)
            r = runner_module.Runner(product, conf, keys, group_id=f"bench-collector-{time.time_ns()}")
            gc.freeze()  # as the runner process after its start-up
            try:
                while not r.consumer.assignment():
                    r.step()
                spent.update(collections=0, seconds=0.0)
                cpu0 = time.thread_time()
                with Timer() as t:
                    while r.consumed < len(records):
                        r.step()
                cpu[pause].append((time.thread_time() - cpu0) / r.consumed)
                rates[pause].append(r.consumed / t.seconds)
                collections, seconds = spent["collections"], spent["seconds"]
                unreachable = gc.collect()  # what the run left in reference cycles (paused: all of it)
            finally:
                r.close()
                gc.unfreeze()
            mode = "paused for each batch" if pause else "on"
            print(f"in-process runner, {n_contracts} contract(s), collector {mode}: "
                  f"{rates[pause][-1]:,.0f} records/s, {cpu[pause][-1] * 1e6:.1f} us CPU per record; "
                  f"{collections:,} collections, {seconds * 1e3:.0f} ms ({seconds / t.seconds:.1%} of the run); "
                  f"{unreachable} unreachable objects left", flush=True)
    finally:
        runner_module.collector_paused = paused
        gc.callbacks.remove(count)
    c1, c0 = (statistics.median(cpu[k]) * 1e6 for k in (True, False))
    r1, r0 = (statistics.median(rates[k]) for k in (True, False))
    print(f"collector paused for each batch / on, {n_contracts} contract(s), {len(records)} records, "
          f"{len(products) // 2} rounds (medians): runner thread {c1:.1f} / {c0:.1f} us CPU per record = "
          f"{c1 / c0:.2f}; {r1:,.0f} / {r0:,.0f} records/s = {r1 / r0:.2f}", flush=True)


def _timed(process, name: str, spent: dict):
    def timed(s):
        t = time.perf_counter()
        try:
            process(s)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - t
    return timed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--profile", action="store_true", help="also profile an in-process runner (5 contracts)")
    ap.add_argument("--latency-s", type=float, default=10.0)
    ap.add_argument("--stage-cost", type=int, default=0, metavar="ROUNDS",
                    help="also time each stage of an in-process 5-contract runner, and the runner without replay "
                         "protection and delivery tags against the whole chain, ROUNDS times each")
    ap.add_argument("--engine", choices=("tansu", "kafka"), default="tansu",
                    help="kafka: one Apache Kafka node with SASL_SSL and ACLs (deploy/kafka.py)")
    ap.add_argument("--contracts", help="only the scaling part: raw fan-out and runner with these numbers of "
                                        "contracts, e.g. 1,5,20,50 (issue 14), and a plot of them")
    ap.add_argument("--runner-groups", type=int, default=1,
                    help="with --contracts: also this many runner groups sharing the contracts")
    ap.add_argument("--plot", default=str(ROOT / "bench" / "runner_scaling.png"))
    ap.add_argument("--latency-only", action="store_true",
                    help="only the end-to-end latency at 10k records/s: the raw topic, then one-contract runners")
    ap.add_argument("--ceiling", type=int, default=0, metavar="ROUNDS",
                    help="only issue 14's b/a bound: ROUNDS times (a) the raw loop, (a') the raw loop plus the "
                         "one-contract runner's C calls, (b) the one-contract runner")
    ap.add_argument("--heap", type=int, default=0, metavar="ROUNDS",
                    help="only the raw loop with this process's heap as it is and frozen, ROUNDS times each")
    ap.add_argument("--split", type=int, default=0, metavar="ROUNDS",
                    help="only an in-process runner with --split-contracts contracts, keyed plans split "
                         "(Plan.split_key) and not, ROUNDS times each")
    ap.add_argument("--split-contracts", type=int, default=50, metavar="N")
    ap.add_argument("--collector", type=int, default=0, metavar="ROUNDS",
                    help="only in-process runners with 1 and 5 contracts, the cyclic collector paused for each "
                         "batch (as the runner runs) and not, ROUNDS times each")
    ap.add_argument("--transactions", choices=("off", "on", "both"), default="off",
                    help="runners (and the baseline) with each batch one transaction with its offsets; "
                         "both: off, then on, in the same run")
    args = ap.parse_args()
    n = args.records
    modes = ("off", "on") if args.transactions == "both" else (args.transactions,)
    records = make_records(n)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        secured = stack.enter_context(kafka_cluster(tmp)) if args.engine == "kafka" else None
        bootstrap = secured.bootstrap if secured else stack.enter_context(cluster())
        state = tmp / "state"
        conf = secured.admin_config() if secured else {"bootstrap.servers": bootstrap}
        u = f"b{time.time_ns() % 10**6}"
        if args.contracts:
            counts = [int(k) for k in args.contracts.split(",")]
            scaled = {f"{u}n{k}": k for k in counts}
            twins = {f"{p}s": k for p, k in scaled.items()} if args.runner_groups > 1 else {}
            _, keys, conn = apply_city(conf, topology({p: contracts(k) for p, k in {**scaled, **twins}.items()}), tmp)
            for p in [*scaled, *twins]:
                publish(conn, f"{p}-uav", records)
            print(f"machine: {machine()}; command: .venv/bin/python bench/bench_runner.py --records {n} "
                  f"--contracts {args.contracts} --runner-groups {args.runner_groups}"
                  + (" --ceiling 1" if args.ceiling else ""), flush=True)
            scaling(conf, bootstrap, u, scaled, n, tmp / "state", tmp / "runner.log", args.runner_groups,
                    Path(args.plot), keys if args.ceiling else None)
            return
        if args.heap:
            heap_rounds(conf, u, records, args.heap, tmp)
            return
        if args.split:
            split_products = [f"{u}sp{i}" for i in range(2 * args.split)]
            k = args.split_contracts
            _, keys, conn = apply_city(conf, topology({p: contracts(k) for p in split_products}), tmp)
            print(f"machine: {machine()}; command: .venv/bin/python bench/bench_runner.py --records {n} "
                  f"--split {args.split} --split-contracts {k}", flush=True)
            split_rounds(conn, conf, keys, [f"{p}-uav" for p in split_products], records, k)
            return
        if args.ceiling:
            ceiling_rounds(conf, bootstrap, u, records, args.ceiling, tmp)
            return
        if args.collector:
            rounds = {k: [f"{u}gc{k}r{i}" for i in range(2 * args.collector)] for k in (1, 5)}
            _, keys, conn = apply_city(conf, topology({p: contracts(k) for k, ps in rounds.items() for p in ps}), tmp)
            print(f"machine: {machine()}; command: .venv/bin/python bench/bench_runner.py --records {n} "
                  f"--collector {args.collector}", flush=True)
            for k, ps in rounds.items():
                collector_rounds(conn, conf, keys, [f"{p}-uav" for p in ps], records, k)
            return
        pr, pp = f"{u}rawlat", f"{u}prof"
        pr20, pl5 = f"{u}rawlat20", f"{u}lat5"  # issue 14: 20k records/s, five contracts
        # per mode: a product for (b), one for (c), one for the latency through the runner
        p1, p5, pl = ({m: f"{u}{what}{m}" for m in modes} for what in ("one", "five", "lat"))
        products = {pr: ONE, pp: ONE + MORE, pr20: ONE, pl5: ONE + MORE}
        staged = [f"{u}st{i}" for i in range(2 * args.stage_cost)]
        products.update({p: ONE + MORE for p in staged})
        for m in modes:
            products.update({p1[m]: ONE, p5[m]: ONE + MORE, pl[m]: ONE})
        path, keys, conn = apply_city(conf, topology(products), tmp, secured=secured)

        def env(product: str, mode: str) -> dict:
            """The runner's own service principal on the secured engine, transactions on or off."""
            if secured is None:
                return {"CITYMESH_TRANSACTIONS": mode}
            from topology.access import password_of, services
            from topology.loader import load_topology
            topo = load_topology(path)
            user = services(topo)[f"runner-{product}"]
            return {**secured.env(user, password_of(keys, topo, user)), "CITYMESH_TRANSACTIONS": mode}
        if args.latency_only:
            lats = {"raw topic": latency(conf, bootstrap, f"{pr}-uav", conn, state, tmp / "runner.log",
                                         seconds=args.latency_s, through_runner=False)}
            for m in modes:
                lats[f"runner, 1 contract, transactions {m}"] = latency(
                    conf, bootstrap, f"{pl[m]}-uav", conn, state, tmp / "runner.log", seconds=args.latency_s,
                    env=env(f"{pl[m]}-uav", m))
            print(f"machine: {machine()}; command: .venv/bin/python bench/bench_runner.py --latency-only "
                  f"--latency-s {args.latency_s:g}" + (" --engine kafka" if secured else ""))
            for k, (lat, _) in lats.items():
                q = percentiles(lat)
                print(f"end-to-end latency at 10k records/s, {k}: {len(lat)} records, p50 {q[49]:.1f} ms, "
                      f"p99 {q[98]:.1f} ms, max {lat[-1] if lat else float('nan'):.1f} ms (issue 14: p99 <= 50 ms)")
            return
        for p in [p1[m] for m in modes] + [p5[m] for m in modes] + ([pp] if args.profile else []):
            publish(conn, f"{p}-uav", records)
        from streams.admin import TopicSpec, ensure_topics
        from confluent_kafka.admin import AdminClient
        ensure_topics(AdminClient(conf), [TopicSpec(f"bench.baseline-out.{u}.{m}", 3) for m in modes])
        log = tmp / "runner.log"
        rates: dict[str, dict[str, float]] = {}
        rss: dict[str, float] = {}
        for m in modes:
            raw1, raw5 = (topics.raw("bench-skyway", f"{p[m]}-uav") for p in (p1, p5))
            a = baseline(conf, raw1, f"bench.baseline-out.{u}.{m}", n, transactional=m == "on")
            print(f"transactions {m}: (a) {a:,.0f}", flush=True)
            b, _ = runner_rate(conf, bootstrap, f"{p1[m]}-uav", raw1, n, state, log, env(f"{p1[m]}-uav", m))
            print(f"transactions {m}: (b) {b:,.0f}", flush=True)
            c, rss[m] = runner_rate(conf, bootstrap, f"{p5[m]}-uav", raw5, n, state, log, env(f"{p5[m]}-uav", m))
            print(f"transactions {m}: (c) {c:,.0f} {rss[m]:.0f} MB", flush=True)
            rates[m] = {"a": a, "b": b, "c": c}
        lats = {"raw": latency(conf, bootstrap, f"{pr}-uav", conn, state, log, seconds=args.latency_s,
                               through_runner=False)}
        for m in modes:
            lats[m] = latency(conf, bootstrap, f"{pl[m]}-uav", conn, state, log, seconds=args.latency_s,
                              env=env(f"{pl[m]}-uav", m))
        lats["raw20k"] = latency(conf, bootstrap, f"{pr20}-uav", conn, state, log, rate=20_000,
                                 seconds=args.latency_s, through_runner=False)
        lats["five20k"] = latency(conf, bootstrap, f"{pl5}-uav", conn, state, log, rate=20_000,
                                  seconds=args.latency_s, env=env(f"{pl5}-uav", modes[0]))
        pct = {}
        for k, (lat, sent_at) in lats.items():
            print(f"{k}: {per_second(sent_at, lat)}", flush=True)
            pct[k] = percentiles(lat)
        qr = pct["raw"]
        size = len(schemas.load("UavTelemetry").encode(records[0]))
        broker = ("Apache Kafka 4.1.1, one node, SASL_SSL (SCRAM-SHA-512) + ACLs" if secured else
                  "external" if "CITYMESH_BOOTSTRAP" in os.environ else "embedded Tansu")
        print(f"machine: {machine()}; broker: {broker}")
        print(f"command: .venv/bin/python bench/bench_runner.py --records {n}"
              + (" --engine kafka" if secured else "") + (f" --transactions {args.transactions}"
                                                          if args.transactions != "off" else ""))
        print(f"records: {n} UavTelemetry (~{size} B payload, 6 headers), 3 partitions, batch {BATCH}")
        for m in modes:
            a, b, c = (rates[m][k] for k in "abc")
            print(f"-- transactions {m}" + (" (each batch one transaction with its offsets; the baseline too)"
                                            if m == "on" else " (flush per batch, async commit)"))
            print(f"(a) raw consume->produce, same bytes (baseline; batch {BATCH}, runner's producer settings, "
                  f"src headers): {a:>10,.0f} records/s")
            print(f"(b) runner, 1 contract (drop 3, pseudonymise 1, round lat/lon, geofence): {b:>10,.0f} records/s")
            print(f"(c) runner, 5 contracts on the same product:                            {c:>10,.0f} records/s")
            print(f"ratio b/a: {b / a:.2f}  (goal >= 0.5)")
            print(f"ratio c/a: {c / a:.2f}  (goal >= 0.3)")
            print(f"runner peak memory, 5 contracts: {rss[m]:.0f} MB  (VmHWM of the runner process; goal <= 300 MB)")
            lat, q = lats[m][0], pct[m]
            print(f"end-to-end latency at 10k records/s after a 3 s warm-up ({len(lat)} delivered records, publish -> "
                  f"consumer receive): p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms, "
                  f"max {lat[-1] if lat else float('nan'):.1f} ms  (goal p99 <= 100 ms; issue 14: <= 50 ms)")
            print(f"  baseline, a fresh raw topic read the same way before (publish -> receive, no runner): p50 "
                  f"{qr[49]:.1f} ms, p99 {qr[98]:.1f} ms; through the runner p50 {q[49] - qr[49]:+.1f} ms, "
                  f"p99 {q[98] - qr[98]:+.1f} ms")
        lat, q, q20 = lats["five20k"][0], pct["five20k"], pct["raw20k"]
        print(f"end-to-end latency at 20k records/s, 5 contracts, transactions {modes[0]} ({len(lat)} records of one "
              f"contract): p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms, max {lat[-1] if lat else float('nan'):.1f} ms "
              f"(issue 14: p99 <= 100 ms); raw topic at 20k/s, no runner: p50 {q20[49]:.1f} ms, p99 {q20[98]:.1f} ms")
        if len(modes) == 2:
            on, off = rates["on"], rates["off"]
            print("transactions on / off: " + ", ".join(f"({k}) {on[k] / off[k]:.2f}" for k in "abc")
                  + f"; runner with transactions / baseline without: b {on['b'] / off['a']:.2f}, "
                  f"c {on['c'] / off['a']:.2f}")
        if args.profile:
            profile_in_process(conf, f"{pp}-uav", keys, n)
        if staged:
            stage_cost(conn, conf, keys, [f"{p}-uav" for p in staged], records)


if __name__ == "__main__":
    main()
