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
    embedded: bool  # `up` started the broker ("broker" in processes)
    processes: dict[str, int] = field(default_factory=dict)
    started_ms: int = 0
    engine: str = "tansu"  # "tansu" (embedded, no access control) | "kafka" (Apache Kafka, SCRAM over TLS, ACLs)

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
