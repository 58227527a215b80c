"""Shared by the ledger tests: real ComplianceEvent/Alert records, a valid ledger built
through the public API, and the tamper engine that mutates a stored ledger the way an
attacker with write access to the database could."""

from __future__ import annotations

import random
from dataclasses import dataclass

import schemas
from processors.ledger import Incoming, Ledger, canonical_json
from processors.ledger import audit as A
from processors.ledger.chain import GENESIS, KIND_ALERT, KIND_COMPLIANCE, checkpoint_message, entry_hash

KINDS = ["BATCH", "REJECT", "CONTRACT_CHANGE", "RATE_LIMIT", "VIOLATION"]


def compliance_event(rng: random.Random, i: int, time_ms: int, tag: str = "t") -> dict:
    return {
        "event_id": f"{tag}-ce-{i:06d}", "time_ms": time_ms, "kind": rng.choice(KINDS), "product_id": f"{tag}-uav",
        "provider_id": f"{tag}-skyway", "contract_id": rng.choice([None, f"{tag}-routes"]), "contract_version": 1,
        "consumer_id": None, "rule": rng.choice([None, "constraint:geofence", "reject:bad-auth-tag"]),
        "reason": rng.choice([None, "高度超过120米", "outside urban fence"]),
        "counts": {"deliver": rng.randint(0, 500), "drop:constraint:purpose": rng.randint(0, 9)},
        "source_topic": f"cm.raw.{tag}", "source_partition": rng.randint(0, 2), "first_offset": i,
        "last_offset": i + 10, "digest": f"{rng.getrandbits(256):064x}", "trace_id": None,
        "details": {"n": str(i)}}


def alert(rng: random.Random, i: int, time_ms: int, tag: str = "t") -> dict:
    return {
        "alert_id": f"{tag}-al-{i:06d}", "time_ms": time_ms, "rule_id": "uav-above-120m",
        "severity": rng.choice(["INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL"]), "product_id": f"{tag}-uav",
        "subject": f"SN{rng.randint(1000, 9999)}", "message": "UAV above 120 m AGL", "evidence": {"h": "131.5"},
        "source_topic": None, "source_partition": None, "source_offset": None, "escalated": False,
        "incident_id": None, "first_seen_ms": None, "last_seen_ms": None, "count": 1}


def make_event(rng: random.Random, i: int, time_ms: int, tag: str = "t") -> tuple[str, dict]:
    """(schema name, record) — about one in three is an alert."""
    if rng.random() < 0.33:
        return "Alert", alert(rng, i, time_ms, tag)
    return "ComplianceEvent", compliance_event(rng, i, time_ms, tag)


def roundtrip(schema_name: str, record: dict) -> dict:
    """What the sink sees after the wire: encode, then decode."""
    s = schemas.load(schema_name)
    return s.decode(s.encode(record))


def incoming(schema_name: str, record: dict, topic: str, partition: int, offset: int) -> Incoming:
    decoded = roundtrip(schema_name, record)
    kind = KIND_ALERT if schema_name == "Alert" else KIND_COMPLIANCE
    eid = decoded["alert_id"] if schema_name == "Alert" else decoded["event_id"]
    return Incoming(topic, partition, offset, kind, eid, decoded["time_ms"], canonical_json(decoded))


def build_ledger(store, signer, n: int, seed: int = 1, every: int = 25, t0: int = 1_714_521_600_000,
                 step_ms: int = 60_000) -> list[Incoming]:
    """A valid ledger of n entries appended in random batches, ending with a final checkpoint."""
    rng = random.Random(seed)
    ledger = Ledger(store, signer, every)
    offsets: dict[tuple[str, int], int] = {}
    recs = []
    for i in range(n):
        name, rec = make_event(rng, i, t0 + i * step_ms)
        topic = "cm.alerts" if name == "Alert" else "cm.compliance"
        part = rng.randrange(3)
        off = offsets.get((topic, part), 0)
        offsets[(topic, part)] = off + 1
        recs.append(incoming(name, rec, topic, part, off))
    i = 0
    while i < n:
        size = rng.randint(1, 20)
        ledger.append(recs[i:i + size])
        i += size
    ledger.checkpoint()
    return recs


