"""The operations page in headless Chromium while simulated drones fly through the real mesh.

A runner process enforces the operator's contract, the dashboard process reads what that
contract delivers plus cm.alerts, and a ProviderConnector publishes positions. The test
looks at the page as an operator would: drones appear and move; one flies into Bao'an
airport's no-fly zone, turns red (checked on the canvas pixels, not only in page state)
and its alert shows in the feed with an evidence link; a click shows only the fields the
contract delivers; when the runner dies the page says since when it has had no data.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.request

import pytest

from tests.dashboard import harness as h

pytestmark = pytest.mark.skipif(not h.have_browser(), reason="needs Debian's chromium and chromium-driver "
                                                             "(.ci/run installs them)")


class Flights(threading.Thread):
    """Eight drones circling over Nanshan at 2 Hz, and one that flies into the no-fly zone on cue."""

    def __init__(self, city, violator: str, conn=None):
        super().__init__(daemon=True)
        self.conn = conn or city.connector()
        self.city, self.violator = city, violator
        self.enter = threading.Event()
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        try:
            self._fly()
        finally:
            self.conn.close()

    def _fly(self) -> None:
        i = 0
        while not self.stop.is_set():
            t = int(time.time() * 1000)
            for k in range(8):
                lat, lon = 22.53 + 0.004 * k, 113.92 + 0.0008 * i + 0.002 * k
                self.conn.publish(self.city.product, h.drone(f"SN-OK-{k}", lat, lon, t, heading=80))
            lat, lon = h.NOFLY_INSIDE if self.enter.is_set() else (22.56, 113.83 + 0.0005 * i)
            self.conn.publish(self.city.product, h.drone(self.violator, lat, lon, t, heading=0))
            self.conn.flush(10)
            self.sent += 9
            i += 1
            self.stop.wait(0.5)


def near(rgba: list[int], rgb: tuple[int, int, int], tol: int = 10) -> bool:
    """Canvas colours come back within a few units of what was drawn (colour management)."""
    return all(abs(a - b) <= tol for a, b in zip(rgba[:3], rgb))


def js(driver, script: str):
    return driver.execute_script(script)


def wait_js(driver, script: str, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = js(driver, script)
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout_s}s (last {value!r})")


def click_drone(driver, serial: str) -> str:
    """Click the drone's marker as a user would and return the detail panel's text.

    The position is taken relative to the canvas element just before each click, and a
    click that lands while the layout is still settling (the alert feed grows beside the
    map) is repeated, as a user would click again.
    """
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    layer = driver.find_element(By.ID, "layer")
    for _ in range(3):
        dx, dy = js(driver, f"""const d = cmDash.S.drones.get({json.dumps(serial)}); const [x, y] = cmDash.project(d.lat, d.lon);
                               const r = document.getElementById('layer').getBoundingClientRect();
                               return [Math.round(x / cmDash.dpr - r.width / 2), Math.round(y / cmDash.dpr - r.height / 2)]""")
        ActionChains(driver).move_to_element_with_offset(layer, dx, dy).click().perform()
        try:
            return wait_js(driver, f"""const e = document.getElementById('drone-detail');
                                      return e.dataset.serial === {json.dumps(serial)} && e.innerText""", 3, "detail")
        except AssertionError:
            continue
    raise AssertionError(f"three clicks on {serial} did not open its detail panel")


def pixel(driver, serial: str) -> list[int]:
    """RGBA of the drone layer at the drone's projected position."""
    return js(driver, f"""
        const d = cmDash.S.drones.get({json.dumps(serial)}); const [x, y] = cmDash.project(d.lat, d.lon);
        return Array.from(document.getElementById('layer').getContext('2d').getImageData(Math.round(x), Math.round(y), 1, 1).data);""")


