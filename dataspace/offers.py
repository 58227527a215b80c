"""The catalog a participant sees, and who must decide on a request.

A data product is a DCAT dataset; each contract template the provider offers on it
(topology ``offers:``, cm.control.catalog ``offers_json``) is one ODRL Offer of the
dataset, rendered with the offer's parameters and written in the citymesh profile, plus
``cm:template`` and ``cm:params`` so a consumer can fill the blanks itself. A dataset is
listed only for participants its access policy admits (a role, a membership the operator
attested, or by name); the same check guards every negotiation about it.

Who decides: a request that is the offer's template rendered with parameters inside the
offer's ``auto_accept`` ranges, for purposes the offer accepts, is agreed at once (the
operator approved those ranges when it applied the topology); any other request waits for
the provider, and on ``important`` or ``core`` data also for the operator.
"""

from __future__ import annotations

import json
from typing import Any

import policy_enforcer

from .errors import NotFound, OdrlError
from .odrl import CM, PROFILE, canonical, to_odrl

DATASET_PREFIX = "urn:citymesh:dataset:"
OFFER_PREFIX = "urn:citymesh:offer:"
FORMAT = "Kafka-PULL"  # the consumer reads its delivery topic with a Kafka client
REVIEWED_CLASSES = ("IMPORTANT", "CORE")


def dataset_id(product_id: str) -> str:
    return DATASET_PREFIX + product_id


def offer_urn(product_id: str, offer_id: str) -> str:
    return f"{OFFER_PREFIX}{product_id}:{offer_id}"


def parse_offer_urn(urn: Any, path: str = "offer.@id") -> tuple[str, str]:
    if not isinstance(urn, str) or not urn.startswith(OFFER_PREFIX) or urn.count(":") != 4:
        raise NotFound(f"unknown offer {urn!r:.100} (offers are named {OFFER_PREFIX}<product>:<offer>; see the "
                       "catalog)", path)
    product, offer = urn[len(OFFER_PREFIX):].split(":")
    return product, offer


def may_see(participant: dict | None, product: dict) -> bool:
    """Whether the access policy of a catalog record admits a participant record."""
    if participant is None:
        return False
    access = json.loads(product.get("access_json") or "{}")
    return (participant["participant_id"] in access.get("participants", [])
            or bool(set(participant.get("roles", [])) & set(access.get("roles", [])))
            or bool(set(participant.get("memberships", [])) & set(access.get("memberships", []))))


def offers_of(product: dict) -> dict[str, dict]:
    return {o["id"]: o for o in json.loads(product.get("offers_json") or "[]")}


def offer_policy(offer: dict, params: dict | None = None) -> dict:
    """The policy of an offer, its parameters overridden by `params`."""
    return policy_enforcer.render_template(offer["template"], {**offer["params"], **(params or {})})


def _purpose_rule(policy: dict) -> dict | None:
    return next((c for c in (policy.get("permission") or {}).get("constraints") or [] if c.get("type") == "purpose"),
                None)


def declared_purposes(policy: dict, path: str = "offer.permission[0].constraint") -> list[str]:
    """The purposes a request declares: its purpose constraint (required, so every contract says why)."""
    rule = _purpose_rule(policy)
    if rule is None:
        raise OdrlError("a request must declare its purposes: a constraint {purpose isAnyOf [...]}", path)
    return list(rule["in"])


def _with_purposes(policy: dict, purposes: list[str]) -> dict:
    out = json.loads(json.dumps(policy))
    rule = _purpose_rule(out)
    if rule is not None:
        rule["in"] = list(purposes)
    return out


def odrl_offer(product_id: str, offer: dict) -> dict:
    """One offer of a dataset, as ODRL (an Offer of a Dataset has no target: it is the dataset)."""
    return {"@id": offer_urn(product_id, offer["id"]), "@type": "Offer", **to_odrl(offer_policy(offer)),
            "cm:template": offer["template"], "cm:params": {"@value": offer["params"], "@type": "@json"},
            "cm:autoAccept": offer["auto_accept"] is not None,
            "cm:pricePer1000": {"@value": f"{offer['price_per_1000_minor'] / 100:.2f}", "@type": "xsd:decimal"}}


