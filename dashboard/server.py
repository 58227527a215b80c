"""The operations page's web server: static page, JSON snapshot, server-sent events, /metrics.

    python -m dashboard [--listen 127.0.0.1:8770] [--topology FILE]

Why server-sent events: the page needs one push channel (server → browser) and a handful
of GETs; SSE is plain HTTP that browsers reconnect by themselves (the page then gets a
fresh snapshot). Served like every HTTP endpoint of the project (streams/http_server.py:
FastAPI on uvicorn); each browser's feed is an asyncio queue the flusher thread fills.

Why a flusher: drone updates arrive at up to thousands per second; sending each would cost
the browser a handler call per record. The flusher drains the model every FLUSH_S and
sends one message with the latest position of every drone that moved, plus whichever
panels changed; the page's render time per message stays flat with the fleet size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import threading
import time
from pathlib import Path

from fastapi import FastAPI, Query
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from streams.http_server import bind, parse_listen, server
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
    """Fan-out of live-feed messages to every connected browser: one bounded asyncio queue
    each, filled from the flusher thread through the queue's event loop."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.clients: dict[asyncio.Queue, asyncio.AbstractEventLoop] = {}

    def add(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(maxsize=200)
        with self.lock:
            self.clients[q] = asyncio.get_running_loop()
            metrics.CLIENTS.set(len(self.clients))
        return q

    def remove(self, q: asyncio.Queue) -> None:
        with self.lock:
            self.clients.pop(q, None)
            metrics.CLIENTS.set(len(self.clients))

    def send(self, data: bytes) -> None:
        with self.lock:
            clients = list(self.clients.items())
        for q, loop in clients:
            loop.call_soon_threadsafe(self._put, q, data)

    def send_close(self) -> None:
        """End every live feed (the browsers reconnect to whatever serves next)."""
        with self.lock:
            clients = list(self.clients.items())
        for q, loop in clients:
            loop.call_soon_threadsafe(self._put, q, None)

    def _put(self, q: asyncio.Queue, data: bytes | None) -> None:
        try:
            q.put_nowait(data)
        except asyncio.QueueFull:  # a browser that stopped reading: drop it, it reconnects to a snapshot
            self.remove(q)
            while not q.empty():
                q.get_nowait()
            q.put_nowait(None)


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


_STATIC_FILES = {"/": "index.html", "/index.html": "index.html", "/app.js": "app.js", "/style.css": "style.css"}


def make_app(dash: Dashboard) -> FastAPI:
    app = FastAPI(title="citymesh operations dashboard", docs_url=None, redoc_url=None)

    def no_store(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/events", include_in_schema=False)
    async def events():
        q = dash.hub.add()

        async def stream():
            try:
                yield b"retry: 1000\n\n" + sse("snapshot", dash.model.snapshot_view())
                while True:
                    try:
                        data = await asyncio.wait_for(q.get(), KEEPALIVE_S)
                    except asyncio.TimeoutError:
                        data = b": keepalive\n\n"
                    if data is None:
                        return
                    yield data
            finally:
                dash.hub.remove(q)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/metrics", include_in_schema=False)
    def prometheus():
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz():
        return no_store(JSONResponse({"ok": True}))

    @app.get("/api/snapshot")
    def snapshot():
        return no_store(JSONResponse(dash.model.snapshot_view()))

    @app.get("/api/geo")
    def layers():
        return no_store(JSONResponse(dash.layers))

    @app.get("/api/drone/{serial}")
    def drone(serial: str):
        rec = dash.model.drone_record(serial)
        return no_store(JSONResponse(rec or {"error": "unknown drone"}, 200 if rec else 404))

    @app.get("/evidence")
    async def evidence(id: str = Query(""), t: str = Query("0")):  # noqa: A002 - the page's query names
        if not dash.ledger_url:
            return no_store(JSONResponse({"found": False, "error": "no ledger configured"}, 404))
        from .evidence import lookup

        def find() -> dict:
            try:
                return lookup(dash.ledger_url, id, int(t))
            except Exception as exc:  # noqa: BLE001 - the page shows why, the server carries on
                return {"found": False, "error": str(exc)}

        out = await run_in_threadpool(find)
        return no_store(JSONResponse(out, 200 if out.get("found") else 404))

    @app.get("/{name:path}", include_in_schema=False)
    def static(name: str):
        file = _STATIC_FILES.get("/" + name)
        if file is None:
            return Response(b"not found\n", 404, media_type="text/plain")
        return no_store(FileResponse(STATIC / file, media_type=_TYPES[Path(file).suffix]))

    return app


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
    dash = Dashboard(model, geo.load_layers(args.topology), ledger_url(settings))
    sock = bind(*parse_listen(args.listen))  # the default port taken (another mesh, a demo): a free one
    host, port = sock.getsockname()[:2]
    url_file = Path(settings.state_dir) / URL_FILE
    url_file.parent.mkdir(parents=True, exist_ok=True)
    url_file.write_text(f"http://{host}:{port}/\n")
    dash.start()
    feeds = Feeds(model, settings.client_config(bootstrap), args.operator).start()
    print(f"dashboard on http://{host}:{port}/ (metrics on http://{host}:{port}/metrics)", flush=True)
    log.info("dashboard on http://%s:%d/ reading %s", host, port, bootstrap)
    web = server(make_app(dash))
    original_exit = web.handle_exit

    def handle_exit(sig, frame) -> None:  # SIGTERM/SIGINT: end the live feeds too, or shutdown waits for them
        original_exit(sig, frame)
        dash.hub.send_close()

    web.handle_exit = handle_exit
    try:
        web.run(sockets=[sock])
    finally:
        feeds.close()
        dash.stop()
        url_file.unlink(missing_ok=True)
    return 0
