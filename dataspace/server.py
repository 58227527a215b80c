"""`python -m dataspace`: the control plane as a process (uvicorn serving api.create_app).

    python -m dataspace [--listen 127.0.0.1:8780]

Reads CITYMESH_BOOTSTRAP, CITYMESH_STATE_DIR, CITYMESH_KEYS_DIR (the keyrings of the
participants whose connector contexts it hosts) and CITYMESH_APPLY_ACLS (the cluster has an
authorizer: consumers' read grants follow their negotiated contracts). Writes the address it really bound to
<state_dir>/dsp.url (what `citymesh up` prints and `citymesh status --json` shows), serves
/metrics on the same port, and on SIGTERM finishes the requests in flight. Nothing else is
kept: a SIGKILLed plane restarts from the control topics.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from streams.http_server import bind, parse_listen, server
from streams.settings import get_settings

from .api import create_app
from .client import URL_FILE
from .plane import ControlPlane

log = logging.getLogger("citymesh.dataspace")


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
                         settings.replication_factor, acls=settings.apply_acls).start()
    app = create_app(plane)
    url_file = Path(settings.state_dir) / URL_FILE
    url_file.parent.mkdir(parents=True, exist_ok=True)
    url_file.write_text(url + "\n")
    print(f"dataspace control plane on {url}: DSP {url}/dsp/<participant>, API {url}/api, metrics {url}/metrics",
          flush=True)
    try:
        server(app).run(sockets=[sock])
    finally:
        plane.close()
        url_file.unlink(missing_ok=True)
    return 0
