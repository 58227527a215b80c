"""What `citymesh up` leaves behind for later commands: the bootstrap address and the pids
of the processes it started, with their identities (deploy/supervisor.py), in
<state_dir>/mesh.json. The supervisor updates its children's entries as it restarts them."""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from streams.settings import Settings

from .broker import pid_alive


@dataclass
class MeshState:
    bootstrap: str
    embedded: bool  # `up` started the broker ("broker" in processes)
    processes: dict[str, int] = field(default_factory=dict)
    started_ms: int = 0
    engine: str = "tansu"  # "tansu" (embedded, no access control) | "kafka" (Apache Kafka, SCRAM over TLS, ACLs)
    identities: dict[str, list] = field(default_factory=dict)  # name -> [start ticks, command line]
    children: dict[str, dict] = field(default_factory=dict)  # name -> what the supervisor says of it

    @staticmethod
    def path(settings: Settings) -> Path:
        return settings.state_file

    @classmethod
    def load(cls, settings: Settings) -> "MeshState | None":
        return cls.read(cls.path(settings))

    @classmethod
    def read(cls, p: Path) -> "MeshState | None":
        with _locked(p):
            if not p.exists():
                return None
            return cls(**json.loads(p.read_text()))

    def save(self, settings: Settings) -> None:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        with _locked(self.path(settings)):
            _write(self.path(settings), asdict(self))

    @classmethod
    def update_children(cls, state_dir: Path, children: dict[str, dict]) -> None:
        """The supervisor's view of its children (pids, identities, restarts, last exits)."""
        p = Path(state_dir) / "mesh.json"
        with _locked(p):
            d = json.loads(p.read_text()) if p.exists() else {}
            if not d:
                return
            d["children"] = children
            for name, c in children.items():
                if c.get("pid"):
                    d["processes"][name] = c["pid"]
                    d["identities"][name] = c["identity"]
                else:
                    d["processes"].pop(name, None)
                    d["identities"].pop(name, None)
            _write(p, d)

    def alive(self) -> dict[str, bool]:
        """Whether each process is still the one recorded (a recycled pid is not)."""
        from .supervisor import is_same
        return {name: is_same(pid, self.identities[name]) if name in self.identities else pid_alive(pid)
                for name, pid in self.processes.items()}


def resolve_bootstrap(settings: Settings) -> str:
    """CITYMESH_BOOTSTRAP if set, else the embedded broker a running `citymesh up` started."""
    if settings.bootstrap:
        return settings.bootstrap
    state = MeshState.load(settings)
    if state is None:
        raise SystemExit("no mesh is running here: run `citymesh up` (or set CITYMESH_BOOTSTRAP)")
    if state.embedded and not pid_alive(state.processes.get("broker", -1)):
        raise SystemExit(f"the {'Apache Kafka node' if state.engine == 'kafka' else 'embedded broker'} recorded in "
                         f"{MeshState.path(settings)} is not running: run `citymesh down` then `citymesh up`")
    return state.bootstrap


def client_config(settings: Settings, as_participant: str | None = None) -> dict:
    """librdkafka settings for a CLI command. On the Apache Kafka engine `up` started, and unless
    CITYMESH_SASL_USERNAME says otherwise, the CLI logs in as the operator's bootstrap account,
    or as the participant a command acts for (`publish --as`), with that participant's own
    credentials from its keyring: a provider's records go out under the provider's grants."""
    bootstrap = resolve_bootstrap(settings)
    state = MeshState.load(settings) if not settings.bootstrap else None
    if state is None or state.engine != "kafka" or settings.sasl_username:
        return settings.client_config(bootstrap)
    from streams import keyring
    from streams.tls import TlsFiles

    from .kafka import ADMIN_USER, sasl_env
    if as_participant:
        user, password = as_participant, keyring.load(settings.keyring_dir, as_participant).sasl_password
    else:
        user, password = ADMIN_USER, keyring.service_password(settings.keyring_dir, ADMIN_USER)
    env = sasl_env(bootstrap, TlsFiles.at(settings.keyring_dir).ca_cert, user, password)
    return settings.model_copy(update={k[len("CITYMESH_"):].lower(): v for k, v in env.items()}).client_config()


@contextmanager
def _locked(path: Path):
    """An exclusive lock beside the state file: `up`, `down` and the supervisor never
    interleave their read-modify-writes of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)
