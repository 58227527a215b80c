"""The citymesh ODRL profile: our policy document as an ODRL policy, and back, without loss.

Why a profile of our own: ODRL names the ideas (purpose, dateTime, spatial, anonymize,
delete) but not the parameters the mesh enforces (which field, how many decimals, which
polygon), and DSP 2025-1 allows only string actions and string/object/array right
operands. The profile ``https://w3id.org/citymesh/odrl/v1`` (prefix ``cm:``) fixes one
spelling for every rule of ``policy_enforcer.policy``; ``from_odrl(to_odrl(p)) == p`` for
every valid policy (null values count as absent). Reading is strict, because a rule the
mesh does not enforce must be refused in negotiation, not agreed and ignored: anything
outside the profile is an OdrlError whose message starts with the path of the rule.

One permission (action ``use``) carries every constraint and duty; each policy rule is one
ODRL constraint, a logical ``and`` when the rule has several parts:

| policy | ODRL |
| --- | --- |
| ``description`` | ``"cm:description": text`` on the policy |
| ``permission.fields`` | ``{cm:fields isPartOf [names]}`` (the delivered fields are among these) |
| ``purpose in [..]`` | ``{purpose isAnyOf [..]}`` |
| ``validity`` | ``{dateTime gteq T}`` (not_before_ms), ``{dateTime lteq T}`` (not_after_ms) |
| ``geofence`` | ``{spatial isPartOf G}`` (inside) or ``{spatial isNoneOf G}`` (outside), G a JSON literal of the GeoJSON; ``{cm:latField eq f}``, ``{cm:lonField eq f}`` |
| ``value f op v`` | ``{cm:field/f op v}``, op ``eq neq lt lteq gt gteq isAnyOf isNoneOf`` |
| ``event_time`` | ``{cm:eventTime/f gteq T}``, ``{cm:eventTime/f lteq T}``, ``{cm:eventAge/f lteq seconds}`` |
| duties | ``permission.duty``: action ``cm:drop cm:mask cm:pseudonymise cm:generalise cm:scrubPii``, each parameter a constraint ``{cm:<param> eq v}`` |
| prohibitions | ``prohibition``: action ``distribute`` (onward_transfer), ``sell`` (commercial_resale), ``cm:reIdentification``, ``cm:crossBorderTransfer``, ``cm:aiTraining``, ``cm:dataLinkage``; ``"cm:note"`` |

Literals: a string is itself; a boolean, integer or float is a typed literal
``{"@value": "120", "@type": "xsd:integer"}`` (``xsd:boolean``, ``xsd:double``), so a
value comes back with its type; an instant (epoch ms) is ``xsd:dateTime`` in UTC with
milliseconds. Mesh duties are fulfilled by the mesh in transit (ODRL: duties of the
permission); ``cm:drop``/``cm:mask``/``cm:pseudonymise``/``cm:generalise``/``cm:scrubPii``
refine ``odrl:delete`` and ``odrl:anonymize``.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

from .errors import OdrlError

PROFILE = "https://w3id.org/citymesh/odrl/v1"
CM = PROFILE + "#"
ODRL = "http://www.w3.org/ns/odrl/2/"
XSD = "http://www.w3.org/2001/XMLSchema#"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)

_VALUE_OPS = {"==": "eq", "!=": "neq", "<": "lt", "<=": "lteq", ">": "gt", ">=": "gteq", "in": "isAnyOf",
              "not_in": "isNoneOf"}
_VALUE_OPS_BACK = {v: k for k, v in _VALUE_OPS.items()}
_DUTY_ACTIONS = {"drop": "cm:drop", "mask": "cm:mask", "pseudonymise": "cm:pseudonymise",
                 "generalise": "cm:generalise", "scrub_pii": "cm:scrubPii"}
_DUTY_PARAMS = {"field": "cm:field", "fields": "cm:fields", "keep_first": "cm:keepFirst", "keep_last": "cm:keepLast",
                "char": "cm:maskChar", "bytes": "cm:bytes", "decimals": "cm:decimals", "period_s": "cm:periodSeconds"}
_PROHIBITION_ACTIONS = {"onward_transfer": "distribute", "commercial_resale": "sell",
                        "re_identification": "cm:reIdentification", "cross_border_transfer": "cm:crossBorderTransfer",
                        "ai_training": "cm:aiTraining", "data_linkage": "cm:dataLinkage"}
_GEO_PARTS = {"lat_field": "cm:latField", "lon_field": "cm:lonField"}
_POLICY_KEYS = {"@context", "@id", "@type", "uid", "target", "assigner", "assignee", "timestamp", "profile",
                "permission", "prohibition"}
# the profile's own policy properties: a description, and what a catalog offer says about its template
_CM_POLICY_KEYS = {"description", "template", "params", "autoAccept", "pricePer1000"}
KNOWN_LEFT_OPERANDS = ("purpose", "dateTime", "spatial", "cm:fields", "cm:field/<name>", "cm:eventTime/<name>",
                       "cm:eventAge/<name>", "cm:latField", "cm:lonField")


# ---- terms and literals ------------------------------------------------------------------

def _term(value: Any, path: str) -> str:
    """An IRI-valued term in its compact spelling: ``use`` for odrl:use or the ODRL IRI,
    ``cm:x`` for the profile's terms."""
    if not isinstance(value, str):
        raise OdrlError(f"expected a term (string), got {type(value).__name__}", path)
    for prefix in ("odrl:", ODRL):
        if value.startswith(prefix):
            return value[len(prefix):]
    if value.startswith(CM):
        return "cm:" + value[len(CM):]
    return value


