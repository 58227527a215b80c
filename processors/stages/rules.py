"""The rules stage: operator rules on admitted records; hits become Alerts on cm.alerts.

Runs once per partition slice of a batch, after admission and before the contracts, so every
admitted record is checked in the same pass that delivers it. A hit never changes delivery;
it is evidence for the operator and the regulator. The sinks stage writes the alerts.

Rules come from cm.control.rules (written by `citymesh apply`, topology/rules.py) and are
HOT-RELOADED: a dedicated consumer follows the compacted topic and each batch takes whatever
it has already fetched (a zero-wait call, no broker round trip), so a change applies from the
first batch after it arrives, typically within a fetch wait (~100 ms). Unlike a contract
revocation this is not synchronised with the data: rules are a watch list, not access control.
A product without rules costs one zero-wait poll and one attribute test per slice.

Exactly-once across a SIGKILL, like every other output (processors/fencing.py), with one
difference: alerts are keyed by their subject (the drone, the work order) so that all hits of
one subject reach one partition of cm.alerts, which the compliance app's incident table needs.
Alerts of one source partition therefore spread over several output partitions, and an offset
fence per output cannot tell two hits on the same record apart. So alerts are fenced by id:
the id is a hash of product, rule, subject and the source position (policy_enforcer.rules.
alert_record), the same whenever the record is evaluated again, and carries the batch headers
the compliance events carry. On (re)assignment of partition p, `recover` reads the tail of
every cm.alerts partition back to the committed batch and collects the ids already written
about p; a replayed batch skips exactly those. The scan stops at the first alert of an older
batch of p, or at records older than the first uncommitted source record (less a clock-skew
margin), so it stays short even when p has raised no alert for a long time.

Alert.time_ms is the record's event time (the product's event_time_field) when it has one,
else the batch's processing time: the compliance app folds hits into incidents by time_ms, so
incidents follow what happened in the air, and a replay yields the same alerts.

Repeated hits of one rule on one subject are folded into episodes (raised, a reminder at most
every `remind_every`, cleared after `clear_after` without a hit; policy_enforcer/alert_fold.py),
configured per product by the rules' `fold` (off: one alert per hit). The episodes are this
stage's per-partition state, persisted with the offsets, so a replay folds the same way.
"""

from __future__ import annotations

import json
import logging
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from prometheus_client import Counter

import policy_enforcer
import schemas
from policy_enforcer.alert_fold import REMINDER, AlertFold, Folded, FoldTerms
from policy_enforcer.rules import RuleSet, alert_record, compile_rules
from streams import topics

from ..evidence import event_id
from ..fencing import FenceReader
from .base import PartitionSlice, Stage

log = logging.getLogger("citymesh.alerts")

SKEW_MARGIN_MS = 300_000  # provider clocks may run ahead of the runner's by this much
ALERTS_RAISED = Counter("citymesh_runner_alerts_total", "Operator-rule hits written to cm.alerts",
                        ["product", "rule", "severity"])


