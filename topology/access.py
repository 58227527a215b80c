"""Who may do what on the cluster, derived from the topology: principals, credentials, ACLs.

Every participant logs in as itself (`User:<participant id>`); every process of the mesh logs in
as its own service principal, named under the operator (`<operator>.runner.<product>`,
`<operator>.ledger-sink`, ...; ids cannot contain dots, so no participant can take one of these
names). Only the operator's bootstrap account (deploy/kafka.py) is a super user.

Least privilege, on a broker with an authorizer (Apache Kafka's StandardAuthorizer: no ACL, no
access):
- a provider writes only its raw topics (and reads the catalog, to know them);
- only the runner of a product reads its raw topic; nobody but that runner writes the product's
  delivery, dead-letter and limiter-state topics; the runner also reads them back (fencing), and
  writes them in transactions under its own transactional ids (`citymesh-runner.<product>.*`,
  processors/transactions.py: Write and Describe; no IdempotentWrite on the cluster, which
  Kafka >= 3.0 no longer asks of a producer that may write a topic);
- a consumer reads only the delivery topics of its ACTIVE contracts, uses consumer groups under
  its own prefix `<consumer>.`, and while it has an ACTIVE contract reads the contracts table (its
  delivery schemas) and the participants table (the operator's public key, which signs the batch
  seals it verifies: streams/delivery.py); SUSPENDED or REVOKED takes the read grant away in the
  step that writes the new state, re-activation gives it back;
- the regulator reads cm.compliance and cm.alerts;
- the operator's dashboard and compliance app read the operator's ACTIVE deliveries, as the
  operator does; a webhook reads the delivery topic of its (ACTIVE) contract.
Group-less readers (control tables, fence scans) hold a group id that is never joined;
librdkafka still looks up its coordinator, which takes DESCRIBE on that group, nothing more.

`grants(topo, negotiated)` is the single source: `apply` turns it into AclBindings and makes the
cluster hold exactly those for the mesh's principals; `citymesh apply --emit strimzi` writes the same
grants as KafkaUser resources; and the dataspace control plane gives and takes the grants of one
negotiated contract with `contract_grants` and `consumer_grants`, the two pieces `grants` is built of.

Contracts negotiated over the Dataspace Protocol are not in the topology file, yet a later `apply`
must not take their grants away. Why apply reads them from the control topics, and which: a
contract is *negotiated* when an agreement on cm.control.agreements names it (the control plane
writes the agreement before it writes the contract, dataspace/provider.py) and the topology has no
contract of that id; its state is the one on cm.control.contracts, the record the runners enforce.
So the cluster always holds exactly what the topology and the contract table say, whoever changed
the table last: apply is also the reconciler after a crash of the control plane between an ACL
change and the record it precedes. Only contracts whose consumer and product are in the topology
count (a removed participant loses everything, as before). Both tables are written only by the
operator's bootstrap account and the control plane's principal, the two that may change ACLs
anyway. The two writers of ACLs do not lock each other out: `AccessSync` re-reads the tables just
before it deletes and again just before it creates, so a transfer started or suspended while
`apply` runs can only meet it in those few milliseconds (and the next transfer message or apply
settles it).

The control plane's own principal holds ALTER on the CLUSTER resource: Kafka authorizes CreateAcls
and DeleteAcls only there, there is no narrower right. That lets it write any ACL, so it is trusted
like the operator: it already writes the contract table the runners obey (a contract record
decides which records reach which consumer) and reads every raw topic for the sandbox's dry run on
live data. The alternative, a separate process holding the bootstrap super-user account and
applying what the plane asks, would put the super user's password in a long-running networked
process, which is what issue 16 rules out. It gets no DESCRIBE on the cluster: it never lists ACLs,
creating an ACL that exists and deleting one that does not are both no-ops.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

from confluent_kafka import KafkaException
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

from schemas.errors import CitymeshError
from streams import keyring, topics

from .models import ContractState, Role, Topology

SCRAM_ITERATIONS = 4096  # Apache Kafka's minimum for SCRAM-SHA-512
COMPLIANCE_APP_ID = "citymesh-compliance"  # faust app id: its group and internal topics' prefix
CONTROL_READER_GROUP = "citymesh-control-reader"  # streams.control.read_table
APPLIED_FILE = "applied-principals.json"  # in the keys dir: principals (and password digests) apply manages


class AccessError(RuntimeError, CitymeshError):
    """Credentials or ACLs could not be derived or set."""


class Grant(NamedTuple):
    """One ALLOW ACL: principal (user name), resource type, resource name, pattern, operation."""

    user: str
    resource: str  # "topic" | "group" | "transactionalId" | "cluster"
    name: str  # the cluster resource's is always CLUSTER
    pattern: str  # "literal" | "prefixed"
    operation: str  # "Read" | "Write" | "Describe" | "Create" | "Alter" (Kafka's spelling, as Strimzi writes it)


CLUSTER = "kafka-cluster"  # the name of Kafka's one CLUSTER resource


class Held(NamedTuple):
    """A contract as far as access goes: its id, product, consumer, and whether it is ACTIVE."""

    id: str
    product: str
    consumer: str
    active: bool


def namespace_of(operator_ids: Iterable[str]) -> str:
    """Service principals are named under the operator who runs them (`citymesh` without one); with
    several operators the smallest id, so the control plane finds the same from cm.control.participants."""
    return min(operator_ids, default="citymesh")


def namespace(topo: Topology) -> str:
    return namespace_of(p.id for p in topo.participants if Role.operator in p.roles)


def runner_principal(ns: str, product_id: str) -> str:
    return f"{ns}.runner.{product_id}"


def contract_grants(ns: str, c: Held) -> set[Grant]:
    """What one contract gives: its product's runner writes its delivery topic and reads it back
    after a restart (processors/fencing.py), in every state; while it is ACTIVE its consumer reads it."""
    runner, topic = runner_principal(ns, c.product), topics.delivery(c.id)
    out = {Grant(runner, "topic", topic, "literal", "Write"), Grant(runner, "topic", topic, "literal", "Read")}
    if c.active:
        out.add(Grant(c.consumer, "topic", topic, "literal", "Read"))
    return out


def consumer_grants(consumer: str) -> set[Grant]:
    """What a consumer holds while at least one of its contracts is ACTIVE: the contracts table (its
    delivery schemas), the participants table (the operator's key that signs its deliveries' seals),
    its own consumer groups, and the group-less table reader's coordinator lookup."""
    return {Grant(consumer, "topic", topics.CONTROL_CONTRACTS, "literal", "Read"),
            Grant(consumer, "topic", topics.CONTROL_PARTICIPANTS, "literal", "Read"),
            Grant(consumer, "group", f"{consumer}.", "prefixed", "Read"),
            Grant(consumer, "group", CONTROL_READER_GROUP, "literal", "Describe")}


