"""Load the `.avsc` files, fingerprint them and encode/decode records on the wire.

Every citymesh record travels in Avro *single-object encoding* (Avro spec, "Single object
encoding"): the two marker bytes C3 01, the 8-byte little-endian CRC-64-AVRO fingerprint of
the writer schema's parsing canonical form, then the plain Avro binary body. Any Avro
library can therefore decode a citymesh record with the `.avsc` file alone, and a reader
can tell from the payload itself which schema wrote it, with no registry round trip.
"""

from __future__ import annotations

import copy
import io
import json
import struct
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Iterable

import fastavro
from fastavro.schema import fingerprint as _fingerprint
from fastavro.schema import parse_schema, to_parsing_canonical_form
from fastavro.validation import validate as _validate

from .native import Unsupported, decoder, encoder
from .errors import CitymeshError

SCHEMA_DIR = Path(__file__).resolve().parent
SINGLE_OBJECT_MARKER = b"\xc3\x01"
HEADER_LEN = 10  # marker + 8-byte fingerprint


class SchemaError(ValueError, CitymeshError):
    """A schema file is missing, unreadable or not valid Avro."""


class RecordInvalid(ValueError, CitymeshError):
    """A record does not conform to its schema; nothing was encoded."""


class UnknownSchema(ValueError, CitymeshError):
    """A payload names a schema fingerprint this process does not know."""


def _strip_logical_types(node: Any) -> Any:
    """Return the schema without logicalType annotations.

    The binary encoding is the same and so is the canonical form (which drops them), but
    reading without them keeps timestamps as plain ints on the hot path instead of
    building datetime objects for every record.
    """
    if isinstance(node, dict):
        return {k: _strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical_types(v) for v in node]
    return node


@dataclass(frozen=True)
class RecordSchema:
    """One Avro record schema, parsed once, with its fingerprint and codec."""

    definition: dict
    parsed: Any = field(repr=False)
    canonical: str = field(repr=False)
    fingerprint: str  # hex, the 8 bytes in wire (little-endian) order

    @classmethod
    def from_definition(cls, definition: dict) -> "RecordSchema":
        try:
            canonical = to_parsing_canonical_form(definition)
            parsed = parse_schema(_strip_logical_types(copy.deepcopy(definition)))
        except Exception as exc:  # fastavro raises several types for a bad schema
            raise SchemaError(f"invalid Avro schema {definition.get('name', '?')!r}: {exc}") from exc
        schema = cls(definition, parsed, canonical, _fingerprint(canonical, "CRC-64-AVRO"))
        try:
            body = encoder(definition)
        except Unsupported:
            body = None
        object.__setattr__(schema, "_body_encoder", body)
        try:
            reader = decoder(definition)
        except Unsupported:
            reader = None
        object.__setattr__(schema, "_body_decoder", reader)
        return schema

    @property
    def full_name(self) -> str:
        ns = self.definition.get("namespace")
        name = self.definition["name"]
        return name if "." in name or not ns else f"{ns}.{name}"

    @property
    def name(self) -> str:
        return self.full_name.rsplit(".", 1)[-1]

    @property
    def field_names(self) -> list[str]:
        return [f["name"] for f in self.definition["fields"]]

    @property
    def header(self) -> bytes:
        return SINGLE_OBJECT_MARKER + bytes.fromhex(self.fingerprint)

    def encode(self, record: dict) -> bytes:
        """Encode one record (single-object); raise RecordInvalid naming the offending field."""
        return self.header + self.encode_body(record)

    def encode_body(self, record: dict) -> bytes:
        """The plain Avro binary body, without the single-object header."""
        try:
            if self._body_encoder is not None:
                return self._body_encoder(record)
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, self.parsed, record, strict_allow_default=True)  # as the C one
            return buf.getvalue()
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError, struct.error) as exc:
            raise RecordInvalid(self._explain(record, exc)) from None

    def read_body(self, buf: bytes, pos: int) -> tuple[dict, int]:
        """The record whose Avro binary body starts at buf[pos] and the position after it
        (the caller decides whether bytes may follow). Raises on malformed input (any of
        ValueError, IndexError, UnicodeDecodeError, struct.error, EOFError...): the C decoder
        where it is built, else fastavro (schemas/native.py)."""
        if self._body_decoder is not None:
            return self._body_decoder(buf, pos)
        bio = io.BytesIO(buf)
        bio.seek(pos)
        record = fastavro.schemaless_reader(bio, self.parsed, None)
        return record, bio.tell()

    @property
    def body_reader(self):
        """read_body itself, without the method call around it, for a per-record loop."""
        return self._body_decoder or self.read_body

    def decode(self, payload: bytes) -> dict:
        """Decode a single-object payload written with exactly this schema; the payload must be
        the record and nothing else (RecordInvalid otherwise: a body cut short, trailing bytes
        or malformed Avro)."""
        if payload[:HEADER_LEN] != self.header:
            raise UnknownSchema(f"payload is not a {self.full_name} single-object record")
        return self.decode_body(payload)

    def decode_body(self, payload: bytes) -> dict:
        """The record of a single-object payload whose header was already checked."""
        try:
            record, end = self.read_body(payload, HEADER_LEN)
        except Exception as exc:  # noqa: BLE001 - whatever the reader raises, the payload is malformed
            raise RecordInvalid(f"{self.full_name}: malformed Avro body ({type(exc).__name__}: {exc})") from None
        if end != len(payload):
            what = f"{len(payload) - end} trailing byte(s)" if end < len(payload) else "a body cut short"
            raise RecordInvalid(f"{self.full_name}: {what}")
        return record

    def _explain(self, record: Any, exc: Exception) -> str:
        if not isinstance(record, dict):
            return f"{self.full_name}: expected a dict record, got {type(record).__name__}"
        extra = sorted(set(record) - set(self.field_names))
        if extra:
            return f"{self.full_name}: unknown field(s) {', '.join(extra)}"
        for f in self.definition["fields"]:
            if f["name"] not in record and "default" not in f:
                return f"{self.full_name}: missing required field {f['name']!r}"
        for f in self.definition["fields"]:
            if f["name"] in record:
                one = {"type": "record", "name": "_F", "fields": [dict(f, name="v")]}
                try:
                    _validate({"v": record[f["name"]]}, parse_schema(_strip_logical_types(one), named_schemas=_named(self)), raise_errors=True)
                except Exception:
                    return (f"{self.full_name}: field {f['name']!r} has invalid value "
                            f"{record[f['name']]!r} for type {json.dumps(_without_docs(f['type']), ensure_ascii=False)}")
        return f"{self.full_name}: {exc}"


