"""Operator rules of a topology: checked when the file is loaded, written to cm.control.rules.

Why here and not in the runner: a rule naming an unknown field, a zone file without ED-269
attributes or an authorisation for a zone nobody watches is an authoring mistake, so it
fails `citymesh apply` with the file, line, entry and field, the way a bad contract does.
What goes on the wire is self-contained (the zone sets a product's rules use, resolved from
the `geofences` section), so a runner compiles it with no access to the topology's files.
"""

from __future__ import annotations

import json
import re

import policy_enforcer
from policy_enforcer.rules import compile_rules
import schemas

from .models import OperatorRulesSpec, Topology, TopologyError

_PATH = re.compile(r"^rules\[(\d+)\](?: \([^)]*\))?((?:\.[A-Za-z_][\w]*)*)")


def _path_of(detail_path: str | None, base: tuple) -> tuple:
    """'rules[3] (uav-x).when.uav_class' -> base + ('rules', 3, 'when', 'uav_class')."""
    m = _PATH.match(detail_path or "")
    if not m:
        return base + ("rules",)
    return base + ("rules", int(m.group(1))) + tuple(s for s in m.group(2).split(".") if s)


def zone_sets(entry: OperatorRulesSpec) -> list[str]:
    """Names of the geofences the entry's zone rules refer to, in rule order."""
    out = []
    for r in entry.rules:
        if isinstance(r, dict) and r.get("type") == "zone" and isinstance(r.get("zones"), str):
            if r["zones"] not in out:
                out.append(r["zones"])
    return out


def by_operator(authorisations: dict[str, list[str]]) -> dict[str, list[str]]:
    """zone -> operators (as authored) into operator -> zones (as compile_rules wants)."""
    out: dict[str, list[str]] = {}
    for zone, operators in sorted(authorisations.items()):
        for op in operators:
            out.setdefault(op, []).append(zone)
    return out


def check_operator_rules(topo: Topology) -> None:
    """Compile every entry against its product's schema; TopologyError names the field."""
    seen: dict[str, int] = {}
    for i, entry in enumerate(topo.operator_rules):
        base = ("operator_rules", i)
        product = topo.product(entry.product)
        if product is None:
            raise TopologyError(f"unknown product {entry.product!r}", base + ("product",))
        if entry.product in seen:
            raise TopologyError(f"product {entry.product!r} already has rules (entry {seen[entry.product]})",
                                base + ("product",))
        seen[entry.product] = i
        for j, r in enumerate(entry.rules):
            name = r.get("zones") if isinstance(r, dict) and r.get("type") == "zone" else None
            if name is not None and name not in topo.geofences:
                raise TopologyError(f"unknown geofence {name!r}", base + ("rules", j, "zones"))
        zones = {name: topo.geofences[name] for name in zone_sets(entry)}
        try:
            compile_rules(entry.rules, schemas.load(product.schema_name), zones, by_operator(entry.authorisations))
        except policy_enforcer.PolicyError as exc:
            raise TopologyError(exc.detail, _path_of(exc.path, base)) from None
        known = {f.get("properties", {}).get("identifier") for z in zones.values()
                 for f in (z.get("features") or [z])}
        for zone, operators in entry.authorisations.items():
            if zone not in known:
                raise TopologyError(f"zone {zone!r} is not in any zone set this product's rules watch "
                                    f"({', '.join(sorted(k for k in known if k)) or 'none'})",
                                    base + ("authorisations", zone))
            if not operators or not all(isinstance(o, str) and o for o in operators):
                raise TopologyError("must be a non-empty list of operator ids", base + ("authorisations", zone))


def rules_records(topo: Topology) -> dict[str, dict]:
    """What cm.control.rules should hold, by product id (updated_ms left at 0 for comparison)."""
    out = {}
    for entry in topo.operator_rules:
        zones = {name: topo.geofences[name] for name in zone_sets(entry)}
        out[entry.product] = {
            "product_id": entry.product, "rules_json": json.dumps(entry.rules, sort_keys=True, ensure_ascii=False),
            "zones_json": json.dumps(zones, sort_keys=True, ensure_ascii=False),
            "authorisations_json": json.dumps(by_operator(entry.authorisations), sort_keys=True, ensure_ascii=False),
            "fold_json": json.dumps(entry.fold_terms(), sort_keys=True), "updated_ms": 0}
    return out
