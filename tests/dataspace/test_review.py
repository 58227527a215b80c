"""Who decides: a request outside the auto-accept ranges waits in REQUESTED for the provider
and, on important data, the operator; a rejection ends in TERMINATED with the reason."""

from __future__ import annotations


def wait(mesh, who: str, nid: str, states: str, wait_s: float = 20) -> dict:
    r = mesh.api(who, "GET", f"/api/negotiations/{nid}", params={"wait_s": wait_s, "until": states})
    assert r.status_code == 200, r.text
    return r.json()


def waiting_for(mesh, who: str) -> list[str]:
    r = mesh.api(who, "GET", "/api/negotiations", params={"waiting": True})
    assert r.status_code == 200, r.text
    return [n["negotiation_id"] for n in r.json()]


def test_outside_the_ranges_waits_for_provider_and_operator(mesh):
    r = mesh.api("logistics", "POST", "/api/negotiations",
                 json={"product": mesh.id("uav"), "offer": "logistics", "params": {"decimals": 5}})
    assert r.status_code == 201, r.text
    mine = r.json()
    pid = mine["provider_pid"]
    provider_side = mesh.api("skyway", "GET", f"/api/negotiations/{pid}").json()
    assert provider_side["state"] == "REQUESTED" and provider_side["needs"] == ["provider", "operator"]
    assert "outside the auto-accept range" in provider_side["reason"]
    assert pid in waiting_for(mesh, "skyway") and pid in waiting_for(mesh, "bureau")
    assert waiting_for(mesh, "logistics") == []

    # the consumer cannot decide for the provider; nobody decides twice
    assert mesh.api("logistics", "POST", f"/api/negotiations/{pid}/decision", json={"approve": True}).status_code == 404
    assert mesh.api("skyway", "POST", f"/api/negotiations/{pid}/decision", json={"approve": True}).status_code == 200
    assert wait(mesh, "logistics", mine["negotiation_id"], "FINALIZED", 1)["state"] == "REQUESTED"  # the operator
    again = mesh.api("skyway", "POST", f"/api/negotiations/{pid}/decision", json={"approve": True})
    assert again.status_code == 400 and again.json()["code"] == "INVALID_STATE_TRANSITION"
    assert pid not in waiting_for(mesh, "skyway") and pid in waiting_for(mesh, "bureau")

    assert mesh.api("bureau", "POST", f"/api/negotiations/{pid}/decision", json={"approve": True}).status_code == 200
    done = wait(mesh, "logistics", mine["negotiation_id"], "FINALIZED,TERMINATED")
    assert done["state"] == "FINALIZED"
    assert done["policy"]["duties"][1] == {"type": "generalise", "field": "lat", "decimals": 5}
    agreements = mesh.api("logistics", "GET", "/api/agreements").json()
    assert [a["agreement_id"] for a in agreements] == [done["agreement_id"]]
    assert agreements[0]["provider_signature"]["participant"] == mesh.id("skyway")
    assert agreements[0]["consumer_signature"]["participant"] == mesh.id("logistics")
    assert mesh.api("outsider", "GET", "/api/agreements").json() == []
    seen = mesh.api("regulator", "GET", "/api/agreements").json()  # the regulator sees every agreement
    assert done["agreement_id"] in [a["agreement_id"] for a in seen]


def test_a_rejection_ends_terminated_with_the_reason(mesh):
    r = mesh.api("logistics", "POST", "/api/negotiations",
                 json={"product": mesh.id("uav"), "offer": "emergency", "purposes": ["emergency-response"]})
    assert r.status_code == 201, r.text
    mine = r.json()
    pid = mine["provider_pid"]
    assert mesh.api("skyway", "GET", f"/api/negotiations/{pid}").json()["needs"] == ["provider", "operator"]
    r = mesh.api("bureau", "POST", f"/api/negotiations/{pid}/decision",
                 json={"approve": False, "reason": "full-precision telemetry is for the emergency services only"})
    assert r.status_code == 200 and r.json()["state"] == "TERMINATED"
    done = wait(mesh, "logistics", mine["negotiation_id"], "TERMINATED")
    assert done["state"] == "TERMINATED"
    assert "rejected by the operator" in done["reason"] and "emergency services only" in done["reason"]
    # a terminated negotiation takes no decision any more
    assert mesh.api("skyway", "POST", f"/api/negotiations/{pid}/decision",
                    json={"approve": True}).status_code == 400