def _literal(v: Any) -> Any:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return {"@value": "true" if v else "false", "@type": "xsd:boolean"}
    if isinstance(v, int):
        return {"@value": str(v), "@type": "xsd:integer"}
    if isinstance(v, float):
        return {"@value": repr(v), "@type": "xsd:double"}
    if isinstance(v, list):
        return [_literal(x) for x in v]
    raise OdrlError(f"cannot write {type(v).__name__} {v!r:.60} as an ODRL literal")


def _from_literal(v: Any, path: str) -> Any:
    if isinstance(v, list):
        return [_from_literal(x, f"{path}[{i}]") for i, x in enumerate(v)]
    if isinstance(v, (str, bool)) or (isinstance(v, (int, float)) and not isinstance(v, bool)):
        return v  # a plain JSON scalar from a lenient sender: taken as it is
    if not isinstance(v, dict) or "@value" not in v:
        raise OdrlError("expected a literal (a string or {\"@value\", \"@type\"})", path)
    if set(v) - {"@value", "@type"}:
        raise OdrlError(f"unknown key(s) {sorted(set(v) - {'@value', '@type'})} in a literal", path)
    t = _term(v.get("@type", "xsd:string"), path + ".@type").removeprefix(XSD).removeprefix("xsd:")
    raw = v["@value"]
    if not isinstance(raw, str):
        raise OdrlError(f"a typed literal's @value must be a string, got {type(raw).__name__}", path + ".@value")
    try:
        if t == "string":
            return raw
        if t == "boolean":
            if raw not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return raw in ("true", "1")
        if t in ("integer", "int", "long"):
            return int(raw)
        if t in ("double", "decimal", "float"):
            out = float(raw)
            if math.isnan(out):
                raise ValueError(raw)
            return out
    except ValueError:
        raise OdrlError(f"{raw!r:.60} is not a valid xsd:{t}", path + ".@value") from None
    raise OdrlError(f"literal type xsd:{t} is not in the citymesh profile (string, boolean, integer, double)",
                    path + ".@type")


def instant(ms: int) -> dict:
    """Epoch ms as an xsd:dateTime literal (UTC, milliseconds)."""
    try:
        dt = _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        raise OdrlError(f"instant {ms} ms is outside the years 1-9999 that xsd:dateTime can name") from None
    return {"@value": dt.isoformat(timespec="milliseconds").replace("+00:00", "Z"), "@type": "xsd:dateTime"}


def from_instant(v: Any, path: str) -> int:
    if isinstance(v, dict):
        t = _term(v.get("@type", ""), path + ".@type").removeprefix(XSD).removeprefix("xsd:")
        if t != "dateTime" or set(v) - {"@value", "@type"}:
            raise OdrlError("expected an xsd:dateTime literal", path)
        v = v.get("@value")
    if not isinstance(v, str):
        raise OdrlError("expected an xsd:dateTime (e.g. 2026-01-01T00:00:00Z)", path)
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        raise OdrlError(f"{v!r:.60} is not an xsd:dateTime", path) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    delta = dt - _EPOCH
    if delta % _MS:
        raise OdrlError(f"{v!r} is finer than a millisecond, which the mesh cannot enforce", path)
    return delta // _MS


