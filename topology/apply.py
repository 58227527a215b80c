"""`citymesh apply`: make the cluster match a topology, idempotently.

Creates the topics of DESIGN.md's data flow (raw, dead-letter and delivery topics per
product and contract; the shared compliance, alert and usage topics; the compacted control
topics), then writes participants, catalog and contracts to the control topics, but only
the entries that changed, so a second apply of the same file writes nothing. On a
production cluster with an authorizer (CITYMESH_APPLY_ACLS=true) it also creates the ACLs
that let each provider write only its raw topics and each consumer read only its delivery
topics.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient, ResourcePatternType,
                                   ResourceType)

import schemas
from policy_enforcer import ProductTerms
from streams import topics
from streams.admin import COMPACTED, TopicSpec, ensure_topics
from streams.control import read_table
from streams.keyring import KeyringError, load as load_keyring

from .models import ContractSpec, OfferSpec, Topology, to_ms
from .policies import delivery_schema
from .rules import rules_records

SHARED_PARTITIONS = 3


def topic_specs(topo: Topology) -> list[TopicSpec]:
    specs = [TopicSpec(t, 1, COMPACTED) for t in topics.CONTROL_TOPICS]
    specs += [TopicSpec(t, SHARED_PARTITIONS, {"retention.ms": 30 * 86_400_000}) for t in topics.SHARED_TOPICS]
    for p in topo.products:
        retention = {"retention.ms": p.retention}
        specs.append(TopicSpec(topics.raw(p.provider, p.id), p.partitions, retention))
        specs.append(TopicSpec(topics.dead_letter(p.provider, p.id), p.partitions, retention))
        specs.append(TopicSpec(topics.partition_state(p.provider, p.id), p.partitions, COMPACTED))
    for c in topo.contracts:
        p = topo.product(c.product)
        specs.append(delivery_topic_spec(c.id, p.partitions, p.retention))
    return specs


def delivery_topic_spec(contract_id: str, partitions: int, retention_ms: int) -> TopicSpec:
    """A contract's delivery topic: as many partitions as its product (the runner maps source
    partition p to delivery partition p) and the product's retention."""
    return TopicSpec(topics.delivery(contract_id), partitions, {"retention.ms": retention_ms})


def contract_record(c: ContractSpec, provider_id: str, schema: schemas.RecordSchema,
                    product: ProductTerms | None = None) -> dict:
    """The cm.control.contracts record of one contract (updated_ms left at 0): what `apply`
    writes for a topology's contracts and the dataspace control plane for a negotiated
    agreement, so a runner cannot tell the two apart. `c.policy` is the resolved policy;
    `product` what the catalog says about the product's key and identifier lineage."""
    out_schema = delivery_schema(c, schema, product)
    return {
        "contract_id": c.id, "version": c.version, "product_id": c.product, "provider_id": provider_id,
        "consumer_id": c.consumer, "purposes": list(c.purposes), "template": c.template,
        "not_before_ms": to_ms(c.valid.not_before), "not_after_ms": to_ms(c.valid.not_after),
        "state": c.state.value, "policy_json": json.dumps(c.policy, sort_keys=True, ensure_ascii=False),
        "delivery_schema_json": json.dumps(out_schema.definition, sort_keys=True, ensure_ascii=False),
        "push_json": c.push.model_dump_json() if c.push else None,
        "quota_json": json.dumps(c.quota.terms(), sort_keys=True) if c.quota else None,
        "price_per_1000_minor": c.price_per_1000_minor, "currency": c.currency, "updated_ms": 0}


def control_records(topo: Topology, keys_dir: Path | None) -> dict[str, dict[str, dict]]:
    """What each control topic should hold, by key (updated_ms left at 0 for comparison)."""
    participants = {}
    for p in topo.participants:
        public_key = p.public_key
        if public_key is None and keys_dir is not None:
            try:
                public_key = load_keyring(keys_dir, p.id).public_key_hex
            except KeyringError:
                public_key = None
        participants[p.id] = {
            "participant_id": p.id, "name": p.name, "roles": [r.value.upper() for r in p.roles],
            "public_key": public_key, "credit_code": p.credit_code,
            "limits_json": json.dumps(p.limits, sort_keys=True, ensure_ascii=False),
            "memberships": list(p.memberships), "updated_ms": 0}
    catalog = {}
    for p in topo.products:
        schema = schemas.load(p.schema_name)
        catalog[p.id] = {
            "product_id": p.id, "provider_id": p.provider, "name": p.name, "schema_name": schema.full_name,
            "schema_fingerprint": schema.fingerprint, "classification": p.classification.value.upper(),
            "partitions": p.partitions, "retention_ms": p.retention, "raw_topic": topics.raw(p.provider, p.id),
            "key_field": p.key_field, "event_time_field": p.event_time_field,
            "event_time_window_ms": p.event_time_window, "description": p.description,
            "identifiers_json": json.dumps([i.terms().to_dict() for i in p.identifiers]) if p.identifiers else None,
            "access_json": json.dumps(p.access_policy.terms(), sort_keys=True),
            "offers_json": json.dumps([_offer_terms(o) for o in p.offers], sort_keys=True, ensure_ascii=False),
            "updated_ms": 0}
    contracts = {}
    for c in topo.contracts:
        p = topo.product(c.product)
        contracts[c.id] = contract_record(c, p.provider, schemas.load(p.schema_name), p.terms())
    return {topics.CONTROL_PARTICIPANTS: participants, topics.CONTROL_CATALOG: catalog,
            topics.CONTROL_CONTRACTS: contracts, topics.CONTROL_RULES: rules_records(topo)}


