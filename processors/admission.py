"""Admission: is a raw record what its provider really wrote, in the product's schema?

Checks, in order, each with its own rule id for the dead-letter topic and the compliance
event: size, Avro single-object header and schema fingerprint, the claimed participant
and product, the HMAC authenticity tag, and a full decode that consumes every byte.
Only the product's provider may write its raw topic, so only the provider's key is needed.
"""

from __future__ import annotations

import hmac
import io
from dataclasses import dataclass

import fastavro

import schemas
from streams import envelope
from streams.keyring import Keyring

DEFAULT_MAX_BYTES = 256 * 1024


@dataclass(slots=True)
class Admitted:
    msg: object  # confluent_kafka.Message
    offset: int
    record: dict
    headers: dict
    key: bytes | None


@dataclass(slots=True)
class Rejected:
    msg: object
    offset: int
    rule: str
    reason: str
    headers: dict


class Admission:
    def __init__(self, product_id: str, provider_id: str, schema: schemas.RecordSchema, keyring: Keyring,
                 max_bytes: int = DEFAULT_MAX_BYTES):
        self.product = product_id.encode()
        self.provider = provider_id.encode()
        self.schema = schema
        self.header = schema.header
        self.max_bytes = max_bytes
        self._key_id = keyring.key_id.encode()
        self._tagger = envelope.Tagger(keyring.hmac_key)
        self._registry = schemas.default_registry()

    def admit(self, msgs: list) -> tuple[list[Admitted], list[Rejected]]:
        good, bad = [], []
        header, hlen, parsed, reader = self.header, len(self.header), self.schema.parsed, fastavro.schemaless_reader
        for m in msgs:
            v = m.value()
            h = dict(m.headers() or ())
            off = m.offset()
            if v is None or len(v) < hlen:
                bad.append(Rejected(m, off, "reject:empty-or-short", f"payload of {len(v or b'')} bytes", h))
                continue
            if len(v) > self.max_bytes:
                bad.append(Rejected(m, off, "reject:oversized", f"{len(v)} bytes > {self.max_bytes}", h))
                continue
            if v[:hlen] != header:
                bad.append(self._schema_reject(m, off, v, h))
                continue
            why = self._authentic(h, v)
            if why is not None:
                bad.append(Rejected(m, off, f"reject:{why}", _REASONS[why], h))
                continue
            bio = io.BytesIO(v)
            bio.seek(hlen)
            try:
                rec = reader(bio, parsed, None)
            except Exception as exc:  # noqa: BLE001 - any decode failure is bad input, not a crash
                bad.append(Rejected(m, off, "reject:bad-avro", f"{type(exc).__name__}: {exc}"[:300], h))
                continue
            if bio.tell() != len(v):
                bad.append(Rejected(m, off, "reject:bad-avro", f"{len(v) - bio.tell()} trailing bytes", h))
                continue
            good.append(Admitted(m, off, rec, h, m.key()))
        return good, bad

    def _schema_reject(self, m, off, v, h) -> Rejected:
        if v[:2] != b"\xc3\x01":
            return Rejected(m, off, "reject:not-avro", "payload is not Avro single-object encoded", h)
        try:
            other = self._registry.schema_of(v).full_name
        except schemas.UnknownSchema:
            other = f"unknown fingerprint {v[2:10].hex()}"
        return Rejected(m, off, "reject:wrong-schema", f"written with {other}, product expects "
                        f"{self.schema.full_name} {self.schema.fingerprint}", h)

    def _authentic(self, h: dict, v: bytes) -> str | None:
        participant = h.get(envelope.H_PARTICIPANT)
        if participant is None:
            return "missing-participant"
        if participant != self.provider:
            return "not-the-provider"
        if h.get(envelope.H_PRODUCT) != self.product:
            return "wrong-product"
        auth = h.get(envelope.H_AUTH)
        if not auth:
            return "missing-auth-tag"
        key_id, _, tag_hex = auth.partition(b":")
        if key_id != self._key_id:
            return "unknown-key-id"
        try:
            given = bytes.fromhex(tag_hex.decode("ascii"))
        except ValueError:
            return "bad-auth-tag"
        expected = self._tagger.tag(participant, self.product, h.get(envelope.H_EVENT_TIME, b""), v)
        if not hmac.compare_digest(expected, given):
            return "bad-auth-tag"
        return None


_REASONS = {
    "missing-participant": "no cm.participant header",
    "not-the-provider": "the claimed participant is not this product's provider",
    "wrong-product": "cm.product header does not name this product",
    "missing-auth-tag": "no cm.auth header",
    "unknown-key-id": "the tag names a key the provider does not hold",
    "bad-auth-tag": "the HMAC tag does not match participant, product, event time and payload",
}
