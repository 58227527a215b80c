"""`citymesh demo` / `make demo`: the whole mesh on the embedded broker, fed through the same
ingestion paths real systems use: a simulated drone fleet speaking MAVLink v2 over UDP to the
ground-station adapter, and simulated citizens filing 12345 requests through the Open311
GeoReport v2 endpoint. Prints live counts per topic, then shuts everything down.

Everything it starts is attached to it (PR_SET_PDEATHSIG), so an interrupted demo leaves
no process behind either.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

from streams import keyring
from streams.admin import TopicCounter
from streams.settings import Settings
from streams.simulators import HotlineSimulator
from topology.apply import apply
from topology.loader import TopologyFileError, load_topology
from topology.models import Topology

from . import supervisor
from .broker import EmbeddedBroker
from .processes import mesh_processes


def _print_counts(counts: dict[str, int], previous: dict[str, int], elapsed: float, dt: float) -> None:
    print(f"--- t={elapsed:5.1f}s " + "-" * 60, flush=True)
    for topic, n in counts.items():
        if n or topic.startswith("cm.raw."):
            rate = (n - previous.get(topic, 0)) / dt if dt > 0 else 0.0
            print(f"  {topic:<46} {n:>9} records  {rate:>8.0f}/s", flush=True)


def _source(topo: Topology, kind: str) -> str:
    src = next((s for s in topo.sources if s.type == kind and s.listen), None)
    if src is None:
        raise SystemExit(f"the demo needs a {kind} source with a listen address in the topology")
    return src.listen


def _wait_tcp(host_port: str, timeout_s: float = 30.0) -> None:
    host, port = host_port.rsplit(":", 1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the Open311 endpoint on {host_port} did not come up")


def open311_form(ticket: dict) -> dict:
    """A simulated citizen's request as GeoReport v2 POST fields."""
    name = ticket["caller_name"] or ""
    form = {"service_code": ticket["category_code"], "lat": ticket["lat"], "long": ticket["lon"],
            "address_string": ticket["address"], "description": ticket["content"],
            "first_name": name[1:], "last_name": name[:1], "phone": ticket["caller_phone"]}
    if ticket["category_code"] == "0401":  # the parking service asks for the plate (a service definition attribute)
        form["attribute[PLATE]"] = "粤B" + ticket["order_no"][-5:]
    return form


def _post(url: str, form: dict) -> bool:
    data = urllib.parse.urlencode(form).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=5) as resp:
            return 200 <= resp.status < 300 and bool(json.loads(resp.read()))
    except (urllib.error.URLError, OSError):
        return False


def run_demo(settings: Settings, topology_path: str, seconds: float, drones: int, tickets_per_s: float) -> int:
    try:
        topo = load_topology(topology_path)
    except TopologyFileError as exc:
        raise SystemExit(f"error: {exc}") from None
    mavlink_at, open311_at = _source(topo, "mavlink-udp"), _source(topo, "open311-http")
    broker = None
    procs = []
    try:
        if settings.bootstrap:
            bootstrap = settings.bootstrap
        else:
            broker = EmbeddedBroker(settings.broker_host, settings.broker_port).start()
            bootstrap = broker.bootstrap
            print(f"embedded broker (Tansu) pid {broker.pid} on {bootstrap}", flush=True)
        client = settings.client_config(bootstrap)
        for p in topo.participants:
            keyring.create(settings.keyring_dir, p.id)
        report = apply(topo, client, settings.replication_factor, settings.keyring_dir)
        print(f"applied {topology_path}: {len(topo.participants)} participants, {len(topo.products)} products, "
              f"{len(topo.contracts)} contracts, {len(report.topics)} topics", flush=True)
        env = {"CITYMESH_BOOTSTRAP": bootstrap, "CITYMESH_STATE_DIR": str(settings.state_dir.resolve())}
        names, started = mesh_processes(topo, topology_path), time.time()
        for name, argv in names.items():
            procs.append(supervisor.spawn(argv, settings.state_dir / "logs" / f"demo-{name}.log", detach=False,
                                          env=env))
            print(f"started {name} pid {procs[-1].pid}", flush=True)
        if "dashboard" in names:  # where to watch it, as `up` prints it
            from dashboard.server import wait_for_url
            print(f"dashboard: {wait_for_url(settings.state_dir, 15, started) or 'http://' + settings.dashboard_listen + '/'}",
                  flush=True)
        _wait_tcp(open311_at)
        time.sleep(1.0)  # the MAVLink adapter binds its UDP port at the same moment
        procs.append(supervisor.spawn(
            supervisor.python_module("streams.adapters.mavlink_sim", "--target", mavlink_at, "--drones", str(drones),
                                     "--rate", "2", "--duration", str(seconds)),
            settings.state_dir / "logs" / "demo-mavlink-sim.log", detach=False, env=env))
        print(f"{drones} simulated drones fly, sending MAVLink v2 to {mavlink_at}; citizens file ~{tickets_per_s:g} "
              f"requests/s to http://{open311_at}/open311/v2/requests.json; for {seconds:g}s", flush=True)
        url = f"http://{open311_at}/open311/v2/requests.json"
        calls, counter = HotlineSimulator(), TopicCounter(client)
        start = last_print = time.monotonic()
        previous: dict[str, int] = {}
        due, filed, refused = 0.0, 0, 0
        while (now := time.monotonic()) - start < seconds:
            due += tickets_per_s * 0.2
            while due >= 1:
                if _post(url, open311_form(calls.ticket(int(time.time() * 1000)))):
                    filed += 1
                else:
                    refused += 1
                due -= 1
            if now - last_print >= 5:
                counts = counter.counts()
                _print_counts(counts, previous, now - start, now - last_print)
                previous, last_print = counts, now
            time.sleep(max(0.0, 0.2 - (time.monotonic() - now)))
        time.sleep(3.0)  # let the runners finish what is in flight
        counts = counter.counts()
        _print_counts(counts, previous, time.monotonic() - start, time.monotonic() - last_print)
        counter.close()
        print(f"citizens filed {filed} Open311 requests ({refused} refused); "
              f"{counts.get('cm.raw.skyway.uav-telemetry', 0)} telemetry records came in over MAVLink; shutting down",
              flush=True)
        return 0
    finally:
        supervisor.stop({str(p.pid): p.pid for p in procs})
        if broker is not None:
            broker.stop()