def _offer_terms(o: OfferSpec) -> dict:
    return {"id": o.id, "template": o.template, "params": o.params, "price_per_1000_minor": o.price_per_1000_minor,
            "auto_accept": o.auto_accept.model_dump() if o.auto_accept is not None else None}


_SCHEMA_OF = {topics.CONTROL_PARTICIPANTS: "Participant", topics.CONTROL_CATALOG: "DataProduct",
              topics.CONTROL_CONTRACTS: "Contract", topics.CONTROL_RULES: "OperatorRules"}


def _same(a: dict, b: dict) -> bool:
    return {k: v for k, v in a.items() if k != "updated_ms"} == {k: v for k, v in b.items() if k != "updated_ms"}


@dataclass
class ApplyReport:
    topics: dict[str, str] = field(default_factory=dict)
    written: dict[str, list[str]] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    acls: int = 0

    @property
    def changes(self) -> int:
        return sum(1 for s in self.topics.values() if s != "exists") + sum(len(v) for v in self.written.values())


def apply(topo: Topology, client_config: dict, replication: int = 1, keys_dir: Path | None = None,
          with_acls: bool = False) -> ApplyReport:
    report = ApplyReport()
    admin = AdminClient(client_config)
    report.topics = ensure_topics(admin, topic_specs(topo), replication)
    desired = control_records(topo, keys_dir)
    producer = Producer({**client_config, "enable.idempotence": True, "acks": "all"})
    now = int(time.time() * 1000)
    for topic, entries in desired.items():
        current = read_table(client_config, topic)
        schema = schemas.load(_SCHEMA_OF[topic])
        changed = [k for k, rec in entries.items() if k not in current or not _same(rec, current[k])]
        for key in changed:
            producer.produce(topic, schema.encode({**entries[key], "updated_ms": now}), key.encode())
        report.written[topic] = changed
        report.unchanged[topic] = len(entries) - len(changed)
    if producer.flush(30):
        raise RuntimeError("control records were not acknowledged within 30 s")
    if keys_dir is not None:
        write_delivery_keys(topo, keys_dir)
    if with_acls:
        bindings = acl_bindings(topo)
        for fut in admin.create_acls(bindings).values():
            fut.result()
        report.acls = len(bindings)
    return report


def write_delivery_keys(topo: Topology, keys_dir: Path) -> None:
    """Each consumer's keys of its contracts' delivery tags (streams/delivery.py), derived from
    the mesh's master secret, into <keys_dir>/deliveries/<consumer>.json for the operator to hand over."""
    from policy_enforcer import derive_contract_key
    from policy_enforcer.provenance import delivery_key
    from streams import keyring
    master = keyring.mesh_secret(keys_dir)
    by_consumer: dict[str, dict[str, bytes]] = {}
    for c in topo.contracts:
        by_consumer.setdefault(c.consumer, {})[c.id] = delivery_key(derive_contract_key(master, c.id))
    for consumer, keys in by_consumer.items():
        held = keyring.delivery_keys(keys_dir, consumer)
        if any(held.get(cid) != k for cid, k in keys.items()):
            keyring.save_delivery_keys(keys_dir, consumer, {**held, **keys})


def acl_bindings(topo: Topology, principal_prefix: str = "User:", runner_principal: str = "User:citymesh-runner"
                 ) -> list[AclBinding]:
    """Least privilege from the topology: providers write their raw topics, consumers read their
    delivery topics (and use their own consumer groups), the runner reads raw and writes the rest."""
    allow, lit, pre = AclPermissionType.ALLOW, ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
    out = []

    def acl(principal, rtype, name, pattern, op):
        out.append(AclBinding(rtype, name, pattern, principal, "*", op, allow))

    for p in topo.products:
        who = principal_prefix + p.provider
        acl(who, ResourceType.TOPIC, topics.raw(p.provider, p.id), lit, AclOperation.WRITE)
        acl(who, ResourceType.TOPIC, topics.raw(p.provider, p.id), lit, AclOperation.DESCRIBE)
        acl(who, ResourceType.TOPIC, topics.CONTROL_CATALOG, lit, AclOperation.READ)
    for c in topo.contracts:
        who = principal_prefix + c.consumer
        acl(who, ResourceType.TOPIC, topics.delivery(c.id), lit, AclOperation.READ)
        acl(who, ResourceType.GROUP, f"{c.consumer}.", pre, AclOperation.READ)
        acl(who, ResourceType.TOPIC, topics.CONTROL_CONTRACTS, lit, AclOperation.READ)
    acl(runner_principal, ResourceType.TOPIC, "cm.raw.", pre, AclOperation.READ)
    for prefix in ("cm.dlv.", "cm.dlq.", "cm.compliance", "cm.alerts", "cm.usage"):
        acl(runner_principal, ResourceType.TOPIC, prefix, pre, AclOperation.WRITE)
    acl(runner_principal, ResourceType.TOPIC, "cm.control.", pre, AclOperation.READ)
    acl(runner_principal, ResourceType.GROUP, "citymesh-", pre, AclOperation.READ)
    return out
