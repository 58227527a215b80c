"""Shared benchmark plumbing: a broker for the run (embedded unless CITYMESH_BOOTSTRAP) and
a results printer. Benchmarks report ratios against a baseline measured in the same run."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deploy.broker import EmbeddedBroker  # noqa: E402


@contextlib.contextmanager
def cluster():
    external = os.environ.get("CITYMESH_BOOTSTRAP")
    if external:
        yield external
        return
    with EmbeddedBroker() as b:
        yield b.bootstrap


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
