"""Real inputs for the stages' broker-free tests.

The example city's control records as `citymesh apply` writes them (topology/apply.py), a
provider keyring, and raw records encoded, tagged and sequenced the way
ProviderConnector.publish writes them (its Route from the catalog, the envelope's Tagger and
headers), as the confluent_kafka Messages a consumer of the raw topic would hand the runner.
"""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import Message

import schemas
from processors.limiting import Limiting
from processors.stages.admission import Admission
from processors.stages.base import PartitionSlice
from processors.stages.contracts import Contracts
from streams import envelope, topics
from streams.connectors import Route
from streams.keyring import Keyring
from topology.apply import control_records
from topology.loader import load_topology

CITY = load_topology(Path(__file__).resolve().parents[3] / "examples" / "city.yaml")
CONTROL = control_records(CITY, None)
CATALOG = CONTROL[topics.CONTROL_CATALOG]
CONTRACTS = CONTROL[topics.CONTROL_CONTRACTS]
PARTICIPANTS = CONTROL[topics.CONTROL_PARTICIPANTS]
RULES = CONTROL[topics.CONTROL_RULES]
UAV = CATALOG["uav-telemetry"]
HOTLINE = CATALOG["hotline-tickets"]
SCHEMA = schemas.load(UAV["schema_name"])
NOW = 1_800_000_000_000
MASTER_SECRET = b"m" * 32
MAX_RECORD_BYTES = 1_048_576
PARTITIONS = UAV["partitions"]


def uav(i: int, **fields) -> dict:
    """A telemetry record of drone i, inside the Nanshan delivery area (and the urban area),
    registered, at 80 m, unless `fields` say otherwise."""
    return {"serial_number": f"SN{i:012d}", "uin": f"UAS{i:09d}", "operator_id": "CHN-OP-000777",
            "uav_class": "LIGHT", "flight_id": f"SN{i:012d}-0001", "timestamp_ms": NOW - 500, "lat": 22.53,
            "lon": 113.94, "alt_msl_m": 120.0, "height_agl_m": 80.0, "speed_h_mps": 12.0, "speed_v_mps": 0.5,
            "heading_deg": 90.0, "battery_pct": 77.0, "source": "MAVLINK", **fields}


class Provider:
    """Writes one product's raw records as ProviderConnector.publish does: the payload is the
    schema's single-object encoding, cm.seq counts per producer and partition, the tag covers
    participant, product, event time, cm.seq and payload."""

    def __init__(self, entry: dict = UAV, ring: Keyring | None = None, producer_id: str = "0123456789abcdef"):
        self.route = Route.from_catalog(entry)
        self.ring = ring or Keyring.generate(entry["provider_id"])
        self.producer_id = producer_id.encode()
        self.tagger = envelope.Tagger(self.ring.hmac_key)
        self.traces = envelope.TraceIds()

    def message(self, record: dict, offset: int, p: int = 0, payload: bytes | None = None,
                participant: str | None = None, product: str | None = None, sequence: bool = True) -> Message:
        """The raw record at `offset` of partition p; `payload` (tagged as if it were the
        record's), `participant` and `product` stand in for what a provider wrote instead."""
        r = self.route
        payload = r.schema.encode(record) if payload is None else payload
        who = (participant or self.ring.participant_id).encode()
        what = (product or r.product_id).encode()
        et = b"%d" % record[r.event_time_field]
        r.sequences[p] += 1
        seq = b"%s:%d:%d" % (self.producer_id, p, r.sequences[p]) if sequence else None
        tag = self.tagger.tag(who, what, envelope.signed_time(et, seq), payload)
        headers = [(envelope.H_PARTICIPANT, who), (envelope.H_PRODUCT, what), r.schema_header,
                   (envelope.H_EVENT_TIME, et)] + ([(envelope.H_SEQUENCE, seq)] if seq is not None else []) + [
                   (envelope.H_TRACE, self.traces.next()),
                   (envelope.H_AUTH, f"{self.ring.key_id}:".encode() + tag.hex().encode())]
        key = record.get(r.key_field)
        return Message(topic=r.topic, partition=p, offset=offset, key=key.encode() if key else None, value=payload,
                       headers=headers, timestamp=(1, record[r.event_time_field]))

    def admission(self, **kw) -> Admission:
        return Admission(self.route.product_id, self.route.provider_id, self.route.schema, self.ring, **kw)


def with_headers(m: Message, changes: dict[str, bytes | None]) -> Message:
    """The same record with these headers replaced (None: removed)."""
    headers = [(k, changes.get(k, v)) for k, v in m.headers() if changes.get(k, v) is not None]
    return Message(topic=m.topic(), partition=m.partition(), offset=m.offset(), key=m.key(), value=m.value(),
                   headers=headers, timestamp=m.timestamp())


def with_value(m: Message, value: bytes | None) -> Message:
    """The same record with another payload (its tag unchanged)."""
    return Message(topic=m.topic(), partition=m.partition(), offset=m.offset(), key=m.key(), value=value,
                   headers=m.headers(), timestamp=m.timestamp())


def admitted_slice(provider: Provider, records: list[dict], p: int = 0, first: int = 0, now: int = NOW,
                   **slice_fields) -> PartitionSlice:
    """A partition slice of these records at offsets first, first+1 ..., through admission."""
    s = PartitionSlice(p, [provider.message(r, first + i, p) for i, r in enumerate(records)], now, **slice_fields)
    provider.admission().process(s)
    assert not s.rejected, [r.reason for r in s.rejected]
    return s


def contract(cid: str, **changes) -> dict:
    """A contract of the example city as cm.control.contracts holds it."""
    return {**CONTRACTS[cid], **changes}


def contracts_stage(cids: list[str], limiting: Limiting | None = None, max_record_bytes: int = MAX_RECORD_BYTES,
                    **changes) -> Contracts:
    """The contracts stage of the UAV product with these contracts ACTIVE (as the runner
    builds it: every delivery topic with the product's partition count)."""
    lim = limiting or Limiting(UAV["product_id"], UAV["provider_id"], UAV["raw_topic"], PARTITIONS,
                               UAV["event_time_field"], None)
    stage = Contracts(UAV, MASTER_SECRET, lim, lambda topic: PARTITIONS, max_record_bytes)
    stage.apply([(contract(c, **changes.get(c, {})), None) for c in cids], {0: 0})
    return stage

