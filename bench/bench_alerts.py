"""Alert latency: telemetry record published -> its Alert on cm.alerts, through a runner process.

A runner (`python -m processors.runner`, as in production) enforces one contract and the
example city's eight UAV operator rules (examples/city.yaml, ED-269 zones included) on
simulated telemetry published at a steady rate (default 5k records/s; 10% of the drones
break rules). Each record's timestamp_ms is the wall clock at publish, and an Alert's
time_ms is its record's event time, so receive time - time_ms is the whole path: provider
publish, broker, runner batch (admission, contract, rules), produce, broker, consumer.

Baseline in the same run: the same records' delivery latency (publish -> the contract's
delivery topic), so the ratio says what the rules stage adds on top of enforcement.
Goal: alert p99 <= 500 ms.

    .venv/bin/python bench/bench_alerts.py [--rate 5000] [--seconds 15]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import yaml
from common import apply_city, cluster, delivery_schema, machine, publish_fleet_paced, receive_latencies, tail_consumer

from bench_runner import ONE, ROOT, RunnerProcess, topology
import schemas
from streams import topics

ZONES = ROOT / "examples" / "geo" / "shenzhen-uas-zones.geojson"


def city(p: str) -> str:
    rules = copy.deepcopy(next(e for e in yaml.safe_load((ROOT / "examples" / "city.yaml").read_text())
                               ["operator_rules"] if e["product"] == "uav-telemetry"))
    rules["product"] = f"{p}-uav"
    rules["fold"] = False  # one alert per hit: the latency of every hit is what is measured
    text = topology({p: ONE}).replace("geofences:\n", f"geofences:\n  uas-zones: {{file: {ZONES}}}\n", 1)
    return text + yaml.safe_dump({"operator_rules": [rules]}, sort_keys=False)


def q(lat: list[float]) -> tuple[float, float, float]:
    lat = sorted(lat)
    if len(lat) < 100:
        return float("nan"), float("nan"), float("nan")
    qs = statistics.quantiles(lat, n=100)
    return qs[49], qs[98], lat[-1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--warmup-s", type=float, default=3.0)
    args = ap.parse_args()
    with cluster() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        state = tmp / "state"
        conf = {"bootstrap.servers": bootstrap}
        p = f"a{time.time_ns() % 10**6}"
        _, _, conn = apply_city(conf, city(p), tmp)
        product = f"{p}-uav"
        alert_schema = schemas.load("Alert")
        out_schema = delivery_schema(conf, f"{p}-c0")

        def alert_time(v: bytes):
            a = alert_schema.decode(v)
            return a["time_ms"] if a["product_id"] == product and not a["escalated"] else None

        alert_lat: list[float] = []
        dlv_lat: list[float] = []
        measure_from = [float("inf")]
        stop = threading.Event()
        consumers = [tail_consumer(conf, topics.ALERTS), tail_consumer(conf, topics.delivery(f"{p}-c0"))]
        threads = [threading.Thread(target=receive_latencies, args=(consumers[0], alert_time, stop, alert_lat, measure_from),
                                    daemon=True),
                   threading.Thread(target=receive_latencies, args=(consumers[1], lambda v: out_schema.decode(v)["timestamp_ms"],
                                                          stop, dlv_lat, measure_from), daemon=True)]
        rp = RunnerProcess(product, bootstrap, state, tmp / "runner.log")
        sent = 0
        try:
            rp.wait_assigned()
            time.sleep(1.0)
            for th in threads:
                th.start()
            measure_from[0] = time.time() * 1000 + args.warmup_s * 1000
            sent = publish_fleet_paced(conn, product, args.rate, args.seconds + args.warmup_s)
            time.sleep(2.0)
        finally:
            stop.set()
            for th in threads:
                th.join(5)
            rp.stop()
            for c in consumers:
                c.close()
        a50, a99, amax = q(alert_lat)
        d50, d99, dmax = q(dlv_lat)
        print(f"machine: {machine()}; broker: {'external' if 'CITYMESH_BOOTSTRAP' in os.environ else 'embedded Tansu'}")
        print(f"command: .venv/bin/python bench/bench_alerts.py --rate {args.rate} --seconds {args.seconds:g}")
        print(f"published {sent} UavTelemetry records at {args.rate}/s for {args.seconds + args.warmup_s:g} s "
              f"({args.warmup_s:g} s warm-up not measured); runner: 1 contract + 8 operator rules")
        print(f"alerts measured: {len(alert_lat)}; deliveries measured: {len(dlv_lat)}")
        print(f"alert latency    (publish -> Alert on {topics.ALERTS}): p50 {a50:.1f} ms, p99 {a99:.1f} ms, "
              f"max {amax:.1f} ms  (goal p99 <= 500 ms)")
        print(f"delivery latency (publish -> delivery topic, baseline): p50 {d50:.1f} ms, p99 {d99:.1f} ms, "
              f"max {dmax:.1f} ms")
        print(f"ratio alert p99 / delivery p99: {a99 / d99:.2f}")


if __name__ == "__main__":
    main()
