"""All runtime settings, read once from `CITYMESH_*` environment variables.

One pydantic settings model so every process (CLI, runner, faust app, tests) agrees on
where the cluster is and how to reach it. Production sets `CITYMESH_BOOTSTRAP` to an
Apache Kafka cluster and the security fields; with no bootstrap the CLI starts the
embedded broker and records its address in the state directory.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def group_session(session_timeout_ms: int) -> dict:
    """librdkafka's settings for a consumer group member's session: heartbeats at a third of the
    session, as Kafka advises, so that one late heartbeat does not end a membership. librdkafka's
    own default interval (3 s) would be the whole of a 3 s session: the broker would expel a live
    member between two heartbeats, and the group would rebalance again soon after every join
    (bench/RESULTS.md, "A restart within 5 s on the embedded broker")."""
    return {"session.timeout.ms": session_timeout_ms, "heartbeat.interval.ms": max(100, session_timeout_ms // 3)}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CITYMESH_", extra="ignore")

    bootstrap: str | None = Field(None, description="Kafka bootstrap servers; unset means the embedded broker")
    broker_host: str = Field("127.0.0.1", description="Listen address of the embedded broker")
    broker_port: int = Field(0, description="Port of the embedded broker; 0 picks a free one")
    state_dir: Path = Field(Path(".citymesh"), description="Where `up` keeps pid files, the bootstrap address and keys")
    keys_dir: Path | None = Field(None, description="Keyring directory; default <state_dir>/keys")
    client_id: str = "citymesh"
    replication_factor: int = Field(1, ge=1, description="Replication of topics created by apply (3 in production)")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_ca_location: str | None = None
    session_timeout_ms: int = Field(6000, description="Consumer group session timeout; short so rebalances are quick")
    transactions: Literal["auto", "on", "off"] = Field(
        "auto", description="Runner outputs and offsets in one Kafka transaction per batch: on, off, or auto (on "
                            "where a probe at start finds that the broker hides aborted records from read_committed "
                            "readers, as Apache Kafka does; off on the embedded broker): processors/transactions.py")
    runner_instance: str | None = Field(
        None, description="This runner's name within its product's group, stable across its restarts (a pod name); "
                          "its transactional.id is citymesh-runner.<product>.<instance>. Default: a fresh one per "
                          "process")
    hold_retry_s: float = Field(300.0, gt=0, description="How often a runner tries again a partition it holds "
                                                        "because the broker kept refusing its outputs "
                                                        "(processors/quarantine.py)")
    apply_acls: bool = Field(False, description="The cluster has an authorizer (Apache Kafka): apply creates the "
                                                "ACLs derived from the topology, the dataspace control plane those "
                                                "of negotiated contracts as their transfers start and stop")
    metrics_port: int = Field(0, description="Prometheus port of a long-running process; 0 picks a free one")
    ledger_url: str | None = Field(None, description="Compliance ledger: postgresql://… or sqlite:///…; "
                                                     "default <state_dir>/ledger.sqlite")
    operator: str | None = Field(None, description="Participant id of the operator whose key signs ledger "
                                                   "checkpoints; default the one OPERATOR in the topology")
    dashboard_listen: str = Field("127.0.0.1:8770", description="host:port of the operations dashboard "
                                                                "(`citymesh up` starts it; port 0 picks one)")
    dsp_listen: str = Field("127.0.0.1:8780", description="host:port of the dataspace control plane (DSP and the "
                                                          "management API; `citymesh up` starts it; port 0 picks one)")
    dsp_public_url: str | None = Field(None, description="the control plane's URL as other connectors reach it "
                                                         "(callback addresses); default http://<listen address>")
    api_url: str | None = Field(None, description="the management API the CLI talks to; default the address a "
                                                  "running `citymesh up` recorded")

    @property
    def keyring_dir(self) -> Path:
        return self.keys_dir or self.state_dir / "keys"

    @property
    def state_file(self) -> Path:
        """Where `citymesh up` records the bootstrap address and the pids it started."""
        return self.state_dir / "mesh.json"

    def mesh_bootstrap(self) -> str | None:
        """CITYMESH_BOOTSTRAP, else the address a running `citymesh up` recorded, else None."""
        if self.bootstrap:
            return self.bootstrap
        if self.state_file.exists():
            return json.loads(self.state_file.read_text()).get("bootstrap")
        return None

    def client_config(self, bootstrap: str | None = None) -> dict:
        """librdkafka settings common to producers, consumers and admin clients."""
        servers = bootstrap or self.bootstrap
        if not servers:
            raise RuntimeError("no Kafka cluster: set CITYMESH_BOOTSTRAP or run `citymesh up`")
        conf = {"bootstrap.servers": servers, "client.id": self.client_id,
                "security.protocol": self.security_protocol}
        for key, value in (("sasl.mechanism", self.sasl_mechanism), ("sasl.username", self.sasl_username),
                           ("sasl.password", self.sasl_password), ("ssl.ca.location", self.ssl_ca_location)):
            if value:
                conf[key] = value
        return conf


@cache
def get_settings() -> Settings:
    return Settings()
