"""The cost of rate limits, quotas and the provider breaker on the runner's hot path.

Runner throughput (bench_runner's machinery: the runner as a process draining a
pre-published backlog, from partition assignment to last commit) with one contract,
(off) without any limit, (on) with the provider's ingress limits (records/s and bytes/s,
hold), its breaker, and a keyed delivery quota on the contract (per drone), all set high
enough never to bite, so what is measured is the bookkeeping: token grants, breaker
accounting, per-key buckets and one persisted state record per partition and batch.
Off and on alternate (off, on, off, on) and the ratio is of the best of each; goal >= 0.9.

    .venv/bin/python bench/bench_limits.py [--records 100000]

`--backlog SECONDS`: instead, a provider kept to half its ingress limit (300 records/s) for
SECONDS while no runner read its product, then the product's runner from its start, once per
`on_excess` (hold, dlq): how long the runner took to catch up, against the time the backlog
took to write, and the share of the backlog that went to the dead-letter topic. A provider
that never exceeded its limit should lose nothing and wait for nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench_runner import ONE, make_records, publish, runner_rate, topology
from common import apply_city, cluster, machine

from processors.partition_state import read_states
from streams import topics
from topology.apply import apply
from topology.loader import load_topology

PROVIDER = "{id: bench-skyway, name: SkyWay, roles: [provider]}"
LIMITED = ("{id: bench-skyway, name: SkyWay, roles: [provider], limits: {records_per_s: 10000000, "
           "bytes_per_s: 10000000000, on_excess: hold, breaker: {failure_ratio: 0.5, window: 10s, "
           "min_samples: 1000, open: 30s, probe_samples: 100}}}")
QUOTA = "    quota: {{records: 100000000, per: 1s, key: serial_number}}\n    policy:"


BACKLOG_LIMIT = 300  # records/s, the provider's whole ingress limit (100 per partition)


def backlog(seconds: float) -> None:
    from confluent_kafka import Consumer, TopicPartition

    from bench_runner import groups_run
    from common import publish_fleet_paced
    from streams.offsets import end_offsets

    with cluster() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        conf = {"bootstrap.servers": bootstrap}
        u = f"bl{time.time_ns() % 10**6}"
        print(f"machine: {machine()}\ncommand: .venv/bin/python bench/bench_limits.py --backlog {seconds:g}",
              flush=True)
        for mode in ("hold", "dlq"):
            # a provider per mode: a provider's limit is split between its products, and the
            # first mode's product stays in the catalog (the second ran at its whole share, not half)
            p, provider = f"{u}{mode}", f"bench-skyway-{mode}"
            limited = PROVIDER.replace("roles: [provider]}", f"roles: [provider], limits: {{records_per_s: "
                                       f"{BACKLOG_LIMIT}, burst: 1s, on_excess: {mode}}}}}")
            (tmp / p).mkdir()
            text = topology({p: ONE}).replace(PROVIDER, limited).replace("bench-skyway", provider)
            _, _, conn = apply_city(conf, text, tmp / p, provider)
            t0 = time.monotonic()
            sent = publish_fleet_paced(conn, f"{p}-uav", BACKLOG_LIMIT / 2, seconds, violators=0.0)
            written_s = time.monotonic() - t0
            conn.close()
            raw = topics.raw(provider, f"{p}-uav")
            run = groups_run(conf, bootstrap, f"{p}-uav", raw, sent, tmp / p / "state", tmp / f"{p}.log", 1)
            caught_up_s = sent / run["rate"]
            dlq = topics.dead_letter(provider, f"{p}-uav")
            c = Consumer({**conf, "group.id": f"bench-count-{time.time_ns()}", "enable.auto.commit": False})
            try:
                parts = [TopicPartition(dlq, q, 0) for q in c.list_topics(dlq, timeout=10).topics[dlq].partitions]
                ends = end_offsets(c, parts)
                c.assign(parts)
                dead, deadline = 0, time.monotonic() + 60
                while any(tp.offset < ends[(dlq, tp.partition)][1] for tp in c.position(parts)) \
                        and time.monotonic() < deadline:
                    dead += sum(1 for m in c.consume(5000, 0.5) if not m.error())
            finally:
                c.close()
            print(f"on_excess {mode}: {sent:,} records written at half the limit in {written_s:.1f} s, no runner; "
                  f"the runner caught up in {caught_up_s:.1f} s ({caught_up_s / written_s:.2f} of the time they "
                  f"took to write); dead letters {dead:,} ({dead / sent:.1%} of them)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--backlog", type=float, default=0, metavar="SECONDS")
    args = ap.parse_args()
    if args.backlog:
        backlog(args.backlog)
        return
    n = args.records
    records = make_records(n)
    with cluster() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        state = tmp / "state"
        conf = {"bootstrap.servers": bootstrap}
        u = f"l{time.time_ns() % 10**6}"
        runs = [("off", f"{u}off1"), ("on", f"{u}on1"), ("off", f"{u}off2"), ("on", f"{u}on2")]
        contracts = {p: (ONE.replace("    policy:", QUOTA, 1) if mode == "on" else ONE) for mode, p in runs}
        base = topology(contracts)
        path, keys, conn = apply_city(conf, base, tmp)
        for _, p in runs:
            publish(conn, f"{p}-uav", records)
        rates: dict[str, list[float]] = {"off": [], "on": []}
        for mode, p in runs:
            # the runner reads the provider's limits when it starts: apply them (or not) just before
            path.write_text(base.replace(PROVIDER, LIMITED) if mode == "on" else base)
            apply(load_topology(path), conf, keys_dir=keys)
            rate, _ = runner_rate(conf, bootstrap, f"{p}-uav", topics.raw("bench-skyway", f"{p}-uav"), n, state,
                                  tmp / f"{p}.log")
            persisted = [s for s in read_states(conf, "bench-skyway", f"{p}-uav").values() if "limits" in s]
            assert bool(persisted) == (mode == "on"), f"limits {'not ' if mode == 'on' else ''}active on {p}"
            rates[mode].append(rate)
            print(f"{mode:>3} {p}: {rate:,.0f} records/s", flush=True)
        off, on = max(rates["off"]), max(rates["on"])
        print(f"machine: {machine()}")
        print(f"command: .venv/bin/python bench/bench_limits.py --records {n}")
        print(f"runner, 1 contract, limits off: {', '.join(f'{r:,.0f}' for r in rates['off'])} records/s")
        print(f"runner, 1 contract, limits on (ingress records+bytes, breaker, keyed quota, none biting): "
              f"{', '.join(f'{r:,.0f}' for r in rates['on'])} records/s")
        print(f"ratio on/off (best of each): {on / off:.2f}  (goal >= 0.9)")


if __name__ == "__main__":
    main()
