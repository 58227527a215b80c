"""Every tampering with a stored ledger is caught by `audit verify`, which names the first
broken entry: 1,000 random mutations (seeded), each on a fresh copy of a valid SQLite file."""

from __future__ import annotations

import collections
import os
import random
import shutil
import sqlite3
import time

from processors.ledger import open_store
from processors.ledger.audit import verify

from tests.processors.ledger.helpers import Tamper, build_ledger

MUTATIONS = 1000


def _fresh_copy(base: str, path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    shutil.copyfile(base, path)


def test_a_thousand_random_mutations_are_all_detected_at_the_right_entry(tmp_path, operator, attacker):
    base = str(tmp_path / "valid.sqlite")
    with open_store(base) as store:
        build_ledger(store, operator, 240, seed=11, every=25)
    assert not os.path.exists(base + "-wal"), "the WAL was not folded in on close; a file copy would miss entries"
    with open_store(base, create=False) as store:
        clean = verify(store, [operator.public_key_hex])
        assert clean.ok and verify(store).ok, clean.summary()
        assert clean.height == 240 and clean.last_checkpoint_seq == 240 and clean.checkpoints >= 9

    rng = random.Random(20240601)
    path = str(tmp_path / "work.sqlite")
    applied, misses, ops = 0, [], collections.Counter()
    started = time.monotonic()
    while applied < MUTATIONS:
        _fresh_copy(base, path)
        conn = sqlite3.connect(path)
        mutation = Tamper(conn, "?", sqlite3.IntegrityError, attacker, byte_level=True).apply(rng)
        conn.close()
        if mutation is None:  # the database refused it (a unique constraint): not a stored change
            continue
        applied += 1
        ops[mutation.op.split(".")[0]] += 1
        with open_store(path, create=False) as store:
            report = verify(store, [operator.public_key_hex] if mutation.trusted_key else None)
        p = report.problem
        if p is None or p.seq != mutation.seq or p.reason not in mutation.reasons:
            misses.append((mutation, p))
    elapsed = time.monotonic() - started
    assert not misses, f"{len(misses)} of {MUTATIONS} mutations mis-reported, e.g. {misses[:5]}"
    for op in ("entry", "seq", "delete", "swap", "cp", "forge", "rechain", "retype"):
        assert ops[op] >= 20, f"too few {op} mutations to mean anything: {dict(ops)}"
    assert elapsed < 60, f"{MUTATIONS} mutations took {elapsed:.1f}s"


def test_untouched_copy_and_same_value_rewrite_verify(tmp_path, operator):
    """The control for the test above: copying or rewriting a value unchanged is not tampering."""
    path = str(tmp_path / "l.sqlite")
    with open_store(path) as store:
        build_ledger(store, operator, 60, seed=3, every=10)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE ledger_entries SET event_json = event_json, time_ms = time_ms")
    conn.commit()
    conn.close()
    with open_store(path, create=False) as store:
        assert verify(store, [operator.public_key_hex]).ok


def test_a_checkpoint_by_another_key_is_visible_even_without_a_trusted_key(tmp_path, operator, attacker):
    path = str(tmp_path / "l.sqlite")
    with open_store(path) as store:
        build_ledger(store, operator, 50, seed=4, every=10)
    conn = sqlite3.connect(path)
    t = Tamper(conn, "?", sqlite3.IntegrityError, attacker, byte_level=True)
    (h,) = conn.execute("SELECT entry_hash FROM ledger_entries WHERE seq = 50").fetchone()
    conn.execute("DELETE FROM ledger_checkpoints WHERE seq = 50")
    t._sign_into(50, h, 1)
    conn.commit()
    conn.close()
    with open_store(path, create=False) as store:
        anyone = verify(store)
        assert anyone.ok and set(anyone.signing_keys) == {operator.public_key_hex, attacker.public_key_hex}
        strict = verify(store, [operator.public_key_hex])
        assert not strict.ok and strict.problem.seq == 50 and strict.problem.reason == "checkpoint-untrusted-key"
