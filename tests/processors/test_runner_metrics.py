"""A runner's /metrics endpoint reports what it did, in numbers that match the topics."""

import re
import urllib.request

from processors import metrics
from processors.runner import Runner
from streams import topics
from streams.simulators import FleetSimulator
from tests.mesh_fixtures import make_city, read_topic


def _scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(citymesh_[a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def test_metrics_match_what_was_delivered(tmp_path, client_config, unique):
    city = make_city(tmp_path, client_config, unique)
    records = []
    fleet = FleetSimulator(drones=30, violators=0.3, seed=2)
    while len(records) < 1500:
        records += fleet.tick(1.0)
    with city.connector() as conn:
        for r in records:
            conn.publish(city.product, r)
    port = metrics.serve(0)
    runner = Runner(city.product, client_config, city.keys)
    try:
        runner.run(max_idle_s=2.0)
        runner.update_lag()
    finally:
        runner.close()
    got = _scrape(port)
    routes = len(read_topic(client_config, topics.delivery(f"{unique}-routes")))
    product = f'product="{city.product}"'
    assert got[f"citymesh_runner_records_in_total{{{product}}}"] == len(records)
    deliver = got[f'citymesh_runner_decisions_total{{contract="{unique}-routes",decision="deliver",{product},rule=""}}']
    assert deliver == routes > 0
    dropped = sum(v for k, v in got.items() if k.startswith("citymesh_runner_decisions_total")
                  and f'contract="{unique}-routes"' in k and 'decision="drop"' in k)
    assert deliver + dropped == len(records)
    assert got[f"citymesh_runner_active_contracts{{{product}}}"] == 2
    assert got[f"citymesh_runner_batch_seconds_count{{{product}}}"] >= 1
    lags = [v for k, v in got.items() if k.startswith("citymesh_runner_consumer_lag") and product in k]
    assert len(lags) == 3 and all(v == 0 for v in lags)
