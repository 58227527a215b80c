"""The alert feed's evidence link: the ledger entry that chains an alert, and its neighbours.

Why this module imports `processors.ledger` although the dashboard otherwise needs only
`streams` and `schemas`: the evidence IS the ledger (hash-chained, signed checkpoints), and
re-reading its tables by hand would be a second, drifting definition of its format. The
import is local so the page runs (without evidence links) where no ledger exists. The
answer is the audit export's own shape for the entry (seq, hashes, the event), so a
regulator sees here exactly what `citymesh audit export` would give for that minute.
"""

from __future__ import annotations

import json


def lookup(ledger_url: str, alert_id: str, time_ms: int) -> dict:
    from processors.ledger.store import LedgerNotFound, open_store
    try:
        store = open_store(ledger_url, create=False)
    except (LedgerNotFound, FileNotFoundError) as exc:
        return {"found": False, "error": f"no ledger at {ledger_url}: {exc}"}
    try:
        entries = [e for e in store.entries(time_ms, time_ms + 1) if e.event_id == alert_id]
        head_seq, head_hash = store.head()
        cps = [c for c in store.checkpoints() if entries and c.seq >= entries[0].seq][:1]
        out = {"found": bool(entries), "alert_id": alert_id, "ledger": {"url": ledger_url, "height": head_seq,
                                                                           "head_hash": head_hash},
               "entries": [{"seq": e.seq, "kind": e.kind, "event_id": e.event_id, "topic": e.topic,
                            "partition": e.partition, "offset": e.offset, "time_ms": e.time_ms,
                            "prev_hash": e.prev_hash, "entry_hash": e.entry_hash, "event": json.loads(e.event_json)}
                           for e in entries],
               "signed_by_checkpoint": ({"seq": cps[0].seq, "public_key": cps[0].public_key} if cps else None),
               "verify": "citymesh audit verify",
               "export": f"citymesh audit export --since {time_ms} --until {time_ms + 1} --format json"}
        if not entries:
            out["error"] = "not in the ledger yet (the ledger sink may be behind, or not running)"
        return out
    finally:
        store.close()