def test_drones_move_a_nofly_entry_turns_red_and_alerts(tmp_path, client_config, bootstrap, unique):
    city = h.make_ops_city(tmp_path, client_config, unique)
    violator = f"SN-NOFLY-{unique}"
    runner, _ = h.spawn_runner(city, bootstrap, tmp_path)
    ledger, _ = h.spawn_ledger(city, bootstrap, tmp_path)
    dash, url = h.spawn_dashboard(city, bootstrap, tmp_path)
    flights = Flights(city, violator)
    driver = None
    try:
        flights.start()
        driver = h.browser()
        driver.get(url)
        wait_js(driver, "return window.cmDash && cmDash.project && cmDash.S.connected", 30, "page loaded")
        assert "City operations" in driver.title and "城市运行" in driver.title

        # drones appear and move
        wait_js(driver, "return cmDash.S.drones.size >= 9", 90, "nine drones on the map")
        before = js(driver, "const d = cmDash.S.drones.get('SN-OK-3'); return [d.lat, d.lon]")
        wait_js(driver, f"const d = cmDash.S.drones.get('SN-OK-3'); return d.lon > {before[1]} + 0.001", 20,
                "SN-OK-3 moved east")
        assert js(driver, f"return cmDash.colorOf({json.dumps(violator)})") == "#2e7d32"
        assert near(pixel(driver, "SN-OK-3"), (0x2e, 0x7d, 0x32))

        # the no-fly entry turns the drone red and raises an alert
        flights.enter.set()
        red = f"return cmDash.colorOf({json.dumps(violator)}) === '#e00000'"
        wait_js(driver, red, 30, "violator red from the runner's own zone alert")
        assert near(pixel(driver, violator), (0xe0, 0, 0)), "the canvas shows the drone red"
        row = wait_js(driver, f"""const r = document.querySelector('#alert-rows tr[data-subject="{violator}"]');
                                 return r && r.innerText""", 10, "alert row in the feed")
        assert "uav-zone-prohibited" in row and "CRITICAL" in row
        link = js(driver, f"""return document.querySelector('#alert-rows tr[data-subject="{violator}"] a').href""")
        assert "/evidence?id=" in link

        # a click shows the latest telemetry, only the fields the operator's contract delivers
        detail = click_drone(driver, violator)
        assert "height_agl_m" in detail and "22.645" in detail and f"{unique}-ops-uav" in detail
        assert "battery_pct" not in detail and "operator_id" not in detail  # not granted by the contract
        driver.save_screenshot(str(tmp_path / "dashboard.png"))
        assert (tmp_path / "dashboard.png").stat().st_size > 10_000

        # the evidence link answers from the ledger (JSON), once the sink has chained the alert
        aid_t = link.split("id=")[1].split("&t=")
        deadline, ev = time.monotonic() + 30, {}
        while time.monotonic() < deadline and not ev.get("found"):
            try:
                ev = json.loads(urllib.request.urlopen(link, timeout=5).read())
            except urllib.error.HTTPError as err:
                ev = json.loads(err.read())
            time.sleep(0.5)
        assert ev["found"] and ev["entries"][0]["event_id"] == aid_t[0], ev

        # the mesh panel counts what the runner delivered under the operator's contract
        delivered = wait_js(driver, f"""const r = [...document.querySelectorAll('#contract-rows tr')]
                                       .find(r => r.cells[0].innerText === '{unique}-ops-uav');
                                       return r && +r.cells[2].innerText""", 30, "delivered count")
        assert 0 < delivered <= flights.sent

        # a runner dies: the page says since when it has had no data, instead of pretending
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
        gap = wait_js(driver, "const g = document.getElementById('map-gap'); return !g.hidden && g.innerText", 40,
                      "the map says no data since")
        assert "no data since" in gap
        stalled = wait_js(driver, f"""const r = document.querySelector('#runner-rows tr[data-product="{city.product}"]');
                                     return r && r.innerText.includes('stalled') && r.innerText""", 40, "stalled")
        assert "since" in stalled
        driver.save_screenshot(str(tmp_path / "dashboard-gap.png"))
    finally:
        flights.stop.set()
        if driver is not None:
            driver.quit()
        h.stop(dash, runner, ledger)
