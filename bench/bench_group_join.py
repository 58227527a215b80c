"""How long a restarted consumer waits for its group, with and without static membership
(KIP-345, `group.instance.id`), on the embedded broker and on Apache Kafka; and whether the
broker fences a static member's zombie.

A runner that restarts after a crash resumes only when its group hands it the partitions
again (bench/RESULTS.md, "Restarts and the group protocol"). Per broker, session timeout and
mode: one consumer of a fresh 3-partition topic and group (heartbeats at a third of the
session, as the mesh's consumers send them), SIGKILLed 2 s after its assignment and started
again; the time from each start to its assignment. Then the zombie case with a static id:
consumer A SIGSTOPped, B started with A's id, A resumed: who holds the partitions afterwards.

    .venv/bin/python bench/bench_group_join.py [--engine tansu kafka] [--session-ms 6000 2000] [--no-zombie]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import cluster, kafka_cluster, machine
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.settings import group_session


def member(conf_json: str, topic: str, instance: str) -> None:
    """A consumer process: prints ASSIGNED / REVOKED / ERROR with seconds since its start, HOLDS
    whenever the partitions it holds change (a fenced static member loses them without a
    callback), and EXITED when an error ends it."""
    t0 = time.monotonic()
    conf = {**json.loads(conf_json), "group.id": f"join-{topic}",
            "enable.auto.commit": False, "error_cb": lambda e: print(f"ERROR {time.monotonic() - t0:.2f} {e}",
                                                                      flush=True)}
    if instance != "-":
        conf["group.instance.id"] = instance
    c = Consumer(conf)
    c.subscribe([topic], on_assign=lambda _c, ps: print(f"ASSIGNED {time.monotonic() - t0:.2f} "
                                                        f"{[p.partition for p in ps]}", flush=True),
                on_revoke=lambda _c, ps: print(f"REVOKED {time.monotonic() - t0:.2f} "
                                               f"{[p.partition for p in ps]}", flush=True))
    held = None
    try:
        while True:
            c.poll(0.1)
            now = sorted(tp.partition for tp in c.assignment())
            if now != held:  # what the client holds, also when it drops an assignment without a callback
                held = now
                print(f"HOLDS {time.monotonic() - t0:.2f} {now}", flush=True)
    except Exception as exc:  # noqa: BLE001 - a fenced member's fatal error: said, then the process ends
        print(f"EXITED {time.monotonic() - t0:.2f} {exc}", flush=True)


class Member:
    def __init__(self, conf: dict, session_ms: int, topic: str, instance: str):
        group = {**conf, **group_session(session_ms)}  # heartbeats at a third, as the runner sends them
        self.proc = subprocess.Popen([sys.executable, __file__, "--member", json.dumps(group), topic, instance],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()

    def assigned_after(self, timeout_s: float = 60) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            hit = next((ln for ln in list(self.lines) if ln.startswith("ASSIGNED")), None)
            if hit:
                return float(hit.split()[1])
            time.sleep(0.02)
        raise TimeoutError("no assignment")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def topic_of(conf: dict) -> str:
    name, admin = f"join-{time.time_ns()}", AdminClient(conf)
    admin.create_topics([NewTopic(name, 3, 1)])[name].result()
    return name


def restart(conf: dict, session_ms: int, instance: str) -> tuple[float, float]:
    """(first join, join after a SIGKILL and a start again), seconds from each start."""
    topic = topic_of(conf)
    a = Member(conf, session_ms, topic, instance)
    first = a.assigned_after()
    time.sleep(2)
    a.kill()
    b = Member(conf, session_ms, topic, instance)
    try:
        return first, b.assigned_after()
    finally:
        b.kill()


def zombie(conf: dict, session_ms: int) -> str:
    topic = topic_of(conf)
    a = Member(conf, session_ms, topic, "static-x")
    a.assigned_after()
    a.proc.send_signal(signal.SIGSTOP)
    b = Member(conf, session_ms, topic, "static-x")
    try:
        b.assigned_after()
        a.proc.send_signal(signal.SIGCONT)
        time.sleep(3 * session_ms / 1000)
        def held(m: Member) -> str:
            return next((ln.split(" ", 2)[2].strip() for ln in reversed(list(m.lines)) if ln.startswith("HOLDS")), "[]")
        both = a.proc.poll() is None and held(a) != "[]" and held(b) != "[]"
        return (f"the resumed zombie holds {held(a)}, its successor {held(b)} -> "
                + ("BOTH hold partitions" if both else "one holder"))
    finally:
        a.kill()
        b.kill()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--member":
        member(*sys.argv[2:5])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", nargs="+", default=["tansu", "kafka"], choices=("tansu", "kafka"))
    ap.add_argument("--session-ms", type=int, nargs="+", default=[6000],
                    help="session.timeout.ms values to try (heartbeats at a third of each, as the runner sends them)")
    ap.add_argument("--no-zombie", action="store_true", help="only the restarts")
    args = ap.parse_args()
    print(f"machine: {machine()}; command: .venv/bin/python bench/bench_group_join.py --engine {' '.join(args.engine)} "
          f"--session-ms {' '.join(map(str, args.session_ms))}{' --no-zombie' if args.no_zombie else ''}")
    for engine in args.engine:
        with contextlib.ExitStack() as stack:
            if engine == "kafka":
                conf = stack.enter_context(kafka_cluster(Path(stack.enter_context(tempfile.TemporaryDirectory())))
                                           ).admin_config()
            else:
                conf = {"bootstrap.servers": stack.enter_context(cluster())}
            for session_ms in args.session_ms:
                for mode, instance in (("without group.instance.id", "-"), ("static (the same id again)", "static-x")):
                    first, again = restart(conf, session_ms, instance)
                    print(f"{engine}: session {session_ms} ms: {mode}: first join {first:.2f} s, "
                          f"after a SIGKILL {again:.2f} s", flush=True)
                if not args.no_zombie:
                    print(f"{engine}: session {session_ms} ms: static zombie: {zombie(conf, session_ms)}", flush=True)


if __name__ == "__main__":
    main()