def _atom(left: str, op: str, right: Any) -> dict:
    return {"leftOperand": left, "operator": op, "rightOperand": right}


def _conj(parts: list[dict]) -> dict:
    return parts[0] if len(parts) == 1 else {"and": parts}


# ---- policy -> ODRL ----------------------------------------------------------------------

def _rule_keys(rule: dict, known: set[str], path: str) -> None:
    unknown = set(rule) - known - {"type"}
    if unknown:
        raise OdrlError(f"key(s) {sorted(unknown)} have no spelling in the citymesh profile", path)


def _constraint_to_odrl(c: dict, path: str) -> dict:
    c = {k: v for k, v in c.items() if v is not None}
    t = c.get("type")
    if t == "purpose":
        _rule_keys(c, {"in"}, path)
        return _atom("purpose", "isAnyOf", list(c["in"]))
    if t == "validity":
        _rule_keys(c, {"not_before_ms", "not_after_ms"}, path)
        parts = ([_atom("dateTime", "gteq", instant(c["not_before_ms"]))] if "not_before_ms" in c else []) + \
                ([_atom("dateTime", "lteq", instant(c["not_after_ms"]))] if "not_after_ms" in c else [])
        return _conj(parts)
    if t == "geofence":
        _rule_keys(c, {"inside", "outside", *_GEO_PARTS}, path)
        mode = "inside" if "inside" in c else "outside"
        parts = [_atom("spatial", "isPartOf" if mode == "inside" else "isNoneOf",
                       {"@value": c[mode], "@type": "@json"})]
        parts += [_atom(term, "eq", c[key]) for key, term in _GEO_PARTS.items() if key in c]
        return _conj(parts)
    if t == "value":
        _rule_keys(c, {"field", "op", "value"}, path)
        if c["op"] not in _VALUE_OPS:
            raise OdrlError(f"operator {c['op']!r} has no ODRL spelling", path + ".op")
        return _atom(f"cm:field/{c['field']}", _VALUE_OPS[c["op"]], _literal(c["value"]))
    if t == "event_time":
        _rule_keys(c, {"field", "not_before_ms", "not_after_ms", "max_age_s"}, path)
        f = c["field"]
        parts = ([_atom(f"cm:eventTime/{f}", "gteq", instant(c["not_before_ms"]))] if "not_before_ms" in c else [])
        parts += ([_atom(f"cm:eventTime/{f}", "lteq", instant(c["not_after_ms"]))] if "not_after_ms" in c else [])
        parts += ([_atom(f"cm:eventAge/{f}", "lteq", _literal(c["max_age_s"]))] if "max_age_s" in c else [])
        if not parts:
            raise OdrlError("event_time without a bound", path)
        return _conj(parts)
    raise OdrlError(f"constraint type {t!r} has no spelling in the citymesh profile", path + ".type")


def to_odrl(policy: dict) -> dict:
    """The ODRL body of a policy document (permission, prohibition, profile, cm:description),
    to be completed with @id, @type, target and, in an agreement, assigner and assignee."""
    permission = policy.get("permission") or {}
    constraints = []
    if permission.get("fields") is not None:
        constraints.append(_atom("cm:fields", "isPartOf", list(permission["fields"])))
    for i, c in enumerate(permission.get("constraints") or []):
        constraints.append(_constraint_to_odrl(c, f"policy.permission.constraints[{i}]"))
    duties = []
    for i, d in enumerate(policy.get("duties") or []):
        path = f"policy.duties[{i}]"
        d = {k: v for k, v in d.items() if v is not None}
        action = _DUTY_ACTIONS.get(d.get("type"))
        if action is None:
            raise OdrlError(f"duty type {d.get('type')!r} has no spelling in the citymesh profile", path + ".type")
        _rule_keys(d, set(_DUTY_PARAMS), path)
        duties.append({"action": action, "constraint": [_atom(_DUTY_PARAMS[k], "eq", _literal(v))
                                                        for k, v in d.items() if k != "type"]})
    perm: dict[str, Any] = {"action": "use"}
    if constraints:
        perm["constraint"] = constraints
    if duties:
        perm["duty"] = duties
    out: dict[str, Any] = {"profile": PROFILE, "permission": [perm]}
    prohibitions = []
    for i, p in enumerate(policy.get("prohibitions") or []):
        path = f"policy.prohibitions[{i}]"
        action = _PROHIBITION_ACTIONS.get(p.get("type"))
        if action is None:
            raise OdrlError(f"prohibition {p.get('type')!r} has no spelling in the citymesh profile", path + ".type")
        _rule_keys(p, {"note"}, path)
        prohibitions.append({"action": action, **({"cm:note": p["note"]} if p.get("note") is not None else {})})
    if prohibitions:
        out["prohibition"] = prohibitions
    if policy.get("description") is not None:
        out["cm:description"] = policy["description"]
    unknown = set(policy) - {"description", "permission", "duties", "prohibitions"}
    if unknown or set(permission) - {"fields", "constraints"}:
        raise OdrlError(f"key(s) {sorted(unknown | (set(permission) - {'fields', 'constraints'}))} have no "
                        "spelling in the citymesh profile", "policy")
    return out


