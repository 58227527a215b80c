"""What the control plane refuses, each answer a spec-shaped ERROR with the right status, never a 5xx."""

from __future__ import annotations

import time

import httpx
import pytest

from dataspace import messages
from dataspace.identity import issue_token, connector_audience
from streams import keyring
from tests.dataspace.harness import dsp_get, dsp_post
from tests.dataspace.test_spec_examples import answer_ok


def request(mesh, callback_url: str, permission: list, offer: str = "logistics") -> dict:
    return messages.envelope("ContractRequestMessage", consumerPid="urn:uuid:refusal", callbackAddress=callback_url,
                             offer={"@id": f"urn:citymesh:offer:{mesh.id('uav')}:{offer}", "@type": "Offer",
                                    "target": f"urn:citymesh:dataset:{mesh.id('uav')}", "permission": permission})


def purpose(*names):
    return {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": list(names)}


@pytest.mark.parametrize("constraint,code,words", [
    ({"leftOperand": "partner", "operator": "eq", "rightOperand": "gold"}, "POLICY_NOT_ENFORCEABLE",
     "constraint[1].leftOperand: unknown left operand 'partner'"),
    ({"xone": [purpose("a"), purpose("b")]}, "POLICY_NOT_ENFORCEABLE", "'xone' constraints cannot be enforced"),
    ({"leftOperand": "cm:field/altitude_ft", "operator": "lteq", "rightOperand": "400"}, "POLICY_NOT_ENFORCEABLE",
     "unknown field 'altitude_ft'"),
    ({"leftOperand": "cm:field/height_agl_m", "operator": "lteq", "rightOperand": "high"}, "POLICY_NOT_ENFORCEABLE",
     "'high' is not a valid value for field 'height_agl_m'"),
])
def test_constraints_the_mesh_cannot_enforce_are_refused_naming_the_rule(module_mesh, module_callbacks, constraint,
                                                                         code, words):
    mesh, callbacks = module_mesh, module_callbacks
    msg = request(mesh, callbacks.url, [{"action": "use", "constraint": [purpose("route-planning"), constraint]}])
    resp = dsp_post(mesh.ring("logistics"), mesh.id("skyway"), mesh.dsp_url("skyway") + "/negotiations/request", msg)
    assert resp.status_code == 400
    body = answer_ok(resp, "negotiation")
    assert body["code"] == code and words in body["reason"][0], body


def test_a_request_without_purposes_is_refused(module_mesh, module_callbacks):
    mesh, callbacks = module_mesh, module_callbacks
    msg = request(mesh, callbacks.url, [{"action": "use", "constraint": [
        {"leftOperand": "cm:field/height_agl_m", "operator": "lteq", "rightOperand": {"@value": "100",
                                                                                      "@type": "xsd:integer"}}]}])
    resp = dsp_post(mesh.ring("logistics"), mesh.id("skyway"), mesh.dsp_url("skyway") + "/negotiations/request", msg)
    assert resp.status_code == 400 and "must declare its purposes" in answer_ok(resp, "negotiation")["reason"][0]


def test_an_invalid_state_transition_is_a_400(module_mesh, module_callbacks):
    mesh, callbacks = module_mesh, module_callbacks
    msg = request(mesh, callbacks.url, [{"action": "use"}], offer="emergency")  # waits for review: stays REQUESTED
    ack = answer_ok(dsp_post(mesh.ring("logistics"), mesh.id("skyway"),
                             mesh.dsp_url("skyway") + "/negotiations/request", msg), "negotiation")
    pid = ack["providerPid"]
    verify = messages.envelope("ContractAgreementVerificationMessage", providerPid=pid, consumerPid=ack["consumerPid"])
    resp = dsp_post(mesh.ring("logistics"), mesh.id("skyway"),
                    f"{mesh.dsp_url('skyway')}/negotiations/{pid}/agreement/verification", verify)
    body = answer_ok(resp, "negotiation")
    assert resp.status_code == 400 and body["code"] == "INVALID_STATE_TRANSITION"
    assert "not allowed in state REQUESTED" in body["reason"][0] and body["providerPid"] == pid

    # another participant asking for this negotiation: not found (the spec's answer to the unauthorized)
    for name in ("outsider", "regulator"):
        resp = dsp_get(mesh.ring(name), mesh.id("skyway"), f"{mesh.dsp_url('skyway')}/negotiations/{pid}")
        assert resp.status_code == 404 and answer_ok(resp, "negotiation")["code"] == "NOT_FOUND"
    resp = mesh.api("outsider", "GET", f"/api/negotiations/{pid}")
    assert resp.status_code == 404
    resp = dsp_post(mesh.ring("outsider"), mesh.id("skyway"), f"{mesh.dsp_url('skyway')}/negotiations/{pid}/termination",
                    messages.envelope("ContractNegotiationTerminationMessage", providerPid=pid,
                                      consumerPid=ack["consumerPid"]))
    assert resp.status_code == 404
    assert answer_ok(dsp_get(mesh.ring("logistics"), mesh.id("skyway"),
                             f"{mesh.dsp_url('skyway')}/negotiations/{pid}"), "negotiation")["state"] == "REQUESTED"


@pytest.mark.parametrize("case", ["expired", "forged", "audience", "none", "long"])
def test_bad_tokens_get_a_401_error(module_mesh, case):
    mesh = module_mesh
    ring = mesh.ring("logistics")
    token = {"expired": lambda: issue_token(ring, connector_audience(mesh.id("skyway")), now=time.time() - 400),
             "forged": lambda: issue_token(keyring.Keyring.generate(mesh.id("logistics")),
                                           connector_audience(mesh.id("skyway"))),
             "audience": lambda: issue_token(ring, connector_audience(mesh.id("logistics"))),
             "none": lambda: None,
             "long": lambda: issue_token(ring, connector_audience(mesh.id("skyway")), ttl_s=86400)}[case]()
    resp = httpx.post(mesh.dsp_url("skyway") + "/catalog/request",
                      json=messages.envelope("CatalogRequestMessage", filter=[]),
                      headers={"Authorization": f"Bearer {token}"} if token else {})
    assert resp.status_code == 401
    assert answer_ok(resp, "catalog")["code"] == "UNAUTHORIZED"
    api = httpx.get(mesh.server.url + "/api/negotiations", headers={"Authorization": f"Bearer {token}"} if token else {})
    assert api.status_code == 401


def test_bad_bodies_are_400_errors(module_mesh):
    mesh = module_mesh
    token = issue_token(mesh.ring("logistics"), connector_audience(mesh.id("skyway")))
    for body in (b"{not json", b"[]", b'{"@type": "ContractRequestMessage"}', "中文".encode()):
        resp = httpx.post(mesh.dsp_url("skyway") + "/negotiations/request", content=body,
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        assert resp.status_code == 400, resp.text
        answer_ok(resp, "negotiation")
    resp = dsp_post(mesh.ring("logistics"), "nobody", mesh.server.url + "/dsp/nobody/catalog/request",
                    messages.envelope("CatalogRequestMessage"))
    assert resp.status_code == 404 and answer_ok(resp, "catalog")["code"] == "NOT_FOUND"


def test_metrics_show_requests_and_processes(module_mesh):
    mesh = module_mesh
    resp = dsp_post(mesh.ring("logistics"), mesh.id("skyway"), mesh.dsp_url("skyway") + "/negotiations/request", {})
    assert resp.status_code == 400
    text = httpx.get(mesh.server.url + "/metrics", timeout=10).text
    for series in ("citymesh_dsp_requests_total", "citymesh_dsp_request_seconds_bucket",
                   "citymesh_dsp_messages_sent_total", "citymesh_dsp_negotiations", "citymesh_dsp_agreements"):
        assert series in text, series
    assert 'citymesh_dsp_requests_total{route="/dsp/{participant}/negotiations/request",status="400"}' in text
    ack = dsp_post(mesh.ring("logistics"), mesh.id("skyway"), mesh.dsp_url("skyway") + "/negotiations/request",
                   request(mesh, "http://127.0.0.1:9/cb", [{"action": "use"}], "emergency"))
    assert ack.status_code == 201
    text = httpx.get(mesh.server.url + "/metrics", timeout=10).text
    assert 'citymesh_dsp_negotiations{side="PROVIDER",state="REQUESTED"}' in text
