"""The Avro schema of what one contract delivers, derived from the product schema.

Why derived and named deterministically: the delivery topic carries Avro single-object
records, whose header is the fingerprint of the writer schema. Naming the schema
``citymesh.delivery.<Source>_<contract id>`` and building it only from the product schema
and the policy gives the same fingerprint on every runner and after every restart, so a
consumer can decode its topic with the schema published in the contract
(``Contract.delivery_schema_json``).

Rules: only delivered fields, in product order; pseudonymised and masked fields become
``string`` (``["null", "string"]`` when the source was nullable); rounded and truncated
fields keep their type. A named type (enum, fixed, record) whose defining field is not
delivered is inlined where it is next used, so references stay resolvable.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from schemas import RecordSchema

from .duties import FieldOutput
from .schema_fields import PRIMITIVES, named_types

NAMESPACE = "citymesh.delivery"


def delivery_name(schema: RecordSchema, contract_id: str) -> str:
    return f"{schema.name}_{re.sub(r'[^A-Za-z0-9_]', '_', contract_id)}"


def _inline(node: Any, named: dict[str, dict], defined: set[str]) -> Any:
    if isinstance(node, str):
        if node in PRIMITIVES or node in defined:
            return node
        definition = named.get(node)
        if definition is None:
            return node
        return _inline(copy.deepcopy(definition), named, defined)
    if isinstance(node, list):
        return [_inline(b, named, defined) for b in node]
    if isinstance(node, dict):
        t = node.get("type")
        if t in ("record", "enum", "fixed") and "name" in node:
            defined.add(node["name"])
            defined.add(node["name"].rsplit(".", 1)[-1])
            if t == "record":
                node["fields"] = [dict(f, type=_inline(f["type"], named, defined)) for f in node.get("fields", [])]
            return node
        if t == "array":
            return dict(node, items=_inline(node["items"], named, defined))
        if t == "map":
            return dict(node, values=_inline(node["values"], named, defined))
        return node
    return node


def _as_string(field: dict) -> dict:
    out = {k: v for k, v in field.items() if k not in ("type", "default")}
    t = field["type"]
    if isinstance(t, list) and "null" in t:
        out["type"] = ["null", "string"]
        out["default"] = None
    else:
        out["type"] = "string"
    return out


def build_output_schema(schema: RecordSchema, contract_id: str, outputs: list[FieldOutput]) -> RecordSchema:
    named = named_types(schema)
    source = {f["name"]: f for f in schema.definition["fields"]}
    defined: set[str] = set()
    fields = []
    for out in outputs:
        f = copy.deepcopy(source[out.name])
        if out.as_string:
            f = _as_string(f)
        else:
            f["type"] = _inline(f["type"], named, defined)
        if out.rule:
            f["doc"] = (f.get("doc", "") + f" [{out.rule}: {out.text}]").strip()
        fields.append(f)
    definition = {
        "type": "record",
        "name": delivery_name(schema, contract_id),
        "namespace": NAMESPACE,
        "doc": f"{schema.full_name} as delivered under contract {contract_id}.",
        "fields": fields,
    }
    return RecordSchema.from_definition(definition)