# ---- ODRL -> policy ----------------------------------------------------------------------

def _parts(c: Any, path: str) -> list[tuple[str, str, str, Any]]:
    """(path, leftOperand, operator, rightOperand) of an atomic constraint or an ``and``."""
    if not isinstance(c, dict):
        raise OdrlError(f"expected a constraint object, got {type(c).__name__}", path)
    for logical in ("or", "xone", "andSequence"):
        if logical in c:
            raise OdrlError(f"'{logical}' constraints cannot be enforced: the mesh enforces every constraint of a "
                            "permission on every record (use 'and')", path)
    if "and" in c:
        if set(c) - {"and", "@type"} or not isinstance(c["and"], list) or not c["and"]:
            raise OdrlError("an 'and' constraint holds a non-empty list of atomic constraints and nothing else", path)
        out = []
        for i, sub in enumerate(c["and"]):
            if isinstance(sub, dict) and "and" in sub:
                raise OdrlError("nested 'and' constraints are not in the citymesh profile", f"{path}.and[{i}]")
            out += _parts(sub, f"{path}.and[{i}]")
        return out
    extra = set(c) - {"leftOperand", "operator", "rightOperand", "@type"}
    if extra:
        raise OdrlError(f"constraint key(s) {sorted(extra)} cannot be enforced (citymesh profile: leftOperand, "
                        "operator, rightOperand)", path)
    for key in ("leftOperand", "operator", "rightOperand"):
        if key not in c:
            raise OdrlError(f"missing {key}", path)
    return [(path, _term(c["leftOperand"], path + ".leftOperand"), _term(c["operator"], path + ".operator"),
             c["rightOperand"])]


def _family(left: str) -> tuple[str, str | None]:
    for prefix, family in (("cm:field/", "value"), ("cm:eventTime/", "event_time"), ("cm:eventAge/", "event_time")):
        if left.startswith(prefix):
            return family, left[len(prefix):]
    return {"purpose": ("purpose", None), "dateTime": ("validity", None), "spatial": ("geofence", None),
            "cm:latField": ("geofence", None), "cm:lonField": ("geofence", None),
            "cm:fields": ("fields", None)}.get(left, (None, None))


def _want(op: str, allowed: tuple[str, ...], path: str, what: str) -> None:
    if op not in allowed:
        raise OdrlError(f"operator {op!r} on {what} cannot be enforced (citymesh profile: {', '.join(allowed)})",
                        path + ".operator")


def _string_list(v: Any, path: str) -> list[str]:
    v = _from_literal(v, path)
    if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
        raise OdrlError("expected a non-empty list of strings", path)
    return v


