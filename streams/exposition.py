"""The one way a long-running process exposes its Prometheus metrics."""

from __future__ import annotations

from prometheus_client import start_http_server


def serve_metrics(port: int, addr: str = "0.0.0.0"):
    """Start /metrics on `port` (0: the OS picks one: nothing else can take it between a
    look-up and the bind); returns the HTTP server (its `server_port` is the port)."""
    server, _thread = start_http_server(port, addr)
    return server
