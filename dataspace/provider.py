"""The provider side of a connector context: catalog, negotiations, transfers (DSP 2025-1).

Every handler takes the provider whose context is addressed, the authenticated caller and
the message (already checked against the spec's schema by the API), and returns the ACK.
A caller sees only its own negotiations and transfers: anything else is "not found", as
the spec asks. What the provider must send after it has answered (an agreement, the
finalization, a transfer start, a termination) is recorded as `pending` and sent by the
plane's dispatcher (plane.py), so a restart re-sends it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import policy_enforcer
import schemas
from streams import keyring, topics
from topology.apply import contract_delivery_key
from topology.models import ContractState

from . import messages, offers
from .contracts import CONTRACT_STATE_OF_TRANSFER, contract_id_for
from .errors import InvalidMessage, InvalidTransition, NotFound, OdrlError
from .identity import sign_agreement, verify_agreement
from .odrl import PROFILE, from_instant, from_odrl, instant, to_odrl
from .plane import ControlPlane, blank, dumps, new_pid, now_ms, still_pending
from .state import FINAL, negotiation_next, transfer_next

log = logging.getLogger("citymesh.dataspace.provider")

SIGNATURE = "cm:signature"  # extension property of ContractAgreement(Verification)Message: Ed25519 over the agreement
ACK_WAIT_S = 5.0            # how long a message may wait for our own state to catch up with an ACK in flight
PASSWORD_REF = "keyring#sasl_password"  # a data address's passwordRef: the field of the consumer's own keyring


def negotiation_ack(rec: dict) -> dict:
    return messages.envelope("ContractNegotiation", providerPid=rec["provider_pid"], consumerPid=rec["consumer_pid"],
                             state=rec["state"])


def transfer_ack(rec: dict) -> dict:
    return messages.envelope("TransferProcess", providerPid=rec["provider_pid"], consumerPid=rec["consumer_pid"],
                             state=rec["state"])


class ProviderSide:
    def __init__(self, plane: ControlPlane):
        self.plane = plane
        self.store = plane.store

    # ---- catalog -------------------------------------------------------------------------

    def _visible(self, provider: str, caller: str) -> list[dict]:
        self.plane.participant(provider)
        who = self.store.get(topics.CONTROL_PARTICIPANTS, caller)
        return sorted((p for p in self.store.values(topics.CONTROL_CATALOG)
                       if p["provider_id"] == provider and offers.may_see(who, p)), key=lambda p: p["product_id"])

    def catalog(self, provider: str, caller: str, message: dict) -> dict:
        if message.get("filter"):
            raise InvalidMessage("filter expressions are not supported (send an empty filter)",
                                 "CatalogRequestMessage.filter")
        return {"@context": [messages.CONTEXT], **offers.catalog(provider, self._visible(provider, caller),
                                                                  self.plane.dsp_url(provider))}

    def dataset(self, provider: str, caller: str, dataset_id: str) -> dict:
        for p in self._visible(provider, caller):
            if offers.dataset_id(p["product_id"]) == dataset_id:
                return {"@context": [messages.CONTEXT], **offers.dataset(p, self.plane.dsp_url(provider))}
        raise NotFound(f"no dataset {dataset_id!r} of {provider} for {caller}", "dataset")

    # ---- negotiations --------------------------------------------------------------------

    def _mine(self, provider: str, caller: str, pid: str, message: dict | None = None) -> dict:
        rec = self.store.get(topics.CONTROL_NEGOTIATIONS, pid)
        if (rec is None or rec["side"] != "PROVIDER" or rec["provider_id"] != provider
                or caller not in (rec["consumer_id"], provider)):
            raise NotFound(f"no contract negotiation {pid!r} of {provider} for {caller}", "providerPid")
        if message is not None:
            if message.get("providerPid") != pid:
                raise InvalidMessage(f"providerPid {message.get('providerPid')!r} is not the path's {pid!r}",
                                     "providerPid")
            if message.get("consumerPid") != rec["consumer_pid"]:
                raise InvalidMessage(f"consumerPid {message.get('consumerPid')!r} is not this negotiation's",
                                     "consumerPid")
        return rec

    def get_negotiation(self, provider: str, caller: str, pid: str) -> dict:
        return negotiation_ack(self._mine(provider, caller, pid))

    def request(self, provider: str, caller: str, message: dict) -> dict:
        """An initial ContractRequestMessage: a new negotiation in REQUESTED (201), or an ERROR."""
        if "providerPid" in message:
            raise InvalidMessage("a request with a providerPid goes to /negotiations/:providerPid/request",
                                 "ContractRequestMessage.providerPid")
        consumer = self.plane.require_role(caller, "CONSUMER", "SERVICE", "REGULATOR", "OPERATOR")
        offer = message["offer"]
        product_id, offer_id = offers.parse_offer_urn(offer["@id"])
        product = self.store.get(topics.CONTROL_CATALOG, product_id)
        if product is None or product["provider_id"] != provider or not offers.may_see(consumer, product):
            raise NotFound(f"no offer {offer['@id']!r} of {provider} for {caller}", "offer.@id")
        catalog_offer = offers.offers_of(product).get(offer_id)
        if catalog_offer is None:
            raise NotFound(f"no offer {offer['@id']!r} of {provider} for {caller}", "offer.@id")
        if offer.get("target") != offers.dataset_id(product_id):
            raise InvalidMessage(f"offer.target must be the dataset {offers.dataset_id(product_id)}", "offer.target")
        params = offers.request_params(offer)
        policy = offers.offer_policy(catalog_offer, params) if offers.is_bare(offer) else from_odrl(offer)
        try:
            policy_enforcer.validate_policy(policy, schemas.load(product["schema_name"]),
                                            policy_enforcer.ProductTerms.from_catalog(product))
        except policy_enforcer.PolicyError as exc:
            raise OdrlError(f"not enforceable on {product_id}: {exc}", "offer") from None
        purposes = offers.declared_purposes(policy)
        needs, why = offers.reviewers(product, catalog_offer, policy, params)
        pid = new_pid()
        rec = blank("Negotiation", negotiation_id=pid, side="PROVIDER", provider_pid=pid,
                    consumer_pid=message["consumerPid"], provider_id=provider, consumer_id=caller,
                    product_id=product_id, offer_id=offer["@id"], state="REQUESTED",
                    counterparty_address=message["callbackAddress"], purposes=purposes, policy_json=dumps(policy),
                    offer_json=dumps(offer), needs=needs, pending=None if needs else "AGREEMENT",
                    reason=why, created_ms=now_ms(), updated_ms=now_ms())
        with self.plane.lock:
            rec = self.store.put(topics.CONTROL_NEGOTIATIONS, pid, rec)
        log.info("negotiation %s: %s asks %s for %s (%s): %s", pid, caller, provider, offer["@id"],
                 "agreed automatically" if not needs else "waits for " + " and ".join(needs), why)
        self.plane.wake()
        return negotiation_ack(rec)

    def request_existing(self, provider: str, caller: str, pid: str, message: dict) -> dict:
        """A consumer's counter-offer: only after an offer of ours, which this connector never makes."""
        rec = self._mine(provider, caller, pid, message)
        negotiation_next(rec["state"], "ContractRequestMessage", "C")
        raise InvalidTransition("this connector makes no counter-offers; start a new negotiation")  # pragma: no cover

    def event(self, provider: str, caller: str, pid: str, message: dict) -> dict:
        rec = self._mine(provider, caller, pid, message)
        if message["eventType"] != "ACCEPTED":
            raise InvalidTransition(f"a consumer sends no {message['eventType']} event", "eventType")
        negotiation_next(rec["state"], "ACCEPTED", "C")
        raise InvalidTransition("nothing to accept: this connector makes no offers")  # pragma: no cover

    def verification(self, provider: str, caller: str, pid: str, message: dict) -> dict:
        rec = self._mine(provider, caller, pid, message)
        # the consumer may verify before the ACK of our agreement message is back with us
        self.store.wait_for(lambda: (self.store.get(topics.CONTROL_NEGOTIATIONS, pid) or rec)["pending"] != "AGREEMENT",
                            ACK_WAIT_S)
        with self.plane.lock:
            rec = self._mine(provider, caller, pid, message)
            signature = message.get(SIGNATURE)
            if rec["state"] in ("VERIFIED", "FINALIZED") and rec["consumer_signature_json"] == dumps(signature):
                return negotiation_ack(rec)  # a re-sent verification (its ACK was lost): already done
            state = negotiation_next(rec["state"], "ContractAgreementVerificationMessage", "C")
            agreement = json.loads(rec["agreement_json"])
            key = self.store.public_key(rec["consumer_id"])
            if not isinstance(signature, dict) or key is None or not verify_agreement(key, agreement, signature):
                raise InvalidMessage(f"{SIGNATURE} must be {rec['consumer_id']}'s Ed25519 signature of the agreement "
                                     "(citymesh-agreement/v1 + RFC 8785 JCS)", SIGNATURE)
            rec = self.store.put(topics.CONTROL_NEGOTIATIONS, pid,
                                 {**rec, "state": state, "consumer_signature_json": dumps(signature),
                                  "pending": "FINALIZE", "attempts": 0, "updated_ms": now_ms()})
        self.plane.wake()
        return negotiation_ack(rec)

    def terminate(self, provider: str, caller: str, pid: str, message: dict) -> dict:
        with self.plane.lock:
            rec = self._mine(provider, caller, pid, message)
            state = negotiation_next(rec["state"], "ContractNegotiationTerminationMessage", "C")
            reason = "; ".join(map(str, message.get("reason") or [])) or "terminated by the consumer"
            rec = self.store.put(topics.CONTROL_NEGOTIATIONS, pid, {**rec, "state": state, "pending": None,
                                                                    "reason": reason, "updated_ms": now_ms()})
        return negotiation_ack(rec)

    def decide(self, who: str, pid: str, approve: bool, reason: str | None) -> dict:
        """The provider's or the operator's decision on a request waiting for review."""
        with self.plane.lock:
            rec = self.store.get(topics.CONTROL_NEGOTIATIONS, pid)
            if rec is None or rec["side"] != "PROVIDER":
                raise NotFound(f"no contract negotiation {pid!r}")
            role = "provider" if who == rec["provider_id"] else "operator" if self.plane.is_operator(who) else None
            if role is None:
                raise NotFound(f"no contract negotiation {pid!r} for {who}")
            if rec["state"] != "REQUESTED" or role not in rec["needs"]:
                raise InvalidTransition(f"negotiation {pid} in state {rec['state']} waits for "
                                        f"{', '.join(rec['needs']) or 'nobody'}, not for the {role}")
            if approve:
                needs = [n for n in rec["needs"] if n != role]
                update = {"needs": needs, "approved_by": rec["approved_by"] + [f"{role}:{who}"],
                          "pending": None if needs else "AGREEMENT", "attempts": 0}
            else:
                update = {"state": "TERMINATED", "needs": [], "pending": "TERMINATE", "attempts": 0,
                          "reason": f"rejected by the {role} ({who}): {reason or 'no reason given'}"}
            rec = self.store.put(topics.CONTROL_NEGOTIATIONS, pid, {**rec, **update, "updated_ms": now_ms()})
        self.plane.wake()
        return rec

    # ---- what the provider sends (dispatcher) ---------------------------------------------

    def send_pending(self, rec: dict) -> None:
        if rec["side"] != "PROVIDER":
            return
        {"AGREEMENT": self._send_agreement, "FINALIZE": self._send_finalize,
         "TERMINATE": self._send_termination}[rec["pending"]](rec)

    def _agreement(self, rec: dict) -> dict:
        """The ODRL agreement of a negotiation, made once and kept in the record so a re-send is identical."""
        if rec["agreement_json"] is not None:
            return rec
        policy = json.loads(rec["policy_json"])
        agreement_id = new_pid()
        agreement = {"@id": agreement_id, "@type": "Agreement", **to_odrl(policy),
                     "target": offers.dataset_id(rec["product_id"]), "assigner": rec["provider_id"],
                     "assignee": rec["consumer_id"], "timestamp": instant(now_ms())["@value"]}
        agreement["profile"] = PROFILE
        signature = sign_agreement(self.plane.keyring(rec["provider_id"]), agreement)
        with self.plane.lock:
            current = self.store.get(topics.CONTROL_NEGOTIATIONS, rec["negotiation_id"])
            if not still_pending(current, rec):
                raise InvalidTransition("the negotiation changed while its agreement was made")
            return self.store.put(topics.CONTROL_NEGOTIATIONS, rec["negotiation_id"], {
                **current, "agreement_id": agreement_id, "agreement_json": dumps(agreement),
                "provider_signature_json": dumps(signature),
                "contract_id": contract_id_for(rec["consumer_id"], rec["product_id"], agreement_id),
                "updated_ms": now_ms()})

    def _transition(self, rec: dict, message: str, update: dict | None = None) -> None:
        with self.plane.lock:
            current = self.store.get(topics.CONTROL_NEGOTIATIONS, rec["negotiation_id"])
            if not still_pending(current, rec):
                return
            state = negotiation_next(current["state"], message, "P") if message else current["state"]
            self.store.put(topics.CONTROL_NEGOTIATIONS, rec["negotiation_id"],
                           {**current, "state": state, "pending": None, "attempts": 0, **(update or {}),
                            "updated_ms": now_ms()})

    def _send_agreement(self, rec: dict) -> None:
        negotiation_next(rec["state"], "ContractAgreementMessage", "P")
        rec = self._agreement(rec)
        msg = messages.envelope("ContractAgreementMessage", providerPid=rec["provider_pid"],
                                consumerPid=rec["consumer_pid"], agreement=json.loads(rec["agreement_json"]))
        msg[SIGNATURE] = json.loads(rec["provider_signature_json"])
        self.plane.send(rec["provider_id"], rec["consumer_id"],
                        f"{rec['counterparty_address'].rstrip('/')}/negotiations/{rec['consumer_pid']}/agreement", msg)
        self._transition(rec, "ContractAgreementMessage")

    def _send_finalize(self, rec: dict) -> None:
        negotiation_next(rec["state"], "FINALIZED", "P")
        agreement = self.store.get(topics.CONTROL_AGREEMENTS, rec["agreement_id"])
        if agreement is None:
            odrl = json.loads(rec["agreement_json"])
            product = self.store.get(topics.CONTROL_CATALOG, rec["product_id"])
            offer = offers.offers_of(product).get(offers.parse_offer_urn(rec["offer_id"])[1], {}) if product else {}
            agreement = self.store.put(topics.CONTROL_AGREEMENTS, rec["agreement_id"], blank(
                "Agreement", agreement_id=rec["agreement_id"], provider_id=rec["provider_id"],
                consumer_id=rec["consumer_id"], product_id=rec["product_id"], offer_id=rec["offer_id"],
                negotiation_id=rec["negotiation_id"], contract_id=rec["contract_id"], purposes=rec["purposes"],
                template=offer.get("template"), odrl_json=rec["agreement_json"], policy_json=rec["policy_json"],
                provider_signature_json=rec["provider_signature_json"],
                consumer_signature_json=rec["consumer_signature_json"],
                price_per_1000_minor=offer.get("price_per_1000_minor", 0), timestamp_ms=from_instant(odrl["timestamp"], "agreement.timestamp")))
        if self.store.get(topics.CONTROL_CONTRACTS, agreement["contract_id"]) is None:
            self.plane.desk.set_state(agreement, ContractState.agreed)
        self.plane.desk.notify(agreement)
        msg = messages.envelope("ContractNegotiationEventMessage", providerPid=rec["provider_pid"],
                                consumerPid=rec["consumer_pid"], eventType="FINALIZED")
        self.plane.send(rec["provider_id"], rec["consumer_id"],
                        f"{rec['counterparty_address'].rstrip('/')}/negotiations/{rec['consumer_pid']}/events", msg)
        self._transition(rec, "FINALIZED")

    def _send_termination(self, rec: dict) -> None:
        msg = messages.envelope("ContractNegotiationTerminationMessage", providerPid=rec["provider_pid"],
                                consumerPid=rec["consumer_pid"], code="REJECTED", reason=[rec["reason"] or "rejected"])
        self.plane.send(rec["provider_id"], rec["consumer_id"],
                        f"{rec['counterparty_address'].rstrip('/')}/negotiations/{rec['consumer_pid']}/termination", msg)
        self._transition(rec, None)

    # ---- transfers -----------------------------------------------------------------------

    def _my_transfer(self, provider: str, caller: str, pid: str, message: dict | None = None) -> dict:
        rec = self.store.get(topics.CONTROL_TRANSFERS, pid)
        if (rec is None or rec["side"] != "PROVIDER" or rec["provider_id"] != provider
                or caller not in (rec["consumer_id"], provider)):
            raise NotFound(f"no transfer process {pid!r} of {provider} for {caller}", "providerPid")
        if message is not None and (message.get("providerPid") != pid
                                    or message.get("consumerPid") != rec["consumer_pid"]):
            raise InvalidMessage("providerPid and consumerPid must name this transfer process", "providerPid")
        return rec

    def get_transfer(self, provider: str, caller: str, pid: str) -> dict:
        return transfer_ack(self._my_transfer(provider, caller, pid))

    def transfer_request(self, provider: str, caller: str, message: dict) -> dict:
        agreement = self.store.get(topics.CONTROL_AGREEMENTS, message["agreementId"])
        if agreement is None or agreement["provider_id"] != provider or agreement["consumer_id"] != caller:
            raise NotFound(f"no agreement {message['agreementId']!r} between {provider} and {caller}", "agreementId")
        if message["format"] != offers.FORMAT:
            raise InvalidMessage(f"format {message['format']!r} is not offered (only {offers.FORMAT}: the consumer "
                                 "reads its delivery topic)", "format")
        if message.get("dataAddress") is not None:
            raise InvalidMessage(f"{offers.FORMAT} is a pull transfer: send no dataAddress", "dataAddress")
        with self.plane.lock:
            for other in self.store.values(topics.CONTROL_TRANSFERS):
                if other["side"] == "PROVIDER" and other["agreement_id"] == agreement["agreement_id"]:
                    if other["consumer_pid"] == message["consumerPid"]:
                        return transfer_ack(other)  # the spec's idempotent re-request
                    if other["state"] not in FINAL:
                        raise InvalidTransition(f"agreement {agreement['agreement_id']} already has transfer "
                                                f"{other['provider_pid']} in state {other['state']}", "agreementId")
            pid = new_pid()
            rec = self.store.put(topics.CONTROL_TRANSFERS, pid, blank(
                "Transfer", transfer_id=pid, side="PROVIDER", provider_pid=pid, consumer_pid=message["consumerPid"],
                provider_id=provider, consumer_id=caller, agreement_id=agreement["agreement_id"],
                contract_id=agreement["contract_id"], state="REQUESTED", format=message["format"],
                counterparty_address=message["callbackAddress"], pending="START", created_ms=now_ms(),
                updated_ms=now_ms()))
        self.plane.wake()
        return transfer_ack(rec)

    def transfer_message(self, provider: str, caller: str, pid: str, message: dict) -> dict:
        """Start (resume), suspension, completion or termination sent by the consumer."""
        kind = message["@type"]
        self.store.wait_for(lambda: (self.store.get(topics.CONTROL_TRANSFERS, pid) or {}).get("pending") != "START",
                            ACK_WAIT_S)
        with self.plane.lock:
            rec = self._my_transfer(provider, caller, pid, message)
            state = transfer_next(rec["state"], kind, "C")
            reason = "; ".join(map(str, message.get("reason") or [])) or None
            self._contract(rec, state)
            rec = self.store.put(topics.CONTROL_TRANSFERS, pid, {**rec, "state": state, "pending": None,
                                                                 "reason": reason, "updated_ms": now_ms()})
        return transfer_ack(rec)

    def _contract(self, rec: dict, state: str) -> None:
        agreement = self.store.get(topics.CONTROL_AGREEMENTS, rec["agreement_id"])
        if agreement is None:
            raise NotFound(f"agreement {rec['agreement_id']} is gone", "agreementId")
        self.plane.desk.set_state(agreement, CONTRACT_STATE_OF_TRANSFER[state])

    def data_address(self, rec: dict) -> dict:
        """What the consumer gets when its stream starts: where to read (bootstrap, delivery topic,
        its group prefix), how to decode (the delivery schema), how to log in and how to verify.

        Login: its SCRAM user name and where the password is (`passwordRef`: the `sasl_password`
        of its own keyring), never the password. The consumer already holds it (its keyring, whose
        credential `citymesh apply` created), and a copy in the address would travel over HTTP and
        stay in cm.control.transfers, which the mesh's services read; the CA certificate (public)
        is included so a consumer without the operator's files can check the broker.
        Verification (streams/delivery.py): the contract's delivery key sealed to the consumer's
        registered Ed25519 key (streams.keyring.seal_delivery_key; only the consumer opens it) and
        the public keys of the operators whose signatures seal its batches."""
        contract = self.store.get(topics.CONTROL_CONTRACTS, rec["contract_id"]) or {}
        conf = self.plane.client_config
        consumer = rec["consumer_id"]
        public_key = self.store.public_key(consumer)
        if public_key is None:
            raise NotFound(f"{consumer} has no registered public key to hand its delivery key to", "consumerId")
        protocol = conf.get("security.protocol", "PLAINTEXT")
        props = {"topic": topics.delivery(rec["contract_id"]), "contract": rec["contract_id"],
                 "groupPrefix": f"{consumer}.", "securityProtocol": protocol,
                 "authType": "none" if protocol in ("PLAINTEXT", "SSL") else "sasl",
                 "schema": contract.get("delivery_schema_json") or ""}
        if props["authType"] == "sasl":
            props.update({"saslMechanism": conf.get("sasl.mechanism", ""), "username": consumer,
                          "passwordRef": PASSWORD_REF})
        if conf.get("ssl.ca.location"):
            props["caCertificate"] = Path(conf["ssl.ca.location"]).read_text()
        key = contract_delivery_key(self.plane.keys_dir, rec["contract_id"])
        props["deliveryKeySealed"] = keyring.seal_delivery_key(public_key, rec["contract_id"], key)
        props["sealKeys"] = ",".join(f"{p['participant_id']}:{p['public_key']}" for p in sorted(
            self.store.values(topics.CONTROL_PARTICIPANTS), key=lambda p: p["participant_id"])
            if "OPERATOR" in p["roles"] and p.get("public_key"))
        return {"@type": "DataAddress", "endpointType": "https://w3id.org/citymesh/kafka",
                "endpoint": conf["bootstrap.servers"],
                "endpointProperties": [{"@type": "EndpointProperty", "name": k, "value": v} for k, v in props.items()]}

    def send_transfer_pending(self, rec: dict) -> None:
        if rec["side"] != "PROVIDER":
            return
        if rec["pending"] == "START":
            transfer_next(rec["state"], "TransferStartMessage", "P")
            self._contract(rec, "STARTED")
            address = self.data_address(rec)
            msg = messages.envelope("TransferStartMessage", providerPid=rec["provider_pid"],
                                    consumerPid=rec["consumer_pid"], dataAddress=address)
            self.plane.send(rec["provider_id"], rec["consumer_id"],
                            f"{rec['counterparty_address'].rstrip('/')}/transfers/{rec['consumer_pid']}/start", msg)
            with self.plane.lock:
                current = self.store.get(topics.CONTROL_TRANSFERS, rec["transfer_id"])
                if still_pending(current, rec):
                    self.store.put(topics.CONTROL_TRANSFERS, rec["transfer_id"], {
                        **current, "state": "STARTED", "pending": None, "attempts": 0,
                        "data_address_json": dumps(address), "updated_ms": now_ms()})