def _constraint_from_odrl(c: Any, path: str) -> tuple[str, Any]:
    """("fields", [names]) or ("constraint", rule dict)."""
    parts = _parts(c, path)
    families = {(_family(left)) for _, left, _, _ in parts}
    for p, left, _, _ in parts:
        if _family(left)[0] is None:
            raise OdrlError(f"unknown left operand {left!r} (citymesh profile: {', '.join(KNOWN_LEFT_OPERANDS)})",
                            p + ".leftOperand")
    if len(families) > 1:
        raise OdrlError("an 'and' constraint of the citymesh profile holds the parts of one rule (e.g. both bounds "
                        f"of one dateTime), not {len(families)} different rules", path)
    family, field = families.pop()
    seen: set[tuple[str, str]] = set()
    for p, left, op, _ in parts:
        if (left, op) in seen:
            raise OdrlError(f"{left} {op} given twice in one rule", p)
        seen.add((left, op))
    if family in ("fields", "purpose", "value") and len(parts) > 1:
        raise OdrlError(f"a {family} rule is one atomic constraint", path)
    p, left, op, right = parts[0]
    if family == "fields":
        _want(op, ("isPartOf",), p, "cm:fields")
        return "fields", _string_list(right, p + ".rightOperand")
    if family == "purpose":
        _want(op, ("isAnyOf", "eq"), p, "purpose")
        purposes = [right] if op == "eq" and isinstance(right, str) else _string_list(right, p + ".rightOperand")
        return "constraint", {"type": "purpose", "in": purposes}
    if family == "value":
        _want(op, tuple(_VALUE_OPS_BACK), p, left)
        return "constraint", {"type": "value", "field": field, "op": _VALUE_OPS_BACK[op],
                              "value": _from_literal(right, p + ".rightOperand")}
    if family == "validity":
        rule: dict[str, Any] = {"type": "validity"}
        for p, _, op, right in parts:
            _want(op, ("gteq", "lteq"), p, "dateTime")
            rule["not_before_ms" if op == "gteq" else "not_after_ms"] = from_instant(right, p + ".rightOperand")
        return "constraint", rule
    if family == "event_time":
        rule = {"type": "event_time", "field": field}
        for p, left, op, right in parts:
            if _family(left)[1] != field:
                raise OdrlError(f"one event_time rule names one field ({field!r}, not {_family(left)[1]!r})", p)
            if left.startswith("cm:eventAge/"):
                _want(op, ("lteq",), p, left)
                age = _from_literal(right, p + ".rightOperand")
                if isinstance(age, bool) or not isinstance(age, (int, float)):
                    raise OdrlError("expected a number of seconds", p + ".rightOperand")
                rule["max_age_s"] = age
            else:
                _want(op, ("gteq", "lteq"), p, left)
                rule["not_before_ms" if op == "gteq" else "not_after_ms"] = from_instant(right, p + ".rightOperand")
        return "constraint", rule
    # geofence
    rule = {"type": "geofence"}
    for p, left, op, right in parts:
        if left == "spatial":
            _want(op, ("isPartOf", "isNoneOf"), p, "spatial")
            if not (isinstance(right, dict) and _term(right.get("@type"), p) == "@json"
                    and isinstance(right.get("@value"), dict) and set(right) == {"@value", "@type"}):
                raise OdrlError("spatial needs a GeoJSON polygon as a JSON literal {\"@value\": {...}, "
                                "\"@type\": \"@json\"}; the mesh cannot enforce a named region", p + ".rightOperand")
            rule["inside" if op == "isPartOf" else "outside"] = right["@value"]
        else:
            _want(op, ("eq",), p, left)
            key = "lat_field" if left == "cm:latField" else "lon_field"
            value = _from_literal(right, p + ".rightOperand")
            if not isinstance(value, str):
                raise OdrlError("expected a field name", p + ".rightOperand")
            rule[key] = value
    if "inside" not in rule and "outside" not in rule:
        raise OdrlError("a geofence rule needs a spatial constraint", path)
    return "constraint", rule


def _duty_from_odrl(d: Any, path: str) -> dict:
    if not isinstance(d, dict):
        raise OdrlError(f"expected a duty object, got {type(d).__name__}", path)
    extra = set(d) - {"action", "constraint", "@type"}
    if extra:
        raise OdrlError(f"duty key(s) {sorted(extra)} cannot be enforced (citymesh profile: action, constraint)", path)
    action = _term(d.get("action"), path + ".action")
    kind = {v: k for k, v in _DUTY_ACTIONS.items()}.get(action)
    if kind is None:
        raise OdrlError(f"unknown duty action {action!r}: the mesh fulfils {', '.join(_DUTY_ACTIONS.values())}",
                        path + ".action")
    rule: dict[str, Any] = {"type": kind}
    back = {v: k for k, v in _DUTY_PARAMS.items()}
    for i, c in enumerate(d.get("constraint") or []):
        for p, left, op, right in _parts(c, f"{path}.constraint[{i}]"):
            key = back.get(left)
            if key is None:
                raise OdrlError(f"unknown duty parameter {left!r} (citymesh profile: {', '.join(back)})",
                                p + ".leftOperand")
            _want(op, ("eq",), p, left)
            if key in rule:
                raise OdrlError(f"{left} given twice", p)
            rule[key] = _from_literal(right, p + ".rightOperand")
    return rule