# ---- the tamper engine

@dataclass
class Mutation:
    op: str
    seq: int                 # the first broken seq verify must name
    reasons: frozenset[str]  # the reasons it may give
    trusted_key: bool        # verify with the operator's key (needed to catch a re-signed chain)


TEXT_COLS = ["src_topic", "event_id", "kind", "event_json", "prev_hash", "entry_hash"]
INT_COLS = ["src_partition", "src_offset", "time_ms"]
CP_TEXT = ["entry_hash", "public_key", "signature"]


class Tamper:
    """Applies one random mutation through a DB-API connection (sqlite3 or psycopg)."""

    def __init__(self, conn, paramstyle: str, integrity_error: type, attacker, byte_level: bool):
        self.c, self.ph, self.integrity_error = conn, paramstyle, integrity_error
        self.attacker, self.byte_level = attacker, byte_level

    def _x(self, sql: str, params=()):
        return self.c.execute(sql.replace("?", self.ph), tuple(params))

    def _change_text(self, rng: random.Random, value: str):
        if self.byte_level:  # one byte; a result that is not UTF-8 is stored as a BLOB, as a raw edit would
            b = bytearray(value.encode())
            i = rng.randrange(len(b))
            b[i] = rng.choice([x for x in range(256) if x != b[i]])
            try:
                return bytes(b).decode()
            except UnicodeDecodeError:
                return bytes(b)
        i = rng.randrange(len(value))
        return value[:i] + rng.choice([ch for ch in "0123456789abcdefXYZ{}:,\"" if ch != value[i]]) + value[i + 1:]

    def apply(self, rng: random.Random) -> Mutation | None:
        seqs = [r[0] for r in self._x("SELECT seq FROM ledger_entries ORDER BY seq").fetchall()]
        cps = [r[0] for r in self._x("SELECT seq FROM ledger_checkpoints ORDER BY seq").fetchall()]
        top = seqs[-1]
        op = rng.choices(["entry", "seq", "delete", "swap", "cp", "forge", "rechain", "retype"],
                         [40, 6, 10, 8, 14, 8, 8, 6])[0]
        trusted = rng.random() < 0.5
        k = rng.choice(seqs)
        try:
            m = getattr(self, f"_{op}")(rng, k, seqs, cps, top, trusted)
            self.c.commit()
            return m
        except self.integrity_error:
            self.c.rollback()
            return None

    def _entry(self, rng, k, seqs, cps, top, trusted):
        col = rng.choice(TEXT_COLS + INT_COLS)
        (value,) = self._x(f"SELECT {col} FROM ledger_entries WHERE seq = ?", (k,)).fetchone()
        if col in INT_COLS:
            new = value + rng.choice([-1, 1]) * rng.randint(1, 1000)
        else:
            new = self._change_text(rng, value)
        self._x(f"UPDATE ledger_entries SET {col} = ? WHERE seq = ?", (new, k))
        reasons = {A.LINK if col == "prev_hash" else A.HASH, A.MALFORMED}
        return Mutation(f"entry.{col}", k, frozenset(reasons), trusted)

    def _retype(self, rng, k, seqs, cps, top, trusted):
        if not self.byte_level:  # PostgreSQL columns are typed: nothing to retype
            return self._entry(rng, k, seqs, cps, top, trusted)
        col = rng.choice(INT_COLS)
        (value,) = self._x(f"SELECT {col} FROM ledger_entries WHERE seq = ?", (k,)).fetchone()
        self._x(f"UPDATE ledger_entries SET {col} = ? WHERE seq = ?", (rng.choice([f"{value}x", value + 0.5]), k))
        return Mutation(f"retype.{col}", k, frozenset({A.MALFORMED}), trusted)

    def _seq(self, rng, k, seqs, cps, top, trusted):
        self._x("UPDATE ledger_entries SET seq = ? WHERE seq = ?", (top + rng.randint(1, 50), k))
        return Mutation("seq", k, frozenset({A.GAP}), trusted)

    def _delete(self, rng, k, seqs, cps, top, trusted):
        self._x("DELETE FROM ledger_entries WHERE seq = ?", (k,))
        # the last entry leaves no gap behind, but the final checkpoint signed it
        return Mutation("delete", k, frozenset({A.GAP} if k < top else {A.CP_MISSING}), trusted)

    def _swap(self, rng, k, seqs, cps, top, trusted):
        i, j = sorted(rng.sample(seqs, 2))
        self._x("UPDATE ledger_entries SET seq = ? WHERE seq = ?", (-1, i))
        self._x("UPDATE ledger_entries SET seq = ? WHERE seq = ?", (i, j))
        self._x("UPDATE ledger_entries SET seq = ? WHERE seq = ?", (j, -1))
        return Mutation("swap", i, frozenset({A.LINK, A.HASH}), trusted)

    def _cp(self, rng, k, seqs, cps, top, trusted):
        c = rng.choice(cps)
        col = rng.choice(CP_TEXT + ["time_ms", "seq"])
        if col == "seq":
            free = [s for s in range(1, top + 20) if s not in cps]
            v = rng.choice(free)
            self._x("UPDATE ledger_checkpoints SET seq = ? WHERE seq = ?", (v, c))
            return Mutation("cp.seq", v, frozenset({A.CP_SIGNATURE}), trusted)
        (value,) = self._x(f"SELECT {col} FROM ledger_checkpoints WHERE seq = ?", (c,)).fetchone()
        new = value + rng.randint(1, 10**6) if col == "time_ms" else self._change_text(rng, value)
        self._x(f"UPDATE ledger_checkpoints SET {col} = ? WHERE seq = ?", (new, c))
        return Mutation(f"cp.{col}", c, frozenset({A.CP_SIGNATURE, A.CP_KEY, A.MALFORMED}), trusted)

    def _forge(self, rng, k, seqs, cps, top, trusted):
        """A checkpoint over the true head hash, signed by someone else (replacing or added)."""
        (h,) = self._x("SELECT entry_hash FROM ledger_entries WHERE seq = ?", (k,)).fetchone()
        self._x("DELETE FROM ledger_checkpoints WHERE seq = ?", (k,))
        self._sign_into(k, h, 1_800_000_000_000)
        return Mutation("forge", k, frozenset({A.CP_KEY}), True)

    def _rechain(self, rng, k, seqs, cps, top, trusted):
        """Rewrite entry k's event and re-hash the whole chain after it, so every link holds;
        half the time also re-sign every later checkpoint with the attacker's key."""
        rows = self._x("SELECT seq, src_topic, src_partition, src_offset, event_id, kind, time_ms, event_json "
                       "FROM ledger_entries WHERE seq >= ? ORDER BY seq", (k,)).fetchall()
        (prev,) = self._x("SELECT entry_hash FROM ledger_entries WHERE seq = ?", (k - 1,)).fetchone() \
            if k > 1 else (GENESIS,)
        resign = rng.random() < 0.5
        hashes = {}
        for n, (seq, t, p, o, eid, kind, tms, ej) in enumerate(rows):
            if n == 0:
                ej = ej.replace('"time_ms":', '"time_ms":1', 1)
            h = entry_hash(prev, seq, t, p, o, eid, kind, tms, ej)
            self._x("UPDATE ledger_entries SET event_json = ?, prev_hash = ?, entry_hash = ? WHERE seq = ?",
                    (ej, prev, h, seq))
            hashes[seq] = prev = h
        later = [c for c in cps if c >= k]
        if resign:
            for c in later:
                self._x("DELETE FROM ledger_checkpoints WHERE seq = ?", (c,))
                self._sign_into(c, hashes[c], 1_800_000_000_000 + c)
        return Mutation("rechain+resign" if resign else "rechain", later[0],
                        frozenset({A.CP_KEY} if resign else {A.CP_MISMATCH}), True)

    def _sign_into(self, seq: int, h: str, t: int) -> None:
        sig = self.attacker.sign(checkpoint_message(seq, h, t)).hex()
        self._x("INSERT INTO ledger_checkpoints (seq, entry_hash, time_ms, public_key, signature) VALUES (?,?,?,?,?)",
                (seq, h, t, self.attacker.public_key_hex, sig))
