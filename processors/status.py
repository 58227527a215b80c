"""What a long-running process says about itself, for `citymesh status`.

Each process `citymesh up` starts writes `<state_dir>/status/<name>.json` every few seconds
(atomically: a reader never sees half a file); `status` reads them all. A file older than
its process's start is stale: the process has not said anything since it (re)started.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def status_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "status"


def write(state_dir: Path, name: str, data: dict) -> None:
    path = status_dir(state_dir) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**data, "pid": os.getpid(), "updated_ms": int(time.time() * 1000)}, sort_keys=True))
    os.replace(tmp, path)


def read_all(state_dir: Path) -> dict[str, dict]:
    """name -> the last status each process wrote."""
    out = {}
    for path in sorted(status_dir(state_dir).glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return out
