"""The spec's own example messages (ids adapted to this mesh) fed to the endpoints they are
sent to: each answer is the spec's ACK or ERROR object, valid against its JSON Schema."""

from __future__ import annotations

import json

import pytest

from dataspace import messages
from tests.dataspace.harness import FIXTURES, dsp_get, dsp_post

ACK = {"negotiation": "ContractNegotiation", "transfer": "TransferProcess"}
ERROR = {"catalog": "CatalogError", "negotiation": "ContractNegotiationError", "transfer": "TransferError"}


def example(name: str) -> dict:
    return json.loads(next(FIXTURES.glob(f"*/example/{name}")).read_text())


def answer_ok(resp, kind: str, ack: str | None = None) -> dict:
    assert resp.status_code < 500, resp.text
    body = resp.json()
    expected = (ack or ACK.get(kind)) if resp.status_code < 300 else ERROR[kind]
    assert body.get("@type") == expected, body
    assert messages.problems(body, expected) == []
    return body


def test_spec_examples_get_ack_or_error(mesh, callbacks):
    ring, provider = mesh.ring("logistics"), mesh.id("skyway")
    base = mesh.dsp_url("skyway")
    dataset = f"urn:citymesh:dataset:{mesh.id('uav')}"
    offer = f"urn:citymesh:offer:{mesh.id('uav')}:logistics"

    def post(path, msg, kind, ack=None):
        return answer_ok(dsp_post(ring, provider, base + path, msg), kind, ack)

    assert post("/catalog/request", example("catalog-request-message.json"), "catalog", "Catalog")["dataset"]
    ds = example("dataset-request-message.json")
    assert answer_ok(dsp_get(ring, provider, f"{base}/catalog/datasets/{ds['dataset']}"), "catalog", "Dataset")[
        "@type"] == "CatalogError"
    assert answer_ok(dsp_get(ring, provider, f"{base}/catalog/datasets/{dataset}"), "catalog", "Dataset")[
        "@id"] == dataset

    initial = example("contract-request-message_initial.json")
    initial["offer"].update({"@id": offer, "target": dataset})
    initial["callbackAddress"] = callbacks.url
    ack = post("/negotiations/request", initial, "negotiation")
    assert ack["state"] == "REQUESTED" and ack["consumerPid"] == initial["consumerPid"]
    pid, cpid = ack["providerPid"], initial["consumerPid"]
    callbacks.wait_for(f"negotiations/{cpid}/agreement")

    def adapted(name: str) -> dict:
        msg = example(name)
        msg.update(providerPid=pid, consumerPid=cpid)
        return msg

    assert post(f"/negotiations/{pid}/request", adapted("contract-request-message.json"), "negotiation")[
        "code"] == "INVALID_STATE_TRANSITION"
    assert post(f"/negotiations/{pid}/events", adapted("contract-negotiation-event-message.json"), "negotiation")[
        "code"] == "INVALID_STATE_TRANSITION"
    # the spec's verification carries no signature: this connector refuses to finalize unsigned
    assert post(f"/negotiations/{pid}/agreement/verification",
                adapted("contract-agreement-verification-message.json"), "negotiation")["code"] == "INVALID_MESSAGE"
    assert answer_ok(dsp_get(ring, provider, f"{base}/negotiations/{pid}"), "negotiation")["state"] == "AGREED"
    assert post(f"/negotiations/{pid}/termination", adapted("contract-negotiation-termination-message.json"),
                "negotiation")["state"] == "TERMINATED"

    transfer = example("transfer-request-message.json")
    transfer["callbackAddress"] = callbacks.url
    assert post("/transfers/request", transfer, "transfer")["code"] == "NOT_FOUND"  # no such agreement
    for name, path in (("transfer-start-message.json", "start"), ("transfer-suspension-message.json", "suspension"),
                       ("transfer-completion-message.json", "completion"),
                       ("transfer-termination-message.json", "termination")):
        msg = example(name)
        assert post(f"/transfers/{msg['providerPid']}/{path}", msg, "transfer")["code"] == "NOT_FOUND"

    # what a provider sends, fed to a hosted consumer's callbacks
    callback = f"{mesh.dsp_url('logistics')}/callback"
    skyway = mesh.ring("skyway")
    for name, path in (("contract-offer-message_initial.json", "/negotiations/offers"),
                       ("contract-offer-message.json", "/negotiations/{c}/offers"),
                       ("contract-agreement-message.json", "/negotiations/{c}/agreement"),
                       ("contract-agreement-message-full.json", "/negotiations/{c}/agreement"),
                       ("contract-negotiation-event-message.json", "/negotiations/{c}/events"),
                       ("contract-negotiation-termination-message.json", "/negotiations/{c}/termination")):
        msg = example(name)
        body = answer_ok(dsp_post(skyway, mesh.id("logistics"), callback + path.format(c=msg.get("consumerPid")), msg),
                         "negotiation")
        assert body["@type"] == "ContractNegotiationError"


@pytest.mark.parametrize("name", ["contract-request-message_initial.json"])
def test_an_example_from_a_stranger_is_not_found(mesh, callbacks, name):
    """The outsider is not in the alliance: the important product does not exist for it."""
    msg = example(name)
    msg["offer"].update({"@id": f"urn:citymesh:offer:{mesh.id('uav')}:logistics",
                         "target": f"urn:citymesh:dataset:{mesh.id('uav')}"})
    resp = dsp_post(mesh.ring("outsider"), mesh.id("skyway"), mesh.dsp_url("skyway") + "/negotiations/request", msg)
    assert resp.status_code == 404 and answer_ok(resp, "negotiation")["code"] == "NOT_FOUND"
    catalog = answer_ok(dsp_post(mesh.ring("outsider"), mesh.id("skyway"), mesh.dsp_url("skyway") + "/catalog/request",
                                 example("catalog-request-message.json")), "catalog", "Catalog")
    assert "dataset" not in catalog
