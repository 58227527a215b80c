"""The compliance app end to end: records in on the real topics, Alerts and UsageRecords out.

The escalation feed runs in a background thread for its 33 s while the other tests use the
same app, so the module stays well under a minute and a half.
"""

from __future__ import annotations

import threading
import time
import urllib.request

import pytest
from confluent_kafka import Producer

import schemas
from tests.mesh_fixtures import read_topic
from tests.processors.test_runner_crash import wait_caught_up
from processors.compliance_app import bills, format_bills
from processors.compliance_app.logic import amount_minor
from streams import topics

ALERT = schemas.load("Alert")
EVENT = schemas.load("ComplianceEvent")


def producer(client: dict) -> Producer:
    return Producer({**client, "linger.ms": 5})


def app_alerts(app, predicate, expect: int | None = None, timeout_s: float = 30.0) -> list[dict]:
    """Alerts on cm.alerts matching predicate, polling until `expect` are there (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [a for a in (ALERT.decode(m.value()) for m in read_topic(app.client, topics.ALERTS, settle_s=0.3))
                 if predicate(a)]
        if expect is None or len(found) >= expect or time.monotonic() > deadline:
            return found
        time.sleep(1.0)


def hit(app, subject: str, t_ms: int, n: int, rule: str = "uav-height-120") -> dict:
    return {"alert_id": f"{subject}-{n}", "time_ms": t_ms, "rule_id": rule, "severity": "HIGH",
            "product_id": f"{app.u}-uav", "subject": subject, "message": "LIGHT UAV at 130 m",
            "evidence": {"height_agl_m": "130"}, "source_topic": None, "source_partition": None,
            "source_offset": n, "escalated": False, "incident_id": None, "first_seen_ms": None,
            "last_seen_ms": None, "count": 1}


@pytest.fixture(scope="module")
def escalation_feed(app):
    """33 s of one hit per second for drone LONG, and 10 s for drone SHORT (which must not escalate)."""
    long_, short = f"LONG-{app.u}", f"SHORT-{app.u}"
    sent: dict[str, list[int]] = {long_: [], short: []}

    def feed():
        p = producer(app.client)
        for n in range(34):
            now = int(time.time() * 1000)
            for subject in (long_, short) if n < 10 else (long_,):
                p.produce(topics.ALERTS, ALERT.encode(hit(app, subject, now, n)), subject.encode())
                sent[subject].append(now)
            p.flush(5)
            time.sleep(max(0.0, 1.0 - (time.time() * 1000 - now) / 1000))

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    return thread, long_, short, sent


def uav(app, serial: str, t_ms: int, h: float) -> dict:
    return {"serial_number": serial, "uin": "UAS1", "operator_id": "OP1", "uav_class": "LIGHT",
            "flight_id": f"{serial}-1", "timestamp_ms": t_ms, "lat": 22.54, "lon": 113.93, "alt_msl_m": h + 10,
            "height_agl_m": h, "speed_h_mps": 10.0, "speed_v_mps": 0.0, "heading_deg": 90.0, "battery_pct": 80.0,
            "source": "SIMULATOR"}


def test_lost_link_of_an_airborne_drone_only(app, escalation_feed):
    schema = app.delivery_schema(f"{app.u}-op-uav")
    topic = topics.delivery(f"{app.u}-op-uav")
    p = producer(app.client)
    flying, landed = f"FLY-{app.u}", f"LANDED-{app.u}"
    t0 = int(time.time() * 1000)
    for i in range(3):
        p.produce(topic, schema.encode(uav(app, flying, t0 + i * 1000, 80.0 + i)), flying.encode())
        p.produce(topic, schema.encode(uav(app, landed, t0 + i * 1000, 0.0)), landed.encode())
    p.flush(5)
    last_sent = time.time()
    found = app_alerts(app, lambda a: a["rule_id"] == "uav-lost-link" and a["subject"] in (flying, landed),
                       expect=1, timeout_s=30)
    assert [a["subject"] for a in found] == [flying]
    alert = found[0]
    assert alert["evidence"]["last_seen_ms"] == str(t0 + 2000)
    assert alert["evidence"]["height_agl_m"] == "82.0"
    assert alert["product_id"] == f"{app.u}-uav"
    assert alert["time_ms"] / 1000 - last_sent >= 9.5, "reported before 10 s of silence"
    # still exactly one a few seconds later (the timer keeps running)
    time.sleep(2.5)
    again = app_alerts(app, lambda a: a["rule_id"] == "uav-lost-link" and a["subject"] in (flying, landed))
    assert len(again) == 1


def ticket(order: str, t_ms: int, code: str, district: str, status: str = "RECEIVED") -> dict:
    return {"order_no": order, "call_time": t_ms, "category_code": code, "category_name": f"cat {code}",
            "district": district, "status": status, "deadline": t_ms + 86_400_000, "completed_time": None}


def test_hotline_surge_counts_distinct_tickets_per_category_and_district(app, escalation_feed):
    schema = app.delivery_schema(f"{app.u}-op-hotline")
    topic = topics.delivery(f"{app.u}-op-hotline")
    p = producer(app.client)
    window = 600_000
    base = (int(time.time() * 1000) // window) * window + 1000
    district, other = f"D-{app.u}", f"E-{app.u}"
    recs = [ticket(f"{app.u}-A{i}", base + i * 1000, "0101", district) for i in range(21)]       # 21 > 20: surge
    recs += [ticket(f"{app.u}-B{i}", base + i * 1000, "0102", district) for i in range(20)]      # exactly 20: none
    recs += [ticket(f"{app.u}-B{i}", base + i * 1000, "0102", district, "DISPATCHED") for i in range(5)]  # updates
    recs += [ticket(f"{app.u}-C{i}", base + i * 1000, "0101", other) for i in range(15)]         # other district
    recs += [ticket(f"{app.u}-N{i}", base + window + i, "0102", district) for i in range(3)]     # next window
    for r in recs:
        p.produce(topic, schema.encode(r), r["order_no"].encode())
    p.flush(5)
    found = app_alerts(app, lambda a: a["rule_id"] == "hotline-surge" and a["subject"].startswith(("D-", "E-"))
                       and app.u in a["subject"], expect=1, timeout_s=20)
    time.sleep(2)
    found = app_alerts(app, lambda a: a["rule_id"] == "hotline-surge" and app.u in a["subject"])
    assert [(a["subject"], a["evidence"]["count"]) for a in found] == [(f"{district}/0101", "21")]
    assert found[0]["evidence"]["window_start_ms"] == str(base - 1000)


def batch(app, event_id: str, contract: str, product: str, t_ms: int, deliver: int, drops: int = 0,
          kind: str = "BATCH", nbytes: int | None = None) -> dict:
    counts = {"deliver": deliver} if deliver else {}
    if drops:
        counts["drop:constraint:purpose"] = drops
    return {"event_id": event_id, "time_ms": t_ms, "kind": kind, "product_id": product,
            "provider_id": f"{app.u}-skyway", "contract_id": contract, "contract_version": 1,
            "consumer_id": f"{app.u}-buyer", "rule": None, "reason": None, "counts": counts,
            "source_topic": "x", "source_partition": 0, "first_offset": 0, "last_offset": 1, "digest": None,
            "trace_id": None, "details": {} if nbytes is None else {"delivered_bytes": str(nbytes)}}


def test_usage_equals_delivered_counts_exactly_and_bills_follow_prices(app, escalation_feed):
    u = app.u
    hour = 3_600_000
    h0 = 1_790_000_000_000 // hour * hour
    uav_c, tk_c = f"{u}-buy-uav", f"{u}-buy-tickets"
    events = [batch(app, f"{u}-e{i}", uav_c, f"{u}-uav", h0 + i * 60_000, 100 + i, drops=3, nbytes=1000 + i)
              for i in range(30)]
    events += [batch(app, f"{u}-f{i}", uav_c, f"{u}-uav", h0 + hour + i, 7) for i in range(5)]         # next hour
    events += [batch(app, f"{u}-g{i}", tk_c, f"{u}-tickets", h0 + i, 333) for i in range(4)]
    events += [batch(app, f"{u}-z", uav_c, f"{u}-uav", h0 + 5, 0, drops=9)]                             # nothing delivered
    replays = [dict(e) for e in events[:10]] + [dict(events[31])]                                     # same event_ids
    noise = [batch(app, f"{u}-r{i}", uav_c, f"{u}-uav", h0, 50, kind="REJECT") for i in range(3)]
    p = producer(app.client)
    for e in events + replays + noise:
        p.produce(topics.COMPLIANCE, EVENT.encode(e), f"{e['product_id']}:0".encode())
    p.flush(5)
    want = {(uav_c, h0): (sum(100 + i for i in range(30)), sum(1000 + i for i in range(30))),
            (uav_c, h0 + hour): (35, 0), (tk_c, h0): (4 * 333, 0)}
    # the app reads cm.compliance from its start, and in a whole test session the tests before
    # this one have written tens of thousands of events there
    wait_caught_up(app.client, f"cm-test-{u}-metering", topics.COMPLIANCE, 300)

    deadline = time.monotonic() + 30
    while True:
        got = [b for b in bills(app.client, h0, h0 + 2 * hour) if b["consumer_id"] == f"{u}-buyer"]
        lines = {ln["contract_id"]: ln for b in got for ln in b["lines"]}
        if (lines.get(uav_c, {}).get("records") == want[(uav_c, h0)][0] + 35
                and lines.get(tk_c, {}).get("records") == 4 * 333) or time.monotonic() > deadline:
            break
        time.sleep(1)
    usage = {}
    for m in read_topic(app.client, topics.USAGE, settle_s=0.3):
        r = schemas.load("UsageRecord").decode(m.value())
        if r["contract_id"] in (uav_c, tk_c):
            usage[r["usage_id"]] = r  # latest per id wins, as for a compacted table
    per_window = {(r["contract_id"], r["window_start_ms"]): (r["records"], r["bytes"]) for r in usage.values()}
    assert per_window == want
    for r in usage.values():
        assert r["amount_minor"] == amount_minor(r["records"], r["price_per_1000_minor"])
        assert r["price_per_1000_minor"] == {uav_c: 50, tk_c: 200}[r["contract_id"]]
        assert r["window_end_ms"] - r["window_start_ms"] == hour
    [bill] = got
    assert bill["records"] == sum(v[0] for v in want.values())
    assert lines[uav_c]["amount_minor"] == amount_minor(want[(uav_c, h0)][0], 50) + amount_minor(35, 50)
    assert lines[tk_c]["amount_minor"] == amount_minor(4 * 333, 200) == 266
    assert bill["totals_minor"] == {"CNY": lines[uav_c]["amount_minor"] + 266}
    assert bills(app.client, h0 + 2 * hour, h0 + 3 * hour) == [] or all(
        b["consumer_id"] != f"{u}-buyer" for b in bills(app.client, h0 + 2 * hour, h0 + 3 * hour))
    table = format_bills(got)
    assert f"{u}-buy-tickets" in table and "2.66 CNY" in table and "2.00 CNY" in table


def test_a_30s_violation_is_one_escalated_incident(app, escalation_feed):
    thread, long_, short, sent = escalation_feed
    thread.join(60)
    assert not thread.is_alive()
    # the quiet period is 4 s: the closing update follows shortly after the last hit
    found = app_alerts(app, lambda a: a["escalated"] and a["subject"] in (long_, short), expect=2, timeout_s=20)
    assert [a["evidence"]["phase"] for a in found] == ["open", "closed"]
    opened, closed = found
    assert opened["subject"] == closed["subject"] == long_
    assert opened["incident_id"] == closed["incident_id"]
    assert opened["first_seen_ms"] == closed["first_seen_ms"] == sent[long_][0]
    assert opened["last_seen_ms"] - opened["first_seen_ms"] >= 30_000
    assert opened["count"] <= 32
    assert closed["last_seen_ms"] == sent[long_][-1] and closed["count"] == len(sent[long_]) == 34
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{app.metrics_port}/metrics", timeout=5).read().decode()
    assert 'citymesh_alerts_total{rule="uav-height-120",severity="HIGH"}' in metrics
    assert "citymesh_incidents_open 0.0" in metrics
