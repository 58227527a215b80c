"""What is hashed and what is signed, byte for byte: the part a regulator re-implements.

Entry hash = SHA-256 over
    prev_hash (64 hex chars) "\n"
    JSON array [seq, topic, partition, offset, event_id, kind, time_ms] (compact, UTF-8) "\n"
    canonical JSON of the decoded event (sorted keys, compact, UTF-8)
The header is JSON so no field can bleed into the next (JSON escapes every newline, so the
two separators are unambiguous). Kind and time are hashed too, beyond the source
coordinates and event id: every stored column of an entry is then covered, so changing
any one of them is detectable without re-deriving it from the event body.

Checkpoint signature = Ed25519 over "citymesh-ledger-checkpoint/v1\n{seq}\n{entry_hash}\n{time_ms}";
the prefix keeps an operator signature over a ledger head from being replayed as any
other signed citymesh document.
"""

from __future__ import annotations

import hashlib
import json

GENESIS = "0" * 64  # prev_hash of entry 1
KIND_COMPLIANCE = "compliance"
KIND_ALERT = "alert"
_CHECKPOINT_DOMAIN = b"citymesh-ledger-checkpoint/v1"


def canonical_json(event: dict) -> str:
    """Stable text of a decoded event: the same record always gives the same string."""
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def entry_hash(prev_hash: str, seq: int, topic: str, partition: int, offset: int, event_id: str, kind: str,
               time_ms: int, event_json: str) -> str:
    header = json.dumps([seq, topic, partition, offset, event_id, kind, time_ms], separators=(",", ":"),
                        ensure_ascii=False)
    h = hashlib.sha256(prev_hash.encode())
    h.update(b"\n")
    h.update(header.encode())
    h.update(b"\n")
    h.update(event_json.encode())
    return h.hexdigest()


def checkpoint_message(seq: int, entry_hash_hex: str, time_ms: int) -> bytes:
    return b"%s\n%d\n%s\n%d" % (_CHECKPOINT_DOMAIN, seq, entry_hash_hex.encode(), time_ms)


def identify(schema_name: str, record: dict) -> tuple[str, str, int]:
    """(kind, event id, event time) of a decoded record; ValueError for a type the ledger does not hold."""
    if schema_name == "ComplianceEvent":
        return KIND_COMPLIANCE, record["event_id"], record["time_ms"]
    if schema_name == "Alert":
        return KIND_ALERT, record["alert_id"], record["time_ms"]
    raise ValueError(f"{schema_name} records do not belong in the compliance ledger")
