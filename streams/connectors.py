"""Participant connectors: how a provider publishes and a consumer subscribes.

A provider never writes Avro or headers by hand: `ProviderConnector.publish` validates the
record against the product's schema (an invalid record raises RecordInvalid and nothing is
sent), encodes it in Avro single-object encoding, sets the envelope headers, the record's
sequence (unique under the tag, so a copy is refused as a replay) and the HMAC authenticity
tag, and produces it keyed by the product's key field to the raw topic.
`ConsumerConnector` reads the consumer's delivery topic of one contract and yields decoded
records with their headers, each checked as written by the mesh for that contract
(streams/delivery.py); what fails is reported, dropped or raised on, as the consumer chooses.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zlib
from dataclasses import dataclass, field
from typing import Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from prometheus_client import Counter

import schemas
from schemas.errors import CitymeshError

from . import envelope, keyring, topics
from .control import read_table
from .delivery import FORGED, OK, DeliveryVerifier
from .keyring import Keyring
from .settings import group_session

log = logging.getLogger("citymesh.consumer")

RECEIVED = Counter("citymesh_consumer_records_total",
                   "Deliveries a ConsumerConnector read, by verdict (ok, forged, unverified) and what it did",
                   ["contract", "verdict", "action"])


class PublishError(CitymeshError, RuntimeError):
    """The broker did not acknowledge records (after librdkafka's own retries)."""


class NotAllowed(CitymeshError, PermissionError):
    """The participant tried to publish to a product it does not provide, or the broker refused
    it its delivery topic (on a cluster with ACLs: its contract is no longer ACTIVE)."""

    def __init__(self, message: str, error: KafkaError | None = None):
        super().__init__(message)
        self.error = error  # the broker's answer, when it refused


_REFUSED = (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED)


class ForgedDelivery(CitymeshError, RuntimeError):
    """A record in a delivery topic that the mesh did not write for this contract (verify="raise")."""


PRODUCER_DEFAULTS = {
    "enable.idempotence": True,  # no duplicates from producer retries
    "acks": "all",
    "linger.ms": 5,
    "batch.num.messages": 10000,
    "queue.buffering.max.messages": 500000,
    "compression.type": "lz4",
    # only failures come back as delivery reports: a Python callback per acknowledged
    # record would cost more than the rest of publish() together
    "delivery.report.only.error": True,
}


@dataclass
class Route:
    """Where and how one product's records are written (from its catalog entry), and the
    sequence of each raw-topic partition this connector writes (streams/envelope.py)."""

    product_id: str
    provider_id: str
    topic: str
    schema: schemas.RecordSchema
    key_field: str | None
    event_time_field: str | None
    partitions: int
    sequences: list[int] = field(default_factory=list)  # per partition, the last sequence written
    _next: int = 0  # round robin for records without a key

    def __post_init__(self) -> None:  # header values computed once, not per record
        self.product_header = (envelope.H_PRODUCT, self.product_id.encode())
        self.schema_header = (envelope.H_SCHEMA, self.schema.fingerprint.encode())
        self.sequences = [0] * self.partitions

    @classmethod
    def from_catalog(cls, entry: dict) -> "Route":
        schema = schemas.load(entry["schema_name"])
        if schema.fingerprint != entry["schema_fingerprint"]:
            raise schemas.SchemaError(
                f"product {entry['product_id']}: catalog schema fingerprint {entry['schema_fingerprint']} "
                f"differs from local {schema.full_name} {schema.fingerprint}; upgrade citymesh or the catalog")
        return cls(entry["product_id"], entry["provider_id"], entry["raw_topic"], schema,
                   entry.get("key_field"), entry.get("event_time_field"), entry["partitions"])

    def resize(self, partitions: int) -> None:
        """The raw topic has this many partitions (its metadata, which may differ from the
        catalog's count when `apply` could not grow the topic)."""
        if partitions != self.partitions:
            self.partitions = partitions
            self.sequences = (self.sequences + [0] * partitions)[:partitions]

    def partition(self, key: bytes | None) -> int:
        """The partition of a key: CRC-32 of the key modulo the partition count, as librdkafka's
        default (consistent) partitioner, so one subject stays in one partition, in order."""
        if key is None:
            self._next = (self._next + 1) % self.partitions
            return self._next
        return zlib.crc32(key) % self.partitions


class _Closed:
    """Stands in for the producer of a closed connector, so using it says so."""

    def __getattr__(self, name: str):
        raise PublishError("the connector is closed")


_CLOSED = _Closed()


class ProviderConnector:
    """Publishes one provider's records to its raw topics."""

    def __init__(self, keyring: Keyring, client_config: dict, catalog: dict[str, dict] | None = None,
                 producer_config: dict | None = None):
        self.keyring = keyring
        self.participant_id = keyring.participant_id
        if catalog is None:
            catalog = read_table(client_config, topics.CONTROL_CATALOG)
        self.routes = {pid: Route.from_catalog(e) for pid, e in catalog.items()
                       if e["provider_id"] == self.participant_id}
        self._producer = Producer({**client_config, **PRODUCER_DEFAULTS, **(producer_config or {})})
        self._size_routes()
        # this connector's records are unique by (producer id, partition, sequence): a fresh id
        # per connector, so two processes of one provider never share a sequence
        self.producer_id = os.urandom(8).hex()
        self._traces = envelope.TraceIds()
        self._participant = self.participant_id.encode()
        self._participant_header = (envelope.H_PARTICIPANT, self._participant)
        self._auth_prefix = f"{keyring.key_id}:".encode()
        self._tagger = envelope.Tagger(keyring.hmac_key)
        self.sent = 0
        self.failed = 0
        self.last_error: KafkaError | None = None

    def _on_delivery(self, err, _msg) -> None:
        if err is not None:
            self.failed += 1
            self.last_error = err

    def _size_routes(self, timeout_s: float = 5.0) -> None:
        """Each route's partition count from its topic's metadata, which may differ from the
        catalog's when `apply` could not grow a topic; the catalog's count stands when the
        broker cannot answer yet (publishing would fail then anyway)."""
        if not self.routes:
            return
        try:
            md = self._producer.list_topics(timeout=timeout_s).topics
        except KafkaException:
            return
        for r in self.routes.values():
            t = md.get(r.topic)
            if t is not None and t.error is None and t.partitions:
                r.resize(len(t.partitions))

    def route(self, product_id: str) -> Route:
        try:
            return self.routes[product_id]
        except KeyError:
            raise NotAllowed(f"{self.participant_id} does not provide product {product_id!r} "
                             f"(it provides: {', '.join(sorted(self.routes)) or 'nothing'})") from None

    def publish(self, product_id: str, record: dict, key: bytes | str | None = None) -> None:
        """Validate, encode, tag and send one record. Raises RecordInvalid before sending anything.

        This is every provider's hot path, so it is written flat: header values that do not
        change are built once per route, and nothing is looked up twice.
        """
        r = self.routes.get(product_id) or self.route(product_id)
        payload = r.schema.encode(record)
        event_time = record.get(r.event_time_field) if r.event_time_field else None
        if event_time is None:
            event_time = int(time.time() * 1000)
        et = b"%d" % event_time
        if key is None and r.key_field:
            key = record.get(r.key_field)
        if key.__class__ is str:
            key = key.encode()
        p = r.partition(key)
        r.sequences[p] += 1
        seq = b"%s:%d:%d" % (self.producer_id.encode(), p, r.sequences[p])
        product_header = r.product_header
        tag = self._tagger.tag(self._participant, product_header[1], envelope.signed_time(et, seq), payload)
        headers = [self._participant_header, product_header, r.schema_header, (envelope.H_EVENT_TIME, et),
                   (envelope.H_SEQUENCE, seq), (envelope.H_TRACE, self._traces.next()),
                   (envelope.H_AUTH, self._auth_prefix + tag.hex().encode())]
        produce = self._producer.produce
        while True:
            try:
                produce(r.topic, payload, key, partition=p, headers=headers, timestamp=event_time,
                        on_delivery=self._on_delivery)
                break
            except BufferError:  # local queue full: let librdkafka drain, then retry
                self._producer.poll(0.05)
        self.sent += 1
        if self.sent & 0x3FF == 0:
            self._producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every record is acknowledged; raise PublishError if any was not."""
        try:
            left = self._producer.flush(timeout_s)
        except SystemError as exc:
            # confluent-kafka 2.16's flush (waiting in 200 ms chunks to stay interruptible) was
            # seen once to return NULL without an exception while its broker was down (CI,
            # test_dashboard_broker_restart): a failed flush to the caller, not a dead thread
            raise PublishError(f"flush failed in the client library: {exc}") from exc
        if left:
            raise PublishError(f"{left} record(s) not acknowledged within {timeout_s:.0f}s")
        if self.failed:
            raise PublishError(f"{self.failed} record(s) failed: {self.last_error}")

    def close(self, timeout_s: float = 30.0) -> None:
        """Flush, then release the producer's connections and threads.

        Without this a connector nobody uses any more keeps reconnecting to its brokers until
        the garbage collector finds it, logging every refused attempt when the broker is gone.
        Records not acknowledged within `timeout_s` are reported by the PublishError that
        flush() raises, after the producer is released; they are not retried in the background.
        """
        if self._producer is _CLOSED:
            return
        try:
            self.flush(timeout_s)
        finally:
            producer, self._producer = self._producer, _CLOSED
            producer.purge()  # what flush could not deliver is reported above; close() would wait for it
            producer.close()

    def __enter__(self) -> "ProviderConnector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class Delivery:
    """One record a consumer received, with where it came from and whether it is the mesh's:
    ``verdict`` is "ok", "forged" (``why`` says how) or "unverified" (no delivery key); a
    forged record's ``record`` is None when it does not even decode."""

    record: dict | None
    headers: dict[str, bytes]
    topic: str
    partition: int
    offset: int
    schema: schemas.RecordSchema | None
    verdict: str = OK
    why: str | None = None


VERIFY_MODES = ("report", "drop", "raise", "off")


class ConsumerConnector:
    """Reads the delivery topic of one contract, checks and decodes its records.

    The delivery schema comes from the contract (the product schema after the contract's
    duties); the connector also knows every schema shipped with citymesh. Every record is
    checked (streams/delivery.py) with the contract's delivery key (``delivery_key``, else
    the consumer's file in ``keys_dir``), and every batch seal with the public key its
    operator registered in cm.control.participants. ``verify``: "report" (default) passes every record on with its
    verdict and logs and counts what fails; "drop" leaves out forged records; "raise" raises
    ForgedDelivery on the first; "off" checks nothing.
    """

    def __init__(self, participant_id: str, contract_id: str, client_config: dict,
                 group_id: str | None = None, from_beginning: bool = True,
                 session_timeout_ms: int = 6000, contract: dict | None = None, verify: str = "report",
                 delivery_key: bytes | None = None, keys_dir=None):
        if verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {', '.join(VERIFY_MODES)}, not {verify!r}")
        self.participant_id = participant_id
        self.contract_id = contract_id
        self.topic = topics.delivery(contract_id)
        self.verify = verify
        self.registry = schemas.Registry(schemas.load(n) for n in schemas.available())
        if contract is None:
            contract = read_table(client_config, topics.CONTROL_CONTRACTS).get(contract_id)
        if contract is not None:
            if contract["consumer_id"] != participant_id:
                raise NotAllowed(f"contract {contract_id} is not held by {participant_id}")
            if contract.get("delivery_schema_json"):
                self.registry.add(schemas.RecordSchema.from_definition(json.loads(contract["delivery_schema_json"])))
        self.verifier = None
        if verify != "off":
            if delivery_key is None and keys_dir is not None:
                delivery_key = keyring.delivery_keys(keys_dir, participant_id).get(contract_id)
            if delivery_key is None:
                log.warning("no delivery key for contract %s: its records cannot be verified", contract_id)
            self.verifier = DeliveryVerifier(contract_id, delivery_key, lambda: _operators(client_config))
        self._consumer = Consumer({
            **client_config,
            "group.id": group_id or f"{participant_id}.{contract_id}",
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "enable.auto.commit": True,
            **group_session(session_timeout_ms),
            "isolation.level": "read_committed",
        })
        self._consumer.subscribe([self.topic])

    def poll(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Delivery]:
        out = []
        for msg in self._consumer.consume(max_records, timeout_s):
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                if msg.error().code() in _REFUSED:
                    raise NotAllowed(f"the broker refused {self.participant_id} {self.topic} ({msg.error().name()}); "
                                     f"on a cluster with ACLs a consumer reads while its contract {self.contract_id} "
                                     "is ACTIVE", msg.error())
                raise RuntimeError(f"consume error on {self.topic}: {msg.error()}")
            verdict, why = self.verifier.check(msg) if self.verifier is not None else (OK, None)
            if verdict == FORGED:
                action = {"report": "passed", "drop": "dropped", "raise": "raised"}[self.verify]
                RECEIVED.labels(self.contract_id, verdict, action).inc()
                log.warning("%s[%d]@%d is not a delivery of the mesh for %s: %s (%s)", msg.topic(), msg.partition(),
                            msg.offset(), self.contract_id, why, action)
                if self.verify == "raise":
                    raise ForgedDelivery(f"{msg.topic()}[{msg.partition()}]@{msg.offset()}: {why}")
                if self.verify == "drop":
                    continue
            else:
                RECEIVED.labels(self.contract_id, verdict, "passed").inc()
            try:
                schema, record = self.registry.decode(msg.value())
            except (schemas.SchemaError, ValueError, EOFError, IndexError):
                if verdict != FORGED:
                    raise
                schema, record = None, None
            out.append(Delivery(record, envelope.headers_dict(msg.headers()), msg.topic(), msg.partition(),
                                msg.offset(), schema, verdict, why))
        return out

    def __iter__(self) -> Iterator[Delivery]:
        while True:
            yield from self.poll()

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> "ConsumerConnector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _operators(client_config: dict) -> dict[str, str]:
    """Participant id -> registered public key of every OPERATOR (who may sign batch seals)."""
    return {pid: p.get("public_key") for pid, p in read_table(client_config, topics.CONTROL_PARTICIPANTS).items()
            if "OPERATOR" in (p.get("roles") or [])}
