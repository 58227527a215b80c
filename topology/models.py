"""The declarative mesh: participants, data products (the catalog), geofences and contracts.

Pydantic models validate each entry's own fields; `Topology.check_references` validates
what ties entries together (a product's provider exists and is a provider, a contract's
consumer may consume, fields named in a product exist in its schema, the contract policy
compiles). Every error carries the path of the offending field so the loader can name the
file, the line, the entry and the field.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

import schemas
from schemas.errors import CitymeshError
from streams.topics import check_id


class TopologyError(ValueError, CitymeshError):
    """A topology file is invalid; `path` locates the field (e.g. ("contracts", 2, "consumer"))."""

    def __init__(self, message: str, path: tuple = ()):
        super().__init__(message)
        self.path = path
        self.message = message


class Role(str, Enum):
    provider = "provider"
    consumer = "consumer"
    operator = "operator"
    service = "service"
    regulator = "regulator"


class Classification(str, Enum):
    """GB/T 43697-2024 data classification: 一般数据 / 重要数据 / 核心数据."""

    general = "general"
    important = "important"
    core = "core"


class ContractState(str, Enum):
    draft = "DRAFT"
    offered = "OFFERED"
    agreed = "AGREED"
    active = "ACTIVE"
    suspended = "SUSPENDED"
    revoked = "REVOKED"
    expired = "EXPIRED"


_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def duration_ms(value: Any) -> int:
    """'7d', '12h', '30m', '500ms' or a number of milliseconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"duration {value!r} must look like 7d, 12h, 30m, 45s or 500ms")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


def to_ms(value: datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return int(value.timestamp() * 1000)


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False)


