"""Audit the ledger: verify the chain and its signed checkpoints, export the regulator's report.

    python -m processors.ledger.audit verify [--ledger URL] [--public-key HEX]... [--json]
    python -m processors.ledger.audit export --since T --until T --format csv|json [--output FILE]

T is ISO-8601 (a time without zone is UTC) or epoch milliseconds; the range is
since <= event time < until. The ledger defaults to CITYMESH_LEDGER_URL, else
<state_dir>/ledger.sqlite. `verify` exits 0 when the ledger is intact and 1 naming the
first broken entry; `export` refuses a ledger that does not verify (exit 1) unless
--allow-broken, so a report is never built on evidence that was tampered with.

What verification can and cannot prove: every entry up to the last checkpoint is fixed by
the operator's signature; entries after it are only chained, so a tail could be cut or
rewritten unnoticed. That is why the sink signs every N entries, after an idle interval
and at shutdown, and why `verify` reports how many entries are unsigned. Without
--public-key, each checkpoint is checked against the key recorded in it, which proves
consistency but not authorship: pass the operator's registered key to prove that too.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Iterable, TextIO

from streams.keyring import Keyring

from .chain import GENESIS, checkpoint_message, entry_hash
from .store import CheckpointRow, EntryRow, LedgerStore, open_store

# Why an entry is broken (the first one found wins)
MALFORMED = "malformed"          # a stored value has the wrong type
GAP = "gap"                      # an expected seq is missing (deleted entry, or seq rewritten)
ORDER = "out-of-order"           # a seq appears where a later one was expected
LINK = "broken-link"             # prev_hash is not the previous entry's hash
HASH = "hash-mismatch"           # the entry's content does not hash to its stored hash
CP_KEY = "checkpoint-untrusted-key"
CP_SIGNATURE = "checkpoint-bad-signature"
CP_MISMATCH = "checkpoint-hash-mismatch"
CP_MISSING = "checkpoint-without-entry"

_ENTRY_TYPES = {"seq": int, "topic": str, "partition": int, "offset": int, "event_id": str, "kind": str,
                "time_ms": int, "event_json": str, "prev_hash": str, "entry_hash": str}
_CP_TYPES = {"seq": int, "entry_hash": str, "time_ms": int, "public_key": str, "signature": str}


@dataclass(frozen=True)
class Problem:
    seq: int
    reason: str
    detail: str


@dataclass
class Report:
    height: int = 0
    head_hash: str = GENESIS
    checkpoints: int = 0
    last_checkpoint_seq: int = 0
    signing_keys: list[str] = field(default_factory=list)
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def unsigned_tail(self) -> int:
        return self.height - self.last_checkpoint_seq

    def summary(self) -> str:
        if self.problem:
            p = self.problem
            return f"BROKEN at seq {p.seq}: {p.reason} ({p.detail})"
        return (f"OK: {self.height} entries, head {self.head_hash[:16]}…, {self.checkpoints} checkpoints "
                f"(last at seq {self.last_checkpoint_seq}, {self.unsigned_tail} entries after it unsigned), "
                f"signed by {', '.join(k[:16] + '…' for k in self.signing_keys) or 'nobody'}")


def _bad_types(row, types: dict) -> str | None:
    for name, kind in types.items():
        value = getattr(row, name)
        if type(value) is not kind:
            return f"{name} is {type(value).__name__} {value!r:.40}, expected {kind.__name__}"
    return None


def _check_entry(e: EntryRow, expected: int, prev_hash: str) -> Problem | None:
    if type(e.seq) is int and e.seq != expected:
        if e.seq > expected:
            missing = f"{expected}" if e.seq == expected + 1 else f"{expected}..{e.seq - 1}"
            return Problem(expected, GAP, f"entry {missing} missing, next is {e.seq}")
        return Problem(e.seq, ORDER, f"seq {e.seq} where {expected} was expected")
    bad = _bad_types(e, _ENTRY_TYPES)
    if bad:
        return Problem(expected, MALFORMED, bad)
    if e.prev_hash != prev_hash:
        return Problem(e.seq, LINK, f"prev_hash {e.prev_hash[:16]}… but entry {e.seq - 1} has {prev_hash[:16]}…")
    h = entry_hash(e.prev_hash, e.seq, e.topic, e.partition, e.offset, e.event_id, e.kind, e.time_ms, e.event_json)
    if h != e.entry_hash:
        return Problem(e.seq, HASH, f"content hashes to {h[:16]}…, stored {e.entry_hash[:16]}…")
    return None


def _check_checkpoint(cp: CheckpointRow, chain_hash: str | None, trusted: set[str] | None) -> Problem | None:
    bad = _bad_types(cp, _CP_TYPES)
    if bad:
        return Problem(cp.seq, MALFORMED, f"checkpoint {bad}")
    if trusted is not None and cp.public_key not in trusted:
        return Problem(cp.seq, CP_KEY, f"checkpoint signed by {cp.public_key[:16]}…, not an accepted operator key")
    try:
        sig = bytes.fromhex(cp.signature)
    except ValueError:
        sig = b""
    if not Keyring.verify(cp.public_key, sig, checkpoint_message(cp.seq, cp.entry_hash, cp.time_ms)):
        return Problem(cp.seq, CP_SIGNATURE, "signature does not verify")
    if chain_hash is None:
        return Problem(cp.seq, CP_MISSING, "checkpoint signs an entry the ledger does not hold")
    if cp.entry_hash != chain_hash:
        return Problem(cp.seq, CP_MISMATCH, f"signed hash {cp.entry_hash[:16]}… but entry has {chain_hash[:16]}…")
    return None


def verify(store: LedgerStore, public_keys: Iterable[str] | None = None) -> Report:
    """Walk the whole chain once, in seq order, checking each checkpoint when its entry passes.

    Stops at the first problem, so the report names the earliest broken seq."""
    trusted = {k.lower() for k in public_keys} if public_keys else None
    cps = store.checkpoints()
    report = Report(checkpoints=len(cps))
    report.signing_keys = sorted({c.public_key for c in cps if isinstance(c.public_key, str)})
    pending = {c.seq: c for c in cps}
    early = [s for s in pending if not isinstance(s, int) or s < 1]
    if early:
        report.problem = Problem(min(early), CP_MISSING, "checkpoint before the first entry")
        return report
    expected, prev = 1, GENESIS
    for e in store.entries():
        problem = _check_entry(e, expected, prev)
        if problem is None and e.seq in pending:
            problem = _check_checkpoint(pending.pop(e.seq), e.entry_hash, trusted)
            report.last_checkpoint_seq = e.seq
        if problem is not None:
            report.problem = problem
            return report
        expected, prev = expected + 1, e.entry_hash
        report.height, report.head_hash = e.seq, e.entry_hash
    if pending:  # checkpoints beyond the head: the entries they signed were removed
        report.problem = _check_checkpoint(pending[min(pending)], None, trusted)
    return report


# -- export

def parse_time(value: str) -> int:
    """Epoch milliseconds from ISO-8601 (zone-less means UTC) or from a plain integer of milliseconds."""
    value = value.strip()
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is neither ISO-8601 nor epoch milliseconds") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


CSV_COLUMNS = ["seq", "time", "time_ms", "kind", "event_id", "topic", "partition", "offset", "prev_hash",
               "entry_hash", "event_json"]


def export(store: LedgerStore, since_ms: int, until_ms: int, fmt: str, out: TextIO) -> int:
    """Write the entries with since_ms <= event time < until_ms; returns how many.

    Each row carries prev_hash and entry_hash so a regulator can re-hash every exported entry
    (chain.py documents the bytes); JSON adds the ledger head and the last checkpoint."""
    if fmt not in ("csv", "json"):
        raise ValueError(f"unknown format {fmt!r} (csv or json)")
    rows = store.entries(since_ms, until_ms)
    n = 0
    if fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for e in rows:
            w.writerow([e.seq, _iso(e.time_ms), e.time_ms, e.kind, e.event_id, e.topic, e.partition, e.offset,
                        e.prev_hash, e.entry_hash, e.event_json])
            n += 1
        return n
    cps = store.checkpoints()
    head_seq, head_hash = store.head()
    meta = {
        "generated": _iso(int(time.time() * 1000)), "since": _iso(since_ms), "until": _iso(until_ms),
        "since_ms": since_ms, "until_ms": until_ms,
        "ledger": {"height": head_seq, "head_hash": head_hash, "last_checkpoint": asdict(cps[-1]) if cps else None},
    }
    out.write("{\n" + "".join(f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},\n" for k, v in meta.items())
              + ' "entries": [')
    for e in rows:
        out.write(("\n  " if n == 0 else ",\n  ") + json.dumps({
            "seq": e.seq, "time": _iso(e.time_ms), "time_ms": e.time_ms, "kind": e.kind, "event_id": e.event_id,
            "topic": e.topic, "partition": e.partition, "offset": e.offset, "prev_hash": e.prev_hash,
            "entry_hash": e.entry_hash, "event_json": e.event_json, "event": json.loads(e.event_json)},
            ensure_ascii=False))
        n += 1
    out.write("\n ],\n \"count\": %d\n}\n" % n)
    return n


# -- CLI

def _default_url() -> str:
    from streams.settings import get_settings
    from .config import ledger_url
    return ledger_url(get_settings())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m processors.ledger.audit", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify", help="check the chain and the checkpoint signatures")
    v.add_argument("--public-key", action="append", default=None,
                   help="accepted operator Ed25519 public key (hex); repeat for rotated keys")
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    x = sub.add_parser("export", help="the regulator's report for a time range")
    x.add_argument("--since", required=True)
    x.add_argument("--until", required=True)
    x.add_argument("--format", choices=("csv", "json"), default="csv")
    x.add_argument("--output", "-o", default="-")
    x.add_argument("--allow-broken", action="store_true", help="export even if the ledger does not verify")
    x.add_argument("--public-key", action="append", default=None)
    for p in (v, x):
        p.add_argument("--ledger", default=None, help="ledger URL or SQLite path (default: CITYMESH_LEDGER_URL)")
    args = ap.parse_args(argv)
    with open_store(args.ledger or _default_url(), create=False) as store:
        report = verify(store, args.public_key)
        if args.cmd == "verify":
            if args.json:
                print(json.dumps({"ok": report.ok, **asdict(report), "unsigned_tail": report.unsigned_tail}))
            else:
                print(report.summary())
            return 0 if report.ok else 1
        if not report.ok and not args.allow_broken:
            print(f"refusing to export: {report.summary()}", file=sys.stderr)
            return 1
        since, until = parse_time(args.since), parse_time(args.until)
        if args.output == "-":
            n = export(store, since, until, args.format, sys.stdout)
        else:
            with open(args.output, "w", encoding="utf-8", newline="") as fh:
                n = export(store, since, until, args.format, fh)
        print(f"exported {n} entries ({_iso(since)} .. {_iso(until)})", file=sys.stderr)
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
