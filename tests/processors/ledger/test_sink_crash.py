"""The sink as production runs it (a subprocess, settings from the environment), SIGKILLed
at random moments while ComplianceEvents and Alerts flow, restarted each time: the ledger
ends with every produced event exactly once, in source order per partition, chain valid."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

import schemas
from processors.ledger import open_store
from processors.ledger.audit import verify
from streams import keyring, topics
from streams.admin import TopicSpec, ensure_topics

from tests.processors.ledger.helpers import make_event, roundtrip

ROOT = Path(__file__).resolve().parents[3]


def start_sink(env: dict, topic_list: str, log: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """Start `python -m processors.ledger.sink`; returns it with its metrics URL once it is ready."""
    proc = subprocess.Popen([sys.executable, "-m", "processors.ledger.sink", "--topics", topic_list, "--batch-size",
                             "500", "--checkpoint-every", "200", "--metrics-port", "0", *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log.open("a"), text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready else ""
    if "metrics: " not in line:
        proc.kill()
        proc.wait()
        raise AssertionError(f"sink did not start: {line!r}\n{log.read_text()[-3000:]}")
    return proc, line.rsplit("metrics: ", 1)[1].strip()


class EventSource(threading.Thread):
    """Produces real records in bursts to both topics; ~5% are replays of an earlier event
    (same id, new offset, maybe another partition). Delivery reports give the coordinates."""

    def __init__(self, client: dict, compliance: str, alerts: str, bursts: int, per_burst: int, pause_s: float,
                 seed: int = 9):
        super().__init__(daemon=True)
        self.client, self.topics = client, {"ComplianceEvent": compliance, "Alert": alerts}
        self.bursts, self.per_burst, self.pause_s = bursts, per_burst, pause_s
        self.rng = random.Random(seed)
        self.delivered: list[tuple[str, int, int, str]] = []  # topic, partition, offset, event id
        self.events: dict[str, dict] = {}  # event id -> decoded record as the sink will see it
        self.errors: list = []

    def _report(self, eid: str):
        def cb(err, msg):
            if err is not None:
                self.errors.append(err)
            else:
                self.delivered.append((msg.topic(), msg.partition(), msg.offset(), eid))
        return cb

    def run(self) -> None:
        p = Producer({**self.client, "enable.idempotence": True, "linger.ms": 5})
        sent: list[tuple[str, dict]] = []
        i, t0 = 0, int(time.time() * 1000)
        for _ in range(self.bursts):
            for _ in range(self.per_burst):
                if sent and self.rng.random() < 0.05:
                    name, rec = self.rng.choice(sent)
                else:
                    name, rec = make_event(self.rng, i, t0 + i)
                    i += 1
                    sent.append((name, rec))
                eid = rec.get("event_id") or rec["alert_id"]
                self.events[eid] = roundtrip(name, rec)
                p.produce(self.topics[name], schemas.load(name).encode(rec), key=str(self.rng.random()).encode(),
                          on_delivery=self._report(eid))
            p.poll(0)
            time.sleep(self.pause_s)
        assert p.flush(30) == 0

    def ends(self) -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = {}
        for t, part, off, _ in self.delivered:
            out[(t, part)] = max(out.get((t, part), 0), off + 1)
        return out


def _height(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT COALESCE(MAX(seq), 0) FROM ledger_entries").fetchone()[0]
    finally:
        conn.close()


def test_sink_killed_at_random_moments_leaves_every_event_exactly_once(tmp_path, client_config, bootstrap, unique):
    compliance, alerts = f"{topics.COMPLIANCE}.t{unique}", f"{topics.ALERTS}.t{unique}"
    ensure_topics(AdminClient(client_config), [TopicSpec(compliance, 3), TopicSpec(alerts, 2)])
    state, op = tmp_path / "state", f"op-{unique}"
    ring, _ = keyring.create(state / "keys", op)
    env = {**os.environ, "CITYMESH_BOOTSTRAP": bootstrap, "CITYMESH_STATE_DIR": str(state), "CITYMESH_OPERATOR": op}
    env.pop("CITYMESH_LEDGER_URL", None)
    db, log = state / "ledger.sqlite", tmp_path / "sink.log"
    topic_list = f"{compliance},{alerts}"

    source = EventSource(client_config, compliance, alerts, bursts=45, per_burst=200, pause_s=0.2)
    rng = random.Random(42)
    heights, procs = [], []
    try:
        source.start()
        while source.is_alive() or len(heights) < 4:
            proc, _ = start_sink(env, topic_list, log)
            procs.append(proc)
            time.sleep(rng.uniform(0.1, 1.5))
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(10) == -signal.SIGKILL
            heights.append(_height(db))
        source.join(60)
        assert not source.errors, source.errors[:3]

        proc, metrics_url = start_sink(env, topic_list, log)
        procs.append(proc)
        ends, deadline = source.ends(), time.monotonic() + 45
        while time.monotonic() < deadline:
            with open_store(str(db), create=False) as store:
                if store.offsets() == ends:
                    break
            time.sleep(0.2)
        height = _height(db)
        page = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
        assert f"citymesh_ledger_height {float(height)}" in page, page[:2000]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    mid_stream = [h for h in heights if 0 < h < height]
    assert len(heights) >= 4 and len(set(mid_stream)) >= 2, f"kills did not land mid-stream: {heights} of {height}"

    with open_store(str(db), create=False) as store:
        assert store.offsets() == ends, "the sink did not consume to the end of every partition"
        report = verify(store, [ring.public_key_hex])
        assert report.ok, report.summary()
        assert report.last_checkpoint_seq == report.height, "no final checkpoint on SIGTERM"
        entries = list(store.entries())
    ids = [e.event_id for e in entries]
    assert len(ids) == len(set(ids)), "an event was written twice"
    assert set(ids) == set(source.events), (
        f"missing {len(set(source.events) - set(ids))}, unexpected {len(set(ids) - set(source.events))}")
    delivered = {(t, p, o): eid for t, p, o, eid in source.delivered}
    last_offset: dict[tuple[str, int], int] = {}
    for e in entries:
        assert delivered[(e.topic, e.partition, e.offset)] == e.event_id, "entry points at another record"
        assert json.loads(e.event_json) == source.events[e.event_id]
        assert e.kind == ("alert" if e.topic == alerts else "compliance")
        assert e.offset > last_offset.get((e.topic, e.partition), -1), "entries out of source order"
        last_offset[(e.topic, e.partition)] = e.offset
    replays = len(source.delivered) - len(set(source.events))
    assert replays > 0 and len(entries) == len(source.delivered) - replays
