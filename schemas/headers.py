"""Every Kafka header name the mesh writes or reads, in one place (values are ASCII bytes).

Provider records (streams/envelope.py sets them, processors/stages/admission.py and
replay.py check them):
  cm.participant, cm.product, cm.schema, cm.event_time, cm.seq, traceparent, cm.auth
Deliveries (policy_enforcer/plan.py and processors/stages/seal.py build them; nothing else
reaches a consumer):
  cm.contract   "<contract id>;v=<version>"
  cm.schema     fingerprint of the contract's delivery schema
  cm.src        the per-contract source reference (policy_enforcer/provenance.py)
  traceparent   W3C Trace Context with a per-contract trace id
  cm.auth       the record's delivery tag (HMAC under the contract's delivery key, hex)
  cm.seal       on the last delivery of a batch: "<count>:<digest>:<operator's signature>"
Mesh-internal topics (dead letters, compliance events, alerts), read by the provider, the
operator and the regulator, carry the source position in clear:
  cm.src.topic, cm.src.partition, cm.src.offset, cm.batch.first, cm.batch.last,
  cm.batch.now, cm.event.id, cm.rule, cm.reason
and a dead letter too large to copy carries a reference to the record instead of it:
  cm.payload.bytes, cm.payload.sha256
The compliance events of a runner group other than a product's lead (processors/sharding.py):
  cm.runner.group
"""

PARTICIPANT = "cm.participant"
PRODUCT = "cm.product"
SCHEMA = "cm.schema"
EVENT_TIME = "cm.event_time"
TRACE = "traceparent"
AUTH = "cm.auth"
SEQUENCE = "cm.seq"

CONTRACT = "cm.contract"
SOURCE_REF = "cm.src"
SEAL = "cm.seal"

SRC_TOPIC = "cm.src.topic"
SRC_PARTITION = "cm.src.partition"
SRC_OFFSET = "cm.src.offset"
BATCH_FIRST = "cm.batch.first"
BATCH_LAST = "cm.batch.last"
BATCH_NOW = "cm.batch.now"
EVENT_ID = "cm.event.id"
RULE = "cm.rule"
REASON = "cm.reason"
PAYLOAD_BYTES = "cm.payload.bytes"
PAYLOAD_SHA256 = "cm.payload.sha256"
ORIGIN = "cm.origin"
RUNNER_GROUP = "cm.runner.group"


def contract_value(contract_id: str, version: int) -> bytes:
    """The cm.contract header of a delivery: one value that names the contract and its
    version. (Two headers would put a bare version number, the same for many contracts,
    on every record.)"""
    return f"{contract_id};v={version}".encode()


def parse_contract(value: bytes) -> tuple[str, int | None]:
    """(contract id, version) from a cm.contract header; version None when absent."""
    text = value.decode("utf-8", "replace")
    cid, sep, v = text.partition(";v=")
    return cid, int(v) if sep and v.isdigit() else None
