"""Rate limits, delivery quotas and the provider breaker, applied by the enforcement runner.

The limiters themselves are Kafka-free (policy_enforcer.quota, policy_enforcer.limits);
this module ties them to the runner's partitions, its exactly-once scheme, its evidence
and its metrics.

Where each decision is taken, per source partition p and batch:

1. ingress, `on_excess: hold` (back-pressure): before a batch's new records are
   processed, the records beyond the partition's tokens are not processed at all: the
   runner seeks p back to the first of them and pauses p until the buckets have refilled
   (`hold`). Nothing is lost or written; only timing changes, which is why replays after a
   crash do not need to repeat it.
2. ingress, `on_excess: dlq`, and the breaker: inside the batch (`screen`), records over
   the tokens go to the dead-letter topic (rule ratelimit:ingress); while the breaker is
   open the records go there unprocessed (rule quarantine:breaker-open), half-open lets
   `probe_samples` through. After admission the breaker counts accepted and rejected
   records (`after_admission`).
3. delivery quotas: after each contract's plan, on its outputs (ContractQuota.apply).

Ingress counts each record as of when it entered the broker (its timestamp, capped at the
batch's processing time; the buckets never run backwards), not as of when a runner reads it.
Counted when read, a provider that kept within its limit while no runner read its partition
(a crash, an upgrade, a runner behind) had its backlog held back to the limit's rate on the
way out (`hold`) or sent to the dead-letter topic as excess (`dlq`: 80 % of a backlog written
at half the limit; bench/RESULTS.md, "A backlog within the limit"), although it never
exceeded anything. Raw topics stamp their records on arrival (LogAppendTime,
topology/apply.py), so on Apache Kafka the time is the broker's. A broker that ignores the
setting (the embedded Tansu 0.6) keeps the provider's stamp, its connector's event time:
there a provider that back-dates its records gains at most the time its partition was idle.

Sharded products (processors/sharding.py): every runner group applies the provider's limits
and breaker to the records its own contracts get, so that no contract receives what the
provider was not allowed to send, whichever group enforces it; only the lead group reports
(dead letters, events, counters). Over the limit with `dlq`, the groups decide alike: each
record's time is its own entry time and every group starts its buckets full at the raw
topic's start. Where they can differ: a record stamped after a group's processing time counts
at that time, which is the group's own; a group added later, where retention has removed the
topic's start, may let one burst more through at its first record; `hold` and the breaker
count in processing time, so at their edges the groups may differ by a batch.

Global limits: every product-wide limit is split into fixed per-partition shares (see
policy_enforcer.quota), so what two runner instances let through adds up to at most the
limit whichever partitions each owns, and the state moves with the partition.

Exactly-once and restarts: decisions 2 and 3 depend on the limiter state, and a replayed
batch must decide exactly as the original did (processors/fencing.py). So the state is
persisted *with the offsets* (processors/partition_state.py): `snapshot(p)` after every
batch, `restore(p, state)` of the state that matches the committed offset when p is
assigned, so a restarted owner replays an uncommitted batch with its original processing
time from exactly the state the original started from, taking the same decisions, minting
the same event ids. A restart therefore never resets a quota (a day's count survives;
tokens refill only by elapsed time). Limits changed in the topology take over the old
state where it fits.

Cost: a product with no limits and no quotas never creates any of this (the runner holds
None and tests one attribute per batch).
"""

from __future__ import annotations

import json
import logging
import time

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, TopicPartition

from policy_enforcer.limits import CircuitBreaker
from policy_enforcer.quota import DLQ, HOLD, ContractQuota, IngressLimiter, IngressTerms, PartitionLimits, QuotaTerms

from . import evidence, metrics

log = logging.getLogger("citymesh.limits")

RULE_INGRESS = "ratelimit:ingress"
RULE_QUARANTINE = "quarantine:breaker-open"
THROTTLE_EVENT_EVERY_MS = 10_000


