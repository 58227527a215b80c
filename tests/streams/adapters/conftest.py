"""Fixtures for the adapter tests: a provider publishing to a real raw topic, a reader for
that topic, and a real MQTT broker (amqtt, pure Python, on a free loopback port)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

import schemas
from streams import keyring, topics
from streams.admin import TopicSpec, ensure_topics
from streams.connectors import ProviderConnector


def catalog_entry(provider: str, product: str, schema_name: str) -> dict:
    s = schemas.load(schema_name)
    key, event_time = {"UavTelemetry": ("serial_number", "timestamp_ms"),
                       "HotlineTicket": ("order_no", "call_time")}[s.name]
    return {"product_id": product, "provider_id": provider, "name": product, "schema_name": s.full_name,
            "schema_fingerprint": s.fingerprint, "classification": "IMPORTANT", "partitions": 3,
            "retention_ms": 3_600_000, "raw_topic": topics.raw(provider, product), "key_field": key,
            "event_time_field": event_time, "description": "", "updated_ms": 0}


@pytest.fixture
def provider(tmp_path, client_config, unique):
    """make(schema_name) -> (connector, publish, raw topic): a real ProviderConnector on a fresh topic."""
    made = []

    def make(schema_name: str):
        pid, product = f"prov-{unique}", f"p-{schema_name.lower()}"
        ring, _ = keyring.create(tmp_path / "keys", pid)
        entry = catalog_entry(pid, product, schema_name)
        ensure_topics(AdminClient(client_config), [TopicSpec(entry["raw_topic"], 3)])
        conn = ProviderConnector(ring, client_config, catalog={product: entry})
        made.append(conn)
        return conn, (lambda rec: conn.publish(product, rec)), entry["raw_topic"]

    yield make
    for conn in made:
        conn.close()


@pytest.fixture
def read_topic(client_config):
    """read(topic, n, schema_name) -> decoded records in partition/offset order, waiting up to 30 s."""

    def read(topic: str, n: int, schema_name: str, timeout_s: float = 30.0, settle_s: float = 0.0) -> list[dict]:
        s = schemas.load(schema_name)
        c = Consumer({**client_config, "group.id": f"read-{topic}-{time.monotonic_ns()}",
                      "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
        c.subscribe([topic])
        msgs, deadline = [], time.monotonic() + timeout_s
        try:
            while len(msgs) < n and time.monotonic() < deadline:
                msgs += [m for m in c.consume(1000, 0.5) if not m.error()]
            end = time.monotonic() + settle_s  # to see that nothing *more* arrives
            while time.monotonic() < end:
                msgs += [m for m in c.consume(1000, 0.2) if not m.error()]
        finally:
            c.close()
        msgs.sort(key=lambda m: (m.partition(), m.offset()))
        return [s.decode(m.value()) for m in msgs]

    return read


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mqtt_broker():
    """A real MQTT 3.1.1 broker (amqtt) in its own event-loop thread; yields its URL."""
    from amqtt.broker import Broker

    port = free_port()
    config = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
              "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}}
    loop = asyncio.new_event_loop()
    holder: dict = {}
    ready = threading.Event()

    def run():
        asyncio.set_event_loop(loop)
        try:
            holder["broker"] = Broker(config, loop=loop)
            loop.run_until_complete(holder["broker"].start())
        except BaseException as exc:  # surface start-up failures in the test, not a hang
            holder["error"] = exc
            ready.set()
            return
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="amqtt", daemon=True)
    thread.start()
    assert ready.wait(15), "amqtt broker did not start"
    if "error" in holder:
        raise holder["error"]
    try:
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(holder["broker"].shutdown(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def wait_for(predicate, timeout_s: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def wait():
    return wait_for