def negotiated(topo: Topology, contracts: dict[str, dict], agreements: dict[str, dict]) -> list[Held]:
    """The contracts negotiated over DSP that the topology's grants must include (module docstring):
    named by an agreement, not in the topology file, between a consumer and a product it has;
    `contracts` and `agreements` are cm.control.contracts and cm.control.agreements by key."""
    ours = {c.id for c in topo.contracts}
    out = {}
    for a in agreements.values():
        rec = contracts.get(a["contract_id"])
        if (rec is None or rec["contract_id"] in ours or rec["consumer_id"] != a["consumer_id"]
                or topo.participant(rec["consumer_id"]) is None or topo.product(rec["product_id"]) is None):
            continue
        out[rec["contract_id"]] = Held(rec["contract_id"], rec["product_id"], rec["consumer_id"],
                                       rec["state"] == ContractState.active.value)
    return sorted(out.values())


def operator_contracts(topo: Topology) -> dict[str, str | None]:
    """The operator's own delivery contract per schema ("UavTelemetry", "HotlineTicket"): what its
    dashboard and compliance app read (the first one of each kind, as `up` passes them)."""
    found: dict[str, str | None] = {"UavTelemetry": None, "HotlineTicket": None}
    for c in topo.contracts:
        consumer, product = topo.participant(c.consumer), topo.product(c.product)
        if consumer and Role.operator in consumer.roles and found.get(product.schema_name, "x") is None:
            found[product.schema_name] = c.id
    return found


