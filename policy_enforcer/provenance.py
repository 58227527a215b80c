"""What a consumer sees of a record's origin: per-contract, unlinkable, resolvable by the mesh.

The problem: a delivery has to say where it came from, for the consumer (tracing, support
requests), for the mesh (a restarted runner fences off what a crashed one already wrote,
processors/fencing.py) and for the regulator (which source record, which compliance batch).
Written in clear (source partition and offset, the provider's W3C trace id), those values
are the same in every contract's delivery of one source record, so two consumers can join
their records one to one and undo each other's pseudonyms.

The decision: every provenance value a consumer receives is encrypted under a key of its
own contract, derived from the contract's key (``derive_contract_key``, the mesh's master
secret and the contract id), so only the mesh can read it and two contracts' values for
the same record are unrelated:

- ``cm.src`` (the *source reference*) is AES-256 of one 16-byte block,
  ``b"cmr1" | source partition (4 bytes, big-endian) | source offset (8 bytes)``, in hex.
  Each block is unique per record of one product, so the block cipher used directly (ECB
  on single, distinct blocks: a keyed pseudo-random permutation) is deterministic
  encryption that reveals nothing but equality, and equality never occurs. The mesh opens
  it with the same key; the 4-byte tag makes a forged or garbled reference fail to open
  instead of naming a wrong record. Deterministic matters: a replayed batch after a crash
  produces the same references, and fencing reads them back (``SourceRefs.open``).
- ``traceparent`` keeps the W3C Trace Context format (version 00, sampled). Its trace id
  is AES-256, under a second contract key, of the provider's 16-byte trace id: one trace
  stays one trace within a contract, and the mesh maps it back to the provider's trace
  (``TraceIds.open``); its span id is the first 8 bytes of the record's encrypted source
  block under that key, so every delivery has its own span. A value that came out all
  zero (which W3C forbids; the chance is 2^-64) is replaced by 1.

Why a block cipher rather than an HMAC: the mesh must be able to *resolve* what it hands
out (fencing, the ledger, the operator, the regulator) without keeping a table, and one
AES call encrypts a whole batch (every record's block in one buffer), so the per-record
cost is a slice of a hex string.
"""

from __future__ import annotations

import binascii
import hmac
import struct
from typing import Iterable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import PolicyError

SOURCE_TAG = b"cmr1"
_TRACE_TAG = b"cmt1"
_BLOCK = struct.Struct(">4sIQ")
_LABEL_SOURCE = b"citymesh/source-ref/v1"
_LABEL_TRACE = b"citymesh/trace/v1"
_LABEL_DELIVERY = b"citymesh/delivery-tag/v1"
_ZERO_SPAN, _ONE_SPAN = b"0" * 16, b"0" * 15 + b"1"
_ZERO_TRACE, _ONE_TRACE = b"0" * 32, b"0" * 31 + b"1"


def _subkey(contract_key: bytes, label: bytes) -> bytes:
    if not isinstance(contract_key, (bytes, bytearray)) or len(contract_key) < 16:
        raise PolicyError("the contract key must be at least 16 bytes")
    return hmac.digest(bytes(contract_key), label, "sha256")


def delivery_key(contract_key: bytes) -> bytes:
    """The key of a contract's per-record delivery tags (cm.auth on its deliveries,
    processors/stages/seal.py): the operator hands it to the contract's consumer, who
    verifies every record with it. Derived, like the others, from the contract's key."""
    return _subkey(contract_key, _LABEL_DELIVERY)


def source_blocks(partition: int, offsets: Iterable[int]) -> bytes:
    """The plaintext source blocks of a batch from one partition, one 16-byte block per
    offset; built once per batch and encrypted once per contract."""
    pack = _BLOCK.pack
    return b"".join(pack(SOURCE_TAG, partition, o) for o in offsets)


def trace_blocks(traceparents: list[bytes | None], sources: bytes) -> bytes:
    """The providers' 16-byte trace ids of a batch, in one buffer. A record without a
    well-formed traceparent gets its source position under a tag of its own instead: it
    still has a trace of its own, unlike any span or source reference."""
    hexes = [tp[3:35] if tp and len(tp) == 55 and tp[2] == 45 and tp[35] == 45 else None for tp in traceparents]
    if None not in hexes:
        try:
            return binascii.unhexlify(b"".join(hexes))  # the common case, in one call
        except (binascii.Error, ValueError):
            pass
    out = []
    for i, h in enumerate(hexes):
        try:
            out.append(binascii.unhexlify(h) if h is not None else None)
        except (binascii.Error, ValueError):
            out.append(None)
        if out[-1] is None:
            out[-1] = _TRACE_TAG + sources[16 * i + 4:16 * i + 16]
    return b"".join(out)


