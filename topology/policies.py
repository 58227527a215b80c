"""Turn a contract entry into the policy document the enforcer compiles.

A contract gives either a policy or a template with parameters; geofence constraints may
name a geofence of the topology instead of carrying GeoJSON inline. The result is checked
by the policy engine, so an unknown constraint or duty name fails here, when the contract
is applied, and never silently at enforcement time.
"""

from __future__ import annotations

import copy

import policy_enforcer
from schemas import RecordSchema

from .models import ContractSpec, OfferSpec, TopologyError, to_ms

_NULL_KEY = bytes(32)  # the output schema does not depend on the pseudonym key


def resolve_policy(contract: ContractSpec, schema: RecordSchema, geofences: dict[str, dict], path: tuple,
                   product: policy_enforcer.ProductTerms | None = None) -> dict:
    """The contract's policy document, checked against the product's schema and identifier
    lineage (``product``): a contract that would leak an identifier fails here, at apply."""
    try:
        if contract.template is not None:
            policy = policy_enforcer.render_template(contract.template, _with_geofences(contract.params, geofences))
        else:
            policy = copy.deepcopy(contract.policy)
        policy = _with_geofences(policy, geofences)
        policy_enforcer.validate_policy(policy, schema, product)
    except policy_enforcer.PolicyError as exc:
        raise TopologyError(str(exc), path + ("template" if contract.template else "policy",)) from None
    except KeyError as exc:
        raise TopologyError(f"unknown geofence {exc.args[0]!r}", path + ("policy",)) from None
    return policy


def resolve_offer(offer: OfferSpec, schema: RecordSchema, geofences: dict[str, dict], path: tuple,
                  product: policy_enforcer.ProductTerms | None = None) -> dict:
    """Replace geofence names in an offer's parameters by their GeoJSON, check that the
    template renders a valid policy for the product and that auto-accepted ranges name
    numeric parameters of the template; returns the rendered policy."""
    template = policy_enforcer.TEMPLATES.get(offer.template)
    if template is None:
        raise TopologyError(f"unknown template {offer.template!r} (known: {', '.join(policy_enforcer.TEMPLATES)})",
                            path + ("template",))
    if schema.name not in template.schemas:
        raise TopologyError(f"template {offer.template!r} is for {', '.join(template.schemas)}, not {schema.name}",
                            path + ("template",))
    try:
        offer.params = _with_geofences(offer.params, geofences)
    except KeyError as exc:
        raise TopologyError(f"unknown geofence {exc.args[0]!r}", path + ("params",)) from None
    try:
        policy = policy_enforcer.render_template(offer.template, offer.params)
        policy_enforcer.validate_policy(policy, schema, product)
    except policy_enforcer.PolicyError as exc:
        raise TopologyError(str(exc), path + ("params",)) from None
    for name in (offer.auto_accept.params if offer.auto_accept else {}):
        spec = template.params.get(name)
        if spec is None or spec.kind not in ("int", "number"):
            numeric = [k for k, v in template.params.items() if v.kind in ("int", "number")]
            raise TopologyError(f"template {offer.template!r} has no numeric parameter {name!r} "
                                f"(numeric: {', '.join(numeric)})", path + ("auto_accept", "params", name))
    return policy


def _with_geofences(node, geofences: dict[str, dict]):
    """Replace `{"geofence": "name"}`-style references ("inside"/"outside": "name") by GeoJSON."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in ("inside", "outside", "geofence", "zones") and isinstance(v, str):
                out[k] = geofences[v]
            else:
                out[k] = _with_geofences(v, geofences)
        return out
    if isinstance(node, list):
        return [_with_geofences(v, geofences) for v in node]
    return node


def terms_of(contract: ContractSpec) -> policy_enforcer.ContractTerms:
    return policy_enforcer.ContractTerms(
        contract_id=contract.id, version=contract.version, consumer_id=contract.consumer,
        purposes=list(contract.purposes), policy=contract.policy,
        not_before_ms=to_ms(contract.valid.not_before), not_after_ms=to_ms(contract.valid.not_after))


def delivery_schema(contract: ContractSpec, schema: RecordSchema,
                    product: policy_enforcer.ProductTerms | None = None) -> RecordSchema:
    """The Avro schema of what this contract's consumer receives."""
    return policy_enforcer.compile_plan(terms_of(contract), schema, _NULL_KEY, product=product).output_schema
