"""The consumer side of a connector context: what `citymesh negotiate`, `agreements` and
`transfer` drive through the management API, and the callbacks providers send to.

A hosted consumer speaks DSP to providers over HTTP like any other connector would (the
provider may be in this process or in another city's); its callback address is
``<public url>/dsp/<consumer>/callback``. It checks what it is sent: an agreement must be
what it asked for and carry the provider's valid signature before the consumer signs it
(the verification message carries the consumer's signature back). A record of each process
is written before the first message leaves, so a callback can never arrive for a process
the consumer does not know.
"""

from __future__ import annotations

import json
import logging

from streams import keyring, topics

from . import messages, offers
from .errors import DataspaceError, InvalidMessage, InvalidTransition, NotFound
from .identity import sign_agreement, verify_agreement
from .odrl import canonical, from_odrl, to_odrl
from .plane import ControlPlane, SendFailed, blank, dumps, new_pid, now_ms, still_pending
from .provider import ACK_WAIT_S, SIGNATURE
from .state import negotiation_next, transfer_next

log = logging.getLogger("citymesh.dataspace.consumer")

TRANSFER_ACTIONS = {"suspend": ("TransferSuspensionMessage", "suspension"),
                    "resume": ("TransferStartMessage", "start"),
                    "complete": ("TransferCompletionMessage", "completion"),
                    "terminate": ("TransferTerminationMessage", "termination")}


