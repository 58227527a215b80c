"""Where an enforcement runner's time goes: py-spy samples of an in-process runner working
through a backlog, summed per function and per line of `Runner.step`.

A diagnostic, not a benchmark (`make bench` does not run it): it prints shares of the
runner's own time, which bench/RESULTS.md quotes next to the throughput figures they explain.
py-spy samples from outside the interpreter (200 Hz by default), so it does not inflate
Python calls the way cProfile does. Time in C (confluent-kafka, the Avro codec, the tags) is
charged to the Python line that called it; a share on the line of `Runner.step` that calls
`_process` but in no function below it is the slice's objects being freed as it returns.
The runner runs as its process does (a frozen heap, processors/runner.py `main`) on the
benchmark's contracts (bench_runner.py: five templates over and over).

    .venv/bin/python bench/profile_runner.py --contracts 1 50 [--records 200000] [--rate 200]

Needs py-spy (`pip install -e '.[bench]'`) and the right to trace a process of one's own
(ptrace; as root, or with kernel.yama.ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_runner as b
from common import apply_city, cluster, machine

LINE = re.compile(r":\d+\)$")


def profile(n_contracts: int, n_records: int, rate: int, tmp: Path) -> tuple[float, Path]:
    """Records/s of the sampled run and the path of py-spy's raw (collapsed) stacks."""
    from processors.runner import Runner
    records = b.make_records(n_records)
    with cluster() as bootstrap:
        conf = {"bootstrap.servers": bootstrap}
        u = f"p{time.time_ns() % 10**6}"
        (tmp / u).mkdir()
        _, keys, conn = apply_city(conf, b.topology({u: b.contracts(n_contracts)}), tmp / u)
        b.publish(conn, f"{u}-uav", records)
        conn.close()
        runner = Runner(f"{u}-uav", conf, keys, group_id=f"profile-{u}")
        gc.freeze()
        out = tmp / f"{u}.txt"
        spy = None
        try:
            while not runner.consumer.assignment():
                runner.step()
            spy = subprocess.Popen([shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"), "record",
                                    "-r", str(rate), "-p", str(os.getpid()), "-f", "raw", "-o", str(out)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(1.0)  # py-spy attached
            t0, start = time.perf_counter(), runner.consumed
            while runner.consumed < n_records:
                runner.step()
            rate_rps = (runner.consumed - start) / (time.perf_counter() - t0)
        finally:
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on an interrupt
                _, err = spy.communicate(timeout=60)
                if not out.exists():
                    raise SystemExit(f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}")
            runner.close()
    return rate_rps, out


def shares(raw: Path) -> tuple[int, collections.Counter, collections.Counter]:
    """(samples inside Runner.step, inclusive samples per function, samples per innermost
    Python line: the line running, or the one waiting for the C call it made)."""
    total, inclusive, lines = 0, collections.Counter(), collections.Counter()
    for row in raw.read_text().splitlines():
        if not row.strip():
            continue
        stack, n = row.rsplit(" ", 1)
        frames = stack.split(";")
        at = next((i for i, f in enumerate(frames) if f.startswith("Runner.step ")), None)
        if at is None:
            continue
        count = int(n)
        total += count
        for name in {LINE.sub(")", f) for f in frames[at:]}:
            inclusive[name] += count
        lines[frames[-1]] += count
    return total, inclusive, lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--contracts", type=int, nargs="+", default=[1, 50])
    ap.add_argument("--records", type=int, default=200_000, help="backlog per run (20 contracts or more: a tenth of it, at least 10,000)")
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(f"command: .venv/bin/python bench/profile_runner.py {' '.join(sys.argv[1:])}")
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for n in args.contracts:
            records = args.records if n < 20 else max(10_000, args.records // 10)
            rps, raw = profile(n, records, args.rate, tmp)
            total, inclusive, lines = shares(raw)
            print(f"\n{n} contract(s), {records:,} records: {rps:,.0f} records/s while sampled, "
                  f"{total:,} samples in Runner.step")
            print("  inclusive, per function:")
            for name, c in inclusive.most_common(args.top):
                print(f"    {100 * c / total:5.1f} %  {name}")
            print("  own time, per line (C calls included):")
            for name, c in lines.most_common(args.top):
                print(f"    {100 * c / total:5.1f} %  {name}")


if __name__ == "__main__":
    main()
