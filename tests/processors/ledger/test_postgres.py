"""The PostgreSQL backend behaves as the SQLite one: same chain, same verify, same guards,
and the sink writes to it when CITYMESH_LEDGER_URL points at a server (see conftest.py for
where the server comes from)."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time

from confluent_kafka.admin import AdminClient

from processors.ledger import Ledger, open_store
from processors.ledger.audit import verify
from streams import keyring, topics
from streams.admin import TopicSpec, ensure_topics

from tests.processors.ledger.helpers import Tamper, build_ledger, incoming, make_event
from tests.processors.ledger.test_sink_crash import EventSource, start_sink


def test_postgres_chain_guards_and_tamper_detection(pg, operator, attacker):
    import psycopg
    base = pg.create()
    with open_store(pg.url(base)) as store:
        recs = build_ledger(store, operator, 120, seed=8, every=20)
        again = Ledger(store, operator, 20).append(recs[:50])
        assert again.total == 0 and again.fenced == 50
        report = verify(store, [operator.public_key_hex])
        assert report.ok and report.height == 120 and report.last_checkpoint_seq == 120, report.summary()
        replay = incoming("Alert", _first_alert(recs), "cm.alerts", 9, 0)  # same id, unseen coordinates
        dup = Ledger(store, operator, 20).append([replay])
        assert dup.duplicates == 1 and dup.total == 0

    rng = random.Random(77)
    misses, applied = [], 0
    while applied < 30:
        name = pg.create(template=base)
        with psycopg.connect(pg.url(name)) as conn:
            m = Tamper(conn, "%s", psycopg.IntegrityError, attacker, byte_level=False).apply(rng)
        if m is None:
            continue
        applied += 1
        with open_store(pg.url(name), create=False) as store:
            p = verify(store, [operator.public_key_hex] if m.trusted_key else None).problem
        if p is None or p.seq != m.seq or p.reason not in m.reasons:
            misses.append((m, p))
    assert not misses, misses[:5]


def _first_alert(recs):
    """The first alert of the ledger as a record (so re-appending it is a replay)."""
    return json.loads(next(r for r in recs if r.kind == "alert").event_json)


def test_concurrent_writers_never_fork_the_chain(pg, operator):
    url = pg.url(pg.create())
    open_store(url).close()
    rng = random.Random(3)
    # each writer its own source partition, so neither is fenced by the other's positions
    per_writer = [[[incoming(*make_event(rng, w * 1000 + i, 1_700_000_000_000 + i), f"t{w}", 0, i)
                    for i in range(b * 5, b * 5 + 5)] for b in range(30)] for w in range(2)]

    gate, errors = threading.Barrier(2), []

    def write(my_batches):
        try:
            with open_store(url) as store:
                ledger = Ledger(store, operator, 25)
                gate.wait(10)
                for batch in my_batches:
                    ledger.append(batch)
        except Exception as exc:  # surfaced below: a writer that died would just look like fewer entries
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(per_writer[w],)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with open_store(url, create=False) as store:
        report = verify(store, [operator.public_key_hex])
        assert report.ok and report.height == 300, report.summary()


def test_sink_writes_to_postgres_from_the_environment(pg, tmp_path, client_config, bootstrap, unique):
    url = pg.url(pg.create())
    compliance, alerts = f"{topics.COMPLIANCE}.p{unique}", f"{topics.ALERTS}.p{unique}"
    ensure_topics(AdminClient(client_config), [TopicSpec(compliance, 2), TopicSpec(alerts, 1)])
    ring, _ = keyring.create(tmp_path / "keys", f"op-{unique}")
    env = {**os.environ, "CITYMESH_BOOTSTRAP": bootstrap, "CITYMESH_STATE_DIR": str(tmp_path / "state"),
           "CITYMESH_LEDGER_URL": url}
    env.pop("CITYMESH_OPERATOR", None)
    source = EventSource(client_config, compliance, alerts, bursts=3, per_burst=150, pause_s=0.0, seed=4)
    source.run()
    proc, _ = start_sink(env, f"{compliance},{alerts}", tmp_path / "sink.log", "--keyring",
                         str(tmp_path / "keys" / f"op-{unique}.json"))
    try:
        deadline, ends = time.monotonic() + 30, source.ends()
        with open_store(url, create=False) as store:
            while store.offsets() != ends and time.monotonic() < deadline:
                time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (tmp_path / "state" / "ledger.sqlite").exists(), "wrote to SQLite despite CITYMESH_LEDGER_URL"
    with open_store(url, create=False) as store:
        report = verify(store, [ring.public_key_hex])
        assert report.ok and report.last_checkpoint_seq == report.height, report.summary()
        ids = [e.event_id for e in store.entries()]
    assert sorted(ids) == sorted(source.events)
