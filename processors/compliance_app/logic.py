"""The app's decisions as plain functions on dicts, so they are exact and testable without Kafka.

The faust agents in `app.py` only move records in and out of tables and topics; whether a hit
opens an incident, when an incident escalates or closes, what a lost link or a surge alert
says and how usage is priced are decided here. Every id is a hash of what it is about, so a
restarted app that re-emits something emits it with the same id and readers de-duplicate.
"""

from __future__ import annotations

import hashlib

APP_RULES = ("uav-lost-link", "hotline-surge")


def det_id(*parts) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:32]


def incident_key(alert: dict) -> str:
    return f"{alert['product_id']}|{alert['rule_id']}|{alert['subject']}"


def step_incident(state: dict | None, alert: dict, recv_ms: int, escalate_ms: int, quiet_ms: int
                  ) -> tuple[dict, bool]:
    """Fold one alert into the incident of its (product, rule, subject); True when it escalates now.

    An alert stands for `count` hits from `first_seen_ms` to `last_seen_ms` (the runner folds
    repeated hits: policy_enforcer/alert_fold.py; one hit when they are absent). Time is the
    hits' own time, so a replayed stream gives the same incidents. Hits starting more than
    `quiet_ms` after the incident's last one start a new incident. An incident escalates once,
    when its hits span at least `escalate_ms`.
    """
    t = alert["time_ms"]
    # a folded alert (policy_enforcer/alert_fold.py) stands for `count` hits over its span
    first, last = alert.get("first_seen_ms") or t, alert.get("last_seen_ms") or t
    if state is None or first - state["last_seen_ms"] > quiet_ms:
        state = {"incident_id": det_id("incident", incident_key(alert), t), "first_seen_ms": t, "last_seen_ms": t,
                 "count": 0, "escalated": False, "rule_id": alert["rule_id"], "severity": alert["severity"],
                 "product_id": alert["product_id"], "subject": alert["subject"], "message": alert["message"],
                 "evidence": dict(alert.get("evidence") or {})}
    else:
        state = dict(state)
    state["count"] += alert.get("count", 1) if alert.get("count") is not None else 1
    state["last_seen_ms"] = max(state["last_seen_ms"], last)
    state["first_seen_ms"] = min(state["first_seen_ms"], first)
    state["recv_ms"] = recv_ms
    state["evidence"] = dict(alert.get("evidence") or state["evidence"])  # the latest values that broke it
    escalate = not state["escalated"] and state["last_seen_ms"] - state["first_seen_ms"] >= escalate_ms
    if escalate:
        state["escalated"] = True
    return state, escalate


def incident_alert(state: dict, phase: str, now_ms: int) -> dict:
    """The escalated Alert for an incident: phase 'open' when it escalates, 'closed' after the quiet period."""
    duration_s = (state["last_seen_ms"] - state["first_seen_ms"]) // 1000
    return {"alert_id": det_id("incident-alert", state["incident_id"], phase, state["count"]), "time_ms": now_ms,
            "rule_id": state["rule_id"], "severity": state["severity"], "product_id": state["product_id"],
            "subject": state["subject"],
            "message": f"{phase}: {state['rule_id']} broken {state['count']} time(s) over {duration_s} s - "
                       f"{state['message']}",
            "evidence": {**state["evidence"], "phase": phase}, "source_topic": None, "source_partition": None,
            "source_offset": None, "escalated": True, "incident_id": state["incident_id"],
            "first_seen_ms": state["first_seen_ms"], "last_seen_ms": state["last_seen_ms"], "count": state["count"]}


def lost_link_alert(product_id: str, serial: str, last: dict, silent_ms: int, now_ms: int) -> dict:
    """No telemetry from an airborne drone: the last fix is the evidence (where to look for it)."""
    return {"alert_id": det_id("lost-link", serial, last["t"]), "time_ms": now_ms, "rule_id": "uav-lost-link",
            "severity": "HIGH", "product_id": product_id, "subject": serial,
            "message": f"no telemetry for {silent_ms // 1000} s from a drone last seen airborne at {last['h']} m",
            "evidence": {"last_seen_ms": str(last["t"]), "height_agl_m": str(last["h"]), "lat": str(last["lat"]),
                         "lon": str(last["lon"]), "flight_id": str(last["flight"]), "silent_s": str(silent_ms // 1000)},
            "source_topic": last.get("topic"), "source_partition": last.get("partition"),
            "source_offset": last.get("offset"), "escalated": False, "incident_id": None,
            "first_seen_ms": last["t"], "last_seen_ms": last["t"], "count": 1}


def surge_alert(product_id: str, category: str, category_name: str, district: str, count: int, limit: int,
                window_start_ms: int, window_end_ms: int, now_ms: int) -> dict:
    return {"alert_id": det_id("surge", category, district, window_start_ms), "time_ms": now_ms,
            "rule_id": "hotline-surge", "severity": "MEDIUM", "product_id": product_id,
            "subject": f"{district}/{category}",
            "message": f"more than {limit} '{category_name}' tickets in {district} within one window",
            "evidence": {"category_code": category, "category_name": category_name, "district": district,
                         "count": str(count), "max": str(limit), "window_start_ms": str(window_start_ms),
                         "window_end_ms": str(window_end_ms)},
            "source_topic": None, "source_partition": None, "source_offset": None, "escalated": False,
            "incident_id": None, "first_seen_ms": window_start_ms, "last_seen_ms": window_end_ms, "count": count}


def amount_minor(records: int, price_per_1000_minor: int) -> int:
    """Price of `records` at a price per 1,000 records, in minor units, rounded half up (integers only)."""
    return (records * price_per_1000_minor + 500) // 1000


def usage_record(bucket: dict, contract: dict | None, window_ms: int) -> dict:
    """One UsageRecord: a contract's delivered records and bytes in one window, priced from the contract."""
    price = int(contract.get("price_per_1000_minor", 0)) if contract else 0
    start = bucket["window_start_ms"]
    return {"usage_id": det_id("usage", bucket["contract_id"], start), "contract_id": bucket["contract_id"],
            "contract_version": bucket.get("contract_version"), "consumer_id": bucket["consumer_id"],
            "provider_id": bucket["provider_id"], "product_id": bucket["product_id"], "window_start_ms": start,
            "window_end_ms": start + window_ms, "records": bucket["records"], "bytes": bucket["bytes"],
            "price_per_1000_minor": price, "amount_minor": amount_minor(bucket["records"], price),
            "currency": (contract or {}).get("currency", "CNY")}


def metered(event: dict, window_ms: int) -> dict | None:
    """What a BATCH ComplianceEvent contributes to usage: None for any other event.

    Records are counts['deliver']. Bytes come from details['delivered_bytes'] when the runner
    sets it, else 0.
    """
    if event.get("kind") != "BATCH" or not event.get("contract_id"):
        return None
    try:
        nbytes = int((event.get("details") or {}).get("delivered_bytes", 0))
    except ValueError:
        nbytes = 0
    t = event["time_ms"]
    return {"contract_id": event["contract_id"], "contract_version": event.get("contract_version"),
            "consumer_id": event.get("consumer_id") or "", "provider_id": event.get("provider_id") or "",
            "product_id": event["product_id"], "window_start_ms": t - t % window_ms,
            "records": int((event.get("counts") or {}).get("deliver", 0)), "bytes": nbytes}
