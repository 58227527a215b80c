"""`citymesh demo` / `make demo`: the whole mesh on the embedded broker with simulated
drones and hotline calls, printing live counts per topic, then a clean shutdown.

Everything it starts is attached to it (PR_SET_PDEATHSIG), so an interrupted demo leaves
no process behind either.
"""

from __future__ import annotations

import time

from streams import keyring
from streams.admin import TopicCounter
from streams.connectors import ProviderConnector
from streams.settings import Settings
from streams.simulators import FleetSimulator, HotlineSimulator
from topology.apply import apply
from topology.loader import TopologyFileError, load_topology

from . import supervisor
from .broker import EmbeddedBroker
from .processes import mesh_processes

UAV_PRODUCT, UAV_PROVIDER = "uav-telemetry", "skyway"
HOTLINE_PRODUCT, HOTLINE_PROVIDER = "hotline-tickets", "hotline-12345"


def _print_counts(counts: dict[str, int], previous: dict[str, int], elapsed: float, dt: float) -> None:
    print(f"--- t={elapsed:5.1f}s " + "-" * 60, flush=True)
    for topic, n in counts.items():
        if n or topic.startswith("cm.raw."):
            rate = (n - previous.get(topic, 0)) / dt if dt > 0 else 0.0
            print(f"  {topic:<46} {n:>9} records  {rate:>8.0f}/s", flush=True)


def run_demo(settings: Settings, topology_path: str, seconds: float, drones: int, tickets_per_s: float) -> int:
    try:
        topo = load_topology(topology_path)
    except TopologyFileError as exc:
        raise SystemExit(f"error: {exc}") from None
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
        for name, argv in mesh_processes(topo, topology_path).items():
            procs.append(supervisor.spawn(argv, settings.state_dir / "logs" / f"demo-{name}.log", detach=False,
                                          env={"CITYMESH_BOOTSTRAP": bootstrap,
                                               "CITYMESH_STATE_DIR": str(settings.state_dir.resolve())}))
            print(f"started {name} pid {procs[-1].pid}", flush=True)
        uav = ProviderConnector(keyring.load(settings.keyring_dir, UAV_PROVIDER), client)
        hotline = ProviderConnector(keyring.load(settings.keyring_dir, HOTLINE_PROVIDER), client)
        fleet, calls = FleetSimulator(drones=drones, start_ms=int(time.time() * 1000)), HotlineSimulator()
        counter = TopicCounter(client)
        print(f"flying {drones} simulated drones (5x speed) and taking ~{tickets_per_s:g} hotline calls/s "
              f"for {seconds:g}s", flush=True)
        start = last_print = time.monotonic()
        previous: dict[str, int] = {}
        tickets_due = 0.0
        while (now := time.monotonic()) - start < seconds:
            for rec in fleet.tick(1.0):
                uav.publish(UAV_PRODUCT, rec)
            tickets_due += tickets_per_s * 0.2
            while tickets_due >= 1:
                hotline.publish(HOTLINE_PRODUCT, calls.ticket(int(time.time() * 1000)))
                tickets_due -= 1
            if now - last_print >= 5:
                counts = counter.counts()
                _print_counts(counts, previous, now - start, now - last_print)
                previous, last_print = counts, now
            time.sleep(max(0.0, 0.2 - (time.monotonic() - now)))
        uav.flush()
        hotline.flush()
        time.sleep(1.0)
        counts = counter.counts()
        _print_counts(counts, previous, time.monotonic() - start, time.monotonic() - last_print)
        counter.close()
        print(f"published {uav.sent} telemetry records and {hotline.sent} work orders; shutting down", flush=True)
        return 0
    finally:
        supervisor.stop({str(p.pid): p.pid for p in procs})
        if broker is not None:
            broker.stop()