def dataset(product: dict, dsp_url: str) -> dict:
    """A product as a DCAT dataset (without @context)."""
    return {
        "@id": dataset_id(product["product_id"]), "@type": "Dataset",
        "dct:title": product["name"], "dct:description": product["description"],
        "cm:classification": product["classification"], "cm:schema": product["schema_name"],
        "hasPolicy": [odrl_offer(product["product_id"], o) for o in offers_of(product).values()],
        "distribution": [{"@type": "Distribution", "format": FORMAT,
                          "accessService": {"@id": f"{dsp_url}#service", "@type": "DataService",
                                            "endpointURL": dsp_url}}]}


def catalog(provider_id: str, products: list[dict], dsp_url: str) -> dict:
    """The provider's Catalog of the datasets the caller may see (already filtered), offers only."""
    out = {"@id": f"urn:citymesh:catalog:{provider_id}", "@type": "Catalog", "participantId": provider_id,
           "service": [{"@id": f"{dsp_url}#service", "@type": "DataService", "endpointURL": dsp_url}]}
    datasets = [dataset(p, dsp_url) for p in products if offers_of(p)]
    if datasets:
        out["dataset"] = datasets
    return out


def _enforced(policy: dict) -> dict:
    """What of a policy the mesh enforces (its description is prose)."""
    return {k: v for k, v in canonical(policy).items() if k != "description"}


def _in_range(value: Any, rng: dict) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return (rng.get("min") is None or value >= rng["min"]) and (rng.get("max") is None or value <= rng["max"])


def reviewers(product: dict, offer: dict, policy: dict, params: dict | None) -> tuple[list[str], str]:
    """Who must still approve a request ([] = agreed automatically) and why."""
    auto = offer.get("auto_accept")
    manual = ["provider"] + (["operator"] if product["classification"] in REVIEWED_CLASSES else [])
    if auto is None:
        return manual, f"offer {offer['id']!r} accepts nothing automatically"
    params = params or {}
    for name, value in params.items():
        if value == offer["params"].get(name):
            continue
        rng = auto["params"].get(name)
        if rng is None:
            return manual, f"parameter {name!r} differs from the offer and is not in its auto-accept ranges"
        if not _in_range(value, rng):
            return manual, f"parameter {name}={value!r} is outside the auto-accept range {rng}"
    try:
        rendered = offer_policy(offer, params)
    except policy_enforcer.PolicyError as exc:
        return manual, f"the offer's template does not render with these parameters ({exc})"
    purposes = declared_purposes(policy)
    offered = declared_purposes(rendered, "offer")
    accepted = auto.get("purposes") or offered
    outside = [p for p in purposes if p not in accepted]
    if outside:
        return manual, f"purpose(s) {outside} are not accepted automatically (accepted: {accepted})"
    if _enforced(_with_purposes(policy, offered)) != _enforced(rendered):
        return manual, "the requested policy is not the offer's template with these parameters"
    return [], "inside the offer's auto-accept ranges"


def request_params(offer_odrl: dict) -> dict:
    """The template parameters a request states (``cm:params``, a JSON literal); {} when none."""
    value = offer_odrl.get("cm:params", offer_odrl.get(CM + "params"))
    if value is None:
        return {}
    if not (isinstance(value, dict) and value.get("@type") == "@json" and isinstance(value.get("@value"), dict)):
        raise OdrlError("cm:params must be a JSON literal {\"@value\": {...}, \"@type\": \"@json\"}", "offer.cm:params")
    return value["@value"]


def is_bare(offer_odrl: dict) -> bool:
    """An offer that only names a catalog offer (permission 'use' without constraints or duties):
    the consumer accepts that offer as published."""
    perms = offer_odrl.get("permission") or []
    return (not offer_odrl.get("prohibition") and len(perms) <= 1
            and all(isinstance(p, dict) and set(p) <= {"action", "@type"} for p in perms))

