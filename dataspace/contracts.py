"""Where a finalized agreement becomes a contract the runners enforce.

`ContractDesk.set_state` is the ONE place the control plane writes cm.control.contracts:
FINALIZED writes the contract in state AGREED (the runners compile nothing yet), transfer
STARTED / SUSPENDED / COMPLETED|TERMINATED write ACTIVE / SUSPENDED / REVOKED, and the
runners cut delivery at the offsets where they read the change (processors/contract_feed.py).
The record is built by `topology.apply.contract_record`, the function `citymesh apply` uses
for the topology's contracts, so a runner cannot tell a negotiated contract from an applied
one.

On an engine with ACLs (Apache Kafka; CITYMESH_APPLY_ACLS) the grants follow the state here,
before the record is written, and are built by `topology.access` as apply builds the
topology's: from AGREED on, the product's runner writes the new delivery topic; ACTIVE gives
the consumer READ on it (and, while it has an ACTIVE contract, the contracts and participants
tables and its group prefix); SUSPENDED or REVOKED takes that READ away (and the shared grants
with its last ACTIVE contract), so the consumer's next fetch is refused while the runners'
offset-exact cut still decides what was delivered. Grants are made idempotently (creating
what exists and deleting what is gone are no-ops), so a re-sent transfer message or a retried
start sets them again; a later `citymesh apply` keeps them, reading the same tables.

Every finalized agreement is also a compliance event (CONTRACT_CHANGE, rule
``agreement:finalized``) carrying both signatures and the digest of what was signed: the
ledger sink chains cm.compliance, so the regulator is told of every agreement and the
ledger holds the evidence.
"""

from __future__ import annotations

import hashlib
import json
import time
from decimal import Decimal

from confluent_kafka.admin import AdminClient

import schemas
from processors.evidence import event_id
from streams import topics
from streams.admin import ensure_topics
from policy_enforcer import ProductTerms
from topology import access
from topology.apply import contract_record, delivery_topic_spec
from topology.models import ContractSpec, ContractState

from .errors import Unavailable
from .identity import agreement_digest
from .store import ControlStore

# transfer state -> contract state (a stream that completes is over, like a terminated one)
CONTRACT_STATE_OF_TRANSFER = {"STARTED": ContractState.active, "SUSPENDED": ContractState.suspended,
                              "COMPLETED": ContractState.revoked, "TERMINATED": ContractState.revoked}


def contract_id_for(consumer_id: str, product_id: str, agreement_id: str) -> str:
    """A readable, unique contract id that is also a valid topic-name part (streams.topics.check_id)."""
    short = hashlib.sha256(agreement_id.encode()).hexdigest()[:8]
    return f"{consumer_id[:24]}-{product_id[:24]}-{short}".strip("-")


class ContractDesk:
    def __init__(self, store: ControlStore, client_config: dict, replication: int = 1, acls: bool = False):
        self.store = store
        self.admin = AdminClient(client_config)
        self.replication = replication
        self.acls = acls  # the cluster has an authorizer: grants follow the contracts' states

    def set_state(self, agreement: dict, state: ContractState) -> dict:
        """Write the agreement's contract record in `state`; returns it. Creating the delivery
        topic comes first, so no runner ever enforces a contract whose topic is missing."""
        product = self.store.get(topics.CONTROL_CATALOG, agreement["product_id"])
        if product is None:
            raise LookupError(f"product {agreement['product_id']} left the catalog")
        if state == ContractState.agreed:
            ensure_topics(self.admin, [delivery_topic_spec(agreement["contract_id"], product["partitions"],
                                                           product["retention_ms"])], self.replication)
        spec = ContractSpec(id=agreement["contract_id"], product=agreement["product_id"],
                            consumer=agreement["consumer_id"], purposes=list(agreement["purposes"]),
                            template=agreement["template"], policy=json.loads(agreement["policy_json"]), state=state,
                            price_per_1000=Decimal(agreement["price_per_1000_minor"]) / 100)
        record = contract_record(spec, product["provider_id"], schemas.load(product["schema_name"]),
                                 ProductTerms.from_catalog(product))
        record["updated_ms"] = int(time.time() * 1000)
        if self.acls:
            self._follow(spec, state)
        self.store.put(topics.CONTROL_CONTRACTS, spec.id, record)
        return record

    def _follow(self, spec: ContractSpec, state: ContractState) -> None:
        """Make the cluster hold the grants of this contract in `state` (module docstring);
        Unavailable, and no record written, when the broker does not take the change."""
        operators = (p["participant_id"] for p in self.store.values(topics.CONTROL_PARTICIPANTS)
                     if "OPERATOR" in p["roles"])
        ns = access.namespace_of(operators)
        held = access.Held(spec.id, spec.product, spec.consumer, state == ContractState.active)
        another = any(r["consumer_id"] == spec.consumer and r["state"] == ContractState.active.value
                      and r["contract_id"] != spec.id for r in self.store.values(topics.CONTROL_CONTRACTS))
        wanted = access.contract_grants(ns, held)
        if held.active or another:
            wanted |= access.consumer_grants(spec.consumer)
        unwanted = access.contract_grants(ns, held._replace(active=True)) | access.consumer_grants(spec.consumer)
        try:
            access.delete_grants(self.admin, unwanted - wanted)
            access.create_grants(self.admin, wanted)
        except access.AccessError as exc:
            raise Unavailable(f"the grants of contract {spec.id} could not be set ({exc}); the contract stays as it was") from None

    def notify(self, agreement: dict) -> None:
        """The compliance event of a finalized agreement (idempotent: its id is the agreement's)."""
        odrl = json.loads(agreement["odrl_json"])
        product = self.store.get(topics.CONTROL_CATALOG, agreement["product_id"]) or {}
        event = {
            "event_id": event_id("agreement", agreement["agreement_id"]), "time_ms": agreement["timestamp_ms"],
            "kind": "CONTRACT_CHANGE", "product_id": agreement["product_id"],
            "provider_id": agreement["provider_id"], "contract_id": agreement["contract_id"], "contract_version": 1,
            "consumer_id": agreement["consumer_id"], "rule": "agreement:finalized",
            "reason": f"agreement {agreement['agreement_id']} on offer {agreement['offer_id']} signed by "
                      f"{agreement['provider_id']} and {agreement['consumer_id']}",
            "counts": {}, "source_topic": None, "source_partition": None, "first_offset": None, "last_offset": None,
            "digest": agreement_digest(odrl), "trace_id": None,
            "details": {"agreement_id": agreement["agreement_id"], "negotiation_id": agreement["negotiation_id"],
                        "offer_id": agreement["offer_id"], "classification": product.get("classification", ""),
                        "purposes": ",".join(agreement["purposes"]),
                        "provider_signature": agreement["provider_signature_json"],
                        "consumer_signature": agreement["consumer_signature_json"],
                        "agreement": agreement["odrl_json"]}}
        self.store.produce(topics.COMPLIANCE, agreement["product_id"], event)
