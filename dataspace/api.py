"""The one ASGI app of the control plane: DSP endpoints per participant and the management API.

    /.well-known/dspace-version                  the connector contexts this service hosts
    /dsp/<participant>/...                        DSP 2025-1, provider paths and consumer callbacks
                                                  (callbackAddress = /dsp/<participant>/callback)
    /api/...                                      the management API a participant's tools use
    /metrics                                      Prometheus
    /docs, /openapi.json                          the OpenAPI description

Why FastAPI: an ASGI app with an OpenAPI description generated from the routes, on
Starlette and uvicorn, all maintained; the same framework serves every HTTP endpoint of
the project. DSP bodies are read as raw JSON and checked against the spec's JSON Schemas
(messages.py), so a bad message gets the spec's ERROR object (ContractNegotiationError,
TransferError, CatalogError) with a 4xx, never a framework-shaped error; the work itself
runs in the thread pool because it waits for the broker.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

import policy_enforcer
from deploy.dryrun import preview, sample_from_topic
from streams import keyring, topics

from . import messages, metrics, offers
from .consumer import ConsumerSide, CounterpartyError
from .errors import DataspaceError, InvalidMessage, NotFound
from .identity import API_AUDIENCE, connector_audience, verify_token
from .plane import ControlPlane
from .provider import ProviderSide

_ERROR_TYPE = {"catalog": "CatalogError", "negotiation": "ContractNegotiationError", "transfer": "TransferError"}
_JSON_FIELDS = ("policy_json", "offer_json", "agreement_json", "provider_signature_json", "consumer_signature_json",
                "data_address_json", "odrl_json")


def view(rec: dict) -> dict:
    """A control record as the management API shows it: JSON fields parsed, `_json` dropped from their names."""
    out = {}
    for k, v in rec.items():
        if k in _JSON_FIELDS:
            out[k.removesuffix("_json")] = json.loads(v) if v else None
        else:
            out[k] = v
    return out


def dsp_error(kind: str, exc: DataspaceError, provider_pid: str, consumer_pid: str) -> dict:
    fields: dict[str, Any] = {"code": exc.code, "reason": [str(exc)]}
    if kind != "catalog":
        fields = {"providerPid": provider_pid, "consumerPid": consumer_pid, **fields}
    return messages.outgoing(messages.envelope(_ERROR_TYPE[kind], **fields))


class NegotiationRequest(BaseModel):
    product: str = Field(description="product id (see GET /api/catalog)")
    offer: str = Field(description="offer id within the product, e.g. logistics")
    params: dict[str, Any] = Field(default_factory=dict, description="template parameters that differ from the offer's")
    purposes: list[str] = Field(default_factory=list, description="declared purposes (default: the offer's)")
    policy: dict[str, Any] | None = Field(None, description="a custom policy document instead of the template "
                                                            "(always reviewed by the provider)")


class Decision(BaseModel):
    approve: bool
    reason: str | None = None


class Termination(BaseModel):
    reason: str | None = None


class TransferRequest(BaseModel):
    agreement: str = Field(description="agreement id (see GET /api/agreements)")


class DryRun(BaseModel):
    product: str
    offer: str | None = Field(None, description="offer id; with params, the template rendered as a request would be")
    params: dict[str, Any] = Field(default_factory=dict)
    purposes: list[str] = Field(default_factory=list)
    policy: dict[str, Any] | None = Field(None, description="a policy document instead of an offer")
    sample: list[dict[str, Any]] | None = Field(None, description="records to try it on")
    from_topic: int | None = Field(None, ge=1, le=10_000, description="or the last N records of the product's raw "
                                                                        "topic (counts only: raw data stays hidden)")


class Metered:
    """Requests and their time per route template, as plain ASGI middleware (Starlette's
    BaseHTTPMiddleware wraps every request in a task group of its own)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [500]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            name = getattr(scope.get("route"), "path", "unmatched")
            metrics.REQUESTS.labels(name, str(status[0])).inc()
            metrics.REQUEST_SECONDS.labels(name).observe(time.perf_counter() - started)


