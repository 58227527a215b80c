"""The dataspace control plane (issue 17): negotiation round trip, transfer start to first
delivered record, API requests/s, each against a baseline measured in the same run.

    .venv/bin/python bench/bench_dsp.py [--negotiations 60] [--transfers 5] [--seconds 5]

The control plane runs as its own process (`python -m dataspace`, uvicorn), as `up` runs it;
the consumer is a hosted connector context driven through the management API, so a
negotiation is the whole DSP exchange: request, agreement to the consumer's callback,
verification (with the consumer's signature), finalization, and the control-topic writes,
contract record and delivery topic behind it.

Baselines: requests/s of the trivial /api/health on the same server (no token, no state);
one acknowledged control-topic write (what every state change costs at least); and the
end-to-end latency of a record under an already active contract (what a delivered record
costs anyway). "Transfer STARTED → first record" runs with a runner for the product and a
provider publishing 1,000 records/s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

from common import (apply_city, cluster, delivery_schema, machine, publish_fleet_paced, receive_latencies,
                    tail_consumer)

import httpx  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GEO = ROOT / "examples" / "geo"


def city() -> str:
    return textwrap.dedent(f"""
    participants:
      - {{id: bench-bureau, name: Bureau, roles: [operator]}}
      - {{id: bench-skyway, name: SkyWay, roles: [provider]}}
      - {{id: bench-logistics, name: Logistics, roles: [consumer]}}
    products:
      - id: bench-uav
        provider: bench-skyway
        name: UAV telemetry
        schema: UavTelemetry
        partitions: 3
        retention: 1d
        key_field: serial_number
        event_time_field: timestamp_ms
        access: {{roles: [consumer, operator]}}
        offers:
          - id: logistics
            template: logistics-route-planning
            params: {{geofence: urban, decimals: 3}}
            auto_accept: {{params: {{decimals: {{max: 3}}}}}}
    geofences:
      urban: {{file: {GEO / 'shenzhen-urban.geojson'}}}
    contracts:
      - id: bench-steady
        product: bench-uav
        consumer: bench-logistics
        purposes: [route-planning]
        template: logistics-route-planning
        params: {{geofence: urban, decimals: 3}}
    """)


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * q))]


def spawn(argv: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_up(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the control plane did not come up")


def hammer(url: str, method: str, headers: dict, body: dict | None, seconds: float, threads: int) -> float:
    """Requests/s with `threads` keep-alive clients; every answer must be a 2xx."""
    counts, stop, errors = [0] * threads, threading.Event(), []

    def run(i: int) -> None:
        with httpx.Client(timeout=10) as c:
            while not stop.is_set():
                r = c.request(method, url, headers=headers, json=body)
                if r.status_code >= 300:
                    errors.append(f"{r.status_code} {r.text[:200]}")
                    return
                counts[i] += 1

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    return sum(counts) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--negotiations", type=int, default=60)
    ap.add_argument("--transfers", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5.0, help="per requests/s measurement")
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    from confluent_kafka import Consumer, TopicPartition

    import schemas
    from dataspace.identity import API_AUDIENCE, connector_audience, issue_token
    from dataspace.messages import envelope
    from dataspace.store import ControlStore
    from streams import keyring, topics
    from streams.settings import Settings

    print(f"machine: {machine()}")
    with cluster() as bootstrap, tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        conf = Settings(bootstrap=bootstrap).client_config()
        _, keys, conn = apply_city(conf, city(), tmp)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("CITYMESH_")},
               "CITYMESH_BOOTSTRAP": bootstrap, "CITYMESH_STATE_DIR": str(tmp / "state"),
               "CITYMESH_KEYS_DIR": str(keys), "PYTHONPATH": str(ROOT), "CITYMESH_DSP_LISTEN": "127.0.0.1:0"}
        plane = spawn(["-m", "dataspace"], env, tmp / "plane.log")
        runner = spawn(["-m", "processors.runner", "--product", "bench-uav", "--metrics-port", "0"], env,
                       tmp / "runner.log")
        try:
            while not (tmp / "state" / "dsp.url").exists():
                assert plane.poll() is None, (tmp / "plane.log").read_text()[-2000:]
                time.sleep(0.1)
            url = (tmp / "state" / "dsp.url").read_text().strip()
            wait_up(url, plane, tmp / "plane.log")
            consumer = keyring.load(keys, "bench-logistics")
            api = {"Authorization": f"Bearer {issue_token(consumer, API_AUDIENCE, ttl_s=300)}"}

            def call(method: str, path: str, **kw) -> dict:
                r = httpx.request(method, url + "/api" + path, timeout=70, headers={
                    "Authorization": f"Bearer {issue_token(consumer, API_AUDIENCE)}"}, **kw)
                assert r.status_code < 300, r.text
                return r.json()

            # -- baseline: one acknowledged control-topic write
            store = ControlStore(conf, tables=(topics.CONTROL_PARTICIPANTS,))
            writes = []
            record = {**{f["name"]: f.get("default") for f in schemas.load("Negotiation").definition["fields"]},
                      "negotiation_id": "bench", "side": "PROVIDER", "provider_id": "x", "consumer_id": "y",
                      "product_id": "z", "offer_id": "o", "state": "REQUESTED"}
            for i in range(100):
                t0 = time.perf_counter()
                store.produce(topics.CONTROL_NEGOTIATIONS, f"bench-baseline-{i}", record)
                writes.append((time.perf_counter() - t0) * 1000)
            store.close()
            write_ms = statistics.median(writes)

            # -- negotiation round trip to FINALIZED
            rtts, agreements = [], []
            for _ in range(args.negotiations + args.transfers):
                t0 = time.perf_counter()
                rec = call("POST", "/negotiations", json={"product": "bench-uav", "offer": "logistics"})
                rec = call("GET", f"/negotiations/{rec['negotiation_id']}",
                           params={"wait_s": 30, "until": "FINALIZED,TERMINATED"})
                assert rec["state"] == "FINALIZED", rec
                rtts.append((time.perf_counter() - t0) * 1000)
                agreements.append(rec["agreement_id"])
            rtts = rtts[:args.negotiations]
            print(f"\nnegotiation round trip to FINALIZED ({len(rtts)} sequential, hosted consumer via the API):")
            print(f"  p50 {pct(rtts, 0.5):.1f} ms, p99 {pct(rtts, 0.99):.1f} ms")
            print(f"  baseline: one acknowledged control-topic write p50 {write_ms:.2f} ms -> ratio "
                  f"{pct(rtts, 0.5) / write_ms:.1f}x")

            # -- API requests/s against /api/health on the same server
            nid = rec["negotiation_id"]
            health = hammer(url + "/api/health", "GET", {}, None, args.seconds, args.threads)
            read = hammer(f"{url}/api/negotiations/{nid}", "GET", api, None, args.seconds, args.threads)
            dsp_token = issue_token(consumer, connector_audience("bench-skyway"), ttl_s=300)
            catalog = hammer(f"{url}/dsp/bench-skyway/catalog/request", "POST",
                             {"Authorization": f"Bearer {dsp_token}"},
                             envelope("CatalogRequestMessage", filter=[]), args.seconds, args.threads)
            print(f"\nAPI requests/s ({args.threads} keep-alive clients):")
            print(f"  GET /api/health (baseline, trivial)                 {health:8.0f}/s")
            print(f"  GET /api/negotiations/<id> (EdDSA token, view read)  {read:8.0f}/s  ratio {read / health:.2f}")
            print(f"  POST /dsp/<provider>/catalog/request (token, schema, catalog)  {catalog:8.0f}/s  "
                  f"ratio {catalog / health:.2f}")

            # -- transfer STARTED -> first delivered record, while the provider publishes 1,000 records/s
            while "assigned partitions" not in (tmp / "runner.log").read_text():
                assert runner.poll() is None, (tmp / "runner.log").read_text()[-2000:]
                time.sleep(0.1)
            stop = threading.Event()

            def publisher() -> None:
                while not stop.is_set():
                    publish_fleet_paced(conn, "bench-uav", 1000, 1.0, violators=0.0)

            pub = threading.Thread(target=publisher)
            pub.start()
            steady_c = tail_consumer(conf, topics.delivery("bench-steady"))
            steady_lat, steady_stop = [], threading.Event()
            out_schema = delivery_schema(conf, "bench-steady")
            rt = threading.Thread(target=receive_latencies, args=(
                steady_c, lambda v: out_schema.decode(v)["timestamp_ms"], steady_stop, steady_lat, [0]))
            rt.start()
            firsts = []
            try:
                time.sleep(2.0)
                for agreement in agreements[args.negotiations:]:
                    tr = call("POST", "/transfers", json={"agreement": agreement})
                    tr = call("GET", f"/transfers/{tr['transfer_id']}", params={"wait_s": 30, "until": "STARTED"})
                    t_started = time.time()
                    assert tr["state"] == "STARTED", tr
                    topic = {p["name"]: p["value"] for p in tr["data_address"]["endpointProperties"]}["topic"]
                    c = Consumer({**conf, "group.id": f"bench-first-{time.time_ns()}", "fetch.wait.max.ms": 10})
                    c.assign([TopicPartition(topic, p, 0) for p in
                              c.list_topics(topic, timeout=10).topics[topic].partitions])
                    first = None
                    while first is None and time.time() - t_started < 30:
                        for m in c.consume(100, 0.05):
                            if not m.error():
                                first = time.time()
                                break
                    c.close()
                    assert first is not None, "no record within 30 s"
                    firsts.append((first - t_started) * 1000)
            finally:
                stop.set()
                steady_stop.set()
                pub.join(30)
                rt.join(10)
                steady_c.close()
            steady = statistics.median(steady_lat) if steady_lat else float("nan")
            print(f"\ntransfer STARTED (as the consumer sees it) -> first delivered record, {len(firsts)} transfers, "
                  f"provider at 1,000 records/s:")
            print(f"  {', '.join(f'{x:.0f}' for x in firsts)} ms; p50 {pct(firsts, 0.5):.0f} ms, max "
                  f"{max(firsts):.0f} ms (goal <= 1,000 ms)")
            print(f"  baseline: end-to-end latency of a record under an active contract p50 {steady:.0f} ms -> "
                  f"ratio {pct(firsts, 0.5) / steady:.1f}x")
        finally:
            for p in (runner, plane):
                p.terminate()
                p.wait(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