class RulesFeed:
    """Follows cm.control.rules for one product: `initial()` reads it to its end, `poll()` takes
    what the consumer has fetched meanwhile without waiting."""

    def __init__(self, client_config: dict, product_id: str):
        self.product_id = product_id
        self._schema = schemas.load("OperatorRules")
        self._consumer = Consumer({**client_config, "group.id": f"citymesh-rules-feed-{product_id}",
                                   "enable.auto.commit": False, "enable.partition.eof": False,
                                   "fetch.wait.max.ms": 100})
        md = self._consumer.list_topics(topics.CONTROL_RULES, timeout=10).topics.get(topics.CONTROL_RULES)
        self._parts = [] if md is None or md.error is not None else \
            [TopicPartition(topics.CONTROL_RULES, p, OFFSET_BEGINNING) for p in md.partitions]

    def initial(self, timeout_s: float = 10.0) -> dict | None:
        """The product's current rules record (None when it has none), read to the end."""
        from streams.offsets import end_offsets, take
        if not self._parts:
            return None
        ends = {p: hi for (_, p), (lo, hi) in end_offsets(self._consumer, self._parts, timeout_s).items() if hi > lo}
        self._consumer.assign(self._parts)
        latest, deadline = None, time.monotonic() + timeout_s
        while ends and time.monotonic() < deadline:
            for m in take(self._consumer, 1000, 0.2):
                if m.error():
                    continue
                latest = self._take(m, latest)
                if m.offset() + 1 >= ends.get(m.partition(), 0):
                    ends.pop(m.partition(), None)
        if ends:
            raise TimeoutError(f"could not read {topics.CONTROL_RULES} to its end within {timeout_s:.0f}s")
        return latest

    def _take(self, m, current):
        if m.key() != self.product_id.encode():
            return current
        return {"tombstone": True} if m.value() is None else self._schema.decode(m.value())

    def poll(self) -> dict | None:
        """The newest rules record fetched since the last call, or None when nothing changed."""
        if not self._parts:
            return None
        latest = None
        for m in self._consumer.consume(100, 0):
            if not m.error():
                latest = self._take(m, latest)
        return latest

    def close(self) -> None:
        self._consumer.close()


def compile_record(rec: dict | None, schema: schemas.RecordSchema) -> RuleSet | None:
    """A cm.control.rules record compiled for `schema`; None for no rules (or a tombstone)."""
    if rec is None or rec.get("tombstone"):
        return None
    rules = compile_rules(json.loads(rec["rules_json"]), schema, json.loads(rec["zones_json"]),
                          json.loads(rec["authorisations_json"]))
    return rules if len(rules) else None


