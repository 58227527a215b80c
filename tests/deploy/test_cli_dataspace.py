"""The participant's side of the CLI against a running control plane: catalog --as,
negotiate, negotiations, decide, agreements, transfer start|suspend|resume|terminate."""

from __future__ import annotations

import json
import os
import re

from tests.dataspace.conftest import mesh  # noqa: F401 - the dataspace city and its control plane
from tests.deploy.test_cli import citymesh


def env_for(mesh, tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYMESH_")}
    return {**env, "CITYMESH_API_URL": mesh.server.url, "CITYMESH_KEYS_DIR": str(mesh.city.keys),
            "CITYMESH_STATE_DIR": str(tmp_path / "state"), "CITYMESH_BOOTSTRAP": mesh.city.client["bootstrap.servers"]}


def test_a_consumer_negotiates_and_streams_from_the_cli(mesh, tmp_path):
    env = env_for(mesh, tmp_path)
    me, uav = mesh.id("logistics"), mesh.id("uav")

    catalog = citymesh(env, "catalog", "--as", me).stdout
    assert re.search(rf"{uav}\s+{mesh.id('skyway')}\s+IMPORTANT\s+logistics\s+logistics-route-planning\s+auto\s+0.50",
                     catalog), catalog
    assert "emergency" in catalog and "review" in catalog
    assert uav not in citymesh(env, "catalog", "--as", mesh.id("outsider")).stdout

    out = citymesh(env, "negotiate", uav, "logistics", "--as", me, "--param", "decimals=2").stdout
    assert "FINALIZED: agreement urn:uuid:" in out, out
    agreement = re.search(r"agreement (urn:uuid:\S+)", out).group(1)
    assert agreement in citymesh(env, "agreements", "--as", me).stdout

    # outside the auto-accept ranges: waits; the provider and the operator approve from their CLI
    out = citymesh(env, "negotiate", uav, "logistics", "--as", me, "--param", "decimals=6", "--wait", "1").stdout
    assert "still REQUESTED" in out
    waiting = citymesh(env, "negotiations", "--as", mesh.id("bureau"), "--waiting").stdout
    # this consumer's request (the shared control plane may hold other tests' waiting ones)
    pid = re.search(rf"(urn:uuid:\S+)\s+provider\s+REQUESTED\s+{uav}\s+logistics\s+{me}\s", waiting).group(1)
    assert "provider,operator" in waiting
    assert "still waits for operator" in citymesh(env, "decide", pid, "approve", "--as", mesh.id("skyway")).stdout
    refused = citymesh(env, "decide", pid, "approve", "--as", me, check=False)
    assert refused.returncode != 0 and "error: 404" in refused.stderr and "Traceback" not in refused.stderr
    citymesh(env, "decide", pid, "reject", "--as", mesh.id("bureau"), "--reason", "six decimals is 10 cm")
    mine = citymesh(env, "negotiations", "--as", me).stdout
    assert re.search(r"consumer\s+TERMINATED", mine) and re.search(r"consumer\s+FINALIZED", mine)

    schema_file = tmp_path / "delivery.avsc"
    out = citymesh(env, "transfer", "start", agreement, "--as", me, "--schema-out", str(schema_file)).stdout
    assert "STARTED" in out and f"bootstrap:  {env['CITYMESH_BOOTSTRAP']}" in out and "topic:      cm.dlv." in out
    assert f"verify:     your connector opened the delivery key (sealed to your key) into deliveries/{me}.json" in out
    assert json.loads(schema_file.read_text())["type"] == "record"
    transfer = re.search(r"transfer (urn:uuid:\S+): STARTED", out).group(1)
    assert "SUSPENDED" in citymesh(env, "transfer", "suspend", transfer, "--as", me).stdout
    again = citymesh(env, "transfer", "suspend", transfer, "--as", me, check=False)
    assert again.returncode != 0 and "not allowed in state SUSPENDED" in again.stderr
    assert "STARTED" in citymesh(env, "transfer", "resume", transfer, "--as", me).stdout
    assert "TERMINATED" in citymesh(env, "transfer", "terminate", transfer, "--as", me).stdout
    assert re.search(rf"{re.escape(transfer)}\s+consumer\s+TERMINATED", citymesh(env, "transfers", "--as", me).stdout)
