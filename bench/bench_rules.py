"""Benchmark the operator rules engine against a dict-copy baseline measured in the same run.

UAV: the 8 default rules (heights, speeds, three ED-269 zone rules over the example city's
zones, real-name registration) on N UavTelemetry dicts spread over Shenzhen (a few % inside a
zone, ~3% above 120 m, 2.5% unregistered). Hotline: the 2 default rules (PII detection in the free text,
overdue) on N/10 HotlineTicket dicts from the simulator (~20% carry a name and phone). Baseline: a plain-Python loop
that copies every dict (the least any per-record processing does).

Prints records/s, rule evaluations/s (records x rules) and the ratio to the baseline.

    .venv/bin/python bench/bench_rules.py [--records N]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import schemas  # noqa: E402
from policy_enforcer.rules import DEFAULT_HOTLINE_RULES, DEFAULT_UAV_RULES, compile_rules  # noqa: E402
from streams.simulators import HotlineSimulator  # noqa: E402

NOW_MS = 1_790_000_000_000
ZONES = {"uas-zones": json.loads((Path(__file__).resolve().parents[1] / "examples" / "geo" /
                                  "shenzhen-uas-zones.geojson").read_text())}


def uav_records(n: int, seed: int = 1) -> list[dict]:
    rnd = random.Random(seed)
    classes = ["LIGHT", "LIGHT", "SMALL", "SMALL", "MEDIUM"]
    out = []
    for i in range(n):
        k = i % 2000
        out.append({
            "serial_number": f"1581F{k:011d}", "uin": None if k % 40 == 0 else f"UAS{k:09d}",
            "operator_id": f"OP-{k % 97:04d}", "uav_class": classes[k % 5], "flight_id": f"F{k:06d}",
            "timestamp_ms": NOW_MS + i, "lat": rnd.uniform(22.45, 22.70), "lon": rnd.uniform(113.75, 114.15),
            "alt_msl_m": 60.0, "height_agl_m": rnd.uniform(20, 118) if rnd.random() > 0.03 else rnd.uniform(121, 160),
            "speed_h_mps": rnd.uniform(0, 11) if classes[k % 5] == "MICRO" else rnd.uniform(0, 20),
            "speed_v_mps": 0.0, "heading_deg": 0.0, "battery_pct": 80.0, "source": "MAVLINK"})
    return out


def best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def run(name: str, rules, records: list[dict]) -> None:
    base = best(lambda: [dict(r) for r in records])
    hits = rules.evaluate(records, NOW_MS)
    took = best(lambda: rules.evaluate(records, NOW_MS))
    n = len(records)
    print(f"{name}: {n:,} records, {len(rules)} rules, {len(hits):,} hits "
          f"({len({h.index for h in hits}) / n:.1%} of records)")
    print(f"  dict-copy baseline      {n / base:>14,.0f} records/s")
    print(f"  rules.evaluate          {n / took:>14,.0f} records/s   {n * len(rules) / took:>14,.0f} rule evaluations/s")
    print(f"  ratio (evaluate time / baseline time) = {took / base:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    args = ap.parse_args()
    uav = compile_rules(DEFAULT_UAV_RULES, schemas.load("UavTelemetry"), ZONES, {"OP-0001": ["SZ-CIVIC-R1"]})
    run("UAV", uav, uav_records(args.records))
    sim = HotlineSimulator(seed=3)
    tickets = [sim.ticket(NOW_MS - 86_400_000 + i * 1000) for i in range(max(1, args.records // 10))]
    hot = compile_rules(DEFAULT_HOTLINE_RULES, schemas.load("HotlineTicket"))
    run("Hotline", hot, tickets)


if __name__ == "__main__":
    main()
