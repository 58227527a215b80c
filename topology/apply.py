"""`citymesh apply`: make the cluster match a topology, idempotently.

Creates the topics of the mesh's data flow (raw, dead-letter and delivery topics per
product and contract; the shared compliance, alert and usage topics; the compacted control
topics), then writes participants, catalog and contracts to the control topics, but only
the entries that changed, so a second apply of the same file writes nothing. What an earlier
apply from the same keys dir wrote and the file no longer has is taken back (`AppliedRecords`):
a removed contract is REVOKED, so its runner stops delivering, a removed participant, product
or product's operator rules deleted. On a
cluster with an authorizer (Apache Kafka; CITYMESH_APPLY_ACLS=true) it also gives every
participant and mesh service its SCRAM credential and exactly the ACLs topology/access.py
derives: grants the new topology takes away go before the control records are written (a
revoked consumer loses read access in the step that stops its delivery), new ones after; the
runner of a contract taken out of the file keeps its grants on the delivery topic until the next
apply, as for a contract REVOKED in the file, so it is not refused before the REVOKED record
written here reaches it. The
grants of contracts negotiated over DSP (not in the file) are kept as their contract records say:
topology/access.py says how apply knows them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

import schemas
from policy_enforcer import ProductTerms
from streams import topics
from streams.admin import COMPACTED, TopicSpec, ensure_topics
from streams.control import read_table
from streams.keyring import KeyringError, load as load_keyring

from .access import AccessSync, Held, negotiated
from .models import ContractSpec, ContractState, OfferSpec, Topology, to_ms
from .policies import delivery_schema
from .rules import rules_records

SHARED_PARTITIONS = 3
# A raw record's timestamp is the broker's time of its arrival, not the provider's stamp (the
# event time its connector sets): the provider's ingress limit counts records when they came
# (processors/limiting.py), which a provider cannot then back-date, and retention runs from
# arrival, so a historic import (the event times of last year's work orders) is not deleted
# before a runner has read it. Never on delivery topics: a delivery's tag covers the timestamp
# its runner gave it (streams/delivery.py). A broker that ignores it (the embedded Tansu 0.6
# takes the setting and keeps the producer's stamp) leaves the provider's stamp.
RAW_TIMESTAMPS = {"message.timestamp.type": "LogAppendTime"}
APPLIED_RECORDS_FILE = "applied-records.json"  # in the keys dir: the control records apply manages


def topic_specs(topo: Topology) -> list[TopicSpec]:
    specs = [TopicSpec(t, 1, COMPACTED) for t in topics.CONTROL_TOPICS]
    specs += [TopicSpec(t, SHARED_PARTITIONS, {"retention.ms": 30 * 86_400_000}) for t in topics.SHARED_TOPICS]
    for p in topo.products:
        retention = {"retention.ms": p.retention}
        specs.append(TopicSpec(topics.raw(p.provider, p.id), p.partitions, {**retention, **RAW_TIMESTAMPS}))
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


class AppliedRecords:
    """The keys of the control records an earlier apply from this keys dir wrote, by topic
    (beside the principals topology/access.py keeps there for the same reason): so that what
    the topology no longer has is taken back, and only what apply itself wrote, since one
    cluster can hold other operators' records (and the test suite's many cities).

    A removed contract gets its record again as REVOKED rather than deleted: its runner stops
    delivering exactly as on a revocation, and the table still says what became of it. So does
    every contract, negotiated ones too, of a participant or product the topology dropped (as
    its grants go: topology/access.py). A removed participant, product (catalog entry) or
    product's operator rules gets a tombstone: the control plane, the runners' rule feeds and
    the provider's ingress limit (split between the products the catalog lists) stop seeing it.
    Records written before this file existed are not known to be apply's and stay."""

    TAKEN_BACK = (topics.CONTROL_PARTICIPANTS, topics.CONTROL_CATALOG, topics.CONTROL_RULES)

    def __init__(self, keys_dir: Path):
        self.path = Path(keys_dir) / APPLIED_RECORDS_FILE
        self.keys: dict[str, list[str]] = json.loads(self.path.read_text()) if self.path.exists() else {}

    def retired(self, topo: Topology, desired: dict[str, dict[str, dict]], tables: dict[str, dict[str, dict]],
                agreements) -> dict[str, dict[str, dict | None]]:
        """What to write for the records apply wrote before and `desired` lacks, by topic and key
        (None: a tombstone); `tables` are the control topics as read, `agreements()` reads
        cm.control.agreements."""
        out = {topic: {k: None for k in self.keys.get(topic, ()) if k not in desired[topic] and k in tables[topic]}
               for topic in self.TAKEN_BACK}
        parties_gone, products_gone = set(out[topics.CONTROL_PARTICIPANTS]), set(out[topics.CONTROL_CATALOG])
        ours = set(self.keys.get(topics.CONTROL_CONTRACTS, ()))
        ended = (ContractState.revoked.value, ContractState.expired.value)
        candidates = {k: rec for k, rec in tables[topics.CONTROL_CONTRACTS].items()
                      if k not in desired[topics.CONTROL_CONTRACTS] and rec["state"] not in ended
                      and (k in ours or rec["product_id"] in products_gone
                           or {rec["consumer_id"], rec["provider_id"]} & parties_gone)}
        if candidates:  # a contract negotiated over DSP since is the control plane's, while its parties remain
            kept = {h.id for h in negotiated(topo, tables[topics.CONTROL_CONTRACTS], agreements())}
            candidates = {k: rec for k, rec in candidates.items() if k not in kept}
        out[topics.CONTROL_CONTRACTS] = {k: {**rec, "state": ContractState.revoked.value}
                                         for k, rec in candidates.items()}
        return {topic: entries for topic, entries in out.items() if entries}

    def save(self, desired: dict[str, dict[str, dict]]) -> None:
        self.keys = {topic: sorted(entries) for topic, entries in desired.items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.keys, indent=2, sort_keys=True))


