"""The admission stage: is a raw record what its provider really wrote, in the product's schema?

Checks, in order, each with its own rule id for the dead-letter topic and the compliance
event: size, Avro single-object header and schema fingerprint, the claimed participant
and product, the HMAC authenticity tag, and a full decode that consumes every byte.
Only the product's provider may write its raw topic, so only the provider's key is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import schemas
from streams import envelope
from streams.envelope import H_AUTH, H_EVENT_TIME, H_PARTICIPANT, H_PRODUCT, H_SEQUENCE, signed_time
from streams.keyring import Keyring

from .base import PartitionSlice, Stage

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


class Admission(Stage):
    """Splits a slice's records into ``good`` (decoded) and ``rejected`` (rule and reason)."""

    name = "admission"

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

    def process(self, s: PartitionSlice) -> None:
        s.good, s.rejected = self.admit(s.msgs)

    def admit(self, msgs: list) -> tuple[list[Admitted], list[Rejected]]:
        """Split a batch into admitted records (decoded) and rejected ones (with rule and reason).

        Hot path: a record that passes every check in one go (the common case) is checked
        inline, its tag compared in hex as the provider wrote it (Tagger.matches); anything else goes through
        `_check`, which runs the checks one by one to name the first that fails."""
        good, bad = [], []
        header, hlen, read = self.header, len(self.header), self.schema.body_reader
        max_bytes, provider, product = self.max_bytes, self.provider, self.product
        prefix = self._key_id + b":"
        plen = len(prefix)
        matches = self._tagger.matches
        for m in msgs:
            v = m.value()
            h = dict(m.headers() or ())
            auth = h.get(H_AUTH)
            if (auth is not None and v is not None and hlen <= len(v) <= max_bytes and v.startswith(header)
                    and h.get(H_PARTICIPANT) == provider and h.get(H_PRODUCT) == product and auth.startswith(prefix)
                    and matches(provider, product, signed_time(h.get(H_EVENT_TIME, b""), h.get(H_SEQUENCE)), v,
                                auth, plen)):
                try:
                    rec, end = read(v, hlen)
                except Exception:  # noqa: BLE001 - bad input, named by _check
                    end = -1
                if end == len(v):
                    good.append(Admitted(m, m.offset(), rec, h, m.key()))
                    continue
            r = self._check(m, v, h)
            (good if r.__class__ is Admitted else bad).append(r)
        return good, bad

    def _check(self, m, v, h) -> Admitted | Rejected:
        """Every check in order; the first that fails names the rule."""
        off, hlen = m.offset(), len(self.header)
        if v is None or len(v) < hlen:
            return Rejected(m, off, "reject:empty-or-short", f"payload of {len(v or b'')} bytes", h)
        if len(v) > self.max_bytes:
            return Rejected(m, off, "reject:oversized", f"{len(v)} bytes > {self.max_bytes}", h)
        if not v.startswith(self.header):
            return self._schema_reject(m, off, v, h)
        why = self._authentic(h, v)
        if why is not None:
            return Rejected(m, off, f"reject:{why}", _REASONS[why], h)
        try:
            rec, end = self.schema.read_body(v, hlen)
        except Exception as exc:  # noqa: BLE001 - any decode failure is bad input, not a crash
            return Rejected(m, off, "reject:bad-avro", f"{type(exc).__name__}: {exc}"[:300], h)
        if end > len(v):
            return Rejected(m, off, "reject:bad-avro", f"truncated: the record needs {end - len(v)} more bytes", h)
        if end != len(v):
            return Rejected(m, off, "reject:bad-avro", f"{len(v) - end} trailing bytes", h)
        return Admitted(m, off, rec, h, m.key())

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
        return envelope.tag_problem(self._tagger, self._key_id, h, v)


_REASONS = {
    "missing-participant": "no cm.participant header",
    "not-the-provider": "the claimed participant is not this product's provider",
    "wrong-product": "cm.product header does not name this product",
    "missing-auth-tag": "no cm.auth header",
    "unknown-key-id": "the tag names a key the provider does not hold",
    "bad-auth-tag": "the HMAC tag does not match participant, product, event time, sequence and payload",
}
