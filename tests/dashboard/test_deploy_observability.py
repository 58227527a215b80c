"""deploy/ ships a Prometheus scrape config and a Grafana dashboard built on the real metric
names: every `citymesh_*` series the dashboard JSON queries is defined somewhere in the code."""

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def defined_metrics() -> set[str]:
    names = set()
    for f in [*ROOT.glob("processors/**/*.py"), *ROOT.glob("streams/**/*.py"), *ROOT.glob("dashboard/*.py"),
              *ROOT.glob("dataspace/*.py")]:
        names |= set(re.findall(r'(?:Counter|Gauge|Histogram)\(\s*"(citymesh_[a-z_]+)"', f.read_text()))
    return {n.removesuffix("_total") for n in names}


def test_grafana_queries_only_real_series():
    dash = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {re.sub(r"_(total|bucket|count|sum)$", "", n) for e in exprs for n in re.findall(r"citymesh_[a-z_]+", e)}
    assert used and used <= defined_metrics(), used - defined_metrics()
    assert {"citymesh_runner_records_in", "citymesh_breaker_state", "citymesh_ledger_height",
            "citymesh_dashboard_records"} <= used


def test_prometheus_scrapes_every_process_kind():
    cfg = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    jobs = {j["job_name"] for j in cfg["scrape_configs"]}
    assert {"citymesh-runner", "citymesh-ledger", "citymesh-dashboard", "citymesh-adapters",
            "citymesh-dataspace"} <= jobs
