"""Every long-running process's /metrics, scraped over HTTP, shows the documented series with
the values that match what the test sent: the runner (records in, decisions per contract,
operator-rule hits), the ledger sink (height = entries appended), the dashboard (records
folded per feed, feed health, its own lag view of the runner).
"""

from __future__ import annotations

import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.dashboard import harness as h


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one /metrics page."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def wait_value(url: str, name: str, expect, timeout_s: float = 60, **labels) -> dict:
    deadline, samples = time.monotonic() + timeout_s, {}
    while time.monotonic() < deadline:
        samples = scrape(url)
        if expect(value(samples, name, **labels)):
            return samples
        time.sleep(0.5)
    raise AssertionError(f"{name}{labels} = {value(samples, name, **labels)} at {url}")


def test_each_process_exposes_the_documented_series(tmp_path, client_config, bootstrap, unique):
    city = h.make_ops_city(tmp_path, client_config, unique)
    contract = f"{unique}-ops-uav"
    runner, runner_port = h.spawn_runner(city, bootstrap, tmp_path)
    ledger, ledger_port = h.spawn_ledger(city, bootstrap, tmp_path)
    dash, dash_url = h.spawn_dashboard(city, bootstrap, tmp_path)
    runner_m = f"http://127.0.0.1:{runner_port}/metrics"
    ledger_m = f"http://127.0.0.1:{ledger_port}/metrics"
    dash_m = dash_url + "metrics"
    conn = city.connector()
    sent = 0
    try:
        # phase 1: publish until the dashboard's contract feed has joined and folded a record
        deadline = time.monotonic() + 90
        while True:
            conn.publish(city.product, h.drone("SN-WARMUP", 22.53, 113.93, int(time.time() * 1000)))
            conn.flush(10)
            sent += 1
            folded = value(scrape(dash_m), "citymesh_dashboard_records_total", feed=contract) or 0
            if folded > 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert folded > 0, "the dashboard never received the operator's deliveries"
        # it reads from the newest record on (positions are worth only their latest value), so what
        # came before it joined is not counted; from here on every delivery must be
        time.sleep(3)
        base = value(scrape(dash_m), "citymesh_dashboard_records_total", feed=contract)

        # phase 2: a known number of records, three of them inside the no-fly zone
        t0 = int(time.time() * 1000)
        for i in range(40):
            conn.publish(city.product, h.drone(f"SN-M-{i % 8}", 22.53 + i * 1e-4, 113.93, t0 + i))
        for i in range(3):
            conn.publish(city.product, h.drone("SN-M-NOFLY", *h.NOFLY_INSIDE, t0 + 100 + i))
        conn.flush(10)
        sent += 43

        r = wait_value(runner_m, "citymesh_runner_records_in_total", lambda v: v == sent, product=city.product)
        assert value(r, "citymesh_runner_decisions_total", product=city.product, contract=contract,
                     decision="deliver", rule="") == sent
        assert value(r, "citymesh_runner_active_contracts", product=city.product) == 1
        assert value(r, "citymesh_runner_batch_seconds_count", product=city.product) >= 1
        r = wait_value(runner_m, "citymesh_runner_alerts_total", lambda v: v == 3, product=city.product,
                       rule="uav-zone-prohibited", severity="CRITICAL")

        d = wait_value(dash_m, "citymesh_dashboard_records_total", lambda v: v == base + 43, feed=contract)
        assert value(d, "citymesh_dashboard_feed_up", feed=contract) == 1
        assert value(d, "citymesh_dashboard_feed_up", feed="broker") == 1
        wait_value(dash_m, "citymesh_dashboard_drones", lambda v: v == 10)  # 8 + the violator + the warm-up drone
        d = wait_value(dash_m, "citymesh_dashboard_runner_lag", lambda v: v == 0, product=city.product)
        d = wait_value(dash_m, "citymesh_dashboard_alerts_open", lambda v: v is not None and v >= 1)

        # the ledger: its height is what it appended (it started empty), and it holds our evidence
        lg = wait_value(ledger_m, "citymesh_ledger_height", lambda v: v is not None and v > 0)
        appended = sum(v for (name, _), v in lg.items() if name == "citymesh_ledger_entries_total")
        assert appended == value(lg, "citymesh_ledger_height")
        assert any(name == "citymesh_ledger_entries_total" and ("kind", "alert") in labels and v >= 3
                   for (name, labels), v in lg.items()), [k for k in lg if k[0].startswith("citymesh_ledger")]
    finally:
        h.stop(dash, runner, ledger)
