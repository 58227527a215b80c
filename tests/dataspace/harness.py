"""A small city with DSP offers, a control plane serving it, and a consumer with its own
callback endpoint, for the dataspace tests (against the session's real broker)."""

from __future__ import annotations

import json
import socket
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from dataspace import messages
from dataspace.api import create_app
from dataspace.identity import API_AUDIENCE, connector_audience, issue_token
from dataspace.plane import ControlPlane
from streams import keyring
from streams.http_server import Background, bind
from tests.mesh_fixtures import EXAMPLES, City

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "dsp"


def city_yaml(u: str) -> str:
    return textwrap.dedent(f"""
    participants:
      - {{id: {u}-bureau, name: Data bureau, roles: [operator]}}
      - {{id: {u}-skyway, name: SkyWay, roles: [provider]}}
      - {{id: {u}-logistics, name: Swift logistics, roles: [consumer], memberships: [{u}-alliance]}}
      - {{id: {u}-outsider, name: Outsider, roles: [consumer]}}
      - {{id: {u}-regulator, name: Regulator, roles: [regulator]}}
    products:
      - id: {u}-uav
        provider: {u}-skyway
        name: UAV telemetry
        schema: UavTelemetry
        classification: important
        partitions: 3
        retention: 1d
        key_field: serial_number
        event_time_field: timestamp_ms
        access: {{roles: [operator, regulator], memberships: [{u}-alliance]}}
        offers:
          - id: logistics
            template: logistics-route-planning
            params: {{geofence: urban, decimals: 3}}
            auto_accept: {{params: {{decimals: {{max: 3}}, max_height_m: {{max: 120}}}}}}
            price_per_1000: 0.50
          - id: emergency
            template: emergency-response
            params: {{product: UavTelemetry}}
    geofences:
      urban: {{file: {EXAMPLES / 'geo' / 'shenzhen-urban.geojson'}}}
    contracts: []
    """)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread(Background):
    """An ASGI app on 127.0.0.1 (a given or a free port) in a thread of the test process."""

    def __init__(self, app, port: int | None = None):
        super().__init__(app, bind("127.0.0.1", port or 0, fallback=False))
        self.port = self.address[1]
        self.url = f"http://127.0.0.1:{self.port}"


@dataclass
class Mesh:
    """The city, its control plane and HTTP clients speaking as participants."""

    city: City
    plane: ControlPlane
    server: ServerThread

    @property
    def u(self) -> str:
        return self.city.u

    def id(self, name: str) -> str:
        return f"{self.u}-{name}"

    def ring(self, name: str):
        return keyring.load(self.city.keys, self.id(name))

    def api(self, name: str, method: str, path: str, **kw) -> httpx.Response:
        token = issue_token(self.ring(name), API_AUDIENCE)
        return httpx.request(method, self.server.url + path, headers={"Authorization": f"Bearer {token}"},
                             timeout=30, **kw)

    def dsp_url(self, name: str) -> str:
        return f"{self.server.url}/dsp/{self.id(name)}"


@dataclass
class Callbacks:
    """An external consumer's connector callback endpoint: records (and schema-checks) what arrives."""

    received: list[tuple[str, dict]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    event: threading.Condition = field(default_factory=threading.Condition)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/cb/{rest:path}")
        async def receive(rest: str, request: Request):
            msg = json.loads(await request.body())
            found = messages.problems(msg, msg.get("@type", "?")) if msg.get("@type") in messages.SCHEMA_OF else [
                f"unknown @type {msg.get('@type')!r}"]
            with self.event:
                self.problems += found
                self.received.append((rest, msg))
                self.event.notify_all()
            kind = "TransferProcess" if rest.startswith("transfers") else "ContractNegotiation"
            return JSONResponse(messages.envelope(kind, providerPid=msg.get("providerPid", ""),
                                                  consumerPid=msg.get("consumerPid", ""), state="REQUESTED"))
        return app

    def wait_for(self, path_suffix: str, timeout_s: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout_s
        with self.event:
            while True:
                for rest, msg in self.received:
                    if rest.endswith(path_suffix):
                        return msg
                left = deadline - time.monotonic()
                assert left > 0, f"no callback .../{path_suffix} within {timeout_s}s; got {[r for r, _ in self.received]}"
                self.event.wait(left)


def dsp_post(ring, audience_id: str, url: str, message: dict) -> httpx.Response:
    token = issue_token(ring, connector_audience(audience_id))
    return httpx.post(url, json=message, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def dsp_get(ring, audience_id: str, url: str) -> httpx.Response:
    token = issue_token(ring, connector_audience(audience_id))
    return httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
