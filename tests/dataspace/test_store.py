"""The control store's shutdown when its broker is gone."""

from __future__ import annotations

import threading
import time

from dataspace.store import ControlStore
from deploy.broker import EmbeddedBroker
from streams import topics


def test_closing_the_store_after_its_broker_went_returns_and_releases_the_producer():
    """A write the broker never acknowledged (`put` already reported it Unavailable) must not
    hold close() for librdkafka's message timeout (5 min): close() purged nothing once and hung."""
    with EmbeddedBroker() as broker:  # a broker of its own, to stop under the store
        store = ControlStore({"bootstrap.servers": broker.bootstrap}, tables=())
    store._producer.produce(topics.CONTROL_PARTICIPANTS, b"unacknowledged")
    closing = threading.Thread(target=store.close, daemon=True)
    t0 = time.monotonic()
    closing.start()
    closing.join(60)
    assert not closing.is_alive(), "close() still waits for a record no broker will take"
    print(f"close() returned in {time.monotonic() - t0:.1f} s")
    try:
        store._producer.flush(0)
    except RuntimeError as exc:  # confluent-kafka: "Producer has been closed"
        assert "closed" in str(exc)
    else:
        raise AssertionError("the producer is still open after close()")