class SourceRefs:
    """Seal and open one contract's source references (``cm.src``)."""

    __slots__ = ("_cipher",)

    def __init__(self, contract_key: bytes):
        self._cipher = Cipher(algorithms.AES(_subkey(contract_key, _LABEL_SOURCE)), modes.ECB())

    def seal(self, blocks: bytes) -> list[bytes]:
        """Every record's reference: its encrypted block in hex (32 characters), in order."""
        return _hex_blocks(self._cipher.encryptor().update(blocks))

    def open(self, ref: bytes | str) -> tuple[int, int] | None:
        """(source partition, source offset) of a reference this contract's runner wrote;
        None for anything else (another contract's, forged, garbled)."""
        try:
            raw = bytes.fromhex(ref.decode("ascii") if isinstance(ref, bytes) else ref)
        except (ValueError, UnicodeDecodeError):
            return None
        if len(raw) != 16:
            return None
        tag, partition, offset = _BLOCK.unpack(self._cipher.decryptor().update(raw))
        return (partition, offset) if tag == SOURCE_TAG else None


class TraceIds:
    """One contract's W3C traceparent values (see the module docstring)."""

    __slots__ = ("_cipher",)

    def __init__(self, contract_key: bytes):
        self._cipher = Cipher(algorithms.AES(_subkey(contract_key, _LABEL_TRACE)), modes.ECB())

    def seal(self, traces: bytes, sources: bytes) -> list[bytes]:
        """Every record's traceparent: its encrypted trace block as the trace id, the first
        half of its encrypted source block as the span id (``traceparents``)."""
        enc = self._cipher.encryptor()
        return traceparents(enc.update(traces).hex().encode(), enc.update(sources).hex().encode())

    def open(self, traceparent: bytes | str) -> str | None:
        """The provider's trace id (32 hex) behind a delivery's traceparent, or None."""
        s = traceparent.decode("ascii", "replace") if isinstance(traceparent, bytes) else traceparent
        parts = s.split("-")
        if len(parts) != 4 or len(parts[1]) != 32:
            return None
        try:
            return self._cipher.decryptor().update(bytes.fromhex(parts[1])).hex()
        except ValueError:
            return None


TRACEPARENT = b"00-%b-%b-01"  # W3C: version 00, trace id, span (parent) id, flags 01 = sampled
_TRACEPARENT_ROW = b"00-" + b"0" * 32 + b"-" + b"0" * 16 + b"-01 "  # one record's, and a space
_ROW = len(_TRACEPARENT_ROW)
_FEW = 32  # below this many records a slice formats them one by one (see traceparents)


def traceparents(trace_hex: bytes, source_hex: bytes) -> list[bytes]:
    """Each record's traceparent from its encrypted trace block and its encrypted source
    block, in hex (32 characters a record each): the trace id, and the source block's first
    half as the span id. W3C forbids all-zero ids (one chance in 2^64 per record): such an id
    becomes ...01.

    This runs once per delivery. A slice of a few dozen records or more is laid out column by
    column in one buffer (48 slice copies in C, however many records) and split at the
    spaces, instead of formatted record by record, which cost each delivery 0.1-0.2 µs more
    (bench/RESULTS.md, "The per-delivery work of a contract"). A run of 16 zeros anywhere
    sends the slice the per-record way, which alone replaces zero ids."""
    n = len(trace_hex) // 32
    if n >= _FEW and _ZERO_SPAN not in trace_hex and _ZERO_SPAN not in source_hex:
        out = bytearray(_TRACEPARENT_ROW * n)
        for j in range(32):
            out[3 + j::_ROW] = trace_hex[j::32]
        for j in range(16):
            out[36 + j::_ROW] = source_hex[j::32]
        return bytes(out).split()
    trace_ids = [trace_hex[i:i + 32] for i in range(0, 32 * n, 32)]
    span_ids = [source_hex[i:i + 16] for i in range(0, 32 * n, 32)]
    trace_ids = [_ONE_TRACE if t == _ZERO_TRACE else t for t in trace_ids]
    span_ids = [_ONE_SPAN if x == _ZERO_SPAN else x for x in span_ids]
    return list(map(TRACEPARENT.__mod__, zip(trace_ids, span_ids)))


def _hex_blocks(data: bytes) -> list[bytes]:
    """Each 16-byte block of ``data`` in hex (32 characters), split in C."""
    return data.hex(" ", 16).encode().split()
