"""Revocation mid-stream: a provider publishes at 5k records/s, a contract is revoked by
re-applying the topology; no record produced after the revocation was written reaches the
delivery topic, delivery stops exactly at the offsets the CONTRACT_CHANGE event names, and
the runner switches within a second."""

from __future__ import annotations

import signal
import threading
import time

from streams import topics
from tests.mesh_fixtures import CONTRACTS, city_yaml, compliance_events, make_city, publish_paced, read_topic, source_of
from tests.processors.test_runner_crash import spawn_runner, stop, wait_caught_up, wait_for_log

RATE = 5000


def test_revocation_stops_delivery_within_a_second(tmp_path, client_config, unique, bootstrap):
    city = make_city(tmp_path, client_config, unique)
    regulator = f"{city.u}-regulator"
    log_path = tmp_path / "runner.log"
    log_path.touch()
    proc = spawn_runner(city, bootstrap, log_path)
    stop_publishing = threading.Event()
    errors: list[BaseException] = []

    def publish() -> None:
        """RATE records/s, each stamped with the wall clock at publish (= its Kafka timestamp)."""
        try:
            with city.connector() as conn:
                publish_paced(conn, city.product, RATE, stop_publishing, drones=300, seed=21)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    pub = threading.Thread(target=publish, daemon=True)
    try:
        wait_for_log(log_path, "assigned partitions", 0, 40, proc)
        pub.start()
        time.sleep(3.0)
        revoked = CONTRACTS.replace("""    consumer: {u}-regulator
    purposes: [airspace-supervision]""", """    consumer: {u}-regulator
    purposes: [airspace-supervision]
    state: REVOKED""")
        city.apply(city_yaml(city.u, revoked))
        t_revoked = int(time.time() * 1000)  # the revocation is written by now
        time.sleep(2.5)
        stop_publishing.set()
        pub.join(10)
        assert not errors, errors
        wait_caught_up(client_config, f"citymesh-runner.{city.product}", city.raw, 60)
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    finally:
        stop_publishing.set()
        stop(proc)

    raw = read_topic(client_config, city.raw)
    produced_at = {(m.partition(), m.offset()): m.timestamp()[1] for m in raw}
    after = [k for k, ts in produced_at.items() if ts > t_revoked]
    assert len(after) > 5000, "too few records published after the revocation to tell anything"
    delivered = read_topic(client_config, topics.delivery(regulator))
    got = {source_of(m, city.keys): m.timestamp()[1] for m in delivered}
    late = [k for k in got if produced_at[k] > t_revoked]
    assert not late, f"{len(late)} records produced after the revocation was written were delivered"

    change = next(e for e in compliance_events(client_config, city.product)
                  if e["kind"] == "CONTRACT_CHANGE" and e["contract_id"] == regulator and e["rule"] == "state:REVOKED")
    from_offsets = dict(tuple(map(int, x.split(":"))) for x in change["details"]["from_offsets"].split(","))
    # delivery stopped exactly where the event says, and everything before it was delivered
    assert set(got) == {k for k in produced_at if k[1] < from_offsets.get(k[0], 0)}
    switch_ms = change["time_ms"] - t_revoked
    last_write_ms = max(got.values()) - t_revoked  # the runner's produce time of its last delivery
    print(f"revocation written at {t_revoked}; runner applied it {switch_ms:+d} ms later "
          f"(CONTRACT_CHANGE event), last delivery written {last_write_ms:+d} ms after; "
          f"{len(got)} delivered before, {len(produced_at) - len(got)} held back, {len(after)} produced after")
    assert switch_ms <= 1000 and last_write_ms <= 1000
