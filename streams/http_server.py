"""Serving HTTP, done once: every HTTP endpoint of the project (the Open311 adapter, the
dashboard, the dataspace control plane) is an ASGI app (FastAPI on Starlette) served by
uvicorn from a socket bound here.

Why bind the socket ourselves: the process must know the address it really serves (port 0
or a taken default port fall back to a free one) before it writes it for others, and the
socket is created with IPPROTO_TCP named, because asyncio sets TCP_NODELAY only on sockets
that say so; without it every answer waits ~40 ms for a delayed ACK (measured: 48 ms
against 3.5 ms per request).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time

import uvicorn

log = logging.getLogger("citymesh.http")


def parse_listen(value: str) -> tuple[str, int]:
    """'host:port' (IPv6 in brackets) -> (host, port); an empty host is loopback."""
    host, _, port = value.rpartition(":")
    return (host or "127.0.0.1").strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def bind(host: str, port: int, fallback: bool = True) -> socket.socket:
    """A listening TCP socket on host:port; with `fallback`, a free port when that one is taken."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        if not fallback or port == 0:
            sock.close()
            raise
        log.warning("cannot listen on %s:%d (%s); picking a free port", host, port, exc)
        sock.bind((host, 0))
    sock.listen(512)
    return sock


def server(app, **config) -> uvicorn.Server:
    """A uvicorn server for `app`: quiet (the apps log what matters themselves), keep-alive."""
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5,
                                         **config))


class Background:
    """An ASGI app served from a bound socket in a thread of this process (adapters, tests)."""

    def __init__(self, app, sock: socket.socket, name: str = "http"):
        self.sock = sock
        self.address: tuple[str, int] = sock.getsockname()[:2]
        self.server = server(app)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)

    def start(self, timeout_s: float = 20.0) -> "Background":
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP server on {self.address} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