def _without_docs(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_docs(v) for k, v in node.items() if k != "doc"}
    if isinstance(node, list):
        return [_without_docs(v) for v in node]
    return node


def _named(schema: RecordSchema) -> dict:
    named: dict = {}
    parse_schema(_strip_logical_types(copy.deepcopy(schema.definition)), named_schemas=named)
    return named


@cache
def load(name: str) -> RecordSchema:
    """Load `schemas/<name>.avsc` (name with or without the namespace)."""
    short = name.rsplit(".", 1)[-1]
    path = SCHEMA_DIR / f"{short}.avsc"
    if not path.is_file():
        known = ", ".join(sorted(available()))
        raise SchemaError(f"no schema {name!r} in {SCHEMA_DIR} (known: {known})")
    return load_file(path)


def load_file(path: Path | str) -> RecordSchema:
    """Parse one `.avsc` file; a broken file names itself in the error."""
    path = Path(path)
    try:
        definition = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SchemaError(f"{path}: {exc}") from exc
    try:
        return RecordSchema.from_definition(definition)
    except SchemaError as exc:
        raise SchemaError(f"{path}: {exc}") from exc


def available() -> list[str]:
    """Short names of every schema shipped in this package."""
    return sorted(p.stem for p in SCHEMA_DIR.glob("*.avsc"))


class Registry:
    """Schemas by fingerprint, so a reader can decode any payload it knows the writer of."""

    def __init__(self, schemas: Iterable[RecordSchema] = ()):
        self._by_fp: dict[bytes, RecordSchema] = {}
        for s in schemas:
            self.add(s)

    def add(self, schema: RecordSchema) -> None:
        self._by_fp[schema.header[2:]] = schema

    def get(self, fingerprint_hex: str) -> RecordSchema:
        try:
            return self._by_fp[bytes.fromhex(fingerprint_hex)]
        except (KeyError, ValueError):
            raise UnknownSchema(f"unknown schema fingerprint {fingerprint_hex!r}") from None

    def schema_of(self, payload: bytes) -> RecordSchema:
        if len(payload) < HEADER_LEN or payload[:2] != SINGLE_OBJECT_MARKER:
            raise UnknownSchema("payload is not Avro single-object encoded")
        schema = self._by_fp.get(payload[2:HEADER_LEN])
        if schema is None:
            raise UnknownSchema(f"unknown schema fingerprint {payload[2:HEADER_LEN].hex()}")
        return schema

    def decode(self, payload: bytes) -> tuple[RecordSchema, dict]:
        schema = self.schema_of(payload)
        return schema, schema.decode_body(payload)


@cache
def default_registry() -> Registry:
    """Every schema shipped in `schemas/`."""
    return Registry(load(n) for n in available())
