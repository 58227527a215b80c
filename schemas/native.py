"""The C Avro codec (schemas/_avro.c) and the switch for every C part of citymesh.

Why C: the enforcement runner decodes every raw record it admits and encodes every record it
delivers, once per contract. fastavro's generic reader and writer walk the schema for every
record (UavTelemetry here: decode 6.6–8.0 µs, encode 8.6–9.9 µs); the C walker of the same
schema takes 0.6–0.7 and 0.4–0.7 µs, 11–22 times less (bench/bench_codec.py). fastavro stays the
reference and the fallback: tests check that whatever the C decoder reads whole fastavro
reads whole and to the same record, and that the C encoder writes fastavro's bytes; where
the C codec is not built, switched off (CITYMESH_NATIVE=0) or does not handle a schema
(Unsupported: unions other than [null, X], named references), schemas.loader uses fastavro.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from fastavro.schema import expand_schema

from .errors import CitymeshError

try:  # built by `pip install -e .`
    from . import _avro
except ImportError:  # pragma: no cover - a checkout whose extension was not built
    _avro = None

_PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")


class Unsupported(CitymeshError):
    """The C codec is not there for this schema: use fastavro."""


def native_enabled() -> bool:
    """False when CITYMESH_NATIVE=0 switches off every C part (this codec and the record tag
    in streams/_hmac.c), to measure the Python code they replace."""
    return os.environ.get("CITYMESH_NATIVE", "1") != "0"


def native_available() -> bool:
    """Whether schemas._avro is built and not switched off."""
    return _avro is not None and native_enabled()


def program(t: Any) -> tuple:
    """The tuple program schemas/_avro.c walks, for an expanded schema (named types inlined)."""
    if not native_available():
        raise Unsupported("schemas._avro is not built or is switched off")
    if isinstance(t, dict) and t.get("type") in _PRIMITIVES:
        t = t["type"]
    if isinstance(t, str):
        if t not in _PRIMITIVES:
            raise Unsupported(f"named reference {t}")
        return (getattr(_avro, t.upper()),)
    if isinstance(t, list):
        names = [b if isinstance(b, str) else b.get("type") for b in t]
        if not (len(t) == 2 and "null" in names):
            raise Unsupported("union other than [null, X]")
        ni = names.index("null")
        return (_avro.UNION_NULL, ni, program(t[1 - ni]))
    kind = t["type"]
    if kind == "record":
        fields = t["fields"]
        return (_avro.RECORD, tuple(f["name"] for f in fields), tuple(program(f["type"]) for f in fields),
                tuple(f.get("default", _avro.MISSING) for f in fields))
    if kind == "enum":
        return (_avro.ENUM, tuple(t["symbols"]))
    if kind == "fixed":
        return (_avro.FIXED, t["size"])
    if kind in ("array", "map"):
        return (_avro.ARRAY if kind == "array" else _avro.MAP, program(t["items" if kind == "array" else "values"]))
    raise Unsupported(f"type {kind}")


def decoder(definition: dict) -> Callable[[bytes, int], tuple[dict, int]]:
    """decode(buf, pos) -> (record, end). Strict where the Avro spec is (boolean byte, enum
    index, union branch, negative length, a varint over 64 bits, UTF-8, a buffer that ends
    early): it raises ValueError or IndexError on anything that is not a record."""
    return _avro.Decoder(program(expand_schema(definition)))


def encoder(definition: dict) -> Callable[[dict], bytes]:
    """encode(record) -> the Avro binary body; TypeError, ValueError, KeyError or
    OverflowError naming the problem for a record that does not fit the schema."""
    return _avro.Encoder(program(expand_schema(definition)))


def fields_encoder(definition: dict, prefix: bytes = b"", fields: slice | None = None) -> Callable[..., bytes]:
    """encode(v0, v1, ...) -> prefix + body, the record given as its field values in order
    (a contract's plan computes them positionally: no dict per record). With `fields`, only
    those fields: an Avro record's body is its fields' encodings one after the other, so the
    bodies of consecutive slices joined are the whole record's body."""
    expanded = expand_schema(definition)
    if fields is not None:
        expanded = {**expanded, "fields": expanded["fields"][fields]}
    return _avro.Encoder(program(expanded), prefix, True)
