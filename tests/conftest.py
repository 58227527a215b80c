"""Session fixtures: real brokers, each started once for the whole test run.

`bootstrap` / `client_config`: with CITYMESH_BOOTSTRAP set the suite runs against that cluster
and starts nothing; otherwise it starts the embedded Tansu broker once and stops it at the end.

`kafka` (one node) and `kafka3` (three nodes, replication 3, min.insync.replicas=2): Apache
Kafka in KRaft mode with SCRAM over TLS and the StandardAuthorizer (deploy/kafka.py), for what
only it has (ACLs, SASL, durability, failover). Started on first use, shared by every test
marked `kafka`; a missing JRE or Maven fails those tests (`make test` installs both).
"""

from __future__ import annotations

import gc
import os
import uuid

import pytest

from deploy.broker import EmbeddedBroker
from deploy.kafka import KafkaCluster
from streams import keyring, tls
from streams.settings import Settings


def _free_clients() -> None:
    """Free the clients finished tests left in reference cycles (a runner and its stages hold
    each other) before their broker stops: alive, each logged a reconnect failure every 50 ms
    into the end of the run's output."""
    gc.collect()


@pytest.fixture(scope="session")
def bootstrap():
    external = os.environ.get("CITYMESH_BOOTSTRAP")
    if external:
        yield external
        return
    broker = EmbeddedBroker().start()
    try:
        yield broker.bootstrap
    finally:
        _free_clients()
        broker.stop()


@pytest.fixture(scope="session")
def client_config(bootstrap) -> dict:
    return Settings(bootstrap=bootstrap).client_config()


@pytest.fixture
def unique() -> str:
    """A short unique suffix so tests sharing the session broker never share topics or ids."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def settings(tmp_path, bootstrap) -> Settings:
    return Settings(bootstrap=bootstrap, state_dir=tmp_path / "state")


def _kafka_cluster(tmp_path_factory, nodes: int):
    d = tmp_path_factory.mktemp(f"kafka{nodes}")
    files, _ = tls.ensure(d / "keys")
    cluster = KafkaCluster(d / "kafka", files, keyring.new_password(), nodes=nodes).start()
    try:
        yield cluster
    finally:
        _free_clients()
        cluster.stop()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    """One secured Apache Kafka node; `kafka.admin_config()` is the operator's bootstrap account."""
    yield from _kafka_cluster(tmp_path_factory, 1)


@pytest.fixture(scope="module")
def kafka3(tmp_path_factory):
    """Three secured Apache Kafka nodes (combined broker + controller), for failover.

    Module-scoped: kept for the session, the three idle JVMs took about 0.7 of the machine's
    two cores from every later test (the flood test's calm provider went from p50 12 ms alone
    to 57-125 ms after it)."""
    yield from _kafka_cluster(tmp_path_factory, 3)