def entry_times(msgs: list, now_ms: int) -> list[int]:
    """When each record entered the broker (ms): its timestamp, or now for a record without
    one. The ingress limits count records at these times, not at the batch's processing time:
    a provider is limited in how fast it writes, not in how fast a runner catching up reads."""
    out = []
    for m in msgs:
        kind, ts = m.timestamp()
        out.append(now_ms if kind == TIMESTAMP_NOT_AVAILABLE else ts)
    return out


def ingress_terms(participant: dict | None, products_of_provider: int) -> IngressTerms | None:
    """The provider's limits, its total split evenly between its products (each product has
    its own runner and raw stream; the split keeps the provider's sum within its limit)."""
    if not participant:
        return None
    d = json.loads(participant.get("limits_json") or "{}")
    if not d:
        return None
    t = IngressTerms.from_dict(d)
    n = max(1, products_of_provider)
    if n > 1:
        t = IngressTerms(t.records_per_s and t.records_per_s / n, t.bytes_per_s and t.bytes_per_s / n,
                         t.burst_ms, t.on_excess, t.breaker)
    return t if (t.limited or t.breaker is not None) else None


class Limiting:
    """The limits of one product on one runner instance: per-partition state (persisted
    under the name "limits", processors/partition_state.py), back-pressure and the events
    of what the limiters did. The ingress stage (processors/stages/ingress.py) and the
    contracts stage (quotas) use it."""

    name = "limits"

    def __init__(self, product: str, provider: str, raw_topic: str, partitions: int,
                 event_time_field: str | None, ingress: IngressTerms | None, reports: bool = True):
        self.product, self.provider, self.raw_topic = product, provider, raw_topic
        # whether the ingress decisions are written as events and counted (False: a sharded
        # product's other groups, which take them for their own contracts without a word)
        self.reports = reports
        self.partitions = partitions
        self.event_time_field = event_time_field
        self.ingress = ingress
        self.quota_terms: dict[str, tuple[QuotaTerms, int, str]] = {}  # contract -> (terms, version, consumer)
        self.parts: dict[int, PartitionLimits] = {}
        self.paused: dict[int, tuple[float, int]] = {}  # p -> (monotonic time to resume, offset to resume at)
        self.throttling: dict[int, list] = {}  # p -> [last event ms, pauses since]

    @property
    def active(self) -> bool:
        return self.ingress is not None or bool(self.quota_terms)

    @property
    def holding(self) -> bool:
        return self.ingress is not None and self.ingress.limited and self.ingress.on_excess == HOLD

    # ---- terms and state ----------------------------------------------------------------

    def set_quotas(self, plans: dict) -> None:
        """Contracts changed: rebuild the quotas of the partitions held, keeping their state."""
        terms = {}
        for cid, ap in plans.items():
            q = ap.contract.get("quota_json")
            if q:
                terms[cid] = (QuotaTerms.from_dict(json.loads(q)), ap.contract["version"], ap.contract["consumer_id"])
        if terms == self.quota_terms:
            return
        self.quota_terms = terms
        for p, part in list(self.parts.items()):
            old = part.snapshot()
            fresh = self._build(p)
            fresh.restore(old)
            self.parts[p] = fresh

    def _build(self, p: int) -> PartitionLimits:
        t = self.ingress
        part = PartitionLimits()
        if t is not None and t.limited:
            part.ingress = IngressLimiter(t, self.partitions, p)
        if t is not None and t.breaker is not None:
            part.breaker = CircuitBreaker(t.breaker)
        for cid, (qt, _, _) in self.quota_terms.items():
            part.quotas[cid] = ContractQuota(qt, self.partitions, p, self.event_time_field)
        return part

    def restore(self, p: int, state: dict) -> None:
        """Partition p's limiters from the state persisted with its committed offset ({}: fresh)."""
        part = self._build(p)
        part.restore(state)
        self.parts[p] = part
        self._gauge(p, part)

    def snapshot(self, p: int) -> dict | None:
        part = self.parts.get(p) if self.active else None
        if part is None:
            return None
        self._gauge(p, part)
        return part.snapshot()

    def forget(self, p: int) -> None:
        self.parts.pop(p, None)
        self.throttling.pop(p, None)
        if self.paused.pop(p, None) is not None:
            metrics.RATELIMIT_PAUSED.labels(self.product).set(len(self.paused))

    def _gauge(self, p: int, part: PartitionLimits) -> None:
        if part.breaker is not None:
            metrics.BREAKER_STATE.labels("provider", f"{self.product}:{p}").set(
                metrics.BREAKER_STATE_VALUE[part.breaker.state])

    # ---- ingress back-pressure ----------------------------------------------------------

    def resume_due(self, consumer) -> None:
        if not self.paused:
            return
        now = time.monotonic()
        due = [p for p, (t, _) in self.paused.items() if t <= now]
        if due:
            consumer.resume([TopicPartition(self.raw_topic, p) for p in due])
            for p in due:
                # seek again: records of p a consume returned while it was paused were dropped
                consumer.seek(TopicPartition(self.raw_topic, p, self.paused.pop(p)[1]))
            metrics.RATELIMIT_PAUSED.labels(self.product).set(len(self.paused))

    def hold(self, consumer, p: int, msgs: list, now_ms: int, events_out: list) -> list:
        """The records of msgs partition p may take now; pauses p and rewinds it to the rest."""
        part = self.parts[p]
        sizes = [len(m.value() or b"") for m in msgs]
        n = part.ingress.grant(now_ms, sizes, entry_times(msgs, now_ms))
        if n == len(msgs):
            self.throttling.pop(p, None)
            return msgs
        rest = msgs[n]
        tp = TopicPartition(self.raw_topic, p, rest.offset())
        consumer.pause([tp])
        consumer.seek(tp)
        # wait for a useful amount (half the burst, or all that is held): resuming for every
        # token would make a flood cost the runner a batch, a flush and a commit per record
        wait = part.ingress.wait_ms(sizes[n], len(msgs) - n)
        self.paused[p] = (time.monotonic() + wait / 1000, rest.offset())
        metrics.RATELIMIT_PAUSED.labels(self.product).set(len(self.paused))
        if not self.reports:
            return msgs[:n]
        metrics.RATELIMIT_THROTTLED.labels(self.product).inc()
        th = self.throttling.get(p)
        if th is None or now_ms - th[0] >= THROTTLE_EVENT_EVERY_MS:
            pauses = 1 + (th[1] if th else 0)
            events_out.append((p, self._event("RATE_LIMIT", now_ms, p, rest.offset(), rest.offset(),
                                              ("throttle", self.product, p, rest.offset()),
                                              rule=RULE_INGRESS, reason="ingress over the provider's limit: "
                                              "partition paused (back-pressure), nothing dropped",
                                              counts={"pause": pauses},
                                              details={"mode": HOLD, "resume_in_ms": str(wait)}), []))
            self.throttling[p] = [now_ms, 0]
        else:
            th[1] += 1
        return msgs[:n]

    # ---- inside a batch -------------------------------------------------------------------

    def screen(self, p: int, part: PartitionLimits, msgs: list, now_ms: int, first: int, last: int,
               events: list) -> list:
        """[(record, rule, reason)] for the dead-letter topic, in offset order; the rest of msgs
        goes on. The records over the limit need not be a suffix: each counts as of when it
        entered the broker, and the buckets refill between them."""
        if not self.reports:
            events = []  # (decided all the same)
        out_dlq: list = []
        within = msgs
        if part.ingress is not None and self.ingress.on_excess == DLQ:
            ok = part.ingress.conforming(now_ms, [len(m.value() or b"") for m in msgs], entry_times(msgs, now_ms))
            if not all(ok):
                within = [m for m, good in zip(msgs, ok) if good]
                out_dlq += [(m, RULE_INGRESS, "over the provider's ingress limit")
                            for m, good in zip(msgs, ok) if not good]
                k = len(out_dlq)
                if self.reports:
                    metrics.RATELIMIT_DROPPED.labels(self.product, "ingress", "drop").inc(k)
                events.append(self._event("RATE_LIMIT", now_ms, p, first, last,
                                          ("ratelimit", self.product, p, first, last), rule=RULE_INGRESS,
                                          reason="ingress over the provider's limit: dropped to the dead-letter topic",
                                          counts={"drop:ratelimit": k}, details={"mode": DLQ}))
        n = len(within)
        take, before, after = part.admit_share(now_ms, n)
        if after is not None:
            events.append(self._transition(now_ms, p, first, last, before, after))
        if take < n:
            k = n - take
            if self.reports:
                metrics.QUARANTINED.labels(self.product).inc(k)
            events.append(self._event("QUARANTINE", now_ms, p, first, last,
                                      ("quarantine", self.product, p, first, last), rule=RULE_QUARANTINE,
                                      reason=f"provider breaker {part.breaker.state}: records quarantined unprocessed",
                                      counts={"quarantine": k}))
            out_dlq += [(m, RULE_QUARANTINE, f"provider breaker {part.breaker.state}") for m in within[take:]]
            out_dlq.sort(key=lambda x: x[0].offset())
        return out_dlq

    def after_admission(self, p: int, part: PartitionLimits, now_ms: int, ok: int, failed: int, first: int,
                        last: int, events: list) -> None:
        if part.breaker is None or not (ok or failed):
            return
        t = part.breaker.record(now_ms, ok, failed)
        if t is not None:
            event = self._transition(now_ms, p, first, last, *t)  # (which logs it and sets the gauge)
            if self.reports:
                events.append(event)

    def quota(self, p: int, part: PartitionLimits, cid: str, now_ms: int, outputs: list, inputs: list,
              first: int, last: int, events: list) -> dict[str, int]:
        q = part.quotas.get(cid)
        if q is None:
            return {}
        counts = q.apply(now_ms, outputs, inputs)
        if counts:
            _, version, consumer = self.quota_terms[cid]
            for k, v in counts.items():
                if k == "drop:quota":
                    metrics.RATELIMIT_DROPPED.labels(self.product, cid, "drop").inc(v)
                else:
                    metrics.RATELIMIT_PASSED.labels(self.product, cid, k.split(":")[1]).inc(v)
            t = q.terms
            ev = self._event("QUOTA", now_ms, p, first, last, ("quota", self.product, p, first, last, cid, version),
                             rule=f"quota:{t.action}", counts=counts,
                             reason=f"over {t.records} per {t.per_ms} ms" + (f" per {t.key}" if t.key else ""))
            ev.contract_id, ev.contract_version, ev.consumer_id = cid, version, consumer
            events.append(ev)
        return counts

    def _transition(self, now_ms, p, first, last, old, new) -> evidence.ComplianceEvent:
        log.warning("partition %d: provider breaker %s -> %s", p, old, new)
        metrics.BREAKER_STATE.labels("provider", f"{self.product}:{p}").set(metrics.BREAKER_STATE_VALUE[new])
        return self._event("BREAKER", now_ms, p, first, last, ("breaker", self.product, p, first, last, old, new),
                           rule=f"breaker:{new}", reason=f"{old} -> {new}", counts={},
                           details={"from": old, "to": new})

    def _event(self, kind, now_ms, p, first, last, id_parts, rule, reason, counts,
               details=None) -> evidence.ComplianceEvent:
        return evidence.ComplianceEvent(
            evidence.event_id(*id_parts), now_ms, evidence.Kind(kind), self.product, self.provider, rule=rule,
            reason=reason, counts=counts, source_topic=self.raw_topic, source_partition=p, first_offset=first,
            last_offset=last, details=details or {})


def describe(state: dict) -> str:
    """One line: breaker state, ingress tokens, quota use (`state` as Limiting.snapshot gives it)."""
    parts = []
    b = state.get("breaker")
    if b:
        parts.append(f"breaker {b['state']}")
    ing = state.get("ingress", {})
    for k, v in ing.items():
        parts.append(f"ingress {k} tokens {v['tokens']:.0f}")
    for cid, q in state.get("quotas", {}).items():
        lim = q.get("limiter", {})
        if "used" in lim:
            parts.append(f"quota {cid}: {lim['used']} used this window")
        elif "tokens" in lim:
            parts.append(f"quota {cid}: {lim['tokens']:.0f} tokens")
        else:
            parts.append(f"quota {cid}: {len(lim)} keys")
    return ", ".join(parts) or "no limits"