def create_app(plane: ControlPlane) -> FastAPI:
    provider = ProviderSide(plane)
    consumer = ConsumerSide(plane)

    def negotiation_pending(rec: dict) -> None:
        provider.send_pending(rec) if rec["side"] == "PROVIDER" else consumer.send_pending(rec)

    plane.on_pending(topics.CONTROL_NEGOTIATIONS, negotiation_pending)
    plane.on_pending(topics.CONTROL_TRANSFERS, provider.send_transfer_pending)

    app = FastAPI(title="citymesh dataspace control plane", version="2025-1",
                  description="Eclipse Dataspace Protocol 2025-1 connector contexts (one per participant) and the "
                              "management API. Every call carries `Authorization: Bearer <EdDSA JWT>` signed with "
                              "the caller's participant key (aud: urn:citymesh:connector:<participant> for DSP, "
                              "urn:citymesh:api for the management API).")

    app.add_middleware(Metered)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in err.get("loc", ()))
        return JSONResponse({"code": "BAD_REQUEST", "reason": [f"{where}: {err.get('msg')}"]}, 400)

    async def body_of(request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidMessage(f"the body is not JSON: {exc}") from None

    async def dsp(request: Request, kind: str, participant: str, fn: Callable, message_type: str | None = None,
                  status: int = 200, provider_pid: str = "", consumer_pid: str = "") -> JSONResponse:
        body = None
        try:
            plane.keyring(participant)  # a connector context exists for this participant
            caller = verify_token(request.headers.get("authorization"), connector_audience(participant),
                                  plane.store.public_key)
            if message_type is not None:
                body = await body_of(request)
                if isinstance(body, dict):
                    provider_pid = provider_pid or str(body.get("providerPid", ""))
                    consumer_pid = consumer_pid or str(body.get("consumerPid", ""))
                messages.check(body, message_type)
            result = await run_in_threadpool(fn, caller, body)
            return JSONResponse(messages.outgoing(result), status, media_type="application/json")
        except DataspaceError as exc:
            return JSONResponse(dsp_error(kind, exc, provider_pid, consumer_pid), exc.status)

    def process_route(path: str, kind: str, message_type: str, tag: str, name: str,
                      act: Callable[[str, str, str, dict], dict], side: str) -> None:
        """POST <path> (with {participant} and {pid}): `act(participant, caller, pid, message)`
        answers a DSP message about one process; `side` says whose pid the path names."""
        async def handler(participant: str, pid: str, request: Request):
            pids = {"provider_pid": pid} if side == "provider" else {"consumer_pid": pid}
            return await dsp(request, kind, participant, lambda caller, m: act(participant, caller, pid, m),
                             message_type, **pids)
        app.post(path, tags=[tag], name=name, openapi_extra=body_doc(message_type))(handler)

    def body_doc(message_type: str) -> dict:
        return {"requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "description": f"a DSP 2025-1 {message_type} "
                                             f"(JSON Schema: {messages.SCHEMA_OF[message_type]})"}}}}}

    # ---- discovery ---------------------------------------------------------------------------

    def versions(participants: list[str]) -> dict:
        return messages.outgoing({"protocolVersions": [
            {"version": messages.VERSION, "path": f"/dsp/{p}", "binding": "HTTPS", "serviceId": p,
             "identifierType": "citymesh:participant",
             "auth": {"protocol": "citymesh-eddsa-jwt", "version": "1", "profile": ["EdDSA", "aud", "exp<=300s"]}}
            for p in participants]})

    @app.get("/.well-known/dspace-version", tags=["dsp"], summary="DSP versions of every hosted connector context")
    def dspace_version_all():
        hosted = sorted(p["participant_id"] for p in plane.store.values(topics.CONTROL_PARTICIPANTS)
                        if plane.hosts(p["participant_id"]))
        return versions(hosted) if hosted else JSONResponse({"protocolVersions": []}, 404)

    @app.get("/dsp/{participant}/.well-known/dspace-version", tags=["dsp"])
    def dspace_version(participant: str):
        if not plane.hosts(participant):
            return JSONResponse({"code": NotFound.code, "reason": [f"participant {participant!r} has no connector "
                                                                   "here"]}, 404)
        return versions([participant])

    # ---- DSP: catalog -----------------------------------------------------------------------

    @app.post("/dsp/{participant}/catalog/request", tags=["dsp catalog"], openapi_extra=body_doc("CatalogRequestMessage"))
    async def catalog_request(participant: str, request: Request):
        return await dsp(request, "catalog", participant, lambda caller, m: provider.catalog(participant, caller, m),
                         "CatalogRequestMessage")

    @app.get("/dsp/{participant}/catalog/datasets/{dataset_id}", tags=["dsp catalog"])
    async def catalog_dataset(participant: str, dataset_id: str, request: Request):
        return await dsp(request, "catalog", participant,
                         lambda caller, _m: provider.dataset(participant, caller, dataset_id))

    # ---- DSP: negotiations (provider) ---------------------------------------------------------

    @app.post("/dsp/{participant}/negotiations/request", tags=["dsp negotiation"], status_code=201,
              openapi_extra=body_doc("ContractRequestMessage"))
    async def negotiation_request(participant: str, request: Request):
        return await dsp(request, "negotiation", participant,
                         lambda caller, m: provider.request(participant, caller, m), "ContractRequestMessage", 201)

    @app.get("/dsp/{participant}/negotiations/{pid}", tags=["dsp negotiation"])
    async def negotiation_get(participant: str, pid: str, request: Request):
        return await dsp(request, "negotiation", participant,
                         lambda caller, _m: provider.get_negotiation(participant, caller, pid), provider_pid=pid)

    for path, message_type, method in (
            ("request", "ContractRequestMessage", "request_existing"),
            ("events", "ContractNegotiationEventMessage", "event"),
            ("agreement/verification", "ContractAgreementVerificationMessage", "verification"),
            ("termination", "ContractNegotiationTerminationMessage", "terminate")):
        process_route(f"/dsp/{{participant}}/negotiations/{{pid}}/{path}", "negotiation", message_type,
                      "dsp negotiation", f"negotiation_{method}", getattr(provider, method), "provider")

    # ---- DSP: transfers (provider) ------------------------------------------------------------

    @app.post("/dsp/{participant}/transfers/request", tags=["dsp transfer"], status_code=201,
              openapi_extra=body_doc("TransferRequestMessage"))
    async def transfer_request(participant: str, request: Request):
        return await dsp(request, "transfer", participant,
                         lambda caller, m: provider.transfer_request(participant, caller, m),
                         "TransferRequestMessage", 201)

    @app.get("/dsp/{participant}/transfers/{pid}", tags=["dsp transfer"])
    async def transfer_get(participant: str, pid: str, request: Request):
        return await dsp(request, "transfer", participant,
                         lambda caller, _m: provider.get_transfer(participant, caller, pid), provider_pid=pid)

    transfer_paths = {"start": "TransferStartMessage", "completion": "TransferCompletionMessage",
                      "termination": "TransferTerminationMessage", "suspension": "TransferSuspensionMessage"}
    for path, message_type in transfer_paths.items():
        process_route(f"/dsp/{{participant}}/transfers/{{pid}}/{path}", "transfer", message_type, "dsp transfer",
                      f"transfer_{path}", provider.transfer_message, "provider")

    # ---- DSP: consumer callbacks -------------------------------------------------------------

    def callback_ack(rec: dict, kind: str) -> dict:
        return messages.envelope("ContractNegotiation" if kind == "negotiation" else "TransferProcess",
                                 providerPid=rec["provider_pid"] or "", consumerPid=rec["consumer_pid"],
                                 state=rec["state"])

    @app.post("/dsp/{participant}/callback/negotiations/offers", tags=["dsp callback"],
              openapi_extra=body_doc("ContractOfferMessage"))
    async def callback_initial_offer(participant: str, request: Request):
        def refuse(caller, m):
            raise InvalidMessage("this connector does not take offers it did not ask for; request one from the "
                                 "provider's catalog")
        return await dsp(request, "negotiation", participant, refuse, "ContractOfferMessage")

    for path, message_type, method in (("offers", "ContractOfferMessage", "on_offer"),
                                       ("agreement", "ContractAgreementMessage", "on_agreement"),
                                       ("events", "ContractNegotiationEventMessage", "on_event"),
                                       ("termination", "ContractNegotiationTerminationMessage", "on_termination")):
        def negotiation_callback(participant, caller, cpid, m, method=method):
            return callback_ack(getattr(consumer, method)(participant, caller, cpid, m), "negotiation")
        process_route(f"/dsp/{{participant}}/callback/negotiations/{{pid}}/{path}", "negotiation", message_type,
                      "dsp callback", f"callback_{method}", negotiation_callback, "consumer")

    def transfer_callback(participant, caller, cpid, m):
        return callback_ack(consumer.on_transfer(participant, caller, cpid, m), "transfer")

    for path, message_type in transfer_paths.items():
        process_route(f"/dsp/{{participant}}/callback/transfers/{{pid}}/{path}", "transfer", message_type,
                      "dsp callback", f"callback_transfer_{path}", transfer_callback, "consumer")

    # ---- management API ----------------------------------------------------------------------

    async def api(request: Request, fn: Callable[[str], Any], status: int = 200) -> JSONResponse:
        try:
            caller = verify_token(request.headers.get("authorization"), API_AUDIENCE, plane.store.public_key)
            return JSONResponse(await run_in_threadpool(fn, caller), status)
        except CounterpartyError as exc:
            return JSONResponse({"code": "COUNTERPARTY", "reason": [str(exc)]}, exc.status)
        except DataspaceError as exc:
            return JSONResponse({"code": exc.code, "reason": [str(exc)]}, exc.status)

    def waited(table: str, key: str, caller: str, wait_s: float, until: str | None) -> dict:
        """A process of the caller's (an operator sees every negotiation), after waiting up to
        `wait_s` for one of the `until` states."""
        def visible() -> dict:
            r = plane.store.get(table, key)
            if r is None or caller not in (r["consumer_id"], r["provider_id"]) and not (
                    table == topics.CONTROL_NEGOTIATIONS and plane.is_operator(caller)):
                raise NotFound(f"no process {key!r} for {caller}")
            return r

        visible()
        states = set((until or "").split(",")) - {""}
        if wait_s > 0 and states:
            plane.store.wait_for(lambda: (plane.store.get(table, key) or {}).get("state") in states, wait_s)
        return view(visible())

    @app.get("/api/health", tags=["api"], summary="200 once the control topics are loaded")
    def health():
        return {"ok": True, "participants": len(plane.store.values(topics.CONTROL_PARTICIPANTS))}

    @app.get("/api/catalog", tags=["api"], summary="every provider's DSP catalog, as the caller sees it")
    async def api_catalog(request: Request):
        return await api(request, consumer.catalogs)

    @app.post("/api/negotiations", tags=["api"], status_code=201, summary="ask a provider for an offer")
    async def api_negotiate(body: NegotiationRequest, request: Request):
        return await api(request, lambda caller: view(consumer.negotiate(
            caller, body.product, body.offer, body.params, body.purposes, body.policy)), 201)

    @app.get("/api/negotiations", tags=["api"],
             summary="the caller's negotiations; an operator also sees every request waiting for the operator")
    async def api_negotiations(request: Request, waiting: bool = Query(False, description="only those waiting for "
                                                                                           "the caller's decision")):
        def run(caller: str) -> list[dict]:
            out = []
            operator = plane.is_operator(caller)
            for r in plane.store.values(topics.CONTROL_NEGOTIATIONS):
                mine = (r["side"] == "CONSUMER" and r["consumer_id"] == caller) or (
                    r["side"] == "PROVIDER" and r["provider_id"] == caller)
                reviews = r["side"] == "PROVIDER" and r["state"] == "REQUESTED" and (
                    (r["provider_id"] == caller and "provider" in r["needs"]) or (operator and "operator" in r["needs"]))
                if (reviews if waiting else (mine or reviews)):
                    out.append(view(r))
            return sorted(out, key=lambda r: r["created_ms"])
        return await api(request, run)

    @app.get("/api/negotiations/{nid}", tags=["api"])
    async def api_negotiation(nid: str, request: Request, wait_s: float = Query(0, ge=0, le=60),
                              until: str | None = Query(None, description="comma-separated states to wait for")):
        return await api(request, lambda caller: waited(topics.CONTROL_NEGOTIATIONS, nid, caller, wait_s, until))

    @app.post("/api/negotiations/{nid}/decision", tags=["api"],
              summary="the provider's or the operator's decision on a request waiting for review")
    async def api_decide(nid: str, body: Decision, request: Request):
        return await api(request, lambda caller: view(provider.decide(caller, nid, body.approve, body.reason)))

    @app.post("/api/negotiations/{nid}/termination", tags=["api"])
    async def api_terminate_negotiation(nid: str, body: Termination, request: Request):
        return await api(request, lambda caller: view(consumer.terminate_negotiation(caller, nid, body.reason)))

    @app.get("/api/agreements", tags=["api"], summary="finalized agreements the caller is party to "
                                                      "(the operator and the regulator see all)")
    async def api_agreements(request: Request):
        def run(caller: str) -> list[dict]:
            p = plane.participant(caller)
            everything = bool({"OPERATOR", "REGULATOR"} & set(p["roles"]))
            return sorted((view(a) for a in plane.store.values(topics.CONTROL_AGREEMENTS)
                           if everything or caller in (a["provider_id"], a["consumer_id"])),
                          key=lambda a: a["timestamp_ms"])
        return await api(request, run)

    @app.post("/api/transfers", tags=["api"], status_code=201, summary="start a transfer (stream) of an agreement")
    async def api_transfer(body: TransferRequest, request: Request):
        return await api(request, lambda caller: view(consumer.request_transfer(caller, body.agreement)), 201)

    @app.get("/api/transfers", tags=["api"])
    async def api_transfers(request: Request):
        def run(caller: str) -> list[dict]:
            return sorted((view(t) for t in plane.store.values(topics.CONTROL_TRANSFERS)
                           if (t["side"] == "CONSUMER" and t["consumer_id"] == caller)
                           or (t["side"] == "PROVIDER" and t["provider_id"] == caller)),
                          key=lambda t: t["created_ms"])
        return await api(request, run)

    @app.get("/api/transfers/{tid}", tags=["api"])
    async def api_transfer_get(tid: str, request: Request, wait_s: float = Query(0, ge=0, le=60),
                               until: str | None = Query(None)):
        return await api(request, lambda caller: waited(topics.CONTROL_TRANSFERS, tid, caller, wait_s, until))

    @app.post("/api/transfers/{tid}/{action}", tags=["api"], summary="suspend | resume | complete | terminate")
    async def api_transfer_action(tid: str, action: str, body: Termination, request: Request):
        return await api(request, lambda caller: view(consumer.transfer_action(caller, tid, action, body.reason)))

    @app.post("/api/dry-run", tags=["api"], summary="what a policy would deliver, before agreeing (the sandbox)")
    async def api_dry_run(body: DryRun, request: Request):
        return await api(request, lambda caller: dry_run(plane, caller, body))

    @app.get("/metrics", include_in_schema=False)
    def prometheus():
        metrics.set_gauges(plane.store)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def dry_run(plane: ControlPlane, caller: str, body: DryRun) -> dict:
    """The sandbox (deploy/dryrun.py) on a requested policy: the same compiled plan as the runner."""
    product = plane.store.get(topics.CONTROL_CATALOG, body.product)
    if product is None or not offers.may_see(plane.store.get(topics.CONTROL_PARTICIPANTS, caller), product):
        raise NotFound(f"no product {body.product!r} for {caller}", "product")
    if (body.sample is None) == (body.from_topic is None):
        raise InvalidMessage("give exactly one of sample or from_topic", "sample")
    if body.policy is not None:
        policy = body.policy
    elif body.offer is not None:
        offer = offers.offers_of(product).get(body.offer)
        if offer is None:
            raise NotFound(f"{body.product} has no offer {body.offer!r}", "offer")
        policy = offers.offer_policy(offer, body.params)
    else:
        raise InvalidMessage("give an offer or a policy", "offer")
    purposes = body.purposes or offers.declared_purposes(policy, "policy")
    contract = {"contract_id": f"dry-run-{caller}", "version": 1, "consumer_id": caller, "purposes": purposes,
                "policy_json": json.dumps(policy), "not_before_ms": None, "not_after_ms": None}
    try:
        plan = policy_enforcer.plan_for(contract, product, keyring.mesh_secret(plane.keys_dir))
    except policy_enforcer.PolicyError as exc:
        raise InvalidMessage(str(exc), "policy") from None
    schema = plan.source_schema
    live = body.sample is None
    records = sample_from_topic(plane.client_config, product["raw_topic"], schema, body.from_topic) if live \
        else body.sample
    lines, counts = preview(plan, records, int(time.time() * 1000))
    if live:  # the provider's raw data is not the caller's to see before it agrees
        lines = [{k: v for k, v in line.items() if k != "delivered"} for line in lines]
    return {"product": body.product, "records": len(records), "counts": counts, "lines": lines,
            "delivery_schema": plan.output_schema.definition}

