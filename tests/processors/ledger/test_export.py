"""The regulator's report: exactly the events of the time range, in CSV and JSON, with the
hashes needed to re-check them; and the CLI's verify/export exit codes."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from processors.ledger import open_store
from processors.ledger.audit import export, parse_time
from processors.ledger.chain import entry_hash

from tests.processors.ledger.helpers import build_ledger

ROOT = Path(__file__).resolve().parents[3]
T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z; build_ledger puts entry i at T0 + i minutes


@pytest.fixture
def ledger_file(tmp_path, operator):
    path = str(tmp_path / "ledger.sqlite")
    with open_store(path) as store:
        recs = build_ledger(store, operator, 120, seed=5, every=30, t0=T0)
    return path, recs


def test_parse_time_accepts_iso_and_epoch_ms():
    assert parse_time("2024-05-01T00:00:00Z") == T0
    assert parse_time("2024-05-01T08:00:00+08:00") == T0
    assert parse_time("2024-05-01T00:00:00") == T0  # no zone: UTC
    assert parse_time(str(T0)) == T0
    with pytest.raises(ValueError):
        parse_time("yesterday")


@pytest.mark.parametrize("since,until", [("2024-05-01T00:10:00Z", "2024-05-01T01:00:00Z"),
                                         (str(T0 + 10 * 60_000), str(T0 + 60 * 60_000)),
                                         ("2024-05-01T08:10:00+08:00", "2024-05-01T01:00:00")])
def test_export_holds_exactly_the_events_in_range(ledger_file, since, until):
    path, recs = ledger_file
    want = [r.event_id for r in recs[10:60]]  # since inclusive, until exclusive
    with open_store(path, create=False) as store:
        buf = io.StringIO()
        assert export(store, parse_time(since), parse_time(until), "csv", buf) == 50
        rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
        assert [r["event_id"] for r in rows] == want
        assert [r["event_json"] for r in rows] == [r.event_json for r in recs[10:60]]
        buf = io.StringIO()
        assert export(store, parse_time(since), parse_time(until), "json", buf) == 50
    doc = json.loads(buf.getvalue())
    assert doc["count"] == 50 and [e["event_id"] for e in doc["entries"]] == want
    assert doc["ledger"]["height"] == 120 and doc["ledger"]["last_checkpoint"]["seq"] == 120
    for e in doc["entries"]:  # a regulator can re-hash every exported entry
        assert entry_hash(e["prev_hash"], e["seq"], e["topic"], e["partition"], e["offset"], e["event_id"],
                          e["kind"], e["time_ms"], e["event_json"]) == e["entry_hash"]
        assert e["event"] == json.loads(e["event_json"])
        assert T0 + 10 * 60_000 <= e["time_ms"] < T0 + 60 * 60_000


def test_empty_range_exports_nothing(ledger_file):
    path, _ = ledger_file
    with open_store(path, create=False) as store:
        buf = io.StringIO()
        assert export(store, T0 - 10, T0, "json", buf) == 0
    assert json.loads(buf.getvalue())["entries"] == []


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "processors.ledger.audit", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_cli_verify_and_export_exit_codes(ledger_file, tmp_path, operator):
    path, recs = ledger_file
    ok = _cli("verify", "--ledger", path, "--public-key", operator.public_key_hex, "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True, ok.stderr
    out = tmp_path / "report.csv"
    done = _cli("export", "--ledger", path, "--since", "2024-05-01T00:00:00Z", "--until", str(T0 + 5 * 60_000),
                "--format", "csv", "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert [r["event_id"] for r in csv.DictReader(out.open())] == [r.event_id for r in recs[:5]]

    conn = sqlite3.connect(path)
    conn.execute("UPDATE ledger_entries SET time_ms = time_ms + 1 WHERE seq = 77")
    conn.commit()
    conn.close()
    broken = _cli("verify", "--ledger", path)
    assert broken.returncode == 1 and "seq 77" in broken.stdout and "hash-mismatch" in broken.stdout
    refused = _cli("export", "--ledger", path, "--since", "0", "--until", str(2**40), "--format", "json")
    assert refused.returncode == 1 and "refusing" in refused.stderr and refused.stdout == ""
    missing = _cli("verify", "--ledger", str(tmp_path / "nope.sqlite"))
    assert missing.returncode != 0 and not (tmp_path / "nope.sqlite").exists()
