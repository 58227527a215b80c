"""The contracts stage: every ACTIVE contract's compiled plan on the admitted records.

Each plan hands over whole delivery records (policy_enforcer Plan.deliver: payload, key,
headers), then the contract's quota (processors/limiting.py) may take some back; one BATCH
compliance event per contract and slice counts every decision (the seal stage adds the
digest of what was delivered). What the plans share (the decoded records, the provenance
plaintext, what plans with one policy compute alike) is built once per slice (SourceBatch).
Contract changes arrive at batch boundaries through `apply`, which the runner calls with the
offsets they take effect from.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import policy_enforcer
from schemas.headers import SOURCE_REF
from streams import envelope, topics
from streams.envelope import Tagger

from .. import evidence, metrics
from ..limiting import Limiting
from .base import DeadLetter, PartitionSlice, Stage

log = logging.getLogger("citymesh.runner")

RULE_UNWRITABLE = "quarantine:unwritable"
HEADER_ALLOWANCE = 16_384  # what a delivery's headers and its record batch may add to the payload


@dataclass
class ActivePlan:
    """One ACTIVE contract compiled for this product, with its output topic's shape."""

    contract: dict
    plan: policy_enforcer.Plan
    topic: str
    partitions: int

    def __post_init__(self) -> None:
        self.tagger = Tagger(self.plan.delivery_key)  # the deliveries' tags (processors/stages/seal.py)

    @property
    def contract_id(self) -> str:
        return self.contract["contract_id"]

    def position_of(self, headers: dict) -> tuple[int, int] | None:
        """The source position of one of this contract's deliveries (its sealed cm.src)."""
        ref = headers.get(SOURCE_REF)
        return self.plan.source_refs.open(ref) if ref else None


class Contracts(Stage):
    name = "contracts"

    def __init__(self, product: dict, master_secret: bytes, limiting: Limiting, n_partitions: Callable[[str], int],
                 max_record_bytes: int):
        self.product = product  # the product's catalog record
        self.product_id, self.provider_id = product["product_id"], product["provider_id"]
        self.raw_topic = product["raw_topic"]
        self.master_secret = master_secret
        self.limiting = limiting
        self.n_partitions = n_partitions
        self.max_payload = max_record_bytes - HEADER_ALLOWANCE  # what the broker takes, less the headers
        self.plans: dict[str, ActivePlan] = {}
        self._split_keys = frozenset()  # of keyed plans that share a policy (SourceBatch.split_keys)

    # ---- contract changes, at batch boundaries --------------------------------------------

    def apply(self, changes: list, from_offsets: dict[int, int]) -> list[dict]:
        """Take contract changes into effect now; returns their CONTRACT_CHANGE events."""
        events = []
        now = int(time.time() * 1000)
        for c, old in changes:
            cid = c["contract_id"]
            if c["state"] == "ACTIVE":
                try:
                    plan = policy_enforcer.plan_for(c, self.product, self.master_secret)
                    topic = topics.delivery(cid)
                    self.plans[cid] = ActivePlan(c, plan, topic, self.n_partitions(topic))
                except policy_enforcer.PolicyError as exc:  # applied contracts are validated; be safe anyway
                    log.error("contract %s v%s does not compile, not enforced: %s", cid, c["version"], exc)
                    self.plans.pop(cid, None)
            else:
                self.plans.pop(cid, None)
            events.append(evidence.contract_change_event(now, self.product_id, self.provider_id, c,
                                                         old["state"] if old else None, self.raw_topic,
                                                         from_offsets))
            log.info("contract %s v%s %s -> %s from offsets %s", cid, c["version"], old and old["state"],
                     c["state"], from_offsets)
        metrics.ACTIVE_CONTRACTS.labels(self.product_id).set(len(self.plans))
        self._split_keys = policy_enforcer.shared_split_keys(ap.plan for ap in self.plans.values())
        self.limiting.set_quotas(self.plans)
        return events

    # ---- the slice --------------------------------------------------------------------------

    def process(self, s: PartitionSlice) -> None:
        good = s.good
        if not self.plans or not good:
            return
        offsets = [g.offset for g in good]
        batch = policy_enforcer.SourceBatch(s.p, [g.record for g in good], [g.msg.value() for g in good], offsets,
                                            [g.headers.get(envelope.H_TRACE) for g in good], self._split_keys)
        lim = self.limiting
        part = lim.parts.get(s.p) if lim.active else None
        first, last = s.first, s.last
        for ap in self.plans.values():
            result = ap.plan.deliver(batch, s.now_ms)
            quota = (lim.quota(s.p, part, ap.contract_id, s.now_ms, result.records, batch.records, first, last,
                               s.events) if part is not None and part.quotas else None)
            counts = dict(result.counts)
            self._unwritable(s, ap, result, counts)
            if quota and "drop:quota" in quota:
                counts["drop:quota"] = quota["drop:quota"]
                counts[policy_enforcer.DELIVER] -= quota["drop:quota"]
                if not counts[policy_enforcer.DELIVER]:
                    del counts[policy_enforcer.DELIVER]
            event = evidence.batch_event(
                s.now_ms, self.product_id, self.provider_id, ap.contract_id, ap.contract["version"],
                ap.contract["consumer_id"], self.raw_topic, s.p, first, last, counts, None, None) if counts else None
            if event is not None:
                s.events.append(event)
            for key, n in counts.items():
                decision, _, rule = key.partition(":")
                metrics.DECISIONS.labels(self.product_id, ap.contract_id, decision, rule).inc(n)
            s.deliveries.append((ap, result, event))

    def _unwritable(self, s: PartitionSlice, ap: ActivePlan, result, counts: dict) -> None:
        """A delivery larger than the broker takes would fail its batch on every retry: its
        record is quarantined to the dead-letter topic instead (as a reference), counted."""
        limit = self.max_payload
        if max(map(len, filter(None, result.records)), default=0) <= limit:  # the common case, in C
            return
        for i, (payload, g) in enumerate(zip(result.records, s.good)):
            if payload is not None and len(payload) > limit:
                result.records[i] = None
                counts[policy_enforcer.DELIVER] -= 1
                counts[RULE_UNWRITABLE] = counts.get(RULE_UNWRITABLE, 0) + 1
                metrics.QUARANTINED_RECORDS.labels(self.product_id, RULE_UNWRITABLE).inc()
                if all(d.offset != g.offset for d in s.dead):
                    s.dead.append(DeadLetter(g.msg, g.offset, RULE_UNWRITABLE,
                                             f"its output to {ap.topic} ({len(payload)} bytes) is larger than the "
                                             f"broker takes ({limit} bytes with headers)"))
        if not counts.get(policy_enforcer.DELIVER, 1):
            del counts[policy_enforcer.DELIVER]
