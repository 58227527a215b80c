"""Push delivery to a real local HTTP endpoint that fails for 30 s: every record arrives exactly
once after it recovers, the breaker opens and closes again, nothing is lost meanwhile."""

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from processors.runner import Runner
from processors.webhook import WebhookWorker
from streams import topics
from streams.simulators import FleetSimulator
from tests.mesh_fixtures import CONTRACTS, compliance_events, make_city, read_topic

FAIL_FOR_S = 30.0


class Endpoint:
    """A consumer's webhook: answers 503 until `healthy_at`, then stores what it gets."""

    def __init__(self):
        self.healthy_at = float("inf")
        self.received: Counter = Counter()
        self.failed_requests = 0
        self.keys: list[str] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if time.monotonic() < endpoint.healthy_at:
                    endpoint.failed_requests += 1
                    self.send_response(503)
                    self.end_headers()
                    return
                endpoint.keys.append(self.headers["Idempotency-Key"])
                for r in body["records"]:
                    endpoint.received[(r["partition"], r["offset"])] += 1
                    assert set(r["value"]) >= {"serial_number", "timestamp_ms"}
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/citymesh"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint():
    e = Endpoint()
    yield e
    e.close()


def test_webhook_survives_a_30s_outage_and_delivers_every_record_once(tmp_path, client_config, unique, endpoint):
    contracts = CONTRACTS.replace("""    purposes: [airspace-supervision]
""", f"""    purposes: [airspace-supervision]
    push: {{{{url: "{endpoint.url}", batch_size: 200, timeout_s: 2, min_requests: 3, open_s: 3}}}}
""")
    city = make_city(tmp_path, client_config, unique, contracts)
    fleet, records = FleetSimulator(drones=40, violators=0, seed=8), []
    while len(records) < 2000:
        records += fleet.tick(1.0)
    with city.connector() as conn:
        for r in records:
            conn.publish(city.product, r)
    runner = Runner(city.product, client_config, city.keys)
    try:
        runner.run(max_idle_s=2.0)
    finally:
        runner.close()
    expected = {(m.partition(), m.offset()) for m in
                read_topic(client_config, topics.delivery(f"{unique}-regulator"), len(records))}
    assert len(expected) == len(records)

    endpoint.healthy_at = time.monotonic() + FAIL_FOR_S
    worker = WebhookWorker(f"{unique}-regulator", client_config)
    deadline = time.monotonic() + FAIL_FOR_S + 60
    try:
        worker.run(until=lambda: sum(endpoint.received.values()) >= len(expected) or time.monotonic() > deadline)
        time.sleep(1.0)
        worker.step()  # nothing more may arrive
    finally:
        worker.close()
    assert set(endpoint.received) == expected
    assert all(n == 1 for n in endpoint.received.values()), [k for k, n in endpoint.received.items() if n > 1][:5]
    # the breaker kept the outage from being a request storm: ~one probe per open period
    assert 3 <= endpoint.failed_requests <= 3 + FAIL_FOR_S / 3 + 3, endpoint.failed_requests
    transitions = [e["reason"] for e in compliance_events(client_config, city.product) if e["kind"] == "BREAKER"]
    assert "CLOSED -> OPEN" in transitions and transitions[-1] == "HALF_OPEN -> CLOSED", transitions
    assert len(set(endpoint.keys)) == len(endpoint.keys)
