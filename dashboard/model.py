"""What the operations page shows, as plain in-memory state with change tracking (no Kafka here).

Why a model apart from the feeds: the Kafka readers (feeds.py) only fold decoded records in;
the web server only reads snapshots and drains changes. That keeps the rules the page is
judged by — when a drone is red, when an alert is open, what a surge is, when a feed is
"silent" — in one place that a unit test can drive with dicts.

Threads: every feed thread and the server's flusher call into one `Model`; a single lock
guards it. Work under the lock is a few dict operations per record, so at 1,000 drone
updates/s it costs well under a millisecond per batch.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

# how long an alert's subject stays "open" after its last hit when no closing record comes
ALERT_OPEN_S = 120.0
# a drone not heard of for this long is dropped from the map (it landed or left coverage)
DRONE_FORGET_S = 300.0
# hotline buckets: one minute each, the page shows the last HOTLINE_BUCKETS of them
HOTLINE_BUCKET_MS = 60_000
HOTLINE_BUCKETS = 30
# a category is surging when its newest bucket holds >= SURGE_MIN tickets and >= SURGE_FACTOR
# times the mean of the buckets before it (a plain, explainable rule; the faust app's
# hotline-surge alerts arrive on the alert feed independently)
SURGE_FACTOR = 3.0
SURGE_MIN = 5
# drone fields sent with every position update; the full record is fetched on click
_TRACK_FIELDS = ("lat", "lon", "height_agl_m", "heading_deg", "speed_h_mps")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Feed:
    """Health of one input: the page says "no data since HH:MM:SS" from these, never guesses."""

    name: str
    up: bool = False
    last_record_ms: int | None = None
    last_ok_ms: int | None = None  # last successful poll, with or without records
    error: str | None = None
    down_since_ms: int | None = None
    records: int = 0

    def view(self) -> dict:
        return {"name": self.name, "up": self.up, "last_record_ms": self.last_record_ms,
                "last_ok_ms": self.last_ok_ms, "error": self.error, "down_since_ms": self.down_since_ms,
                "records": self.records}


@dataclass
class Incident:
    """Alerts grouped by (product, rule, subject): one line in the alert feed."""

    key: str
    rule_id: str
    severity: str
    product_id: str
    subject: str
    message: str
    first_ms: int
    last_ms: int
    count: int
    alert_id: str  # the newest alert, for the ledger evidence link
    escalated: bool = False
    closed: bool = False
    recv_ms: int = field(default_factory=now_ms)
    source: str | None = None
    alert_time_ms: int = 0

    def is_open(self, at_ms: int) -> bool:
        return not self.closed and at_ms - self.recv_ms <= ALERT_OPEN_S * 1000

    def view(self, at_ms: int) -> dict:
        return {"key": self.key, "rule": self.rule_id, "severity": self.severity, "product": self.product_id,
                "subject": self.subject, "message": self.message, "start_ms": self.first_ms,
                "last_ms": self.last_ms, "count": self.count, "alert_id": self.alert_id,
                "escalated": self.escalated, "open": self.is_open(at_ms), "source": self.source,
                "alert_time_ms": self.alert_time_ms}


class Model:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.drones: dict[str, dict] = {}       # serial -> latest delivered record (what the contract allows)
        self.drone_seen: dict[str, int] = {}     # serial -> wall ms of the last update
        self.drone_contract: dict[str, str] = {}
        self.incidents: dict[str, Incident] = {}
        self.hot_subjects: dict[str, int] = {}   # subject -> number of open incidents (drone colouring)
        self.hotline: dict[int, dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
        self.category_names: dict[str, str] = {}
        self.contracts: dict[str, dict] = {}     # contract -> {delivered, dropped, throttled, rejected, product}
        self.breakers: dict[str, dict] = {}      # subject -> {kind, state, since_ms, reason}
        self.runners: dict[str, dict] = {}       # product -> {lag, rate, committed, end, status, since_ms}
        self.feeds: dict[str, Feed] = {}
        self.info: dict = {}
        self.reviews: dict[str, dict] = {}       # providerPid -> a DSP request waiting for the operator (审核)
        self._changed_drones: set[str] = set()
        self._changed: set[str] = set()          # panels to resend: alerts, hotline, mesh, feeds

    # -- feeds
    def feed(self, name: str) -> Feed:
        f = self.feeds.get(name)
        if f is None:
            f = self.feeds[name] = Feed(name)
        return f

    def feed_ok(self, name: str, records: int = 0) -> None:
        with self.lock:
            f, t = self.feed(name), now_ms()
            changed = not f.up
            f.up, f.error, f.down_since_ms, f.last_ok_ms = True, None, None, t
            if records:
                f.records += records
                f.last_record_ms = t
            if changed or records:
                self._changed.add("feeds")

    def feed_down(self, name: str, error: str) -> None:
        with self.lock:
            f = self.feed(name)
            if f.up or f.down_since_ms is None:
                f.down_since_ms = now_ms()
            f.up, f.error = False, error[:300]
            self._changed.add("feeds")

    # -- drones
    def drone_update(self, contract_id: str, record: dict) -> None:
        serial = record.get("serial_number")
        if not serial:
            return
        with self.lock:
            self.drones[serial] = record
            self.drone_seen[serial] = now_ms()
            self.drone_contract[serial] = contract_id
            self._changed_drones.add(serial)

    def drone_record(self, serial: str) -> dict | None:
        with self.lock:
            rec = self.drones.get(serial)
            if rec is None:
                return None
            return {"serial_number": serial, "contract": self.drone_contract.get(serial),
                    "received_ms": self.drone_seen.get(serial), "alert": self.hot_subjects.get(serial, 0) > 0,
                    "record": dict(rec)}

    def _track(self, serial: str) -> list:
        r = self.drones[serial]
        return [serial, *(r.get(k) for k in _TRACK_FIELDS), 1 if self.hot_subjects.get(serial) else 0,
                self.drone_seen.get(serial)]

    # -- alerts
    def alert(self, a: dict, written_ms: int | None = None) -> None:
        """Fold one Alert in; `written_ms` (when read from the backlog at start) stands for the receive time."""
        key = f"{a['product_id']}|{a['rule_id']}|{a['subject']}"
        phase = (a.get("evidence") or {}).get("phase")
        with self.lock:
            t = written_ms or now_ms()
            inc = self.incidents.get(key)
            first = a.get("first_seen_ms") or a["time_ms"]
            last = a.get("last_seen_ms") or a["time_ms"]
            ended = phase in ("closed", "cleared")  # the app's incident closed / the runner's episode cleared
            if inc is None or (not inc.is_open(t) and not ended):
                inc = self.incidents[key] = Incident(key, a["rule_id"], a["severity"], a["product_id"], a["subject"],
                                                     a["message"], first, last, 0, a["alert_id"])
            if a.get("escalated"):
                inc.count = max(inc.count, int(a.get("count") or 1))  # the app's count covers the hits
                inc.escalated = True
            else:
                inc.count += int(a.get("count") or 1)
            inc.first_ms, inc.last_ms = min(inc.first_ms, first), max(inc.last_ms, last)
            inc.severity = max(inc.severity, a["severity"], key=_severity_rank)
            inc.message, inc.alert_id, inc.recv_ms = a["message"], a["alert_id"], t
            inc.source = a.get("source_topic")
            inc.closed = ended
            inc.alert_time_ms = a["time_ms"]
            self._recount_subject(a["subject"], now_ms())
            self._changed.add("alerts")

    def _recount_subject(self, subject: str, t: int) -> None:
        n = sum(1 for i in self.incidents.values() if i.subject == subject and i.is_open(t))
        before = self.hot_subjects.get(subject, 0)
        if n:
            self.hot_subjects[subject] = n
        else:
            self.hot_subjects.pop(subject, None)
        if bool(n) != bool(before) and subject in self.drones:
            self._changed_drones.add(subject)

    def expire(self) -> None:
        """Close incidents whose quiet period passed and forget drones long gone (called ~1/s)."""
        with self.lock:
            t = now_ms()
            for subject in [s for s in self.hot_subjects]:
                self._recount_subject(subject, t)
            gone = [s for s, seen in self.drone_seen.items() if t - seen > DRONE_FORGET_S * 1000]
            for s in gone:
                self.drones.pop(s, None)
                self.drone_seen.pop(s, None)
                self._changed_drones.discard(s)
            if gone:
                self._changed.add("gone:" + ",".join(gone))
            if len(self.incidents) > 2000:  # keep the newest; the ledger has them all
                for k, _ in sorted(self.incidents.items(), key=lambda kv: kv[1].recv_ms)[:len(self.incidents) - 2000]:
                    del self.incidents[k]

    # -- hotline
    def ticket(self, r: dict) -> None:
        bucket = (r.get("call_time") or now_ms()) // HOTLINE_BUCKET_MS * HOTLINE_BUCKET_MS
        cat = r.get("category_code") or "?"
        with self.lock:
            self.category_names[cat] = r.get("category_name") or cat
            self.hotline[bucket][(cat, r.get("district") or "—")] += 1
            if len(self.hotline) > HOTLINE_BUCKETS * 4:
                for b in sorted(self.hotline)[:len(self.hotline) - HOTLINE_BUCKETS * 2]:
                    del self.hotline[b]
            self._changed.add("hotline")

    def _hotline_view(self) -> dict:
        buckets = sorted(self.hotline)[-HOTLINE_BUCKETS:]
        series: dict[str, list[int]] = defaultdict(lambda: [0] * len(buckets))
        by_district: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for i, b in enumerate(buckets):
            for (cat, district), n in self.hotline[b].items():
                series[cat][i] += n
                by_district[cat][district] += n
        rows = []
        for cat, s in series.items():
            prev = s[:-1]
            mean = sum(prev) / len(prev) if prev else 0.0
            surge = s[-1] >= SURGE_MIN and s[-1] >= SURGE_FACTOR * max(mean, 1.0)
            rows.append({"category": cat, "name": self.category_names.get(cat, cat), "series": s,
                         "total": sum(s), "districts": dict(by_district[cat]), "surge": surge})
        rows.sort(key=lambda r: (-r["surge"], -r["total"]))
        return {"buckets": buckets, "rows": rows[:20]}

    # -- the operator's review of DSP requests (cm.control.negotiations)
    def negotiation(self, n: dict) -> None:
        """A negotiation record: listed while it waits for the operator's approval, dropped after."""
        waiting = n["side"] == "PROVIDER" and n["state"] == "REQUESTED" and "operator" in n["needs"]
        with self.lock:
            if waiting:
                self.reviews[n["negotiation_id"]] = {
                    "id": n["negotiation_id"], "product": n["product_id"], "offer": n["offer_id"].rsplit(":", 1)[-1],
                    "consumer": n["consumer_id"], "provider": n["provider_id"], "purposes": n["purposes"],
                    "needs": n["needs"], "why": n["reason"], "since_ms": n["created_ms"]}
            elif self.reviews.pop(n["negotiation_id"], None) is None:
                return
            self._changed.add("reviews")

    def _reviews_view(self) -> list[dict]:
        return sorted(self.reviews.values(), key=lambda r: r["since_ms"])

    # -- mesh
    def compliance(self, e: dict) -> None:
        kind, contract = e["kind"], e.get("contract_id")
        with self.lock:
            if kind == "BREAKER":
                subject = contract or e["product_id"]
                reason = e.get("reason") or ""
                state = reason.rsplit("->", 1)[-1].strip() or "?"
                self.breakers[subject] = {"kind": (e.get("rule") or "breaker").split(":")[-1], "subject": subject,
                                          "state": state, "since_ms": e["time_ms"], "reason": reason}
            if contract is None and kind not in ("REJECT", "QUARANTINE"):
                self._changed.add("mesh")
                return
            c = self.contracts.setdefault(contract or f"({e['product_id']})", {
                "product": e["product_id"], "delivered": 0, "dropped": 0, "throttled": 0, "rejected": 0,
                "last_ms": None})
            for k, n in (e.get("counts") or {}).items():
                decision, _, rule = k.partition(":")
                if decision == "deliver":
                    c["delivered"] += n
                elif decision in ("reject", "quarantine"):
                    c["rejected"] += n
                elif decision in ("throttle", "quota") or kind in ("RATE_LIMIT", "QUOTA") or "quota" in rule \
                        or "rate" in rule:
                    c["throttled"] += n
                else:
                    c["dropped"] += n
            c["last_ms"] = e["time_ms"]
            self._changed.add("mesh")

    def runner_progress(self, product: str, committed: int, end: int, group_known: bool) -> None:
        """Lag and throughput of one product's runner group from committed vs. end offsets."""
        with self.lock:
            t = now_ms()
            r = self.runners.setdefault(product, {"product": product, "committed": committed, "end": end, "rate": 0.0,
                                                  "lag": 0, "status": "?", "since_ms": t, "advanced_ms": t,
                                                  "_t": t})
            dt = (t - r["_t"]) / 1000
            if committed > r["committed"]:
                r["advanced_ms"] = t
            if dt > 0:
                r["rate"] = round(max(0, committed - r["committed"]) / dt, 1)
            lag = max(0, end - committed) if group_known else end
            status = ("no group" if not group_known else "ok" if lag == 0 or t - r["advanced_ms"] < 10_000
                      else "stalled")
            if status != r["status"]:
                r["status"], r["since_ms"] = status, (r["advanced_ms"] if status == "stalled" else t)
            r.update(committed=committed, end=end, lag=lag, _t=t)
            self._changed.add("mesh")

    def _mesh_view(self) -> dict:
        return {"contracts": [{"contract": k, **v} for k, v in sorted(self.contracts.items())],
                "breakers": sorted(self.breakers.values(), key=lambda b: b["subject"]),
                "runners": [{k: v for k, v in r.items() if not k.startswith("_")}
                            for _, r in sorted(self.runners.items())]}

    # -- what the server sends
    def snapshot_view(self) -> dict:
        """The whole page state, for a browser that (re)connects; pending changes stay for the others."""
        with self.lock:
            t = now_ms()
            return {"t": t, "info": self.info, "drones": [self._track(s) for s in self.drones],
                    "alerts": self._alerts_view(t), "hotline": self._hotline_view(), "mesh": self._mesh_view(),
                    "reviews": self._reviews_view(), "feeds": [f.view() for f in self.feeds.values()]}

    def _alerts_view(self, t: int) -> list[dict]:
        incs = sorted(self.incidents.values(), key=lambda i: (not i.is_open(t), -i.recv_ms))[:100]
        return [i.view(t) for i in incs]

    def drain(self) -> dict | None:
        """Everything that changed since the last call, or None: one SSE message per flush."""
        with self.lock:
            if not self._changed_drones and not self._changed:
                return None
            t = now_ms()
            out: dict = {"t": t}
            if self._changed_drones:
                out["drones"] = [self._track(s) for s in self._changed_drones if s in self.drones]
                self._changed_drones.clear()
            gone = [c for c in self._changed if c.startswith("gone:")]
            if gone:
                out["gone"] = [s for c in gone for s in c[5:].split(",")]
            if "alerts" in self._changed:
                out["alerts"] = self._alerts_view(t)
            if "hotline" in self._changed:
                out["hotline"] = self._hotline_view()
            if "mesh" in self._changed:
                out["mesh"] = self._mesh_view()
            if "reviews" in self._changed:
                out["reviews"] = self._reviews_view()
            if "info" in self._changed:
                out["info"] = self.info
            if "feeds" in self._changed:
                out["feeds"] = [f.view() for f in self.feeds.values()]
            self._changed.clear()
            return out


def _severity_rank(s: str) -> int:
    return ("INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL").index(s) if s in ("INFO", "LOW", "MEDIUM", "HIGH",
                                                                           "CRITICAL") else 0