class CounterpartyError(DataspaceError):
    """The provider refused or could not be reached; its status and reason are passed on."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def _relay(exc: SendFailed) -> CounterpartyError:
    return CounterpartyError(f"the provider's connector: {exc}", 400 if exc.refused else 502)


class ConsumerSide:
    def __init__(self, plane: ControlPlane):
        self.plane = plane
        self.store = plane.store

    # ---- management: what the consumer asks for ---------------------------------------------

    def catalogs(self, consumer: str) -> list[dict]:
        """The catalog of every provider with a connector context here, as this consumer sees
        it, asked over DSP (a provider connected elsewhere is asked at its own connector)."""
        out = []
        for p in sorted(self.store.values(topics.CONTROL_PARTICIPANTS), key=lambda p: p["participant_id"]):
            if "PROVIDER" not in p["roles"] or not self.plane.hosts(p["participant_id"]):
                continue
            try:
                resp = self.plane.send(consumer, p["participant_id"],
                                       f"{self.plane.dsp_url(p['participant_id'])}/catalog/request",
                                       messages.envelope("CatalogRequestMessage", filter=[]))
            except SendFailed as exc:
                raise _relay(exc) from None
            out.append(messages.check(resp.json(), "Catalog"))
        return out

    def negotiate(self, consumer: str, product_id: str, offer_id: str, params: dict | None = None,
                  purposes: list[str] | None = None, policy: dict | None = None) -> dict:
        """Ask the product's provider for an offer: its template with `params` (or a custom
        `policy`, which always waits for review), declaring `purposes`."""
        product = self.store.get(topics.CONTROL_CATALOG, product_id)
        if product is None:
            raise NotFound(f"no product {product_id!r} in the catalog", "product")
        provider = product["provider_id"]
        try:
            resp = self.plane.send(consumer, provider, f"{self.plane.dsp_url(provider)}/catalog/datasets/"
                                                       f"{offers.dataset_id(product_id)}", None, method="GET")
        except SendFailed as exc:
            raise _relay(exc) from None
        dataset = messages.check(resp.json(), "Dataset")
        urn = offers.offer_urn(product_id, offer_id)
        catalog_offer = next((o for o in dataset["hasPolicy"] if o["@id"] == urn), None)
        if catalog_offer is None:
            raise NotFound(f"{product_id} has no offer {offer_id!r} (offers: "
                           f"{', '.join(o['@id'].rsplit(':', 1)[-1] for o in dataset['hasPolicy'])})", "offer")
        params = dict(params or {})
        if policy is None:
            template = {"template": catalog_offer["cm:template"], "params": catalog_offer["cm:params"]["@value"]}
            policy = offers.offer_policy(template, params)
        if purposes:
            rule = next((c for c in (policy.get("permission") or {}).get("constraints", [])
                         if c.get("type") == "purpose"), None)
            if rule is None:
                policy.setdefault("permission", {}).setdefault("constraints", []).insert(0, {"type": "purpose",
                                                                                               "in": purposes})
            else:
                rule["in"] = list(purposes)
        offer = {"@id": urn, "@type": "Offer", "target": offers.dataset_id(product_id), **to_odrl(policy)}
        if params:
            offer["cm:params"] = {"@value": params, "@type": "@json"}
        cpid = new_pid()
        with self.plane.lock:
            self.store.put(topics.CONTROL_NEGOTIATIONS, cpid, blank(
                "Negotiation", negotiation_id=cpid, side="CONSUMER", consumer_pid=cpid, provider_id=provider,
                consumer_id=consumer, product_id=product_id, offer_id=urn, state="REQUESTED",
                counterparty_address=self.plane.dsp_url(provider), purposes=offers.declared_purposes(policy),
                policy_json=dumps(policy), offer_json=dumps(offer), created_ms=now_ms(), updated_ms=now_ms()))
        msg = messages.envelope("ContractRequestMessage", consumerPid=cpid, offer=offer,
                                callbackAddress=self.plane.callback_url(consumer))
        return self._open(topics.CONTROL_NEGOTIATIONS, consumer, provider, cpid, "negotiations", msg,
                          "ContractNegotiation")

    def terminate_negotiation(self, consumer: str, cpid: str, reason: str | None) -> dict:
        rec = self._mine(topics.CONTROL_NEGOTIATIONS, consumer, cpid)
        negotiation_next(rec["state"], "ContractNegotiationTerminationMessage", "C")
        msg = messages.envelope("ContractNegotiationTerminationMessage", providerPid=rec["provider_pid"],
                                consumerPid=cpid, code="CONSUMER", reason=[reason or "terminated by the consumer"])
        try:
            self.plane.send(consumer, rec["provider_id"],
                            f"{rec['counterparty_address']}/negotiations/{rec['provider_pid']}/termination", msg)
        except SendFailed as exc:
            raise _relay(exc) from None
        return self._update(topics.CONTROL_NEGOTIATIONS, cpid, state="TERMINATED", pending=None,
                            reason=reason or "terminated by the consumer")

    def request_transfer(self, consumer: str, agreement_id: str) -> dict:
        agreement = self.store.get(topics.CONTROL_AGREEMENTS, agreement_id)
        if agreement is None or agreement["consumer_id"] != consumer:
            raise NotFound(f"no agreement {agreement_id!r} of {consumer}", "agreement")
        provider = agreement["provider_id"]
        cpid = new_pid()
        with self.plane.lock:
            self.store.put(topics.CONTROL_TRANSFERS, cpid, blank(
                "Transfer", transfer_id=cpid, side="CONSUMER", consumer_pid=cpid, provider_id=provider,
                consumer_id=consumer, agreement_id=agreement_id, contract_id=agreement["contract_id"],
                state="REQUESTED", format=offers.FORMAT, counterparty_address=self.plane.dsp_url(provider),
                created_ms=now_ms(), updated_ms=now_ms()))
        msg = messages.envelope("TransferRequestMessage", consumerPid=cpid, agreementId=agreement_id,
                                format=offers.FORMAT, callbackAddress=self.plane.callback_url(consumer))
        return self._open(topics.CONTROL_TRANSFERS, consumer, provider, cpid, "transfers", msg, "TransferProcess")

    def _open(self, table: str, consumer: str, provider: str, cpid: str, kind: str, msg: dict, ack_type: str) -> dict:
        """Send the request that opens a process (its record already written) and learn the
        provider's pid from the ACK, unless a callback that arrived first named it already."""
        try:
            ack = self.plane.send(consumer, provider, f"{self.plane.dsp_url(provider)}/{kind}/request", msg).json()
        except SendFailed as exc:
            self._update(table, cpid, state="TERMINATED", reason=str(exc)[:1000])
            raise _relay(exc) from None
        messages.check(ack, ack_type)
        with self.plane.lock:
            rec = self.store.get(table, cpid)
            return rec if rec["provider_pid"] else self._update(table, cpid, provider_pid=ack["providerPid"])

    def transfer_action(self, consumer: str, cpid: str, action: str, reason: str | None = None) -> dict:
        if action not in TRANSFER_ACTIONS:
            raise InvalidMessage(f"unknown action {action!r} (known: {', '.join(TRANSFER_ACTIONS)})", "action")
        kind, path = TRANSFER_ACTIONS[action]
        rec = self._mine(topics.CONTROL_TRANSFERS, consumer, cpid)
        state = transfer_next(rec["state"], kind, "C")
        fields = {"providerPid": rec["provider_pid"], "consumerPid": cpid}
        if kind in ("TransferSuspensionMessage", "TransferTerminationMessage"):
            fields.update(code="CONSUMER", reason=[reason or f"{action} by the consumer"])
        try:
            self.plane.send(consumer, rec["provider_id"],
                            f"{rec['counterparty_address']}/transfers/{rec['provider_pid']}/{path}",
                            messages.envelope(kind, **fields))
        except SendFailed as exc:
            raise _relay(exc) from None
        return self._update(topics.CONTROL_TRANSFERS, cpid, state=state, reason=reason)

    # ---- helpers -----------------------------------------------------------------------------

    def _mine(self, table: str, consumer: str, cpid: str) -> dict:
        rec = self.store.get(table, cpid)
        if rec is None or rec["side"] != "CONSUMER" or rec["consumer_id"] != consumer:
            raise NotFound(f"no process {cpid!r} of {consumer}", "consumerPid")
        return rec

    def _update(self, table: str, key: str, **fields) -> dict:
        with self.plane.lock:
            rec = self.store.get(table, key)
            return self.store.put(table, key, {**rec, **fields, "updated_ms": now_ms()})

    def _callback(self, table: str, consumer: str, caller: str, cpid: str, message: dict) -> dict:
        rec = self.store.get(table, cpid)
        if rec is None or rec["side"] != "CONSUMER" or rec["consumer_id"] != consumer or rec["provider_id"] != caller:
            raise NotFound(f"no process {cpid!r} of {consumer} with {caller}", "consumerPid")
        if message.get("consumerPid") != cpid:
            raise InvalidMessage(f"consumerPid {message.get('consumerPid')!r} is not the path's {cpid!r}",
                                 "consumerPid")
        if rec["provider_pid"] is not None and message.get("providerPid") != rec["provider_pid"]:
            raise InvalidMessage(f"providerPid {message.get('providerPid')!r} is not this process's", "providerPid")
        return rec

    def _keep_delivery_key(self, rec: dict, address: dict) -> None:
        """Open the contract's delivery key the data address carries (sealed to this consumer's
        key) and add it to the consumer's delivery keys (<keys>/deliveries/<consumer>.json, where
        `citymesh apply` puts those of the topology's contracts), so ConsumerConnector verifies the
        stream's records; before the transfer is recorded as started. An address without one
        (another kind of connector's) leaves them unverified, as ConsumerConnector then says."""
        props = {p["name"]: p["value"] for p in address.get("endpointProperties") or []}
        sealed = props.get("deliveryKeySealed")
        consumer, contract = rec["consumer_id"], rec["contract_id"]
        if sealed is None:
            log.warning("transfer %s: the data address carries no delivery key; %s's records cannot be verified",
                        rec["transfer_id"], contract)
            return
        try:
            key = keyring.open_delivery_key(self.plane.keyring(consumer), contract, sealed)
        except keyring.KeyringError as exc:
            raise InvalidMessage(str(exc), "dataAddress.endpointProperties.deliveryKeySealed") from None
        held = keyring.delivery_keys(self.plane.keys_dir, consumer)
        if held.get(contract) != key:
            keyring.save_delivery_keys(self.plane.keys_dir, consumer, {**held, contract: key})

    # ---- callbacks: what providers send -------------------------------------------------------

    def on_agreement(self, consumer: str, caller: str, cpid: str, message: dict) -> dict:
        with self.plane.lock:
            rec = self._callback(topics.CONTROL_NEGOTIATIONS, consumer, caller, cpid, message)
            agreement = message["agreement"]
            if rec["state"] in ("AGREED", "VERIFIED", "FINALIZED") and rec["agreement_id"] == agreement.get("@id"):
                return rec  # a re-sent agreement (our ACK was lost): already taken
            state = negotiation_next(rec["state"], "ContractAgreementMessage", "P")
            expected = {"assigner": rec["provider_id"], "assignee": consumer,
                        "target": offers.dataset_id(rec["product_id"])}
            for key, value in expected.items():
                if agreement.get(key) != value:
                    raise InvalidMessage(f"agreement.{key} is {agreement.get(key)!r}, not {value!r}", f"agreement.{key}")
            body = {k: v for k, v in agreement.items() if k not in ("@id", "@type", "target", "assigner", "assignee",
                                                                     "timestamp")}
            if from_odrl(body, "agreement") != canonical(json.loads(rec["policy_json"])):
                raise InvalidMessage("the agreement's policy is not the one requested", "agreement")
            signature = message.get(SIGNATURE)
            key = self.store.public_key(caller)
            if not isinstance(signature, dict) or key is None or not verify_agreement(key, agreement, signature):
                raise InvalidMessage(f"{SIGNATURE} must be {caller}'s Ed25519 signature of the agreement", SIGNATURE)
            mine = sign_agreement(self.plane.keyring(consumer), agreement)
            rec = self.store.put(topics.CONTROL_NEGOTIATIONS, cpid, {
                **rec, "state": state, "provider_pid": message["providerPid"], "agreement_id": agreement["@id"],
                "agreement_json": dumps(agreement), "provider_signature_json": dumps(signature),
                "consumer_signature_json": dumps(mine), "pending": "VERIFY", "attempts": 0, "updated_ms": now_ms()})
        self.plane.wake()
        return rec

    def send_pending(self, rec: dict) -> None:
        if rec["side"] != "CONSUMER" or rec["pending"] != "VERIFY":
            return
        negotiation_next(rec["state"], "ContractAgreementVerificationMessage", "C")
        msg = messages.envelope("ContractAgreementVerificationMessage", providerPid=rec["provider_pid"],
                                consumerPid=rec["consumer_pid"])
        msg[SIGNATURE] = json.loads(rec["consumer_signature_json"])
        self.plane.send(rec["consumer_id"], rec["provider_id"], f"{rec['counterparty_address']}/negotiations/"
                                                                f"{rec['provider_pid']}/agreement/verification", msg)
        with self.plane.lock:
            current = self.store.get(topics.CONTROL_NEGOTIATIONS, rec["negotiation_id"])
            if still_pending(current, rec):
                self.store.put(topics.CONTROL_NEGOTIATIONS, rec["negotiation_id"], {
                    **current, "state": "VERIFIED", "pending": None, "attempts": 0, "updated_ms": now_ms()})

    def on_event(self, consumer: str, caller: str, cpid: str, message: dict) -> dict:
        if message["eventType"] != "FINALIZED":
            raise InvalidTransition(f"a provider sends no {message['eventType']} event", "eventType")
        self.store.wait_for(lambda: (self.store.get(topics.CONTROL_NEGOTIATIONS, cpid) or {}).get("pending")
                            != "VERIFY", ACK_WAIT_S)
        with self.plane.lock:
            rec = self._callback(topics.CONTROL_NEGOTIATIONS, consumer, caller, cpid, message)
            if rec["state"] == "FINALIZED":
                return rec  # re-sent
            state = negotiation_next(rec["state"], "FINALIZED", "P")
            return self.store.put(topics.CONTROL_NEGOTIATIONS, cpid, {**rec, "state": state, "updated_ms": now_ms()})

    def on_offer(self, consumer: str, caller: str, cpid: str, message: dict) -> dict:
        with self.plane.lock:
            rec = self._callback(topics.CONTROL_NEGOTIATIONS, consumer, caller, cpid, message)
            state = negotiation_next(rec["state"], "ContractOfferMessage", "P")
            return self.store.put(topics.CONTROL_NEGOTIATIONS, cpid, {
                **rec, "state": state, "offer_json": dumps(message["offer"]), "updated_ms": now_ms()})

    def on_termination(self, consumer: str, caller: str, cpid: str, message: dict) -> dict:
        with self.plane.lock:
            rec = self._callback(topics.CONTROL_NEGOTIATIONS, consumer, caller, cpid, message)
            state = negotiation_next(rec["state"], "ContractNegotiationTerminationMessage", "P")
            reason = "; ".join(map(str, message.get("reason") or [])) or "terminated by the provider"
            return self.store.put(topics.CONTROL_NEGOTIATIONS, cpid, {**rec, "state": state, "pending": None,
                                                                      "reason": reason, "updated_ms": now_ms()})

    def on_transfer(self, consumer: str, caller: str, cpid: str, message: dict) -> dict:
        with self.plane.lock:
            rec = self._callback(topics.CONTROL_TRANSFERS, consumer, caller, cpid, message)
            if (rec["state"], message["@type"]) in (("STARTED", "TransferStartMessage"),
                                                    ("SUSPENDED", "TransferSuspensionMessage")):
                return rec  # re-sent
            state = transfer_next(rec["state"], message["@type"], "P")
            update = {"state": state, "provider_pid": message["providerPid"], "updated_ms": now_ms()}
            if message.get("dataAddress") is not None:
                self._keep_delivery_key(rec, message["dataAddress"])
                update["data_address_json"] = dumps(message["dataAddress"])
            if message.get("reason"):
                update["reason"] = "; ".join(map(str, message["reason"]))
            return self.store.put(topics.CONTROL_TRANSFERS, cpid, {**rec, **update})