class Rules(Stage):
    name = "rules"

    def __init__(self, product_id: str, schema: schemas.RecordSchema, raw_topic: str, event_time_field: str | None,
                 fence_reader: FenceReader, alert_partitions: int, feed: RulesFeed | None = None):
        """`alert_partitions`: cm.alerts' partition count, which `assign` scans with `fence_reader`.
        `feed`: the product's rules as they change (the runner's); without one, the rules are
        what `install` was last given. Neither is read here, so the stage is built without a broker."""
        self.product_id = product_id
        self.schema = schema
        self.raw_topic = raw_topic
        self.event_time_field = event_time_field if event_time_field in schema.field_names else None
        self._reader = fence_reader
        self._feed = feed
        self.rules: RuleSet | None = None
        self._fenced: dict[int, set[str]] = {}  # source partition -> ids written before a restart
        self._pending: dict[int, int] = {}  # source partition -> committed offset, while no rules
        self._folds: dict[int, AlertFold] = {}  # source partition -> its episodes of hits
        self.fold_terms = FoldTerms()
        self._alert_partitions = alert_partitions
        self.raised = 0
        self.fenced = 0
        self.install(feed.initial() if feed is not None else None)

    def install(self, rec: dict | None) -> None:
        """Take a cm.control.rules record into effect (None or a tombstone: no rules)."""
        self.fold_terms = FoldTerms.from_dict(json.loads(rec.get("fold_json") or "{}") if rec and not
                                              rec.get("tombstone") else None)
        for fold in self._folds.values():  # episodes under way go on with the new terms
            fold.terms = self.fold_terms
        try:
            self.rules = compile_record(rec, self.schema)
        except (policy_enforcer.PolicyError, ValueError, KeyError) as exc:  # applied rules are validated; be safe
            log.error("operator rules of %s do not compile, none enforced: %s", self.product_id, exc)
            self.rules = None
        log.info("operator rules of %s: %s", self.product_id, self.rules.rule_ids if self.rules else "none")

    def revoke(self, p: int) -> None:
        self._fenced.pop(p, None)
        self._pending.pop(p, None)
        self._folds.pop(p, None)

    def assign(self, p: int, committed: int) -> None:
        """Collect the ids of alerts a previous owner of source partition p wrote beyond `committed`.

        With no rules there is nothing to raise again, so nothing to look for (the scan of the
        alerts topic is a start-up cost of every runner): it is done when rules arrive."""
        self._fenced.pop(p, None)
        self._pending.pop(p, None)
        if self.rules is None:
            self._pending[p] = committed
            return
        reader = self._reader
        ts = reader.timestamp_at(self.raw_topic, p, committed)
        if ts is None:  # nothing beyond the committed offset was ever consumed: nothing to fence
            return
        ids: set[str] = set()
        for q in range(self._alert_partitions):
            ids |= reader.ids_since(topics.ALERTS, q, self.raw_topic, p, committed, ts - SKEW_MARGIN_MS)
        if ids:  # kept until p is assigned again: a handful of ids, looked up per hit only
            self._fenced[p] = ids
            log.warning("partition %d: %d alert(s) already written before the restart will be skipped", p, len(ids))

    def process(self, s: PartitionSlice) -> None:
        """The alerts of the rule hits on the admitted records of one partition slice, folded
        per rule and subject (policy_enforcer/alert_fold.py), except those a crashed owner
        already wrote."""
        rec = self._feed.poll() if self._feed is not None else None
        if rec is not None:
            self.install(rec)
        rules, good, p = self.rules, s.good, s.p
        if rules is None or not good:
            return
        if p in self._pending:  # rules came after the partition did
            self.assign(p, self._pending[p])
        hits = rules.evaluate([g.record for g in good], s.now_ms)
        etf = self.event_time_field
        times = [g.record.get(etf) or s.now_ms for g in good] if etf else [s.now_ms] * len(good)
        folded = self._fold(p).fold(hits, times)
        fenced_ids = self._fenced.get(p, ())
        for f in folded:
            g = good[f.at]
            alert = self._alert_of(f, p, g.offset)
            if alert["alert_id"] in fenced_ids:
                self.fenced += 1
                continue
            ALERTS_RAISED.labels(self.product_id, f.key[0], alert["severity"]).inc()
            s.alerts.append((alert, f.key[1].encode(), g.offset))
            self.raised += 1

    def _alert_of(self, f: Folded, p: int, offset: int) -> dict:
        src = self.raw_topic
        if f.hit is not None:
            alert = alert_record(f.hit, self.product_id, f.time_ms, src, p, offset)
            if f.phase == REMINDER:
                alert["message"] = f"still ({f.count} hit(s) since the last alert): {alert['message']}"
        else:
            rule, subject = f.key
            alert = {"alert_id": event_id("alert-cleared", self.product_id, rule, subject, src, p, offset),
                     "time_ms": f.time_ms, "rule_id": rule, "severity": f.severity, "product_id": self.product_id,
                     "subject": subject, "evidence": {},
                     "message": f"cleared: no {rule} hit on {subject} for "
                                f"{self.fold_terms.clear_after_ms // 1000} s (the last at {f.last_seen_ms})",
                     "source_topic": src, "source_partition": p, "source_offset": offset, "escalated": False,
                     "incident_id": None}
        alert["evidence"] = {**alert["evidence"], "phase": f.phase}
        alert.update(count=f.count, first_seen_ms=f.first_seen_ms, last_seen_ms=f.last_seen_ms)
        return alert

    def _fold(self, p: int) -> AlertFold:
        fold = self._folds.get(p)
        if fold is None:
            fold = self._folds[p] = AlertFold(self.fold_terms)
        return fold

    # the folding state goes with the offsets (processors/partition_state.py)
    def snapshot(self, p: int) -> dict | None:
        fold = self._folds.get(p)
        return fold.snapshot() if fold is not None else None

    def restore(self, p: int, state: dict) -> None:
        self._fold(p).restore(state)

    def close(self) -> None:
        if self._feed is not None:
            self._feed.close()
