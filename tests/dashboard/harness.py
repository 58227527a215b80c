"""A small city with an operator, and the real processes the dashboard tests drive.

The operator holds one contract on the drone product (`<u>-ops-uav`) and the city has the
ED-269 zones of the example (Bao'an airport no-fly zone among them) both as a geofence the
map draws and as the zone list of an operator rule, so a runner that evaluates operator
rules raises an Alert when a drone enters it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.mesh_fixtures import EXAMPLES, City

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

# Bao'an airport control zone (PROHIBITED): lon 113.77-113.86, lat 22.60-22.69
NOFLY_INSIDE = (22.645, 113.815)


def city_yaml(u: str) -> str:
    geo = EXAMPLES / "geo"
    return textwrap.dedent(f"""
    participants:
      - {{id: {u}-skyway, name: SkyWay, roles: [provider]}}
      - {{id: {u}-ops, name: City operations centre (城市运行中心), roles: [operator]}}
    products:
      - id: {u}-uav
        provider: {u}-skyway
        name: UAV telemetry
        schema: UavTelemetry
        partitions: 3
        retention: 1d
        key_field: serial_number
        event_time_field: timestamp_ms
    geofences:
      urban: {{file: {geo / 'shenzhen-urban.geojson'}}}
      uas-zones: {{file: {geo / 'shenzhen-uas-zones.geojson'}}}
    contracts:
      - id: {u}-ops-uav
        product: {u}-uav
        consumer: {u}-ops
        purposes: [city-operations]
        policy:
          permission:
            fields: [serial_number, uav_class, flight_id, timestamp_ms, lat, lon, height_agl_m, speed_h_mps, heading_deg]
            constraints:
              - {{type: purpose, in: [city-operations]}}
    operator_rules:
      - product: {u}-uav
        fold: false   # one alert per hit: the tests count them
        rules:
          - {{id: uav-zone-prohibited, type: zone, severity: CRITICAL, zones: uas-zones, restrictions: [PROHIBITED]}}
    """)


def make_ops_city(tmp_path: Path, client: dict, u: str) -> City:
    city = City(u, tmp_path / "city.yaml", tmp_path / "keys", client)
    city.apply(city_yaml(u))
    return city


def env_for(city: City, bootstrap: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYMESH_")}
    return {**env, "CITYMESH_BOOTSTRAP": bootstrap, "CITYMESH_STATE_DIR": str(city.path.parent / "state"),
            "CITYMESH_KEYS_DIR": str(city.keys), "PYTHONPATH": str(ROOT)}


def spawn(argv: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_log(path: Path, pattern: str, proc: subprocess.Popen, timeout_s: float = 60) -> re.Match:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        m = re.search(pattern, path.read_text(errors="replace"))
        if m:
            return m
        assert proc.poll() is None, f"{proc.args} exited:\n{path.read_text()[-3000:]}"
        time.sleep(0.1)
    raise AssertionError(f"no {pattern!r} in {path} within {timeout_s}s:\n{path.read_text()[-3000:]}")


def spawn_runner(city: City, bootstrap: str, out: Path) -> tuple[subprocess.Popen, int]:
    log = out / "runner.log"
    p = spawn(["-m", "processors.runner", "--product", city.product, "--metrics-port", "0"],
              env_for(city, bootstrap), log)
    port = int(wait_log(log, r"metrics on :(\d+)", p).group(1))
    return p, port


def spawn_ledger(city: City, bootstrap: str, out: Path) -> tuple[subprocess.Popen, int]:
    log = out / "ledger.log"
    env = {**env_for(city, bootstrap), "CITYMESH_OPERATOR": f"{city.u}-ops"}
    p = spawn(["-m", "processors.ledger.sink", "--metrics-port", "0"], env, log)
    port = int(wait_log(log, r"metrics: http://127\.0\.0\.1:(\d+)/metrics", p).group(1))
    return p, port


def spawn_dashboard(city: City, bootstrap: str, out: Path) -> tuple[subprocess.Popen, str]:
    log = out / "dashboard.log"
    p = spawn(["-m", "dashboard", "--listen", "127.0.0.1:0", "--topology", str(city.path),
               "--operator", f"{city.u}-ops"], env_for(city, bootstrap), log)
    url = wait_log(log, r"dashboard on (http://\S+/)", p).group(1)
    return p, url


def stop(*procs: subprocess.Popen) -> None:
    for p in procs:
        if p is not None and p.poll() is None:
            p.terminate()
    for p in procs:
        if p is not None:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def drone(serial: str, lat: float, lon: float, t_ms: int, heading: float = 0.0, h: float = 60.0) -> dict:
    return {"serial_number": serial, "uin": "UAS000000001", "operator_id": "CHN-OP-123456", "uav_class": "LIGHT",
            "flight_id": f"F-{serial}", "timestamp_ms": t_ms, "lat": lat, "lon": lon, "alt_msl_m": h + 10,
            "height_agl_m": h, "speed_h_mps": 12.0, "speed_v_mps": 0.0, "heading_deg": heading, "battery_pct": 80.0,
            "source": "SIMULATOR"}


def browser(width: int = 1400, height: int = 900):
    """Headless Debian chromium through chromedriver (Selenium): the real page in a real browser."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              f"--window-size={width},{height}", "--lang=zh-CN"):
        opts.add_argument(a)
    return webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))


def have_browser() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()
