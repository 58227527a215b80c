"""Authentic deliveries: what a consumer checks on every record of its delivery topic.

On a broker without ACLs anyone can write into a consumer's delivery topic, and even with
ACLs a consumer should not have to trust the broker. So every delivery carries (the mesh
writes them: processors/stages/seal.py):

``cm.auth``  the record's tag: the first 16 bytes, in hex, of HMAC-SHA256 under the
             contract's *delivery key* over
             ``cm.contract NUL cm.src NUL key NUL timestamp NUL traceparent NUL payload``
             (key empty when the record has none, timestamp in decimal milliseconds). The
             operator hands the delivery key to the contract's consumer (`citymesh apply`
             writes it to ``<keys>/deliveries/<consumer>.json``; a transfer's DSP data
             address carries it sealed to the consumer's key, streams/keyring.py).
``cm.seal``  on the last record of each batch: ``<count>:<digest>:<operator>:<signature>``.
             The digest is SHA-256 (hex) over the concatenated ``cm.auth`` values of the
             records since the previous seal in that partition, this one included; the
             signature is the Ed25519 signature (hex) of the participant ``<operator>``,
             which must hold the OPERATOR role in cm.control.participants, checked with the
             public key registered there, over
             ``citymesh/seal/v1 NUL cm.contract NUL partition NUL count NUL digest``.

A consumer with only confluent-kafka and the standard library verifies a record with
``hmac.new(key, b"\\0".join([contract, src, msg.key() or b"", b"%d" % msg.timestamp()[1],
traceparent, msg.value()]), "sha256").hexdigest()[:32] == auth`` and a seal with any Ed25519
library. The tag is what a forger without the key cannot make; the seal is what even a
holder of the key (the consumer itself, or someone who stole it) cannot: only the mesh
writes a batch that seals.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from schemas.headers import AUTH, CONTRACT, SEAL, SOURCE_REF, TRACE, parse_contract

from .envelope import Tagger

SEAL_LABEL = b"citymesh/seal/v1"
OK = "ok"
FORGED = "forged"
UNVERIFIED = "unverified"


TAG_MIDDLE = b"%b\x00%d\x00%b"  # key, timestamp, traceparent: the third of the four parts below


def tag_parts(contract: bytes, ref: bytes, key: bytes | None, timestamp_ms: int, traceparent: bytes,
              payload: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """The four parts a Tagger joins (with NULs) into the six-part message of a delivery's tag."""
    return contract, ref, TAG_MIDDLE % (key or b"", timestamp_ms, traceparent), payload


def tag_deliveries_py(tagger, contract: bytes, timestamp_ms: int, payloads: list, keys: list, headers: list,
                      ref_at: int, trace_at: int, name: str) -> list:
    """The tag of each of one contract's deliveries in a batch (None where the payload is
    None: not delivered), each also appended to the record's header list as (name, hex tag);
    cm.src and traceparent are the values of the header pairs at ref_at and trace_at.
    The reference of the C Tagger's tag_deliveries (streams/_hmac.c)."""
    tags = []
    for payload, key, hs in zip(payloads, keys, headers):
        tag = None if payload is None else tagger.tag_hex(
            *tag_parts(contract, hs[ref_at][1], key, timestamp_ms, hs[trace_at][1], payload)).encode()
        if tag is not None:
            hs.append((name, tag))
        tags.append(tag)
    return tags


def tag_deliveries(tagger, *args) -> list:
    """tag_deliveries_py's result, in one C call when the tagger is the native one."""
    native = getattr(tagger, "tag_deliveries", None)
    return native(*args) if native is not None else tag_deliveries_py(tagger, *args)


def seal_message(contract: bytes, partition: int, count: int, digest_hex: bytes) -> bytes:
    """What the operator signs for one seal."""
    return b"\x00".join((SEAL_LABEL, contract, b"%d" % partition, b"%d" % count, digest_hex))


def seal_digest(tags: list[bytes]) -> bytes:
    """SHA-256 (hex) over the hex tags of a seal's records, in order."""
    return hashlib.sha256(b"".join(tags)).hexdigest().encode()


@dataclass
class _Partition:
    tags: list[bytes] = field(default_factory=list)  # authentic tags since the last seal
    synced: bool = False  # a seal was seen: the next one covers exactly what followed it


class DeliveryVerifier:
    """Checks the records of one contract's delivery topic, in the order read per partition.

    ``check(msg)`` returns (verdict, reason): OK, FORGED (the record is not the mesh's for
    this contract, or its seal fails) or UNVERIFIED (no delivery key to check with). A seal
    met before the first seal of a partition was seen (the reader started mid-batch) cannot
    be checked and is not held against the record."""

    def __init__(self, contract_id: str, delivery_key: bytes | None, operators: Callable[[], dict[str, str]]):
        """``operators()`` gives participant id -> registered public key (hex) of the
        participants with the OPERATOR role; it is asked again for a signer it does not know."""
        self.contract_id = contract_id
        self._tagger = Tagger(delivery_key) if delivery_key else None
        self._operators_of = operators
        self._operators: dict[str, Ed25519PublicKey] = {}
        self._parts: dict[int, _Partition] = {}

    def check(self, msg) -> tuple[str, str | None]:
        if self._tagger is None:
            return UNVERIFIED, "no delivery key for this contract"
        h = dict(msg.headers() or ())
        contract, auth, ref = h.get(CONTRACT), h.get(AUTH), h.get(SOURCE_REF)
        if contract is None or parse_contract(contract)[0] != self.contract_id:
            return FORGED, f"not a delivery of contract {self.contract_id} (cm.contract {contract!r})"
        if auth is None or ref is None:
            return FORGED, "no cm.auth or cm.src"
        expected = self._tagger.tag_hex(*tag_parts(contract, ref, msg.key(), msg.timestamp()[1], h.get(TRACE, b""),
                                                   msg.value() or b"")).encode()
        if not hmac.compare_digest(expected, auth):
            return FORGED, "the delivery tag does not match the record"
        part = self._parts.setdefault(msg.partition(), _Partition())
        part.tags.append(auth)
        seal = h.get(SEAL)
        if seal is None:
            return OK, None
        tags, part.tags = part.tags, []
        synced, part.synced = part.synced, True
        why = self._check_seal(seal, contract, msg.partition(), tags)
        if why is None or not synced:
            return OK, None
        return FORGED, why

    def _check_seal(self, seal: bytes, contract: bytes, partition: int, tags: list[bytes]) -> str | None:
        try:
            count, digest, signer, signature = seal.split(b":")
            n = int(count)
            sig = bytes.fromhex(signature.decode("ascii"))
        except ValueError:
            return f"malformed seal {seal[:40]!r}"
        if n != len(tags) or digest != seal_digest(tags):
            return f"the seal covers {n} record(s) with another digest than the {len(tags)} read since the last seal"
        key = self._operator(signer.decode("utf-8", "replace"))
        if key is None:
            return f"the seal is signed by {signer!r}, not a registered operator"
        try:
            key.verify(sig, seal_message(contract, partition, n, digest))
        except InvalidSignature:
            return "the seal's signature is not the operator's"
        return None

    def _operator(self, pid: str) -> Ed25519PublicKey | None:
        if pid not in self._operators:
            self._operators = {p: Ed25519PublicKey.from_public_bytes(bytes.fromhex(k))
                               for p, k in self._operators_of().items() if k}
        return self._operators.get(pid)
