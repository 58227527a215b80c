"""Where the ledger lives and whose key signs it: CITYMESH_LEDGER_URL and CITYMESH_OPERATOR
(fields of streams.settings.Settings; `environ` lets tests pass their own)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from streams import keyring as keyrings
from streams.keyring import Keyring
from streams.settings import Settings

LEDGER_URL_ENV = "CITYMESH_LEDGER_URL"
OPERATOR_ENV = "CITYMESH_OPERATOR"


def ledger_url(settings: Settings, environ: Mapping[str, str] = os.environ) -> str:
    """CITYMESH_LEDGER_URL, else the SQLite file <state_dir>/ledger.sqlite."""
    return environ.get(LEDGER_URL_ENV) or settings.ledger_url or f"sqlite:///{(Path(settings.state_dir) / 'ledger.sqlite').resolve()}"


def operator_id(participants: Mapping[str, dict]) -> str:
    """The one participant with role OPERATOR; several or none is a configuration error, not a guess."""
    ops = sorted(pid for pid, p in participants.items() if "OPERATOR" in (p.get("roles") or []))
    if len(ops) != 1:
        raise RuntimeError(f"cannot tell the operator from cm.control.participants (operators: {ops or 'none'}); "
                           f"set {OPERATOR_ENV} or pass --keyring")
    return ops[0]


def operator_keyring(keys_dir: Path, environ: Mapping[str, str] = os.environ, keyring_file: Path | None = None,
                     participants: Mapping[str, dict] | None = None) -> Keyring:
    """The key that signs checkpoints: an explicit keyring file, else CITYMESH_OPERATOR's keyring, else
    the registered operator's. A keyring whose public key differs from the one registered for that
    participant is refused: its checkpoints could not be checked against the topology."""
    if keyring_file is not None:
        ring = Keyring.from_file(keyring_file)
    else:
        pid = environ.get(OPERATOR_ENV)
        if not pid:
            if participants is None:
                raise RuntimeError(f"set {OPERATOR_ENV}, pass --keyring, or let the sink read cm.control.participants")
            pid = operator_id(participants)
        ring = keyrings.load(keys_dir, pid)
    registered = (participants or {}).get(ring.participant_id, {}).get("public_key")
    if registered and registered != ring.public_key_hex:
        raise RuntimeError(f"keyring of {ring.participant_id} does not hold the public key registered for it")
    return ring
