"""Read a topology YAML file into a validated Topology, with errors that name the file,
the line, the entry and the field ("city.yaml:42: contracts[2] (c-ins).consumer: ...")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

import schemas
from schemas.errors import CitymeshError

from .models import Topology, TopologyError
from .policies import resolve_offer, resolve_policy
from .rules import check_operator_rules


class TopologyFileError(ValueError, CitymeshError):
    """A topology file could not be read or is invalid; the message says where and why."""


def _line_index(text: str) -> dict[tuple, int]:
    """Map each key path to its 1-based line, from YAML's node tree."""
    index: dict[tuple, int] = {}

    def walk(node: Any, path: tuple) -> None:
        index[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = k.value
                index[path + (key,)] = k.start_mark.line + 1
                walk(v, path + (key,))
                index[path + (key,)] = k.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, path + (i,))

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return index


def _describe(path: tuple, raw: dict) -> str:
    """contracts[2] (c-ins).valid.not_after"""
    out = ""
    node: Any = raw
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            try:
                node = node[part]
                if isinstance(node, dict) and "id" in node:
                    out += f" ({node['id']})"
            except (IndexError, KeyError, TypeError):
                node = None
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(top level)"


def _where(file: Path, path: tuple, lines: dict[tuple, int], raw: dict) -> str:
    probe = path
    while probe and probe not in lines:
        probe = probe[:-1]
    line = lines.get(probe)
    return f"{file}:{line}: {_describe(path, raw)}" if line else f"{file}: {_describe(path, raw)}"


def load_topology(path: str | Path) -> Topology:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
        raw = yaml.safe_load(text) or {}
        lines = _line_index(text)
    except OSError as exc:
        raise TopologyFileError(f"{file}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise TopologyFileError(f"{file}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise TopologyFileError(f"{file}: top level must be a mapping with participants, products, contracts")
    try:
        topo = Topology.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        if loc and loc[-1] == "schema_name":
            loc = loc[:-1] + ("schema",)
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        raise TopologyFileError(f"{_where(file, loc, lines, raw)}: {msg}{more}") from None
    try:
        topo.check_references()
        _load_geofences(topo, file.parent)
        for i, c in enumerate(topo.contracts):
            product = topo.product(c.product)
            c.policy = resolve_policy(c, schemas.load(product.schema_name), topo.geofences, ("contracts", i),
                                      product.terms())
        for i, p in enumerate(topo.products):
            for j, offer in enumerate(p.offers):
                resolve_offer(offer, schemas.load(p.schema_name), topo.geofences, ("products", i, "offers", j),
                              p.terms())
        check_operator_rules(topo)
    except TopologyError as exc:
        raise TopologyFileError(f"{_where(file, exc.path, lines, raw)}: {exc.message}") from None
    return topo


def _load_geofences(topo: Topology, base: Path) -> None:
    for name, value in topo.geofences.items():
        if set(value) == {"file"}:
            gpath = (base / value["file"]).resolve()
            try:
                topo.geofences[name] = json.loads(gpath.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise TopologyError(f"cannot read GeoJSON {gpath}: {exc}", ("geofences", name, "file")) from None
        if topo.geofences[name].get("type") not in ("Polygon", "MultiPolygon", "Feature", "FeatureCollection"):
            raise TopologyError("GeoJSON must be a Polygon, MultiPolygon, Feature or FeatureCollection",
                                ("geofences", name))