def from_odrl(odrl: Any, path: str = "offer") -> dict:
    """The policy document of an ODRL Offer or Agreement of the citymesh profile; OdrlError
    (message starting with the path) for anything the mesh cannot enforce as written."""
    if not isinstance(odrl, dict):
        raise OdrlError(f"expected a policy object, got {type(odrl).__name__}", path)
    if "obligation" in odrl:
        raise OdrlError("policy-level obligations are not in the citymesh profile: the mesh fulfils the duties of "
                        "its permission (permission[0].duty)", path + ".obligation")
    unknown = [k for k in odrl if k not in _POLICY_KEYS
               and k.removeprefix("cm:").removeprefix(CM) not in _CM_POLICY_KEYS]
    if unknown:
        raise OdrlError(f"policy key(s) {sorted(unknown)} cannot be enforced (citymesh profile: "
                        f"{', '.join(sorted(_POLICY_KEYS))}, cm:{', cm:'.join(sorted(_CM_POLICY_KEYS))})", path)
    profile = odrl.get("profile")
    profiles = profile if isinstance(profile, list) else [profile] if profile is not None else []
    for i, p in enumerate(profiles):
        if p != PROFILE:
            raise OdrlError(f"unknown ODRL profile {p!r}; this connector speaks {PROFILE}", f"{path}.profile")
    permissions = odrl.get("permission") or []
    if not isinstance(permissions, list) or len(permissions) > 1:
        raise OdrlError("the citymesh profile has one permission per policy", f"{path}.permission")
    policy: dict[str, Any] = {"permission": {}}
    if permissions:
        perm, ppath = permissions[0], f"{path}.permission[0]"
        if not isinstance(perm, dict):
            raise OdrlError("expected a permission object", ppath)
        extra = set(perm) - {"action", "constraint", "duty", "@type"}
        if extra:
            raise OdrlError(f"permission key(s) {sorted(extra)} cannot be enforced", ppath)
        action = _term(perm.get("action"), ppath + ".action")
        if action != "use":
            raise OdrlError(f"the mesh grants the action 'use', not {action!r}", ppath + ".action")
        constraints = []
        for i, c in enumerate(perm.get("constraint") or []):
            kind, value = _constraint_from_odrl(c, f"{ppath}.constraint[{i}]")
            if kind == "fields":
                if "fields" in policy["permission"]:
                    raise OdrlError("cm:fields given twice", f"{ppath}.constraint[{i}]")
                policy["permission"]["fields"] = value
            else:
                constraints.append(value)
        if constraints:
            policy["permission"]["constraints"] = constraints
        duties = [_duty_from_odrl(d, f"{ppath}.duty[{i}]") for i, d in enumerate(perm.get("duty") or [])]
        if duties:
            policy["duties"] = duties
    prohibitions = []
    back = {v: k for k, v in _PROHIBITION_ACTIONS.items()}
    for i, p in enumerate(odrl.get("prohibition") or []):
        ppath = f"{path}.prohibition[{i}]"
        if not isinstance(p, dict) or set(p) - {"action", "cm:note", CM + "note", "@type"}:
            raise OdrlError("a prohibition of the citymesh profile holds an action and an optional cm:note", ppath)
        action = _term(p.get("action"), ppath + ".action")
        if action not in back:
            raise OdrlError(f"unknown prohibition {action!r} (citymesh profile: {', '.join(back)})", ppath + ".action")
        note = p.get("cm:note", p.get(CM + "note"))
        prohibitions.append({"type": back[action], **({"note": note} if note is not None else {})})
    if prohibitions:
        policy["prohibitions"] = prohibitions
    description = odrl.get("cm:description", odrl.get(CM + "description"))
    if description is not None:
        policy["description"] = description
    if not policy["permission"]:
        del policy["permission"]
    return policy


def canonical(policy: dict) -> dict:
    """A policy in the form ``from_odrl`` returns: null values and empty ``duties``,
    ``prohibitions``, ``permission.constraints`` and ``permission`` left out (they mean the
    same as absent), so ``from_odrl(to_odrl(p)) == canonical(p)``."""
    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if v is not None}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node
    out = strip(policy)
    permission = {k: v for k, v in (out.get("permission") or {}).items() if not (k == "constraints" and not v)}
    out = {k: v for k, v in out.items() if k not in ("duties", "prohibitions", "permission") or v}
    if permission:
        out["permission"] = permission
    else:
        out.pop("permission", None)
    return out
