"""Compliance events the mesh emits (typed: ComplianceEvent), built deterministically from what it decided.

An event's id is a hash of what it is about (product, source partition, offset range,
contract and version), so replaying the same input after a crash produces the same id and
sinks (the ledger) can de-duplicate; a BATCH event's digest is the digest the batch's seal
signs (processors/stages/seal.py: SHA-256 over the deliveries' tags), so what a consumer
received can be matched with what the mesh recorded.

A compliance event's `counts` map "<decision>" or "<decision>:<rule>" to a number of records.
The decisions: deliver; drop (a contract's constraint, or its quota: drop:quota); reject
(admission, replay, a record a plan cannot process; admission's rule ids already read
reject:<why> and are not prefixed twice); quarantine (the breaker, poison and unwritable
records); pause (an ingress limit held a partition back); quota (what a quota let through as a
sample or an aggregate: quota:sample, quota:aggregate, also counted as delivered). `count_key`
writes them.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field, fields


def event_id(*parts) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:32]


def count_key(decision: str, rule: str | None = None) -> str:
    """The counts key of a decision under a rule (the rule's own decision prefix is not repeated)."""
    if not rule:
        return decision
    return rule if rule.startswith(decision + ":") else f"{decision}:{rule}"


class Kind(str, enum.Enum):
    """What a compliance event is about (the schema's ComplianceKind)."""

    BATCH = "BATCH"
    REJECT = "REJECT"
    CONTRACT_CHANGE = "CONTRACT_CHANGE"
    RATE_LIMIT = "RATE_LIMIT"
    QUOTA = "QUOTA"
    BREAKER = "BREAKER"
    QUARANTINE = "QUARANTINE"
    VIOLATION = "VIOLATION"
    OTHER = "OTHER"


@dataclass(slots=True)
class ComplianceEvent:
    """One record of cm.compliance (schemas/ComplianceEvent.avsc), as the mesh's processes
    build it; `record()` is what is encoded."""

    event_id: str
    time_ms: int
    kind: Kind
    product_id: str
    provider_id: str | None
    contract_id: str | None = None
    contract_version: int | None = None
    consumer_id: str | None = None
    rule: str | None = None
    reason: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    source_topic: str | None = None
    source_partition: int | None = None
    first_offset: int | None = None
    last_offset: int | None = None
    digest: str | None = None  # a BATCH event's: the digest its seal signs (processors/stages/seal.py)
    trace_id: str | None = None
    details: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict:
        rec = {name: getattr(self, name) for name in _FIELDS}
        rec["kind"] = self.kind.value
        return rec


_FIELDS = tuple(f.name for f in fields(ComplianceEvent))


def batch_event(now_ms: int, product: str, provider: str, contract: str, version: int, consumer: str,
                topic: str, partition: int, first: int, last: int, counts: dict[str, int], digest: str | None,
                trace_id: str | None) -> ComplianceEvent:
    return ComplianceEvent(
        event_id("batch", product, partition, first, last, contract, version), now_ms, Kind.BATCH, product, provider,
        contract, version, consumer, counts=counts, source_topic=topic, source_partition=partition,
        first_offset=first, last_offset=last, digest=digest, trace_id=trace_id)


def reject_event(now_ms: int, product: str, provider: str, topic: str, partition: int, offset: int,
                 rule: str, reason: str, trace_id: str | None, participant: str | None) -> ComplianceEvent:
    return ComplianceEvent(
        event_id("reject", product, partition, offset), now_ms, Kind.REJECT, product, provider, rule=rule,
        reason=reason, counts={count_key("reject", rule): 1}, source_topic=topic, source_partition=partition,
        first_offset=offset, last_offset=offset, trace_id=trace_id, details={"claimed_participant": participant or ""})


def contract_change_event(now_ms: int, product: str, provider: str, contract: dict, previous_state: str | None,
                          topic: str, from_offsets: dict[int, int]) -> ComplianceEvent:
    """A contract took effect, changed or stopped, from these source offsets on (per partition)."""
    offsets = ",".join(f"{p}:{o}" for p, o in sorted(from_offsets.items()))
    return ComplianceEvent(
        event_id("contract", product, contract["contract_id"], contract["version"], contract["state"], offsets),
        now_ms, Kind.CONTRACT_CHANGE, product, provider, contract["contract_id"], contract["version"],
        contract["consumer_id"], rule=f"state:{contract['state']}",
        reason=f"{previous_state or 'ABSENT'} -> {contract['state']}", source_topic=topic,
        first_offset=min(from_offsets.values()) if from_offsets else None, details={"from_offsets": offsets})


def quarantine_event(now_ms: int, product: str, provider: str, topic: str, partition: int, offset: int, rule: str,
                     reason: str, last_offset: int | None = None) -> ComplianceEvent:
    """A record (or, with `last_offset`, a partition from `offset` on) set aside by the runner
    because it could not be processed or written, with why."""
    return ComplianceEvent(
        event_id("quarantine", product, partition, offset, rule), now_ms, Kind.QUARANTINE, product, provider,
        rule=rule, reason=reason, counts={count_key("quarantine", rule): 1}, source_topic=topic,
        source_partition=partition, first_offset=offset, last_offset=offset if last_offset is None else last_offset)


def runner_alert(now_ms: int, product: str, rule: str, severity: str, subject: str, message: str, topic: str,
                 partition: int, offset: int, evidence: dict[str, str] | None = None) -> dict:
    """An Alert the runner raises about its own work (not an operator rule's hit)."""
    return {"alert_id": event_id("runner-alert", product, rule, subject, partition, offset), "time_ms": now_ms,
            "rule_id": rule, "severity": severity, "product_id": product, "subject": subject, "message": message,
            "evidence": evidence or {}, "source_topic": topic, "source_partition": partition, "source_offset": offset,
            "escalated": False, "incident_id": None, "first_seen_ms": now_ms, "last_seen_ms": now_ms, "count": 1}
