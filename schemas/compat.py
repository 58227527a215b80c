"""Backward-compatibility check between two versions of a schema.

"Backward compatible" in the Confluent / Avro sense: a consumer using the NEW schema as its
reader schema can read every record written with the OLD schema. The rules are those of the
Avro specification's "Schema Resolution" section. We check them ourselves because fastavro
resolves schemas at read time but offers no up-front compatibility check, and a broken
product schema must be refused before it reaches the catalog.
"""

from __future__ import annotations

from typing import Any

from fastavro.schema import expand_schema

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}


def _type_name(node: Any) -> str:
    if isinstance(node, list):
        return "union"
    if isinstance(node, dict):
        t = node["type"]
        return t if isinstance(t, str) and t in ("record", "enum", "array", "map", "fixed") else _type_name(t)
    return node


def _short(name: str | None) -> str | None:
    return name.rsplit(".", 1)[-1] if name else name


def _names_match(reader: dict, writer: dict) -> bool:
    rn, wn = _short(reader.get("name")), _short(writer.get("name"))
    return rn == wn or wn in {_short(a) for a in reader.get("aliases", [])}


def _problems(reader: Any, writer: Any, path: str) -> list[str]:
    rt, wt = _type_name(reader), _type_name(writer)
    if wt == "union":
        out: list[str] = []
        for i, branch in enumerate(writer):
            out += _problems(reader, branch, f"{path}<{_type_name(branch)}>")
        return out
    if rt == "union":
        for branch in reader:
            if not _problems(branch, writer, path):
                return []
        return [f"{path}: reader union has no branch that reads writer type {wt}"]
    if isinstance(reader, dict) and reader.get("type") in _PRIMITIVES:
        reader = reader["type"]
    if isinstance(writer, dict) and writer.get("type") in _PRIMITIVES:
        writer = writer["type"]
    if rt in _PRIMITIVES or wt in _PRIMITIVES:
        if rt == wt or rt in _PROMOTIONS.get(wt, ()):
            return []
        return [f"{path}: type changed from {wt} to {rt}"]
    if rt != wt:
        return [f"{path}: type changed from {wt} to {rt}"]
    if rt == "record":
        if not _names_match(reader, writer):
            return [f"{path}: record name changed from {writer.get('name')} to {reader.get('name')}"]
        out = []
        wfields = {f["name"]: f for f in writer["fields"]}
        for rf in reader["fields"]:
            names = [rf["name"], *rf.get("aliases", [])]
            wf = next((wfields[n] for n in names if n in wfields), None)
            if wf is None:
                if "default" not in rf:
                    out.append(f"{path}.{rf['name']}: new field has no default, old records cannot be read")
            else:
                out += _problems(rf["type"], wf["type"], f"{path}.{rf['name']}")
        return out
    if rt == "enum":
        if not _names_match(reader, writer):
            return [f"{path}: enum name changed from {writer.get('name')} to {reader.get('name')}"]
        missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if missing and "default" not in reader:
            return [f"{path}: enum symbols removed without a default: {', '.join(missing)}"]
        return []
    if rt == "array":
        return _problems(reader["items"], writer["items"], f"{path}[]")
    if rt == "map":
        return _problems(reader["values"], writer["values"], f"{path}{{}}")
    if rt == "fixed":
        if not _names_match(reader, writer) or reader["size"] != writer["size"]:
            return [f"{path}: fixed type changed"]
        return []
    return [f"{path}: unsupported type {rt}"]


def backward_problems(new: dict, old: dict) -> list[str]:
    """Why records written with `old` cannot be read with `new`; empty when compatible."""
    return _problems(expand_schema(new), expand_schema(old), new.get("name", "record"))


def is_backward_compatible(new: dict, old: dict) -> bool:
    return not backward_problems(new, old)
