"""The multi-tenant control plane: one connector context per participant, one process.

The plane holds what both sides share: the control topics (`store`), the hosted
participants' keyrings (to sign tokens and agreements as them), the HTTP client connectors
use to reach each other (`send`, tokens attached, every message checked against the spec
before it leaves) and the dispatcher. Why a dispatcher: a DSP process moves on only when
the counter-party acknowledges a message, and some messages are ours to send after we have
answered (an agreement after an accepted request, the finalization after a verification,
the start of a transfer). Such a message is written to the process record first
(`pending`), then sent; a restarted plane finds it in the topic and sends it again, so a
SIGKILL at any moment delays a negotiation but never strands it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

import httpx

import schemas
from schemas.errors import CitymeshError
from streams import keyring, topics
from streams.keyring import Keyring

from . import messages, metrics
from .contracts import ContractDesk
from .errors import DataspaceError, Forbidden, NotFound
from .identity import connector_audience, issue_token
from .store import ControlStore

log = logging.getLogger("citymesh.dataspace")

MAX_ATTEMPTS = 8


def now_ms() -> int:
    return int(time.time() * 1000)


def new_pid() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def still_pending(current: dict | None, rec: dict) -> bool:
    """Whether a process record still waits to send what `rec` (an earlier read) was to send: other
    fields (a pid learnt meanwhile) may have changed, the state and the pending message not."""
    return current is not None and current["state"] == rec["state"] and current["pending"] == rec["pending"]


def blank(schema_name: str, **fields) -> dict:
    """A record of `schema_name` with every field at its default, then `fields`."""
    out = {f["name"]: f.get("default") for f in schemas.load(schema_name).definition["fields"]}
    out.update(fields)
    return out


class SendFailed(CitymeshError):
    """The counter-party did not acknowledge a message; `refused` when it answered 4xx (it will not)."""

    def __init__(self, message: str, refused: bool):
        super().__init__(message)
        self.refused = refused


class ControlPlane:
    def __init__(self, client_config: dict, keys_dir: Path, public_url: str, replication: int = 1,
                 http_timeout_s: float = 10.0, acls: bool = False):
        """`acls`: the cluster has an authorizer, and consumers' grants follow their contracts (contracts.py)."""
        self.store = ControlStore(client_config)
        self.client_config = client_config
        self.keys_dir = Path(keys_dir)
        self.public_url = public_url.rstrip("/")
        self.desk = ContractDesk(self.store, client_config, replication, acls)
        self.lock = threading.RLock()  # one read-modify-write of a process record at a time
        self.http = httpx.Client(timeout=http_timeout_s)
        self._keys: dict[str, Keyring] = {}
        self._due: dict[tuple[str, str], float] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._handlers: dict[str, Callable[[dict], None]] = {}
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="dsp-dispatch", daemon=True)

    # ---- identities ----------------------------------------------------------------------

    def keyring(self, participant_id: str) -> Keyring:
        """The keyring of a participant this plane hosts (re-read on a miss: keys may be added or rotated)."""
        ring = self._keys.get(participant_id)
        if ring is None or ring.public_key_hex != self.store.public_key(participant_id):
            try:
                ring = keyring.load(self.keys_dir, participant_id)
            except (keyring.KeyringError, ValueError):
                raise NotFound(f"participant {participant_id!r} has no connector here") from None
            self._keys[participant_id] = ring
        return ring

    def hosts(self, participant_id: str) -> bool:
        """Whether this plane has a connector context for the participant (its keyring is here)."""
        try:
            self.keyring(participant_id)
            return True
        except NotFound:
            return False

    def participant(self, participant_id: str) -> dict:
        p = self.store.get(topics.CONTROL_PARTICIPANTS, participant_id)
        if p is None:
            raise NotFound(f"no participant {participant_id!r}")
        return p

    def is_operator(self, participant_id: str) -> bool:
        p = self.store.get(topics.CONTROL_PARTICIPANTS, participant_id)
        return p is not None and "OPERATOR" in p["roles"]

    def require_role(self, participant_id: str, *roles: str) -> dict:
        p = self.participant(participant_id)
        if not set(roles) & set(p["roles"]):
            raise Forbidden(f"{participant_id} has none of the roles {', '.join(roles)}")
        return p

    def dsp_url(self, participant_id: str) -> str:
        return f"{self.public_url}/dsp/{participant_id}"

    def callback_url(self, participant_id: str) -> str:
        return f"{self.public_url}/dsp/{participant_id}/callback"

    # ---- sending -------------------------------------------------------------------------

    def send(self, sender: str, receiver: str, url: str, message: dict | None, method: str = "POST") -> httpx.Response:
        """One DSP message from a hosted participant; SendFailed unless it is acknowledged (2xx)."""
        if message is not None:
            messages.outgoing(message)
        token = issue_token(self.keyring(sender), connector_audience(receiver))
        kind = message["@type"] if message else "GET"
        try:
            resp = self.http.request(method, url, json=message, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            metrics.SENT.labels(kind, "unreachable").inc()
            raise SendFailed(f"{url}: {type(exc).__name__}: {exc}", refused=False) from None
        metrics.SENT.labels(kind, str(resp.status_code)).inc()
        if resp.status_code >= 300:
            reason = resp.text[:500]
            try:
                reason = "; ".join(map(str, resp.json().get("reason", []))) or reason
            except (ValueError, AttributeError):
                pass
            raise SendFailed(f"{url} answered {resp.status_code}: {reason}",
                             refused=400 <= resp.status_code < 500 and resp.status_code not in (408, 429))
        return resp

    # ---- pending messages ----------------------------------------------------------------

    def on_pending(self, table: str, handler: Callable[[dict], None]) -> None:
        """`handler(record)` sends a record's pending message and records the outcome (SendFailed to retry)."""
        self._handlers[table] = handler

    def start(self) -> "ControlPlane":
        self._dispatcher.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def _dispatch_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            for table, handler in self._handlers.items():
                for rec in self.store.values(table):
                    if rec["pending"] is None:
                        continue
                    key = (table, rec["negotiation_id" if table == topics.CONTROL_NEGOTIATIONS else "transfer_id"])
                    if self._due.get(key, 0) > time.monotonic() or self._stop.is_set():
                        continue
                    self._attempt(table, key, rec, handler)

    def _attempt(self, table: str, key: tuple[str, str], rec: dict, handler) -> None:
        try:
            handler(rec)
            self._due.pop(key, None)
        except (SendFailed, DataspaceError, LookupError, OSError) as exc:
            attempts = rec["attempts"] + 1
            final = getattr(exc, "refused", False) or attempts >= MAX_ATTEMPTS
            log.warning("%s %s: %s failed (attempt %d%s): %s", table, key[1], rec["pending"], attempts,
                        ", giving up" if final else "", exc)
            with self.lock:
                current = self.store.get(table, key[1])
                if not still_pending(current, rec):
                    return  # it moved on meanwhile (e.g. the counter-party terminated it)
                update = {"attempts": attempts, "reason": str(exc)[:1000]}
                if final:
                    update.update(self.give_up(table, current, str(exc)))
                self.store.put(table, key[1], {**current, **update, "updated_ms": now_ms()})
            self._due[key] = time.monotonic() + min(30.0, 0.25 * 2 ** attempts)
        except Exception:  # noqa: BLE001 - a bug in one handler must not stop every other process
            log.exception("%s %s: %s raised", table, key[1], rec["pending"])
            self._due[key] = time.monotonic() + 30.0

    def give_up(self, table: str, rec: dict, reason: str) -> dict:
        """What a process becomes when its pending message cannot be delivered: terminated."""
        if rec["state"] in ("FINALIZED", "COMPLETED", "TERMINATED"):
            return {"pending": None}
        if table == topics.CONTROL_TRANSFERS and rec.get("contract_id") and rec["side"] == "PROVIDER":
            agreement = self.store.get(topics.CONTROL_AGREEMENTS, rec["agreement_id"])
            if agreement is not None:
                from .contracts import CONTRACT_STATE_OF_TRANSFER
                try:
                    self.desk.set_state(agreement, CONTRACT_STATE_OF_TRANSFER["TERMINATED"])
                except DataspaceError as exc:  # the contract (and its grants) could not be revoked yet:
                    log.warning("%s %s: cannot give up yet: %s", table, rec["transfer_id"], exc)
                    return {}  # the process stays as it is, and giving up is tried again
        return {"state": "TERMINATED", "pending": None, "reason": f"gave up: {reason}"[:1000]}

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._dispatcher.is_alive():
            self._dispatcher.join(10)
        self.http.close()
        self.store.close()


def dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False)
