"""The control plane is SIGKILLed mid-negotiation and restarted: the negotiation carries on
from the control topics, and a message that was still to be sent is sent by the new process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from dataspace import messages
from dataspace.identity import sign_agreement
from tests.dataspace.harness import Callbacks, Mesh, ServerThread, city_yaml, dsp_get, dsp_post, free_port
from tests.mesh_fixtures import City

ROOT = Path(__file__).resolve().parents[2]


class PlaneProcess:
    def __init__(self, city: City, bootstrap: str, port: int, log: Path):
        self.city, self.bootstrap, self.port, self.log = city, bootstrap, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "PlaneProcess":
        env = {**os.environ, "CITYMESH_BOOTSTRAP": self.bootstrap, "CITYMESH_KEYS_DIR": str(self.city.keys),
               "CITYMESH_STATE_DIR": str(self.city.path.parent / "state"), "PYTHONPATH": str(ROOT),
               "CITYMESH_DSP_LISTEN": f"127.0.0.1:{self.port}"}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "dataspace"], cwd=ROOT, env=env, stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(self.url + "/api/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the control plane did not come up"
            time.sleep(0.1)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def test_sigkill_mid_negotiation_and_carry_on(tmp_path, client_config, bootstrap, unique):
    city = City(unique, tmp_path / "city.yaml", tmp_path / "keys", client_config)
    city.apply(city_yaml(unique))
    port = free_port()
    plane = PlaneProcess(city, bootstrap, port, tmp_path / "plane.log").start()
    mesh = Mesh(city, None, type("S", (), {"url": plane.url})())
    cb_port = free_port()
    callbacks = Callbacks()
    cb_server = None
    try:
        # 1. a request waiting for review survives a SIGKILL between the two approvals
        r = mesh.api("logistics", "POST", "/api/negotiations",
                     json={"product": mesh.id("uav"), "offer": "logistics", "params": {"decimals": 5}})
        assert r.status_code == 201, r.text
        mine = r.json()
        pid = mine["provider_pid"]
        assert mesh.api("skyway", "POST", f"/api/negotiations/{pid}/decision", json={"approve": True}).status_code == 200
        plane.kill()
        plane.start()
        assert mesh.api("skyway", "GET", f"/api/negotiations/{pid}").json()["needs"] == ["operator"]
        assert mesh.api("bureau", "POST", f"/api/negotiations/{pid}/decision", json={"approve": True}).status_code == 200
        done = mesh.api("logistics", "GET", f"/api/negotiations/{mine['negotiation_id']}",
                        params={"wait_s": 30, "until": "FINALIZED,TERMINATED"}).json()
        assert done["state"] == "FINALIZED", done

        # 2. an agreement still to be sent (the consumer's connector is down) is sent by the next process
        dataset = f"urn:citymesh:dataset:{mesh.id('uav')}"
        request = messages.envelope("ContractRequestMessage", consumerPid="urn:uuid:restart-2",
                                    callbackAddress=f"http://127.0.0.1:{cb_port}/cb",
                                    offer={"@id": f"urn:citymesh:offer:{mesh.id('uav')}:logistics", "@type": "Offer",
                                           "target": dataset, "permission": [{"action": "use"}]})
        ring = mesh.ring("logistics")
        resp = dsp_post(ring, mesh.id("skyway"), f"{plane.url}/dsp/{mesh.id('skyway')}/negotiations/request", request)
        assert resp.status_code == 201, resp.text
        pid2 = resp.json()["providerPid"]
        time.sleep(1.0)  # the provider tries to send the agreement and fails: nobody listens yet
        plane.kill()
        cb_server = ServerThread(callbacks.app(), cb_port).start()
        plane.start()
        agreement = callbacks.wait_for("negotiations/urn:uuid:restart-2/agreement", 40)["agreement"]
        deadline = time.monotonic() + 20
        while dsp_get(ring, mesh.id("skyway"), f"{plane.url}/dsp/{mesh.id('skyway')}/negotiations/{pid2}"
                      ).json()["state"] != "AGREED":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        verification = messages.envelope("ContractAgreementVerificationMessage", providerPid=pid2,
                                         consumerPid="urn:uuid:restart-2")
        verification["cm:signature"] = sign_agreement(ring, agreement)
        plane.kill()  # once more: the verification reaches a new process, which then finalizes
        plane.start()
        resp = dsp_post(ring, mesh.id("skyway"),
                        f"{plane.url}/dsp/{mesh.id('skyway')}/negotiations/{pid2}/agreement/verification", verification)
        assert resp.status_code == 200, resp.text
        assert callbacks.wait_for("negotiations/urn:uuid:restart-2/events", 30)["eventType"] == "FINALIZED"
        assert callbacks.problems == []
        assert "gave up" not in plane.log.read_text()
    finally:
        if cb_server is not None:
            cb_server.stop()
        if plane.proc is not None and plane.proc.poll() is None:
            plane.proc.terminate()
            plane.proc.wait(15)
