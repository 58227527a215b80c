"""The pseudonymise duty: a keyed HMAC per contract, and the contract key it is keyed with.

Pseudonyms are HMAC-SHA256 (RFC 2104) under a per-contract key from
``derive_contract_key``: the same consumer sees the same pseudonym for the same value on
every record of its contract (it can join its own data), while two contracts' keys differ,
so two consumers cannot join theirs. The inner and outer SHA-256 states of the key are
prepared once (``hmac.new(...).copy()`` avoids the per-call key setup of ``hmac.digest``,
half the cost here) and results are cached per plan: telemetry repeats a serial number
every second, so most records cost one dict look-up.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Callable, Literal

from pydantic import Field

from ..blocks import Compiling, StrictStr
from ..errors import PolicyError
from ..schema_fields import FieldType
from . import DUTIES, FieldDuty, FieldOutput, FieldSlot

PSEUDONYM_CACHE_MAX = 200_000
_KEY_LABEL = b"citymesh/pseudonym-key/v1\x00"


def derive_contract_key(master_secret: bytes, contract_id: str) -> bytes:
    """The 32-byte pseudonym key of one contract: HMAC-SHA256(master, label || contract_id).

    One master secret per mesh, one independent key per contract; knowing one contract's
    key tells nothing about another's."""
    if not isinstance(master_secret, (bytes, bytearray)) or len(master_secret) < 16:
        raise PolicyError("master_secret must be at least 16 bytes")
    if not isinstance(contract_id, str) or not contract_id:
        raise PolicyError("contract_id must be a non-empty string")
    return hmac.digest(bytes(master_secret), _KEY_LABEL + contract_id.encode(), "sha256")


def make_pseudonymiser(key: bytes, n_bytes: int = 16, integer: bool = False) -> Callable[[Any], str]:
    """value -> hex of the first ``n_bytes`` of HMAC-SHA256(key, utf-8 text of value)."""
    if not isinstance(key, (bytes, bytearray)) or len(key) < 16:
        raise PolicyError("pseudonym_key must be at least 16 bytes")
    base = hmac.new(bytes(key), digestmod=hashlib.sha256)
    cache: dict = {}
    get = cache.get

    def pseudonym(v: Any) -> str:
        p = get(v)
        if p is None:
            if integer:
                if v.__class__ is not int:
                    raise TypeError(f"expected an integer, got {type(v).__name__}")
                data = str(v).encode()
            else:
                data = v.encode()  # AttributeError for a non-string: the record is rejected
            h = base.copy()
            h.update(data)
            p = h.digest()[:n_bytes].hex()
            if len(cache) >= PSEUDONYM_CACHE_MAX:
                cache.clear()
            cache[v] = p
        return p

    return pseudonym


@DUTIES.register
class PseudonymiseDuty(FieldDuty):
    """ODRL ``anonymize`` (pseudonymisation): keyed HMAC-SHA256 with the contract's key,
    hex of the first ``bytes`` bytes. Joinable within one contract, not across contracts.
    A field derived from an identifier is always safe pseudonymised."""

    order = 30
    verb = "pseudonymises"
    type: Literal["pseudonymise"]
    field: StrictStr
    bytes: int = Field(16, ge=8, le=32)

    def check_type(self, ft: FieldType, path: str) -> None:
        if ft.base not in ("string", "enum", "int", "long"):
            raise PolicyError(f"field {self.field!r} is {ft.label}; pseudonymise needs a string, enum, int or long "
                              "field", path)

    def compile_field(self, slot: FieldSlot, ctx: Compiling) -> FieldOutput:
        fn = make_pseudonymiser(ctx.pseudonym_key, self.bytes, integer=slot.type.base in ("int", "long"))
        return self.output(slot, slot.call(slot.const + "({v})"),
                           f"HMAC-SHA256 pseudonym under the contract key, {self.bytes} bytes hex", fn,
                           as_string=True)

    def covers_derived(self, identifier: str) -> bool:
        return True
