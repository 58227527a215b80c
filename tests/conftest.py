"""Session fixtures: one real Kafka-protocol broker for the whole test run.

With CITYMESH_BOOTSTRAP set the suite runs against that cluster (e.g. Apache Kafka) and
starts nothing; otherwise it starts the embedded Tansu broker once and stops it at the end.
"""

from __future__ import annotations

import os
import uuid

import pytest

from deploy.broker import EmbeddedBroker
from streams.settings import Settings


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