def services(topo: Topology) -> dict[str, str]:
    """Process name (as deploy/processes.py names them) -> the service principal it logs in as."""
    ns = namespace(topo)
    out = {f"runner-{p.id}": runner_principal(ns, p.id) for p in topo.products}
    out["ledger-sink"] = f"{ns}.ledger-sink"
    out["compliance-app"] = f"{ns}.compliance-app"
    out["dashboard"] = f"{ns}.dashboard"
    out["dataspace"] = f"{ns}.dataspace"
    out.update({f"webhook-{c.id}": f"{ns}.webhook.{c.id}" for c in topo.contracts if c.push is not None})
    out.update({f"source-{s.id}": f"{ns}.source.{s.id}" for s in topo.sources})
    return out


def principals(topo: Topology) -> list[str]:
    """Every user name of the mesh: participants, then services."""
    return [p.id for p in topo.participants] + list(services(topo).values())


def grants(topo: Topology, negotiated_contracts: Iterable[Held] = ()) -> set[Grant]:
    """Every grant of the mesh: the topology's, and those of the contracts negotiated over DSP
    (`negotiated`), which are built the same way as the topology's contracts."""
    out: set[Grant] = set()

    def allow(user, resource, name, *ops, pattern="literal"):
        out.update(Grant(user, resource, name, pattern, op) for op in ops)

    svc = services(topo)
    ns = namespace(topo)
    active = [c for c in topo.contracts if c.state == ContractState.active]
    held = [Held(c.id, c.product, c.consumer, c.state == ContractState.active) for c in topo.contracts]
    held += list(negotiated_contracts)
    for c in held:
        out |= contract_grants(ns, c)
    for consumer in {c.consumer for c in held if c.active}:
        out |= consumer_grants(consumer)
    for p in topo.products:
        raw = topics.raw(p.provider, p.id)
        allow(p.provider, "topic", raw, "Write", "Describe")
        allow(p.provider, "topic", topics.CONTROL_CATALOG, "Read")
        allow(p.provider, "group", CONTROL_READER_GROUP, "Describe")
        runner = svc[f"runner-{p.id}"]
        allow(runner, "topic", raw, "Read")
        allow(runner, "group", f"citymesh-runner.{p.id}", "Read")
        allow(runner, "group", f"citymesh-runner.{p.id}.", "Read", pattern="prefixed")  # its other runner groups
        outputs = [topics.dead_letter(p.provider, p.id), topics.partition_state(p.provider, p.id),
                   topics.COMPLIANCE, topics.ALERTS]
        for t in outputs:  # written, and read back after a restart (processors/fencing.py)
            allow(runner, "topic", t, "Write", "Read")
        for t in topics.CONTROL_TOPICS:
            allow(runner, "topic", t, "Read")
        for g in (CONTROL_READER_GROUP, "citymesh-fence-reader", f"citymesh-contract-feed-{p.id}",
                  f"citymesh-rules-feed-{p.id}"):
            allow(runner, "group", g, "Describe")
        # one transactional id per runner instance, named under the runner's group
        allow(runner, "transactionalId", f"citymesh-runner.{p.id}.", "Write", "Describe", pattern="prefixed")
    for p in topo.participants:
        if Role.regulator in p.roles:
            allow(p.id, "topic", topics.COMPLIANCE, "Read")
            allow(p.id, "topic", topics.ALERTS, "Read")
            allow(p.id, "group", f"{p.id}.", "Read", pattern="prefixed")
    # the ledger sink chains compliance events and alerts; it finds the operator's key in the participants
    ledger = svc["ledger-sink"]
    for t in (topics.COMPLIANCE, topics.ALERTS, topics.CONTROL_PARTICIPANTS):
        allow(ledger, "topic", t, "Read")
    allow(ledger, "group", "citymesh-ledger", "Read")
    allow(ledger, "group", CONTROL_READER_GROUP, "Describe")
    # the compliance app (faust): alerts and evidence in, incidents and usage out, its own tables
    app = svc["compliance-app"]
    own = [cid for cid in operator_contracts(topo).values() if cid]
    own_active = [c for c in active if c.id in own]
    for t in (topics.ALERTS, topics.COMPLIANCE, topics.CONTROL_CONTRACTS):
        allow(app, "topic", t, "Read")
    allow(app, "topic", topics.ALERTS, "Write")
    allow(app, "topic", topics.USAGE, "Write", "Read")
    allow(app, "topic", COMPLIANCE_APP_ID, "Create", "Read", "Write", "Describe", pattern="prefixed")
    allow(app, "group", COMPLIANCE_APP_ID, "Read", pattern="prefixed")  # faust's group, the metering reader's
    allow(app, "group", CONTROL_READER_GROUP, "Describe")
    for c in own_active:
        allow(app, "topic", topics.delivery(c.id), "Read")
    # the dashboard: the operator's ACTIVE deliveries, alerts, evidence, runner lag (offsets only), and
    # the negotiations waiting for the operator's review (which the operator sees all of anyway)
    dash = svc["dashboard"]
    for t in (topics.ALERTS, topics.COMPLIANCE, *topics.CONTROL_TOPICS[:3], topics.CONTROL_NEGOTIATIONS):
        allow(dash, "topic", t, "Read")
    allow(dash, "group", "dashboard-", "Read", pattern="prefixed")
    allow(dash, "group", CONTROL_READER_GROUP, "Describe")
    for c in active:
        if topo.participant(c.consumer) and Role.operator in topo.participant(c.consumer).roles:
            allow(dash, "topic", topics.delivery(c.id), "Read")
            allow(dash, "group", f"{c.consumer}.{c.id}.dashboard-", "Read", pattern="prefixed")
    for p in topo.products:
        allow(dash, "topic", topics.raw(p.provider, p.id), "Describe")
        allow(dash, "group", f"citymesh-runner.{p.id}", "Describe")
    for c in active:  # push delivery reads for the consumer while the contract is ACTIVE
        if c.push is not None:
            hook = svc[f"webhook-{c.id}"]
            allow(hook, "topic", topics.delivery(c.id), "Read")
            allow(hook, "topic", topics.CONTROL_CONTRACTS, "Read")
            allow(hook, "topic", topics.COMPLIANCE, "Write")
            allow(hook, "group", f"citymesh-webhook.{c.id}", "Read")
            allow(hook, "group", CONTROL_READER_GROUP, "Describe")
    # the dataspace control plane (dataspace/): the control tables it keeps, agreements' contract
    # records and their compliance events, the delivery topics of new contracts, and (dry run on
    # live data) the raw topics' tails; it gives and takes the grants of negotiated contracts as
    # their transfers start and stop (dataspace/contracts.py), hence ALTER on the cluster (above)
    dsp = svc["dataspace"]
    allow(dsp, "cluster", CLUSTER, "Alter")
    for t in topics.CONTROL_TOPICS:
        allow(dsp, "topic", t, "Read")
    for t in (topics.CONTROL_CONTRACTS, topics.CONTROL_NEGOTIATIONS, topics.CONTROL_TRANSFERS,
              topics.CONTROL_AGREEMENTS, topics.COMPLIANCE):
        allow(dsp, "topic", t, "Write")
    allow(dsp, "topic", "cm.dlv.", "Create", "Describe", pattern="prefixed")
    for p in topo.products:
        allow(dsp, "topic", topics.raw(p.provider, p.id), "Read")
    for g in (CONTROL_READER_GROUP, "citymesh-dataspace-view", "citymesh-dry-run"):
        allow(dsp, "group", g, "Describe")
    for s in topo.sources:  # an ingestion adapter publishes as its product's provider would
        src, p = svc[f"source-{s.id}"], topo.product(s.product)
        allow(src, "topic", topics.raw(p.provider, p.id), "Write", "Describe")
        allow(src, "topic", topics.CONTROL_CATALOG, "Read")
        allow(src, "group", CONTROL_READER_GROUP, "Describe")
    return out


