"""An adapter as the long-lived process production runs: settings from the environment, catalog
from the control topic, Prometheus metrics on a port, clean stop on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

import schemas
from streams import keyring, topics
from streams.admin import COMPACTED, TopicSpec, ensure_topics
from streams.adapters.mavlink_sim import MavlinkFleet

from .conftest import catalog_entry, free_port

ROOT = Path(__file__).resolve().parents[3]


def test_mavlink_adapter_process_publishes_exposes_metrics_and_stops_on_sigterm(tmp_path, client_config, bootstrap,
                                                                             unique, read_topic):
    pid, product = f"prov-{unique}", f"uav-{unique}"
    keyring.create(tmp_path / "state" / "keys", pid)
    entry = catalog_entry(pid, product, "UavTelemetry")
    admin = AdminClient(client_config)
    ensure_topics(admin, [TopicSpec(topics.CONTROL_CATALOG, 1, COMPACTED), TopicSpec(entry["raw_topic"], 3)])
    p = Producer(client_config)
    p.produce(topics.CONTROL_CATALOG, schemas.load("DataProduct").encode(entry), product.encode())
    assert p.flush(10) == 0

    port = free_port()
    env = {**os.environ, "CITYMESH_BOOTSTRAP": bootstrap, "CITYMESH_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.Popen([sys.executable, "-m", "streams.adapters.mavlink_udp", "--provider", pid, "--product", product,
                             "--listen", f"127.0.0.1:{port}", "--metrics-port", "0"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"metrics: (http://\S+)", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        fleet = MavlinkFleet(drones=10, seed=5)
        sent = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            time.sleep(0.3)  # the socket is bound before the metrics line is printed; give the thread a moment
            for _ in range(20):
                datagrams, recs = fleet.step(2.0)
                sent += len(recs)
                for d in datagrams:
                    s.sendto(d, ("127.0.0.1", port))
                time.sleep(0.01)
            s.sendto(b"\xfd\x09garbage", ("127.0.0.1", port))
        deadline = time.monotonic() + 15
        while True:
            metrics = urllib.request.urlopen(m.group(1), timeout=5).read().decode()
            got = re.search(r'citymesh_adapter_records_total\{adapter="mavlink_udp"\} (\S+)', metrics)
            # the garbage datagram came last: wait for its count too, not only the records'
            if got and float(got.group(1)) >= sent and 'result="truncated"' in metrics or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert float(got.group(1)) == sent
        assert re.search(r'citymesh_adapter_frames_total\{adapter="mavlink_udp",result="position"\} %d\.0' % sent, metrics)
        assert 'result="truncated"' in metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert len(read_topic(entry["raw_topic"], sent, "UavTelemetry", settle_s=0.3)) == sent
