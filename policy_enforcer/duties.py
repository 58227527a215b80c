"""Duties fulfilled in transit: what each delivered field becomes.

Every delivered field gets one expression over the source record ``r`` (a plain copy, or
the copy passed through a mask, pseudonym, rounding, time truncation or PII scrubber);
``plan.py`` assembles them into one dict display, the fastest way CPython builds a dict.
Null stays null for nullable fields; any other value the duty cannot process raises, and
the plan rejects the record naming the duty.

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
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import PolicyError
from .lineage import context_scrubber
from .policy import CheckedPolicy, GeneraliseDuty, MaskDuty, PseudonymiseDuty, ScrubPiiDuty

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


def make_mask(keep_first: int, keep_last: int, char: str) -> Callable[[str], str]:
    """Mask all but the first/last characters; a value too short to keep anything is masked whole."""
    keep = keep_first + keep_last

    def mask(v: str) -> str:
        if v.__class__ is not str:
            raise TypeError(f"expected a string, got {type(v).__name__}")
        n = len(v)
        if n <= keep:
            return char * n
        return v[:keep_first] + char * (n - keep) + v[n - keep_last:]

    return mask


def checked_scrubber(scrubber: Callable[[str], str]) -> Callable[[str], str]:
    def scrub(v: str) -> str:
        if v.__class__ is not str:
            raise TypeError(f"expected a string, got {type(v).__name__}")
        out = scrubber(v)
        if out.__class__ is not str:
            raise TypeError(f"scrubber returned {type(out).__name__}, not str")
        return out

    return scrub


def default_scrubber(path: str) -> Callable[[str], str]:
    """``policy_enforcer.pii.scrub``, imported only when a policy needs it."""
    try:
        from . import pii  # noqa: PLC0415 - lazy on purpose: most plans never scrub
    except ImportError as exc:
        raise PolicyError(f"scrub_pii needs policy_enforcer.pii, which cannot be imported ({exc})", path) from None
    return pii.scrub


@dataclass
class FieldOutput:
    """How one delivered field is produced; ``rule`` is None for a plain copy."""

    name: str
    expr: str
    rule: str | None = None
    path: str | None = None
    text: str = "copied"
    as_string: bool = False          # the output schema types it as string
    consts: dict[str, Any] = field(default_factory=dict)


def compile_fields(checked: CheckedPolicy, pseudonym_key: bytes,
                   scrubber: Callable[[str], str] | None) -> list[FieldOutput]:
    """One FieldOutput per delivered field, in schema order."""
    by_field = {d.field: (path, d) for path, d in checked.duties if hasattr(d, "field")}
    out: list[FieldOutput] = []
    for n, name in enumerate(checked.delivered):
        src = f"r[{name!r}]"
        context = checked.context_scrub.get(name)
        if name not in by_field and not context:
            out.append(FieldOutput(name, src))
            continue
        path, d = by_field.get(name, ("policy.permission.fields", None))
        ft = checked.fields[name]
        p = f"_d{n}"
        v = f"v{n}"

        def call(fn_expr: str) -> str:
            """``fn_expr`` names the value once as ``{v}``; null passes through a nullable field."""
            if ft.nullable:
                return f"(None if ({v} := {src}) is None else {fn_expr.format(v=v)})"
            return fn_expr.format(v=src)

        if context and (d is None or isinstance(d, ScrubPiiDuty)):
            # lineage (policy_enforcer/lineage.py): free text that may contain a protected identifier
            fn = context_scrubber(scrubber if scrubber is not None else default_scrubber(path), context)
            why = "" if d is not None else " (automatic: the catalog says the text may contain them)"
            out.append(FieldOutput(name, call(p + "({v}, r)"), f"duty:scrub_pii:{name}", path,
                                   f"the record's own {', '.join(context)} and any other personal information "
                                   f"scrubbed from the text{why}", False, {p: fn}))
        elif isinstance(d, PseudonymiseDuty):
            fn = make_pseudonymiser(pseudonym_key, d.bytes, integer=ft.base in ("int", "long"))
            out.append(FieldOutput(name, call(p + "({v})"), f"duty:pseudonymise:{name}", path,
                                   f"HMAC-SHA256 pseudonym under the contract key, {d.bytes} bytes hex",
                                   True, {p: fn}))
        elif isinstance(d, MaskDuty):
            out.append(FieldOutput(name, call(p + "({v})"), f"duty:mask:{name}", path,
                                   f"masked with {d.char!r}, keeping first {d.keep_first} and last {d.keep_last}",
                                   True, {p: make_mask(d.keep_first, d.keep_last, d.char)}))
        elif isinstance(d, ScrubPiiDuty):
            fn = checked_scrubber(scrubber if scrubber is not None else default_scrubber(path))
            out.append(FieldOutput(name, call(p + "({v})"), f"duty:scrub_pii:{name}", path,
                                   "personal information scrubbed from the text", False, {p: fn}))
        elif isinstance(d, GeneraliseDuty):
            if d.decimals is not None:
                out.append(FieldOutput(name, call(f"round({{v}}, {p})"), f"duty:generalise:{name}", path,
                                       f"rounded to {d.decimals} decimals", False, {p: d.decimals}))
            else:
                expr = f"({{v}} - {{v}} % {p})"
                if ft.nullable:
                    full = f"(None if ({v} := {src}) is None else {expr.format(v=v)})"
                else:
                    full = f"(({v} := {src}) - {v} % {p})"
                out.append(FieldOutput(name, full, f"duty:generalise:{name}", path,
                                       f"truncated to a {d.period_s} s period", False, {p: d.period_s * 1000}))
        else:  # pragma: no cover - check_policy admits no other duty with a field
            raise PolicyError(f"duty {d.type!r} has no compiler", path)
    return out