_RESOURCE = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP, "transactionalId": ResourceType.TRANSACTIONAL_ID,
             "cluster": ResourceType.BROKER}  # confluent-kafka's name for Kafka's CLUSTER resource type
_PATTERN = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}
_OPERATION = {"Read": AclOperation.READ, "Write": AclOperation.WRITE, "Describe": AclOperation.DESCRIBE,
              "Create": AclOperation.CREATE, "Alter": AclOperation.ALTER}


def binding(g: Grant) -> AclBinding:
    return AclBinding(_RESOURCE[g.resource], g.name, _PATTERN[g.pattern], f"User:{g.user}", "*",
                      _OPERATION[g.operation], AclPermissionType.ALLOW)


def grant_of(b: AclBinding) -> Grant | None:
    """The Grant an ACL on the cluster expresses (None for anything apply never creates)."""
    names = {v: k for k, v in _OPERATION.items()}
    kinds = {v: k for k, v in _RESOURCE.items()}
    patterns = {v: k for k, v in _PATTERN.items()}
    if (b.permission_type != AclPermissionType.ALLOW or b.host != "*" or not b.principal.startswith("User:")
            or b.operation not in names or b.restype not in kinds or b.resource_pattern_type not in patterns):
        return None
    return Grant(b.principal[5:], kinds[b.restype], b.name, patterns[b.resource_pattern_type], names[b.operation])


