"""What every adapter shares: counting, the sink, metrics and the process life cycle.

Counting lives in one place (`Intake`) so that every adapter reports the same two
Prometheus series, `citymesh_adapter_frames_total{adapter,result}` (each unit of input:
frame, MQTT message, HTTP request, CSV row, by outcome) and
`citymesh_adapter_records_total{adapter}` (records accepted by the sink), and a plain
`stats` dict that tests and the CLI can read without scraping.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from functools import partial
from typing import Callable, Protocol

from prometheus_client import Counter

import schemas

from .. import exposition

log = logging.getLogger("citymesh.adapters")

Publish = Callable[[dict], None]

FRAMES = Counter("citymesh_adapter_frames", "Input units seen by a source adapter, by outcome",
                 ["adapter", "result"])
RECORDS = Counter("citymesh_adapter_records", "Records a source adapter handed to its sink", ["adapter"])

# What a sink may raise for one bad record; anything else (broker down, bug) must surface.
RECORD_ERRORS = (schemas.RecordInvalid, ValueError, TypeError)


class Intake:
    """Counts input outcomes and forwards records to the sink, never letting one record kill intake.

    Thread-safe: the Open311 server calls it from one thread per request, and the connector's
    counters are not atomic.
    """

    def __init__(self, adapter: str, publish: Publish):
        self.adapter = adapter
        self._publish = publish
        self.stats: dict[str, int] = {}
        self.records = 0
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._frame_children: dict[str, object] = {}
        self._records_child = RECORDS.labels(adapter)

    def count(self, result: str, n: int = 1) -> None:
        if not n:
            return
        with self._lock:
            self.stats[result] = self.stats.get(result, 0) + n
        child = self._frame_children.get(result)
        if child is None:
            child = self._frame_children[result] = FRAMES.labels(self.adapter, result)
        child.inc(n)

    def count_many(self, counts: dict[str, int]) -> None:
        for result, n in counts.items():
            self.count(result, n)

    def emit(self, record: dict) -> bool:
        """Publish one record; False (and `last_error`) when the sink rejects it as invalid."""
        with self._lock:
            try:
                self._publish(record)
            except RECORD_ERRORS as exc:
                self.last_error = str(exc)
                invalid = True
            else:
                self.records += 1
                invalid = False
        if invalid:  # the caller counts its input unit as "invalid": one outcome per unit
            log.warning("%s: record rejected: %s", self.adapter, self.last_error)
            return False
        self._records_child.inc()
        return True


UAV_CLASSES = ("MICRO", "LIGHT", "SMALL", "MEDIUM", "LARGE", "UNKNOWN")


class UavClassMap:
    """Serial number -> regulatory class (微型/轻型/小型/中型/大型), from operator configuration.

    Neither MAVLink nor the DJI OSD carries the 2024 interim-regulation class, so it comes
    from the registration data the provider already has. A YAML/JSON mapping of serial
    number to class; a key ending in `*` matches a serial prefix (longest prefix wins).
    Anything unmatched is UNKNOWN, which the regulator's rules treat as unregistered.
    """

    def __init__(self, mapping: dict[str, str] | None = None, source: str = "<dict>"):
        self.exact: dict[str, str] = {}
        self.prefixes: list[tuple[str, str]] = []
        for key, cls in (mapping or {}).items():
            cls = str(cls).upper()
            if cls not in UAV_CLASSES:
                raise ValueError(f"{source}: serial {key!r}: uav class {cls!r} is not one of {', '.join(UAV_CLASSES)}")
            if str(key).endswith("*"):
                self.prefixes.append((str(key)[:-1], cls))
            else:
                self.exact[str(key)] = cls
        self.prefixes.sort(key=lambda kv: -len(kv[0]))

    @classmethod
    def load(cls, path: str | None) -> "UavClassMap":
        if not path:
            return cls()
        import yaml
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of serial number (or prefix*) to uav class")
        return cls(data, path)

    def __call__(self, serial: str) -> str:
        hit = self.exact.get(serial)
        if hit is not None:
            return hit
        for prefix, cls in self.prefixes:
            if serial.startswith(prefix):
                return cls
        return "UNKNOWN"


class Service(Protocol):
    """A long-running adapter: start() returns once it accepts input, stop() joins its threads."""

    def start(self) -> "Service": ...

    def stop(self) -> None: ...


def host_port(text: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """Parse `host:port` or `:port` or `port`."""
    host, _, port = text.rpartition(":")
    try:
        return host or default_host, int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}") from None


def common_parser(description: str) -> argparse.ArgumentParser:
    from streams.settings import get_settings
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--provider", required=True, help="participant id of the data provider (its keyring signs)")
    p.add_argument("--product", required=True, help="data product id the records are published to")
    p.add_argument("--metrics-port", type=int, default=get_settings().metrics_port,
                   help="Prometheus port (0 picks a free one and prints it; -1 disables)")
    p.add_argument("--log-level", default="INFO")
    return p


def connect(args: argparse.Namespace):
    """The provider's connector and the sink for its product, from settings and keyring."""
    from streams import keyring
    from streams.connectors import ProviderConnector
    from streams.settings import get_settings
    settings = get_settings()
    client_config = settings.client_config(settings.mesh_bootstrap())
    ring = keyring.load(settings.keyring_dir, args.provider)
    connector = ProviderConnector(ring, client_config, catalog=None)
    connector.route(args.product)  # fail at start-up, not on the first record
    return connector, partial(connector.publish, args.product)


def serve_metrics(port: int):
    """Start the Prometheus endpoint (streams/exposition.py); returns the server (None when disabled)."""
    if port < 0:
        return None
    server = exposition.serve_metrics(port)
    print(f"metrics: http://127.0.0.1:{server.server_port}/metrics", flush=True)
    return server


def run_until_signal(service: Service, connector, stop_event: threading.Event | None = None) -> None:
    """Run a started service until SIGTERM/SIGINT, then stop it and flush what it published."""
    stop_event = stop_event or threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop_event.set())
    try:
        while not stop_event.wait(0.5):
            pass
    finally:
        service.stop()
        if connector is not None:
            connector.close()
        log.info("stopped; stats %s", getattr(service, "stats", {}))


def main_loop(args: argparse.Namespace, build: Callable[[Publish], Service]) -> int:
    """Shared `main` of the long-running adapters: connect, expose metrics, serve until SIGTERM."""
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    connector, publish = connect(args)
    metrics = serve_metrics(args.metrics_port)
    service = build(publish).start()
    try:
        run_until_signal(service, connector)
    finally:
        if metrics is not None:
            metrics.shutdown()
    return 0
