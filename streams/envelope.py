"""The record envelope: Kafka headers every provider record carries, and its authenticity tag.

Headers (values are ASCII bytes so any Kafka tool shows them):
  cm.participant   who wrote the record
  cm.product       the data product
  cm.schema        CRC-64-AVRO fingerprint of the writer schema (also inside the payload)
  cm.event_time    event time, ms since the epoch
  cm.seq           "<producer>:<partition>:<sequence>": what makes the record unique under its
                   tag. <producer> is 16 hex digits drawn at random by each ProviderConnector,
                   <partition> the raw-topic partition the record is written to, <sequence>
                   1, 2, 3 ... per producer and partition. The runner accepts each sequence
                   once per producer and partition (processors/stages/replay.py)
  traceparent      W3C Trace Context, so a record can be followed through the mesh
  cm.auth          "<key id>:<HMAC-SHA256 tag, first 16 bytes, hex>"
The tag covers participant, product, event time, cm.seq and the payload (which starts with
the schema fingerprint), joined by NUL bytes, so none of them can be changed, and a copy is
either refused as a replay (same sequence) or fails the tag (any other sequence or partition).
Records of the previous release carry no cm.seq; their tag covers participant, product, event
time and payload, and the runner accepts them for one more release.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from schemas import headers
from schemas.native import native_enabled

try:  # the same tags in C (streams/_hmac.c), built by `pip install -e .`
    from . import _hmac
except ImportError:  # pragma: no cover - a checkout whose extension was not built
    _hmac = None

H_PARTICIPANT = headers.PARTICIPANT
H_PRODUCT = headers.PRODUCT
H_SCHEMA = headers.SCHEMA
H_EVENT_TIME = headers.EVENT_TIME
H_TRACE = headers.TRACE
H_AUTH = headers.AUTH
H_SEQUENCE = headers.SEQUENCE
TAG_BYTES = 16


class PyTagger:
    """HMAC-SHA256 (RFC 2104) with the key's inner and outer pad states computed once.

    Same bytes as `hmac.digest(key, msg, "sha256")`, at less than half the cost per record,
    because OpenSSL's one-shot HMAC re-derives the pads for every call. `Tagger` is the C
    version of this class (streams/_hmac.c) when it is built; this one is the reference.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes):
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\x00")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def _mac(self, participant: bytes, product: bytes, event_time: bytes, payload: bytes):
        inner = self._inner.copy()
        inner.update(b"\x00".join((participant, product, event_time, payload)))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer

    def tag(self, participant: bytes, product: bytes, event_time: bytes, payload: bytes) -> bytes:
        """The 16-byte authenticity tag (hex-encoded in the header)."""
        return self._mac(participant, product, event_time, payload).digest()[:TAG_BYTES]

    def tag_hex(self, participant: bytes, product: bytes, event_time: bytes, payload: bytes) -> str:
        """The tag as it travels in the cm.auth header (lower-case hex), for a check without
        parsing the header's hex."""
        return self._mac(participant, product, event_time, payload).hexdigest()[:2 * TAG_BYTES]

    def matches(self, participant: bytes, product: bytes, event_time: bytes, payload: bytes, claimed: bytes,
                start: int) -> bool:
        """Whether claimed[start:] is exactly the hex tag (a cm.auth header after its key id),
        compared in constant time."""
        return hmac.compare_digest(self.tag_hex(participant, product, event_time, payload).encode(), claimed[start:])


Tagger = _hmac.Tagger if _hmac is not None and native_enabled() else PyTagger


def signed_time(event_time: bytes, sequence: bytes | None) -> bytes:
    """The tag's third part: the event time, and the record's cm.seq after a NUL when it has one."""
    return event_time if sequence is None else event_time + b"\x00" + sequence


class TraceIds:
    """W3C traceparent values: a random per-process prefix and a counter, cheap per record."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._span = os.urandom(8).hex()
        self._n = 0

    def next(self) -> bytes:
        self._n += 1
        return f"00-{self._prefix}{self._n:016x}-{self._span}-01".encode()


def trace_id_of(traceparent: bytes | str) -> str:
    s = traceparent.decode() if isinstance(traceparent, bytes) else traceparent
    return s.split("-")[1] if s.count("-") >= 3 else s


def headers_dict(headers) -> dict[str, bytes]:
    return dict(headers) if headers else {}


def tag_problem(tagger, key_id: bytes, headers: dict[str, bytes], payload: bytes) -> str | None:
    """Why a provider record's cm.auth does not prove it (missing-auth-tag, unknown-key-id,
    bad-auth-tag), or None when it does: ``tagger`` holds the provider's key, ``key_id`` its
    id. The caller has checked that cm.participant is the participant the key belongs to."""
    auth = headers.get(H_AUTH)
    if not auth:
        return "missing-auth-tag"
    claimed_id, _, tag_hex = auth.partition(b":")
    if claimed_id != key_id:
        return "unknown-key-id"
    try:
        given = bytes.fromhex(tag_hex.decode("ascii"))
    except ValueError:
        return "bad-auth-tag"
    expected = tagger.tag(headers.get(H_PARTICIPANT, b""), headers.get(H_PRODUCT, b""),
                          signed_time(headers.get(H_EVENT_TIME, b""), headers.get(H_SEQUENCE)), payload)
    return None if hmac.compare_digest(expected, given) else "bad-auth-tag"
