"""The operations page's web server: static page, JSON snapshot, server-sent events, /metrics.

    python -m dashboard [--listen 127.0.0.1:8770] [--topology FILE]

Why the standard library's ThreadingHTTPServer and server-sent events: the page needs one
push channel (server → browser) and a handful of GETs; SSE is plain HTTP that browsers
reconnect by themselves (the page then gets a fresh snapshot), and a thread per browser is
nothing for an operations room. No framework, no new dependency.

Why a flusher: drone updates arrive at up to thousands per second; sending each would cost
the browser a handler call per record. The flusher drains the model every FLUSH_S and
sends one message with the latest position of every drone that moved, plus whichever
panels changed; the page's render time per message stays flat with the fleet size.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import signal
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.settings import get_settings

from . import geo, metrics
from .model import Model

log = logging.getLogger("citymesh.dashboard")

STATIC = Path(__file__).resolve().parent / "static"
FLUSH_S = 0.1
KEEPALIVE_S = 10.0
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


class Hub:
    """Fan-out of live-feed messages to every connected browser (one bounded queue each)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.clients: set[queue.Queue] = set()

    def add(self) -> queue.Queue:
        q: queue.Queue = queue.Queue(maxsize=200)
        with self.lock:
            self.clients.add(q)
            metrics.CLIENTS.set(len(self.clients))
        return q

    def remove(self, q: queue.Queue) -> None:
        with self.lock:
            self.clients.discard(q)
            metrics.CLIENTS.set(len(self.clients))

    def send(self, data: bytes) -> None:
        with self.lock:
            clients = list(self.clients)
        for q in clients:
            try:
                q.put_nowait(data)
            except queue.Full:  # a browser that stopped reading: drop it, it reconnects to a snapshot
                self.remove(q)
                q.put(None) if q.empty() else None


def sse(event: str, payload) -> bytes:
    return f"event: {event}\ndata: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


class Dashboard:
    """The model, the hub and the flusher; the HTTP handler reads from here."""

    def __init__(self, model: Model, layers: dict, ledger_url: str | None):
        self.model, self.layers, self.ledger_url = model, layers, ledger_url
        self.hub = Hub()
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="flusher", daemon=True)

    def start(self) -> "Dashboard":
        self._flusher.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _flush_loop(self) -> None:
        last_expire = 0.0
        while not self._stop.wait(FLUSH_S):
            if time.monotonic() - last_expire >= 1.0:
                self.model.expire()
                last_expire = time.monotonic()
                with self.model.lock:
                    metrics.DRONES.set(len(self.model.drones))
                    metrics.ALERTS_OPEN.set(sum(1 for i in self.model.incidents.values()
                                                if i.is_open(int(time.time() * 1000))))
            msg = self.model.drain()
            if msg is not None and self.hub.clients:
                self.hub.send(sse("update", msg))
                metrics.MESSAGES.inc(len(self.hub.clients))


def make_handler(app: Dashboard):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "citymesh-dashboard"

        def log_message(self, fmt, *args) -> None:  # quiet: one line per GET would drown the log
            log.debug("%s " + fmt, self.address_string(), *args)

        def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, obj, status: int = 200) -> None:
            self._send(status, json.dumps(obj, ensure_ascii=False).encode(), "application/json; charset=utf-8")

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            url = urlparse(self.path)
            path = url.path
            if path == "/events":
                return self._events()
            if path == "/metrics":
                return self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
            if path == "/healthz":
                return self._json({"ok": True})
            if path == "/api/snapshot":
                return self._json(app.model.snapshot_view())
            if path == "/api/geo":
                return self._json(app.layers)
            if path.startswith("/api/drone/"):
                rec = app.model.drone_record(unquote(path[len("/api/drone/"):]))
                return self._json(rec or {"error": "unknown drone"}, 200 if rec else 404)
            if path == "/evidence":
                return self._evidence(parse_qs(url.query))
            name = "index.html" if path in ("/", "/index.html") else path.lstrip("/")
            f = (STATIC / name).resolve()
            if f.parent == STATIC and f.is_file():
                return self._send(200, f.read_bytes(), _TYPES.get(f.suffix, "application/octet-stream"))
            self._send(404, b"not found\n", "text/plain")

        def _evidence(self, q: dict) -> None:
            alert_id, t = (q.get("id") or [""])[0], (q.get("t") or ["0"])[0]
            if not app.ledger_url:
                return self._json({"found": False, "error": "no ledger configured"}, 404)
            from .evidence import lookup
            try:
                out = lookup(app.ledger_url, alert_id, int(t))
            except Exception as exc:  # noqa: BLE001 - the page shows why, the server carries on
                out = {"found": False, "error": str(exc)}
            self._json(out, 200 if out.get("found") else 404)

        def _events(self) -> None:
            q = app.hub.add()
            try:
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-store")
                self.send_header("X-Accel-Buffering", "no")
                self.end_headers()
                self.wfile.write(b"retry: 1000\n\n" + sse("snapshot", app.model.snapshot_view()))
                self.wfile.flush()
                while True:
                    try:
                        data = q.get(timeout=KEEPALIVE_S)
                    except queue.Empty:
                        data = b": keepalive\n\n"
                    if data is None:
                        return
                    self.wfile.write(data)
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
                pass
            finally:
                app.hub.remove(q)
                self.close_connection = True

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


URL_FILE = "dashboard.url"


def wait_for_url(state_dir, timeout_s: float, newer_than: float = 0.0, name: str = URL_FILE) -> str | None:
    """The address a starting HTTP process wrote to <state_dir>/<name> (dashboard.url, dsp.url: what
    `up` prints); a file older than `newer_than` (epoch s) is a dead process's and is ignored."""
    f = Path(state_dir) / name
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if f.exists() and f.stat().st_mtime >= newer_than - 1 and f.read_text().strip():
            return f.read_text().strip()
        time.sleep(0.1)
    return None


def parse_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return (host or "127.0.0.1").strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    ap = argparse.ArgumentParser(prog="python -m dashboard", description="The city operations dashboard.")
    ap.add_argument("--listen", default=settings.dashboard_listen,
                    help="host:port (default CITYMESH_DASHBOARD_LISTEN, 127.0.0.1:8770; port 0 picks one)")
    ap.add_argument("--topology", default=None, help="topology file whose geofences the map draws")
    ap.add_argument("--operator", default=settings.operator, help="participant whose contracts feed the page")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    from processors.ledger.config import ledger_url  # where the evidence lives (read-only)
    from .feeds import Feeds

    bootstrap = settings.mesh_bootstrap()
    model = Model()
    app = Dashboard(model, geo.load_layers(args.topology), ledger_url(settings))
    host, port = parse_listen(args.listen)
    try:
        server = Server((host, port), make_handler(app))
    except OSError as exc:  # the default port is taken (another mesh, a demo): serve anyway, say where
        log.warning("cannot listen on %s (%s); picking a free port", args.listen, exc)
        server = Server((host, 0), make_handler(app))
    host, port = server.server_address[:2]
    url_file = Path(settings.state_dir) / URL_FILE
    url_file.parent.mkdir(parents=True, exist_ok=True)
    url_file.write_text(f"http://{host}:{port}/\n")
    app.start()
    feeds = Feeds(model, settings.client_config(bootstrap), args.operator).start()
    stop = threading.Event()

    def _stop(*_a) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"dashboard on http://{host}:{port}/ (metrics on http://{host}:{port}/metrics)", flush=True)
    log.info("dashboard on http://%s:%d/ reading %s", host, port, bootstrap)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        feeds.close()
        app.stop()
        server.server_close()
        url_file.unlink(missing_ok=True)
    return 0
