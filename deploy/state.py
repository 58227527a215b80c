"""What `citymesh up` leaves behind for later commands: the bootstrap address and the pids
of the processes it started, in <state_dir>/mesh.json."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from streams.settings import Settings

from .broker import pid_alive


@dataclass
class MeshState:
    bootstrap: str
    embedded: bool
    processes: dict[str, int] = field(default_factory=dict)
    started_ms: int = 0

    @staticmethod
    def path(settings: Settings) -> Path:
        return settings.state_file

    @classmethod
    def load(cls, settings: Settings) -> "MeshState | None":
        p = cls.path(settings)
        if not p.exists():
            return None
        return cls(**json.loads(p.read_text()))

    def save(self, settings: Settings) -> None:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.path(settings).write_text(json.dumps(asdict(self), indent=2))

    def alive(self) -> dict[str, bool]:
        return {name: pid_alive(pid) for name, pid in self.processes.items()}


def resolve_bootstrap(settings: Settings) -> str:
    """CITYMESH_BOOTSTRAP if set, else the embedded broker a running `citymesh up` started."""
    if settings.bootstrap:
        return settings.bootstrap
    state = MeshState.load(settings)
    if state is None:
        raise SystemExit("no mesh is running here: run `citymesh up` (or set CITYMESH_BOOTSTRAP)")
    if state.embedded and not pid_alive(state.processes.get("broker", -1)):
        raise SystemExit(f"the embedded broker recorded in {MeshState.path(settings)} is not running: "
                         "run `citymesh down` then `citymesh up`")
    return state.bootstrap
