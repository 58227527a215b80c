"""How fast the compliance app meters BATCH events, against a raw reader of the same topic.

Every runner writes a BATCH ComplianceEvent per contract and slice to cm.compliance, and the
compliance app (processors/compliance_app, faust) meters each one into its `metered` table and
the hourly usage. If it meters slower than the runners write, bills and escalations fall behind.
N BATCH events are written to cm.compliance on a broker of the run's own (as bench_restart.py
writes them); then, alternating per round: (a) a raw confluent-kafka reader decodes all N with
the ComplianceEvent schema (the least any reader does), (b) the app, a new app id each round,
meters all N (its citymesh_metered_records_total, each event counting one record), timed from
the first metered event (the group join and table recovery before it are not in the rate).

`--faust` also times three bare faust agents over the same N events, from their first event:
one that only counts them, one that writes a table record per event (as the app's metering
did), one that takes them in batches of up to 2,000 (`stream.take`): what faust itself costs
per event on this machine, the reason the app's busy inputs are not read through it.

    .venv/bin/python bench/bench_compliance_app.py [--events 60000] [--rounds 2] [--faust]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench_restart import CITY, other_events
from common import apply_city, machine
from confluent_kafka import Consumer, TopicPartition

import schemas
from deploy.broker import EmbeddedBroker, free_port, stop_pid
from streams import topics

ROOT = Path(__file__).resolve().parent.parent


def raw_rate(bootstrap: str, n: int) -> float:
    """Events/s of a raw reader that decodes every event of cm.compliance from the start."""
    schema = schemas.load("ComplianceEvent")
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-raw", "enable.auto.commit": False})
    parts = c.list_topics(topics.COMPLIANCE, timeout=10).topics[topics.COMPLIANCE].partitions
    c.assign([TopicPartition(topics.COMPLIANCE, p, 0) for p in parts])
    seen, t0 = 0, time.perf_counter()
    try:
        while seen < n:
            for m in c.consume(1000, 1.0):
                if not m.error():
                    schema.decode(m.value())
                    seen += 1
        return seen / (time.perf_counter() - t0)
    finally:
        c.close()


def metered(port: int) -> int:
    """The app's citymesh_metered_records_total summed over contracts (0 before it serves)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("citymesh_metered_records_total{")))


def app_rate(bootstrap: str, n: int, app_id: str, state: Path, log: Path) -> tuple[float, float]:
    """(events/s the app meters once it has started metering, seconds from its start to the first)."""
    port = free_port()
    env = {**os.environ, "CITYMESH_BOOTSTRAP": bootstrap, "CITYMESH_STATE_DIR": str(state), "PYTHONPATH": str(ROOT)}
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "processors.compliance_app", "--app-id", app_id,
                                 "--uav-contract", "none", "--hotline-contract", "none",
                                 "--metrics-port", str(port)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    t_start = time.perf_counter()
    try:
        first = None
        while True:
            assert proc.poll() is None, f"the app exited: see {log}"
            assert time.perf_counter() - t_start < 900, f"the app did not meter {n} events in 900 s"
            count, now = metered(port), time.perf_counter()
            if first is None and count > 0:
                first = (now, count)
            if count >= n:
                return (n - first[1]) / max(now - first[0], 1e-9), first[0] - t_start
            time.sleep(0.25)
    finally:
        stop_pid(proc.pid, 30, proc)


FAUST_AGENT = r"""
import os, sys, time
import faust
mode, n, bootstrap, datadir, result = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
app = faust.App(f"bench-faust-{mode}-{os.getpid()}", broker=f"kafka://{bootstrap}", store="memory://",
                key_serializer="raw", value_serializer="raw", web_enabled=False, autodiscover=False,
                consumer_auto_offset_reset="earliest", topic_partitions=3, datadir=datadir)
source = app.topic("cm.compliance", key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
table = app.Table("seen", partitions=3, schema=faust.Schema(key_serializer="json", value_serializer="json"))
seen = {"n": 0, "t0": 0.0}

def count(k):
    if not seen["n"]:
        seen["t0"] = time.perf_counter()
    seen["n"] += k
    if seen["n"] >= n:
        with open(result, "w") as f:  # (faust takes over stdout)
            f.write(str(n / (time.perf_counter() - seen["t0"])))
        os._exit(0)

@app.agent(source)
async def agent(stream):
    if mode == "take":
        async for batch in stream.take(2000, within=0.2):
            count(len(batch))
    async for event in stream.events():
        if mode == "table":
            table[str(seen["n"])] = 1
        count(1)

faust.Worker(app, loglevel="WARNING").execute_from_commandline()
"""


def faust_rate(bootstrap: str, n: int, mode: str, tmp: Path) -> float:
    """Events/s of a bare faust agent over cm.compliance (mode: count, table, take)."""
    script, result = tmp / "faust_agent.py", tmp / f"faust-{mode}.rate"
    script.write_text(FAUST_AGENT)
    out = subprocess.run([sys.executable, str(script), mode, str(n), bootstrap, str(tmp / f"faust-{mode}"),
                          str(result), "worker"], capture_output=True, text=True, timeout=900, cwd=tmp)
    assert result.exists(), f"the faust agent ({mode}) wrote no rate:\n{(out.stdout + out.stderr)[-3000:]}"
    return float(result.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--faust", action="store_true", help="also time bare faust agents over the same events")
    args = ap.parse_args()
    print(f"# bench_compliance_app: {args.events:,} BATCH events, {args.rounds} rounds; {machine()}")
    with tempfile.TemporaryDirectory() as d, EmbeddedBroker() as broker:
        tmp = Path(d)
        apply_city({"bootstrap.servers": broker.bootstrap}, CITY.format(p="ca"), tmp)
        wrote = other_events(broker.bootstrap, "ca-other", args.events)
        print(f"wrote {args.events:,} events in {wrote:.1f} s")
        print("| round | (a) raw reader, events/s | (b) compliance app, events/s | b/a | app start to first metered |")
        print("| --- | --- | --- | --- | --- |")
        for r in range(1, args.rounds + 1):
            a = raw_rate(broker.bootstrap, args.events)
            b, startup = app_rate(broker.bootstrap, args.events, f"bench-ca-{r}-{os.getpid()}", tmp / "state",
                                  tmp / f"app-{r}.log")
            print(f"| {r} | {a:,.0f} | {b:,.0f} | {b / a:.3f} | {startup:.1f} s |", flush=True)
        if args.faust:
            print("| faust agent | events/s | / the raw reader's last round |")
            print("| --- | --- | --- |")
            for mode in ("count", "table", "take"):
                rate = faust_rate(broker.bootstrap, args.events, mode, tmp)
                print(f"| {mode} | {rate:,.0f} | {rate / a:.3f} |", flush=True)


if __name__ == "__main__":
    main()
