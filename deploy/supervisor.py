"""Start, watch, restart and stop the mesh's long-running processes.

`citymesh up` hands the processes it wants (name, command line, environment) to a supervisor
process (`python -m deploy.supervisor`, detached, in its own session), which starts each one
with PR_SET_PDEATHSIG (a child never outlives its supervisor), and restarts any that dies,
after a backoff: 0.5 s, then doubling to 30 s while a process keeps dying within a minute of
its start, back to 0.5 s once it has run for a minute. It keeps, per process, the pid, the
process's identity (its start time in clock ticks since boot and its command line, from
/proc), the number of restarts and the last exit (code or signal, and when): in the mesh's
state file, which `citymesh status` shows and `citymesh down` uses.

Why not a supervision library: supervisord (the maintained one on PyPI) restarts a process
that ran past `startsecs` at once, every time, with no backoff (a crash loop spins), keeps no
restart count, and needs its own configuration file, socket and client; circus needs ZeroMQ
and the same. What this module adds is small: one loop over subprocess.Popen.

`down` (and `stop_verified`) signals a pid only while it is still the process that was
started: the recorded start time and command line must match /proc, so a pid the kernel gave
to some other program since is never signalled. The demo and the tests start processes
attached instead (`spawn(..., detach=False)`), so nothing outlives its parent.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .broker import _die_with_parent, stop_pid

log = logging.getLogger("citymesh.supervisor")

BACKOFF_FIRST_S, BACKOFF_MAX_S, STABLE_S = 0.5, 30.0, 60.0
TABLE_FILE = "supervised.json"  # in the state dir: what the supervisor is to run


def spawn(argv: list[str], log_path: Path, detach: bool, env: dict | None = None) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, start_new_session=detach,
                                preexec_fn=None if detach else _die_with_parent)


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def identity(pid: int) -> list | None:
    """[start time in clock ticks since boot, command line] of a live process, None otherwise."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "; comm may hold spaces
    if fields[0] == "Z":
        return None
    return [int(fields[19]), cmdline]


def identity_of_started(pid: int, argv: list[str], timeout_s: float = 5.0) -> list | None:
    """The identity of a process just started with `argv`, once it has exec'd it: until then
    /proc shows the command line of the parent it was forked from."""
    want = " ".join(argv)
    deadline = time.monotonic() + timeout_s
    while True:
        found = identity(pid)
        if found is None or found[1] == want or time.monotonic() > deadline:
            return found
        time.sleep(0.005)


def is_same(pid: int, recorded: list | None) -> bool:
    """Whether pid is still the process recorded (start time and command line)."""
    return recorded is not None and identity(pid) == list(recorded)


def stop_verified(processes: dict[str, int], identities: dict[str, list], timeout_s: float = 10.0) -> list[str]:
    """Stop each process that is still the one recorded (SIGTERM, then SIGKILL after the
    timeout); returns the names stopped. A pid now held by another program is left alone."""
    stopped = []
    for name, pid in processes.items():
        if not is_same(pid, identities.get(name)):
            continue
        stop_pid(pid, timeout_s)
        stopped.append(name)
    return stopped


def stop(pids: dict[str, int], timeout_s: float = 10.0) -> list[str]:
    """Stop processes this process started itself (no identity to check: it holds them)."""
    for pid in pids.values():
        stop_pid(pid, timeout_s)
    return list(pids)


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: str
    pid: int | None = None
    identity: list | None = None
    restarts: int = 0
    started_ms: int = 0
    last_exit: str | None = None
    last_exit_ms: int | None = None
    backoff_s: float = BACKOFF_FIRST_S
    restart_at: float | None = field(default=None, repr=False)  # monotonic time of the next start

    def view(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("argv", "env", "backoff_s", "restart_at")}


def exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor:
    """Runs the table's processes until told to stop; writes their state after every change."""

    def __init__(self, state_dir: Path, table: dict[str, dict]):
        self.state_dir = state_dir
        self.children = {name: Child(name, spec["argv"], spec.get("env", {}), spec["log"])
                         for name, spec in table.items()}
        self._procs: dict[str, subprocess.Popen] = {}
        self._stopping = False

    def _start(self, c: Child) -> None:
        proc = spawn(c.argv, Path(c.log), detach=False, env=c.env)
        self._procs[c.name] = proc
        c.pid, c.identity = proc.pid, identity_of_started(proc.pid, c.argv)
        c.started_ms, c.restart_at = int(time.time() * 1000), None

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for c in self.children.values():
            self._start(c)
        self._publish()
        while not self._stopping:
            changed = False
            now = time.monotonic()
            for c in self.children.values():
                proc = self._procs.get(c.name)
                if proc is not None and proc.poll() is not None:
                    ran_s = time.time() - c.started_ms / 1000
                    c.last_exit, c.last_exit_ms = exit_reason(proc.returncode), int(time.time() * 1000)
                    if ran_s >= STABLE_S:  # it had settled: this is not a crash loop
                        c.backoff_s = BACKOFF_FIRST_S
                    wait, c.backoff_s = c.backoff_s, min(c.backoff_s * 2, BACKOFF_MAX_S)
                    c.pid, c.identity, c.restart_at = None, None, now + wait
                    del self._procs[c.name]
                    log.warning("%s (pid %d) %s after %.1f s; restarting in %.1f s", c.name, proc.pid, c.last_exit,
                                ran_s, wait)
                    changed = True
                elif proc is None and c.restart_at is not None and now >= c.restart_at:
                    self._start(c)
                    c.restarts += 1
                    log.info("%s restarted (pid %d, restart %d)", c.name, c.pid, c.restarts)
                    changed = True
            if changed:
                self._publish()
            time.sleep(0.05)
        for name, proc in list(self._procs.items()):  # stop: SIGTERM all, then wait, then SIGKILL
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for proc in self._procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def _stop(self, *_a) -> None:
        self._stopping = True

    def _publish(self) -> None:
        """Each process's pid, identity, restarts and last exit into the mesh's state file."""
        from .state import MeshState
        MeshState.update_children(self.state_dir, {n: c.view() for n, c in self.children.items()})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m deploy.supervisor", description=__doc__.split("\n")[0])
    ap.add_argument("--state-dir", type=Path, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    table = json.loads((args.state_dir / TABLE_FILE).read_text())
    Supervisor(args.state_dir, table).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