def cluster_grants(admin: AdminClient, users: set[str], timeout_s: float = 15.0) -> set[Grant]:
    """The ALLOW grants the cluster holds for these users (describe_acls)."""
    any_filter = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                  AclOperation.ANY, AclPermissionType.ANY)
    found = admin.describe_acls(any_filter, request_timeout=timeout_s).result()
    out = set()
    for b in found:
        g = grant_of(b)
        if g is not None and g.user in users:
            out.add(g)
        elif b.principal[5:] in users:  # something apply never writes (DENY, a host): it stays, named
            raise AccessError(f"unexpected ACL for {b.principal} on the cluster, not managed by apply: {b}")
    return out


class Applied:
    """The principals an earlier apply created, with a digest of each password, kept in the keys
    dir: so a participant removed from the topology loses its credentials and ACLs, and a
    rotated password is pushed again, while nothing unchanged is written twice."""

    def __init__(self, keys_dir: Path):
        self.path = Path(keys_dir) / APPLIED_FILE
        self.users: dict[str, str] = json.loads(self.path.read_text()) if self.path.exists() else {}

    def save(self) -> None:
        self.path.write_text(json.dumps(self.users, indent=2, sort_keys=True))


def password_of(keys_dir: Path, topo: Topology, user: str) -> str:
    if topo.participant(user) is not None:
        ring, _ = keyring.create(keys_dir, user)
        return ring.sasl_password
    return keyring.service_password(keys_dir, user)