class ParticipantSpec(_Entry):
    id: str
    name: str
    roles: list[Role] = Field(min_length=1)
    public_key: str | None = Field(None, description="Ed25519 public key, hex; filled from the keyring when absent")
    credit_code: str | None = None
    limits: dict[str, Any] = Field(default_factory=dict, description="ingress limits and breaker (limits_json)")
    memberships: list[str] = Field(default_factory=list,
                                   description="communities the operator attests (e.g. an industry alliance); "
                                               "a product's access policy may admit a membership")

    _id = field_validator("id")(lambda v: check_id("participant", v))

    @field_validator("limits")
    @classmethod
    def _limits(cls, v: dict) -> dict:
        return ingress_limits(v)

    @field_validator("public_key")
    @classmethod
    def _hex32(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", v):
            raise ValueError("public_key must be 32 bytes of hex (an Ed25519 public key)")
        return v


class IdentifierSpec(_Entry):
    """An identifier of a product and where it travels (policy_enforcer/lineage.py): fields
    `derived` from its value (a flight id built from the serial number) and free-text fields
    it may `appears_in` (a phone number in a work order's text)."""

    field: str
    derived: list[str] = Field(default_factory=list)
    appears_in: list[str] = Field(default_factory=list)

    def terms(self):
        from policy_enforcer import Identifier
        return Identifier(self.field, tuple(self.derived), tuple(self.appears_in))


class AccessSpec(_Entry):
    """Who sees a product in the catalog and may negotiate for it: a participant with one of
    `roles`, one of `memberships`, or listed in `participants`."""

    roles: list[Role] = Field(default_factory=list)
    memberships: list[str] = Field(default_factory=list)
    participants: list[str] = Field(default_factory=list)

    def terms(self) -> dict:
        """As the catalog record holds it (access_json)."""
        return {"roles": [r.value.upper() for r in self.roles], "memberships": list(self.memberships),
                "participants": list(self.participants)}


# who may see a product when its entry gives no `access`: everyone for general data; the
# operator and the regulator only for important and core data (GB/T 43697-2024)
DEFAULT_ACCESS = {"general": AccessSpec(roles=list(Role)),
                  "important": AccessSpec(roles=[Role.operator, Role.regulator]),
                  "core": AccessSpec(roles=[Role.operator, Role.regulator])}


class ParamRange(_Entry):
    min: float | None = None
    max: float | None = None


class AutoAcceptSpec(_Entry):
    """What the provider accepts without looking: `purposes` (default: the template's own),
    and numeric template parameters within `params` ranges; every other parameter must be
    the offer's own value."""

    purposes: list[str] | None = None
    params: dict[str, ParamRange] = Field(default_factory=dict)


class OfferSpec(_Entry):
    """A contract template a provider offers on a product (a DCAT dataset's ODRL offer)."""

    id: str
    template: str
    params: dict[str, Any] = Field(default_factory=dict, description="the offer's parameters (geofences by name)")
    auto_accept: AutoAcceptSpec | None = Field(None, description="absent: every request waits for the provider")
    price_per_1000: Decimal = Field(Decimal(0), ge=0, description="CNY per 1,000 delivered records")

    _id = field_validator("id")(lambda v: check_id("offer", v))

    @property
    def price_per_1000_minor(self) -> int:
        return int((self.price_per_1000 * 100).to_integral_value())


class ProductSpec(_Entry):
    id: str
    provider: str
    name: str
    schema_name: str = Field(alias="schema")
    classification: Classification = Classification.general
    partitions: int = Field(3, ge=1, le=1000)
    retention: int = Field(7 * 86_400_000, description="ms; written as 7d, 12h ...")
    description: str = ""
    key_field: str | None = None
    event_time_field: str | None = None
    event_time_window: int | None = Field(None, description="ms; records whose event time is further than this "
                                                             "from the processing time are refused (e.g. 10m)")
    identifiers: list[IdentifierSpec] = Field(default_factory=list)
    access: AccessSpec | None = Field(None, description="default: DEFAULT_ACCESS of the classification")
    offers: list[OfferSpec] = Field(default_factory=list, description="contract templates negotiable over DSP")

    _id = field_validator("id")(lambda v: check_id("product", v))
    _window = field_validator("event_time_window", mode="before")(lambda v: None if v is None else duration_ms(v))

    def terms(self):
        """What every contract on this product obeys (policy_enforcer.ProductTerms)."""
        from policy_enforcer import ProductTerms
        return ProductTerms(self.key_field, self.event_time_field, tuple(i.terms() for i in self.identifiers))

    @property
    def access_policy(self) -> AccessSpec:
        return self.access if self.access is not None else DEFAULT_ACCESS[self.classification.value]
    _retention = field_validator("retention", mode="before")(lambda v: duration_ms(v))

    @field_validator("schema_name")
    @classmethod
    def _known_schema(cls, v: str) -> str:
        schemas.load(v)  # raises SchemaError naming the known ones
        return v


SOURCE_SCHEMAS = {"mavlink-udp": "UavTelemetry", "dji-mqtt": "UavTelemetry", "open311-http": "HotlineTicket"}


class SourceSpec(_Entry):
    """An ingestion adapter `up` runs for a provider: it turns an external protocol into the
    product's records (streams/adapters)."""

    id: str
    type: str
    product: str
    listen: str | None = Field(None, description="HOST:PORT for mavlink-udp and open311-http")
    mqtt: str | None = Field(None, description="broker URL for dji-mqtt, e.g. mqtt://127.0.0.1:1883")

    _id = field_validator("id")(lambda v: check_id("source", v))

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        if v not in SOURCE_SCHEMAS:
            raise ValueError(f"unknown source type {v!r} (known: {', '.join(SOURCE_SCHEMAS)})")
        return v


class Validity(_Entry):
    not_before: datetime | None = None
    not_after: datetime | None = None


class PushSpec(_Entry):
    """HTTP push delivery for a consumer that does not read Kafka (a webhook)."""

    url: str = Field(pattern=r"^https?://")
    batch_size: int = Field(500, ge=1, le=10_000)
    timeout_s: float = Field(5.0, gt=0, le=120)
    failure_ratio: float = Field(0.5, gt=0, le=1)
    min_requests: int = Field(3, ge=1)
    open_s: float = Field(5.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict, description="e.g. an Authorization header")


def ingress_limits(v: dict) -> dict:
    """A provider's `limits` with durations in ms (burst, breaker window and open time),
    checked by the parser the runner uses (policy_enforcer.quota)."""
    from policy_enforcer.quota import IngressTerms
    out = dict(v)
    if "burst" in out:
        out["burst_ms"] = duration_ms(out.pop("burst"))
    if isinstance(out.get("breaker"), dict):
        b = dict(out["breaker"])
        for k in ("window", "open"):
            if k in b:
                b[f"{k}_ms"] = duration_ms(b.pop(k))
        out["breaker"] = b
    IngressTerms.from_dict(out)
    return out


class QuotaSpec(_Entry):
    """A delivery quota as a contract term: at most `records` per `per` (per value of `key`,
    the product's key field, when given); `action` on the excess: drop, sample (1 in
    `sample_every`) or aggregate (the first record per key per `every`)."""

    records: int = Field(ge=1)
    per: int = Field(1000, description="ms; written as 1s, 1d ...")
    key: str | None = None
    action: str = Field("drop", pattern=r"^(drop|sample|aggregate)$")
    sample_every: int = Field(10, ge=1)
    every: int = Field(10_000, description="ms; the aggregate window")

    _durations = field_validator("per", "every", mode="before")(lambda v: duration_ms(v))

    def terms(self) -> dict:
        """As policy_enforcer.quota.QuotaTerms takes it (and the contract record holds it)."""
        return {"records": self.records, "per_ms": self.per, "key": self.key, "action": self.action,
                "sample_every": self.sample_every, "every_ms": self.every}


class ContractSpec(_Entry):
    id: str
    version: int = Field(1, ge=1)
    product: str
    consumer: str
    purposes: list[str] = Field(min_length=1)
    valid: Validity = Field(default_factory=Validity)
    state: ContractState = ContractState.active
    template: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    policy: dict[str, Any] | None = None
    push: PushSpec | None = None
    quota: QuotaSpec | None = None
    price_per_1000: Decimal = Field(Decimal(0), ge=0, description="CNY per 1,000 delivered records")
    currency: str = "CNY"

    _id = field_validator("id")(lambda v: check_id("contract", v))

    @property
    def price_per_1000_minor(self) -> int:
        return int((self.price_per_1000 * 100).to_integral_value())


class FoldSpec(_Entry):
    """How an operator rule's repeated hits on one subject become one episode of alerts."""

    remind_every: int = Field(60_000, gt=0, description="ms; at most one reminder this often while it lasts")
    clear_after: int = Field(30_000, gt=0, description="ms without a hit after which the episode is cleared")

    _durations = field_validator("remind_every", "clear_after", mode="before")(lambda v: duration_ms(v))


class OperatorRulesSpec(_Entry):
    """The operator's watch list over one product (policy_enforcer/rules.py has the rule format).

    Zone rules name a geofence of this topology holding ED-269 UAS zones; `authorisations`
    maps a zone identifier to the UAV operators (the records' operator_id) allowed in it.
    Checked against the product's schema when loaded (topology/rules.py)."""

    product: str
    rules: list[dict[str, Any]] = Field(default_factory=list)
    authorisations: dict[str, list[str]] = Field(default_factory=dict)
    fold: FoldSpec | bool = Field(True, description="fold repeated hits (policy_enforcer/alert_fold.py); "
                                                      "false: one alert per hit")

    def fold_terms(self) -> dict:
        """As the rules record holds it (fold_json)."""
        if self.fold is False:
            return {"off": True}
        f = self.fold if isinstance(self.fold, FoldSpec) else FoldSpec()
        return {"remind_every_ms": f.remind_every, "clear_after_ms": f.clear_after}


def _path_of(dotted: str) -> tuple:
    """'identifiers[0].derived[1]' -> ("identifiers", 0, "derived", 1)."""
    out: list = []
    for part in re.findall(r"[^.\[\]]+", dotted or ""):
        out.append(int(part) if part.isdigit() else part)
    return tuple(out)


class Topology(_Entry):
    participants: list[ParticipantSpec] = Field(default_factory=list)
    products: list[ProductSpec] = Field(default_factory=list)
    geofences: dict[str, dict] = Field(default_factory=dict, description="name -> GeoJSON (inline or {file: path})")
    contracts: list[ContractSpec] = Field(default_factory=list)
    sources: list[SourceSpec] = Field(default_factory=list)
    operator_rules: list[OperatorRulesSpec] = Field(default_factory=list)

    def participant(self, pid: str) -> ParticipantSpec | None:
        return next((p for p in self.participants if p.id == pid), None)

    def product(self, pid: str) -> ProductSpec | None:
        return next((p for p in self.products if p.id == pid), None)

    def check_references(self) -> None:
        for section in ("participants", "products", "contracts", "sources"):
            seen: dict[str, int] = {}
            for i, entry in enumerate(getattr(self, section)):
                if entry.id in seen:
                    raise TopologyError(f"duplicate id {entry.id!r} (also entry {seen[entry.id]})", (section, i, "id"))
                seen[entry.id] = i
        for i, p in enumerate(self.products):
            owner = self.participant(p.provider)
            if owner is None:
                raise TopologyError(f"unknown participant {p.provider!r}", ("products", i, "provider"))
            if Role.provider not in owner.roles:
                raise TopologyError(f"participant {p.provider!r} does not have the provider role",
                                    ("products", i, "provider"))
            for j, name in enumerate(p.access.participants if p.access else []):
                if self.participant(name) is None:
                    raise TopologyError(f"unknown participant {name!r}", ("products", i, "access", "participants", j))
            seen_offers: set[str] = set()
            for j, o in enumerate(p.offers):
                if o.id in seen_offers:
                    raise TopologyError(f"duplicate offer id {o.id!r}", ("products", i, "offers", j, "id"))
                seen_offers.add(o.id)
            fields = schemas.load(p.schema_name).field_names
            for attr in ("key_field", "event_time_field"):
                value = getattr(p, attr)
                if value is not None and value not in fields:
                    raise TopologyError(f"{value!r} is not a field of {p.schema_name}", ("products", i, attr))
            from policy_enforcer import PolicyError
            from policy_enforcer.lineage import check_identifiers
            try:
                check_identifiers(p.terms().identifiers, schemas.load(p.schema_name))
            except PolicyError as exc:
                raise TopologyError(exc.detail, ("products", i) + _path_of(exc.path)) from None
        for i, c in enumerate(self.contracts):
            product = self.product(c.product)
            if product is None:
                raise TopologyError(f"unknown product {c.product!r}", ("contracts", i, "product"))
            consumer = self.participant(c.consumer)
            if consumer is None:
                raise TopologyError(f"unknown participant {c.consumer!r}", ("contracts", i, "consumer"))
            if not {Role.consumer, Role.service, Role.regulator, Role.operator} & set(consumer.roles):
                raise TopologyError(f"participant {c.consumer!r} has no role that may consume",
                                    ("contracts", i, "consumer"))
            if c.valid.not_before and c.valid.not_after and c.valid.not_before >= c.valid.not_after:
                raise TopologyError("not_before must be earlier than not_after", ("contracts", i, "valid"))
            if c.quota is not None:
                from policy_enforcer.quota import QuotaTerms
                try:
                    QuotaTerms.from_dict(c.quota.terms())
                except ValueError as exc:
                    raise TopologyError(str(exc), ("contracts", i, "quota")) from None
                if c.quota.key is not None and c.quota.key != product.key_field:
                    # the record key routes one key to one partition: only then is a per-partition
                    # bucket per key the global bucket for that key
                    raise TopologyError(f"a keyed quota must be keyed by the product's key_field "
                                        f"({product.key_field!r})", ("contracts", i, "quota", "key"))
            if (c.policy is None) == (c.template is None):
                raise TopologyError("give exactly one of policy or template", ("contracts", i, "policy"))
        for i, src in enumerate(self.sources):
            product = self.product(src.product)
            if product is None:
                raise TopologyError(f"unknown product {src.product!r}", ("sources", i, "product"))
            if schemas.load(product.schema_name).name != SOURCE_SCHEMAS[src.type]:
                raise TopologyError(f"a {src.type} source produces {SOURCE_SCHEMAS[src.type]}, product "
                                    f"{product.id} holds {product.schema_name}", ("sources", i, "product"))
