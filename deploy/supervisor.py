"""Start and stop the mesh's long-running processes.

`citymesh up` starts each process detached (own session, log file in the state dir) so it
outlives the CLI call and `citymesh down` stops it by pid. The demo and tests start them
attached instead (PR_SET_PDEATHSIG), so nothing outlives its parent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .broker import _die_with_parent, stop_pid


def spawn(argv: list[str], log_path: Path, detach: bool, env: dict | None = None) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, start_new_session=detach,
                                preexec_fn=None if detach else _die_with_parent)


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def stop(pids: dict[str, int], timeout_s: float = 10.0) -> list[str]:
    """Stop every process (SIGTERM, then SIGKILL after the timeout); returns the names stopped."""
    stopped = []
    for name, pid in pids.items():
        stop_pid(pid, timeout_s)
        stopped.append(name)
    return stopped
