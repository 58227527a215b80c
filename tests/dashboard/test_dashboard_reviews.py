"""The dashboard lists the DSP requests waiting for the operator's approval, and drops one
once it is decided."""

from __future__ import annotations

import time

import httpx

from tests.dashboard.harness import spawn, stop, wait_log
from tests.dashboard.harness import env_for
from tests.dataspace.conftest import mesh  # noqa: F401 - the dataspace city and its control plane


def snapshot_reviews(url: str) -> list[dict]:
    return httpx.get(url + "api/snapshot", timeout=10).json()["reviews"]


def wait_reviews(url: str, want, timeout_s: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        got = snapshot_reviews(url)
        if want(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_requests_waiting_for_the_operator_are_listed(mesh, bootstrap, tmp_path):
    log = tmp_path / "dashboard.log"
    proc = spawn(["-m", "dashboard", "--listen", "127.0.0.1:0", "--operator", mesh.id("bureau")],
                 env_for(mesh.city, bootstrap), log)
    try:
        url = wait_log(log, r"dashboard on (http://\S+/)", proc).group(1)
        r = mesh.api("logistics", "POST", "/api/negotiations",
                     json={"product": mesh.id("uav"), "offer": "logistics", "params": {"decimals": 5}})
        pid = r.json()["provider_pid"]
        listed = wait_reviews(url, lambda got: any(x["id"] == pid for x in got))
        row = next(x for x in listed if x["id"] == pid)
        assert row["consumer"] == mesh.id("logistics") and row["offer"] == "logistics"
        assert row["needs"] == ["provider", "operator"] and "auto-accept range" in row["why"]
        mesh.api("bureau", "POST", f"/api/negotiations/{pid}/decision", json={"approve": False, "reason": "no"})
        assert not any(x["id"] == pid for x in wait_reviews(url, lambda got: all(x["id"] != pid for x in got)))
        assert "review-rows" in httpx.get(url, timeout=10).text
    finally:
        stop(proc)
