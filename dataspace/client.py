"""What the participant's tools speak: the management API of its connector context.

The CLI (`citymesh catalog --as`, `negotiate`, `agreements`, `transfer ...`) asks its own
connector context, with a fresh EdDSA token from the participant's keyring, and the
connector speaks DSP with the provider's. Where the API is: CITYMESH_API_URL, else the
address a running `citymesh up` recorded (<state_dir>/dsp.url).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from schemas.errors import CitymeshError
from streams import keyring
from streams.settings import Settings

from .identity import API_AUDIENCE, issue_token


URL_FILE = "dsp.url"  # <state_dir>/dsp.url: where a running control plane listens (dataspace/server.py writes it)


class ApiError(CitymeshError):
    """The management API refused or could not be reached; the message says why."""


def api_url(settings: Settings) -> str:
    if settings.api_url:
        return settings.api_url.rstrip("/")
    f = Path(settings.state_dir) / URL_FILE
    if not f.exists():
        raise ApiError(f"no control plane is running here ({f} is missing): run `citymesh up`, or set "
                       "CITYMESH_API_URL")
    return f.read_text().strip().rstrip("/")


class ConnectorClient:
    def __init__(self, settings: Settings, participant_id: str, timeout_s: float = 70.0):
        self.ring = keyring.load(settings.keyring_dir, participant_id)
        self.base = api_url(settings)
        self.http = httpx.Client(timeout=timeout_s)

    def call(self, method: str, path: str, body: dict | None = None, **params: Any) -> Any:
        token = issue_token(self.ring, API_AUDIENCE)
        try:
            resp = self.http.request(method, f"{self.base}/api{path}", json=body,
                                     params={k: v for k, v in params.items() if v is not None},
                                     headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise ApiError(f"{self.base}: {exc}") from None
        try:
            data = resp.json()
        except ValueError:
            data = {"reason": [resp.text[:500]]}
        if resp.status_code >= 400:
            raise ApiError(f"{resp.status_code} {'; '.join(map(str, data.get('reason', [])))}")
        return data

    def wait(self, kind: str, pid: str, states: str, timeout_s: float) -> dict:
        """GET a negotiation or transfer, long-polling until one of `states` or the timeout."""
        import time
        deadline = time.monotonic() + timeout_s
        while True:
            left = max(0.0, min(60.0, deadline - time.monotonic()))
            rec = self.call("GET", f"/{kind}/{pid}", wait_s=round(left, 1), until=states)
            if rec["state"] in states.split(",") or time.monotonic() >= deadline:
                return rec

    def close(self) -> None:
        self.http.close()