def _same(a: dict, b: dict) -> bool:
    return {k: v for k, v in a.items() if k != "updated_ms"} == {k: v for k, v in b.items() if k != "updated_ms"}


@dataclass
class ApplyReport:
    topics: dict[str, str] = field(default_factory=dict)
    written: dict[str, list[str]] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    retired: dict[str, list[str]] = field(default_factory=dict)  # taken back: the file no longer has them
    acls: int = 0  # grants the cluster holds for the mesh's principals after apply
    acls_created: int = 0
    acls_deleted: int = 0
    credentials: list[str] = field(default_factory=list)  # SCRAM credentials set (new or rotated)
    credentials_deleted: list[str] = field(default_factory=list)  # of participants removed from the topology

    @property
    def changes(self) -> int:
        return (sum(1 for s in self.topics.values() if s != "exists") + sum(len(v) for v in self.written.values())
                + sum(len(v) for v in self.retired.values()))

    def retired_lines(self) -> list[str]:
        """What was taken back, one line per control topic, for `apply` and `up` to print."""
        return [f"{topic}: {'revoked' if topic == topics.CONTROL_CONTRACTS else 'deleted'} {', '.join(keys)} "
                "(no longer in the topology)" for topic, keys in self.retired.items()]


def apply(topo: Topology, client_config: dict, replication: int = 1, keys_dir: Path | None = None,
          with_acls: bool = False) -> ApplyReport:
    report = ApplyReport()
    admin = AdminClient(client_config)
    report.topics = ensure_topics(admin, topic_specs(topo), replication)
    desired = control_records(topo, keys_dir)
    tables = {topic: read_table(client_config, topic) for topic in desired}
    applied = AppliedRecords(keys_dir) if keys_dir is not None else None
    retired = {} if applied is None else applied.retired(
        topo, desired, tables, lambda: read_table(client_config, topics.CONTROL_AGREEMENTS))
    access = None
    if with_acls:
        if keys_dir is None:
            raise ValueError("apply with ACLs needs the keys directory: participants' passwords live in their keyrings")
        access = AccessSync(topo, admin, keys_dir, lambda: negotiated(
            topo, read_table(client_config, topics.CONTROL_CONTRACTS),
            read_table(client_config, topics.CONTROL_AGREEMENTS)))
        access.revoke(Held(rec["contract_id"], rec["product_id"], rec["consumer_id"], False)
                      for rec in retired.get(topics.CONTROL_CONTRACTS, {}).values())
    producer = Producer({**client_config, "enable.idempotence": True, "acks": "all"})
    now = int(time.time() * 1000)
    for topic, entries in desired.items():
        current = tables[topic]
        schema = schemas.load(_SCHEMA_OF[topic])
        changed = [k for k, rec in entries.items() if k not in current or not _same(rec, current[k])]
        for key in changed:
            producer.produce(topic, schema.encode({**entries[key], "updated_ms": now}), key.encode())
        report.written[topic] = changed
        report.unchanged[topic] = len(entries) - len(changed)
    for topic, entries in retired.items():
        schema = schemas.load(_SCHEMA_OF[topic])
        for key, rec in entries.items():
            producer.produce(topic, None if rec is None else schema.encode({**rec, "updated_ms": now}), key.encode())
        report.retired[topic] = sorted(entries)
    if producer.flush(30):
        raise RuntimeError("control records were not acknowledged within 30 s")
    if applied is not None:
        applied.save(desired)
    if keys_dir is not None:
        write_delivery_keys(topo, keys_dir)
    if access is not None:
        access.grant()
        report.acls, report.acls_created, report.acls_deleted = len(access.desired), access.created, access.deleted
        report.credentials, report.credentials_deleted = access.credentials_set, access.credentials_deleted
    return report


def contract_delivery_key(keys_dir: Path, contract_id: str) -> bytes:
    """The key of a contract's delivery tags (streams/delivery.py), derived from the mesh's master secret."""
    from policy_enforcer import derive_contract_key
    from policy_enforcer.provenance import delivery_key
    from streams import keyring
    return delivery_key(derive_contract_key(keyring.mesh_secret(keys_dir), contract_id))


def write_delivery_keys(topo: Topology, keys_dir: Path) -> None:
    """Each consumer's keys of its contracts' delivery tags into <keys_dir>/deliveries/<consumer>.json,
    for the operator to hand over (a contract negotiated over DSP hands its key over in the data
    address, and the consumer's connector adds it to the same file: dataspace/consumer.py)."""
    from streams import keyring
    by_consumer: dict[str, dict[str, bytes]] = {}
    for c in topo.contracts:
        by_consumer.setdefault(c.consumer, {})[c.id] = contract_delivery_key(keys_dir, c.id)
    for consumer, keys in by_consumer.items():
        held = keyring.delivery_keys(keys_dir, consumer)
        if any(held.get(cid) != k for cid, k in keys.items()):
            keyring.save_delivery_keys(keys_dir, consumer, {**held, **keys})
