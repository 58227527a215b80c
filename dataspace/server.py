"""`python -m dataspace`: the control plane as a process (uvicorn serving api.create_app).

    python -m dataspace [--listen 127.0.0.1:8780]

Reads CITYMESH_BOOTSTRAP, CITYMESH_STATE_DIR and CITYMESH_KEYS_DIR (the keyrings of the
participants whose connector contexts it hosts). Writes the address it really bound to
<state_dir>/dsp.url (what `citymesh up` prints and `citymesh status --json` shows), serves
/metrics on the same port, and on SIGTERM finishes the requests in flight. Nothing else is
kept: a SIGKILLed plane restarts from the control topics.
"""

from __future__ import annotations

import argparse
import logging
import socket
from pathlib import Path

import uvicorn

from streams.settings import get_settings

from .api import create_app
from .client import URL_FILE
from .plane import ControlPlane

log = logging.getLogger("citymesh.dataspace")


def parse_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return (host or "127.0.0.1").strip("[]"), int(port)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (a free port when `port` is taken or 0), bound before the app starts so
    the address written for others is the one really served. IPPROTO_TCP named explicitly:
    asyncio sets TCP_NODELAY only on sockets that say so, and without it every answer waits
    ~40 ms for a delayed ACK (measured: 48 ms against 3.5 ms per request)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        log.warning("cannot listen on %s:%d (%s); picking a free port", host, port, exc)
        sock.bind((host, 0))
    sock.listen(512)
    return sock


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    ap = argparse.ArgumentParser(prog="python -m dataspace", description="The dataspace control plane (DSP 2025-1).")
    ap.add_argument("--listen", default=settings.dsp_listen, help="host:port (default CITYMESH_DSP_LISTEN)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sock = bind(*parse_listen(args.listen))
    host, port = sock.getsockname()[:2]
    url = settings.dsp_public_url or f"http://{host}:{port}"
    plane = ControlPlane(settings.client_config(settings.mesh_bootstrap()), settings.keyring_dir, url,
                         settings.replication_factor).start()
    app = create_app(plane)
    url_file = Path(settings.state_dir) / URL_FILE
    url_file.parent.mkdir(parents=True, exist_ok=True)
    url_file.write_text(url + "\n")
    print(f"dataspace control plane on {url}: DSP {url}/dsp/<participant>, API {url}/api, metrics {url}/metrics",
          flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5))
    try:
        server.run(sockets=[sock])
    finally:
        plane.close()
        url_file.unlink(missing_ok=True)
    return 0
