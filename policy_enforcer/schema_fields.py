"""What the policy engine needs to know about each field of a product's Avro schema.

Why a module of its own: every constraint and duty is checked against the field it names
(does it exist, can a geofence read it as a coordinate, can a mask treat it as text), and
the output schema is derived from the same view, so both agree on what a field is.
Only ``null`` + one other branch unions are understood; a field with a wider union is
reported as ``complex`` and no constraint or duty may touch it (it may still be delivered).
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas import RecordSchema

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NUMERIC = frozenset({"int", "long", "float", "double"})
INTEGER = frozenset({"int", "long"})


@dataclass(frozen=True)
class FieldType:
    """One schema field: ``base`` is a primitive name, ``enum`` or ``complex``."""

    name: str
    base: str
    nullable: bool
    logical: str | None = None
    symbols: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        core = self.logical and f"{self.base}/{self.logical}" or self.base
        return f"nullable {core}" if self.nullable else core


def _named_types(node, namespace: str | None, out: dict[str, dict]) -> None:
    """Collect every named type (record/enum/fixed) definition by full and short name."""
    if isinstance(node, list):
        for branch in node:
            _named_types(branch, namespace, out)
    elif isinstance(node, dict):
        t = node.get("type")
        if t in ("record", "enum", "fixed") and "name" in node:
            name = node["name"]
            ns = node.get("namespace", namespace)
            full = name if "." in name or not ns else f"{ns}.{name}"
            out[full] = node
            out.setdefault(name.rsplit(".", 1)[-1], node)
            if t == "record":
                for f in node.get("fields", []):
                    _named_types(f.get("type"), full.rsplit(".", 1)[0] if "." in full else ns, out)
        elif t in ("array",):
            _named_types(node.get("items"), namespace, out)
        elif t in ("map",):
            _named_types(node.get("values"), namespace, out)


def named_types(schema: RecordSchema) -> dict[str, dict]:
    out: dict[str, dict] = {}
    _named_types(schema.definition, schema.definition.get("namespace"), out)
    return out


def _describe(name: str, node, named: dict[str, dict]) -> FieldType:
    nullable = False
    if isinstance(node, list):
        branches = [b for b in node if b != "null"]
        nullable = len(branches) < len(node)
        if len(branches) != 1:
            return FieldType(name, "complex", nullable)
        node = branches[0]
    if isinstance(node, str):
        if node in PRIMITIVES:
            return FieldType(name, node, nullable)
        node = named.get(node, {"type": "complex"})
    if isinstance(node, dict):
        t = node.get("type")
        if t == "enum":
            return FieldType(name, "enum", nullable, symbols=tuple(node.get("symbols", ())))
        if isinstance(t, str) and t in PRIMITIVES:
            return FieldType(name, t, nullable, logical=node.get("logicalType"))
    return FieldType(name, "complex", nullable)


def field_types(schema: RecordSchema) -> dict[str, FieldType]:
    """Field name -> FieldType, in schema order."""
    named = named_types(schema)
    return {f["name"]: _describe(f["name"], f["type"], named) for f in schema.definition["fields"]}