def _digest(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def _wait(futures: dict, what: str) -> None:
    for key, fut in futures.items():
        try:
            fut.result()
        except KafkaException as exc:
            raise AccessError(f"{what} {key}: {exc.args[0].str()}") from None


def create_grants(admin: AdminClient, wanted: Iterable[Grant], timeout_s: float = 15.0) -> None:
    """Create these ALLOW ACLs (one that exists already is left as it is)."""
    wanted = sorted(wanted)
    if wanted:
        _wait(admin.create_acls([binding(g) for g in wanted], request_timeout=timeout_s), "creating ACL")


def delete_grants(admin: AdminClient, unwanted: Iterable[Grant], timeout_s: float = 15.0) -> None:
    """Delete exactly these ALLOW ACLs (one that does not exist is no error)."""
    filters = [AclBindingFilter(_RESOURCE[g.resource], g.name, _PATTERN[g.pattern], f"User:{g.user}", "*",
                                _OPERATION[g.operation], AclPermissionType.ALLOW) for g in sorted(unwanted)]
    if filters:
        _wait(admin.delete_acls(filters, request_timeout=timeout_s), "deleting ACL")


class AccessSync:
    """Make the cluster's SCRAM credentials and ACLs for the mesh's principals match the topology
    and the contracts negotiated over DSP, in two halves: `revoke()` takes away what is no longer
    granted (before apply writes the new control records, so a revoked consumer loses access no
    later than delivery stops), `grant()` adds credentials and ACLs (after). `negotiated()` reads
    the negotiated contracts (`negotiated` above) from the control topics; it is asked again in each
    half, so a transfer started or suspended meanwhile is seen. Principals outside the mesh are
    never touched."""

    def __init__(self, topo: Topology, admin: AdminClient, keys_dir: Path,
                 negotiated_contracts: Callable[[], list[Held]] = list, timeout_s: float = 15.0):
        self.topo, self.admin, self.keys_dir, self.timeout_s = topo, admin, Path(keys_dir), timeout_s
        self.negotiated = negotiated_contracts
        self.applied = Applied(keys_dir)
        self.users = principals(topo)
        self.removed = sorted(set(self.applied.users) - set(self.users))
        self.desired: set[Grant] = set()  # what the cluster is to hold, derived afresh by each half
        self.current = cluster_grants(admin, set(self.users) | set(self.removed), timeout_s)
        self.created = self.deleted = 0
        self.credentials_set: list[str] = []
        self.credentials_deleted: list[str] = []

    def revoke(self, retiring: Iterable[Held] = ()) -> None:
        """`retiring`: contracts this apply takes back (written REVOKED after this half). Their
        runners keep writing until the REVOKED record reaches them, so their grants are those of
        a contract revoked in the file (the runner's, not the consumer's) until the next apply."""
        self.desired = grants(self.topo, self.negotiated())
        products = {p.id for p in self.topo.products}
        ns = namespace(self.topo)
        for c in retiring:
            if c.product in products:  # (a removed product's runner is removed with it)
                self.desired |= contract_grants(ns, Held(c.id, c.product, c.consumer, False))
        extra = self.current - self.desired
        delete_grants(self.admin, extra, self.timeout_s)
        self.current -= extra
        self.deleted = len(extra)
        if self.removed:
            on_cluster = self._scram_users()
            gone = [u for u in self.removed if u in on_cluster]
            if gone:
                _wait(self.admin.alter_user_scram_credentials(
                    [UserScramCredentialDeletion(u, ScramMechanism.SCRAM_SHA_512) for u in gone],
                    request_timeout=self.timeout_s), "deleting the credential of")
            self.credentials_deleted = gone
            for u in self.removed:
                self.applied.users.pop(u, None)
            self.applied.save()

    def grant(self) -> None:
        on_cluster = self._scram_users()
        upserts = []
        for user in self.users:
            password = password_of(self.keys_dir, self.topo, user)
            if user not in on_cluster or self.applied.users.get(user) != _digest(password):
                upserts.append(UserScramCredentialUpsertion(
                    user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS), password.encode()))
                self.applied.users[user] = _digest(password)
        if upserts:
            _wait(self.admin.alter_user_scram_credentials(upserts, request_timeout=self.timeout_s),
                  "setting the credential of")
        self.credentials_set = [u.user for u in upserts]
        self.applied.save()
        self.desired = grants(self.topo, self.negotiated())
        missing = self.desired - self.current
        create_grants(self.admin, missing, self.timeout_s)
        self.current |= missing
        self.created = len(missing)

    def _scram_users(self) -> set[str]:
        return set(self.admin.describe_user_scram_credentials(request_timeout=self.timeout_s).result())
