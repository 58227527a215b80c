"""Constraints compiled into code fragments for the plan's per-record step function.

Why fragments and not one closure per constraint: a call costs about as much as the
comparison it wraps, and the data plane pays it for every record. Each constraint here
becomes a few lines of Python (a test that ``return``s its rule id when it fails) plus the
constants it reads; ``plan.py`` joins them with the duties into one generated function.
The same fragment is also compiled alone, so when a record raises (a value of the wrong
type) the plan can tell which rule could not process it, with one source of truth for
what each rule means.

Purpose and validity are not per-record: purpose is decided at compile time against the
contract's declared purposes, validity once per batch against its processing time.
Field names are only ever embedded via ``repr`` after they were checked against the
schema; every value from the policy reaches the code as a named constant, never as text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .geo import PolygonIndex
from .policy import EventTimeConstraint, GeofenceConstraint, ValueConstraint, CheckedPolicy

_OPS = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "in": "in", "not_in": "not in"}


@dataclass
class CompiledConstraint:
    """One per-record constraint: ``batch_code`` runs once per batch (sees ``now_ms``),
    ``code`` runs per record (sees ``r``) and returns ``rule`` when the record fails."""

    rule: str
    path: str
    text: str
    code: list[str]
    consts: dict[str, Any] = field(default_factory=dict)
    batch_code: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)


def _unique(rule: str, seen: dict[str, int]) -> str:
    seen[rule] = seen.get(rule, 0) + 1
    return rule if seen[rule] == 1 else f"{rule}#{seen[rule]}"


def compile_constraints(checked: CheckedPolicy) -> list[CompiledConstraint]:
    out: list[CompiledConstraint] = []
    seen: dict[str, int] = {}
    for i, (path, c) in enumerate(checked.constraints):
        p = f"_k{i}"
        if isinstance(c, GeofenceConstraint):
            index = PolygonIndex(checked.polygons[i])
            rule = _unique("constraint:geofence", seen)
            mode = "inside" if c.inside is not None else "outside"
            test = f"not {p}g(b, a)" if mode == "inside" else f"{p}g(b, a)"
            code = [f"a = r[{c.lat_field!r}]", f"b = r[{c.lon_field!r}]",
                    f"if a is None or b is None or {test}: return {p}r"]
            out.append(CompiledConstraint(
                rule, path, f"position ({c.lat_field}, {c.lon_field}) {mode} {len(index.polygons)} polygon(s), "
                            f"bbox {tuple(round(v, 6) for v in index.bbox)}",
                code, {f"{p}g": index.contains, f"{p}r": rule},
                evidence={"mode": mode, "polygons": len(index.polygons), "bbox": list(index.bbox),
                          "grid": index.grid, "lat_field": c.lat_field, "lon_field": c.lon_field}))
        elif isinstance(c, ValueConstraint):
            rule = _unique(f"constraint:value:{c.field}", seen)
            value = frozenset(c.value) if c.op in ("in", "not_in") else c.value
            code = [f"v = r[{c.field!r}]", f"if v is None or not (v {_OPS[c.op]} {p}v): return {p}r"]
            out.append(CompiledConstraint(rule, path, f"{c.field} {c.op} {c.value!r} (null fails)", code,
                                          {f"{p}v": value, f"{p}r": rule},
                                          evidence={"field": c.field, "op": c.op, "value": c.value}))
        elif isinstance(c, EventTimeConstraint):
            rule = _unique(f"constraint:event_time:{c.field}", seen)
            consts: dict[str, Any] = {f"{p}r": rule}
            batch: list[str] = []
            tests = ["v is None"]
            lows = []
            if c.not_before_ms is not None:
                consts[f"{p}nb"] = c.not_before_ms
                lows.append(f"{p}nb")
            if c.max_age_s is not None:
                consts[f"{p}age"] = int(round(c.max_age_s * 1000))
                lows.append(f"now_ms - {p}age")
            if lows:
                batch.append(f"{p}lo = max({', '.join(lows)})" if len(lows) > 1 else f"{p}lo = {lows[0]}")
                tests.append(f"v < {p}lo")
            if c.not_after_ms is not None:
                consts[f"{p}na"] = c.not_after_ms
                tests.append(f"v > {p}na")
            code = [f"v = r[{c.field!r}]", f"if {' or '.join(tests)}: return {p}r"]
            parts = [f"not before {c.not_before_ms}" if c.not_before_ms is not None else "",
                     f"not after {c.not_after_ms}" if c.not_after_ms is not None else "",
                     f"at most {c.max_age_s:g} s old" if c.max_age_s is not None else ""]
            out.append(CompiledConstraint(rule, path, f"{c.field} " + ", ".join(x for x in parts if x), code,
                                          consts, batch,
                                          evidence={"field": c.field, "not_before_ms": c.not_before_ms,
                                                    "not_after_ms": c.not_after_ms, "max_age_s": c.max_age_s}))
    return out
