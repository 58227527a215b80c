"""Avro schemas for every record on the wire, and the code that loads, fingerprints and
checks them. Depends on the standard library and fastavro only."""

from .compat import backward_problems, is_backward_compatible
from .errors import CitymeshError
from .loader import (
    HEADER_LEN,
    SCHEMA_DIR,
    RecordInvalid,
    RecordSchema,
    Registry,
    SchemaError,
    UnknownSchema,
    available,
    default_registry,
    load,
    load_file,
)

__all__ = [
    "CitymeshError", "HEADER_LEN", "SCHEMA_DIR", "RecordInvalid", "RecordSchema", "Registry", "SchemaError",
    "UnknownSchema", "available", "default_registry", "load", "load_file",
    "backward_problems", "is_backward_compatible",
]
