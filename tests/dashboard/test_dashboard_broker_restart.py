"""The operations page across a broker restart, against a broker of the test's own.

Issue 7: the dashboard "keeps working when the broker restarts or a runner dies, showing the
gap honestly". The runner death is test_dashboard_browser.py's; this is the restart. The
session's shared broker cannot be restarted under the other tests, so this test starts an
embedded broker of its own on a fixed port, runs a real runner and a real dashboard
against it, publishes drones with a real ProviderConnector, and looks at the page in
headless Chromium:

1. drones appear and move;
2. the broker stops: the page says the broker is unreachable and since when there is no
   data (the broker feed is down, the map's gap message shows), instead of showing the
   last positions as if they were live;
3. a new broker starts on the same address and the operator re-applies the topology (the
   embedded broker keeps everything in memory, so the topics come back empty): without a
   page reload the broker feed comes back up, the gap message goes away, the drones move
   again and every other feed and the runner's row recover too. The runner and the
   dashboard processes got there by themselves: both are the processes started at the
   beginning, alive, with no traceback in their logs.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from deploy.broker import BrokerError, EmbeddedBroker, free_port
from streams import keyring, topics
from streams.connectors import ProviderConnector, PublishError
from streams.control import read_table
from streams.settings import Settings
from tests.dashboard import harness as h
from tests.dashboard.test_dashboard_browser import Flights, js, wait_js

pytestmark = pytest.mark.skipif(not h.have_browser(), reason="needs Debian's chromium and chromium-driver "
                                                             "(.ci/run installs them)")

BROKER = "const f = cmDash.S.feeds.find((f) => f.name === 'broker');"
BROKER_UP = BROKER + " return !!f && f.up === true"
BROKER_DOWN = BROKER + " return !!f && f.up === false && f"
GAP = "const g = document.getElementById('map-gap'); return g.hidden ? null : g.innerText"
GAP_HIDDEN = "return document.getElementById('map-gap').hidden"
SN3 = "cmDash.S.drones.get('SN-OK-3')"


class Outlasting:
    """The flights' connector, made to outlast a broker outage as a provider's publisher would.

    A flush that fails is noted and publishing carries on; librdkafka reconnects by itself.
    What it cannot do is resume an idempotent producer on a broker that lost its state: the
    restarted embedded broker (memory only) answers UNKNOWN_PRODUCER_ID to every retry and
    librdkafka's local epoch bump never gets past it, so nothing is acknowledged again. So
    after a failed flush the publisher opens a fresh connector (a new producer id), once the
    broker answers and the product is in the catalog again (the topology re-applied).
    """

    def __init__(self, city):
        self.city = city
        self.conn = city.connector()
        self.errors: list[str] = []
        self.reopened = 0

    def publish(self, *args, **kw) -> None:
        self.conn.publish(*args, **kw)

    def flush(self, _timeout_s: float) -> None:
        try:
            self.conn.flush(2.0)  # short: the flights carry on at their pace during the outage
        except PublishError as exc:
            self.errors.append(str(exc))
            try:
                catalog = read_table(self.city.client, topics.CONTROL_CATALOG, timeout_s=2)
            except Exception as exc:  # noqa: BLE001 - the broker is still away
                self.errors.append(f"reopen: {exc}")
                return
            if self.city.product in catalog:
                self._close(self.conn)
                self.conn = ProviderConnector(keyring.load(self.city.keys, self.city.provider), self.city.client,
                                              catalog)
                self.reopened += 1

    def close(self) -> None:
        self._close(self.conn)

    def _close(self, conn) -> None:
        """Release a connector, whatever it could not deliver (that is noted): a producer left
        open keeps reconnecting to this test's broker, logging every refusal, after it is gone."""
        try:
            conn.close(2.0)
        except PublishError as exc:
            self.errors.append(f"close: {exc}")


def start_broker(port: int, log: Path, timeout_s: float = 20.0) -> EmbeddedBroker:
    """A broker on `port`; the port of the one just stopped can take a moment to be free again."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return EmbeddedBroker(port=port, log_path=log).start()
        except BrokerError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def no_traceback(log: Path) -> None:
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, f"{log.name}:\n{text[-4000:]}"


def test_page_shows_the_gap_and_recovers_when_the_broker_restarts(tmp_path, unique):
    port = free_port()  # once: the restarted broker listens at the same address
    broker = start_broker(port, tmp_path / "broker.log")
    client = Settings(bootstrap=broker.bootstrap).client_config()
    runner = dash = driver = flights = None
    try:
        city = h.make_ops_city(tmp_path, client, unique)
        runner, _ = h.spawn_runner(city, broker.bootstrap, tmp_path)
        dash, url = h.spawn_dashboard(city, broker.bootstrap, tmp_path)
        publisher = Outlasting(city)
        flights = Flights(city, f"SN-X-{unique}", publisher)
        flights.start()
        driver = h.browser()
        driver.get(url)
        wait_js(driver, "return window.cmDash && cmDash.project && cmDash.S.connected", 30, "page loaded")
        js(driver, "window.sameLoad = true")  # gone if the page were reloaded

        # 1. drones appear and move, the broker feed is up and the map shows no gap
        wait_js(driver, "return cmDash.S.drones.size >= 9", 60, "nine drones on the map")
        lon = js(driver, f"return {SN3}.lon")
        wait_js(driver, f"return {SN3}.lon > {lon}", 20, "SN-OK-3 moved east")
        wait_js(driver, BROKER_UP, 10, "broker feed up")
        assert js(driver, GAP) is None

        # 2. the broker stops: the broker feed goes down and the map says since when there is no data
        broker.stop()
        t_stop_ms = int(time.time() * 1000)
        down = wait_js(driver, BROKER_DOWN, 30, "broker feed down")
        assert down["down_since_ms"] and down["error"], down
        gap = wait_js(driver, GAP, 10, "the map's gap message")
        last = js(driver, "return cmDash.S.lastDroneMsg")
        shown = js(driver, f"return new Date({last}).toLocaleTimeString('en-GB', {{hour12: false}})")
        assert "broker unreachable" in gap and f"no data since {shown}" in gap, gap
        # (a record fetched just before the broker went could still be folded in a poll later)
        assert last <= t_stop_ms + 1000, "the page names a drone update from before the broker stopped"
        assert js(driver, "return document.getElementById('health').dataset.state") == "down"
        # the drones' last positions turn grey (stale) instead of passing for live ones, and no
        # update comes in the meantime
        wait_js(driver, "return cmDash.colorOf('SN-OK-3') === '#9aa3ab'", 20, "SN-OK-3 drawn stale (grey)")
        assert js(driver, "return cmDash.S.lastDroneMsg") == last
        assert js(driver, BROKER_DOWN) and js(driver, GAP) == gap
        driver.save_screenshot(str(tmp_path / "dashboard-broker-down.png"))

        # 3. a new broker at the same address; the operator re-applies the topology (the embedded
        # broker keeps everything in memory: the topics came back empty)
        broker = start_broker(port, tmp_path / "broker.log")
        t_up_ms = int(time.time() * 1000)
        city.apply()
        # the same page, not reloaded, recovers: broker feed up, gap gone, drones moving again
        wait_js(driver, BROKER_UP, 45, "broker feed up again")
        wait_js(driver, GAP_HIDDEN, 45, "the map's gap message gone")
        lon = wait_js(driver, f"const d = {SN3}; return d.seen > {t_up_ms} && d.lon", 45,
                      "SN-OK-3 updated after the restart")
        wait_js(driver, f"return {SN3}.lon !== {lon}", 20, "SN-OK-3 moves again")
        # and so does the rest of the page: every feed up, evidence counted again, the runner ok
        wait_js(driver, f"""return cmDash.S.feeds.length >= 4 && cmDash.S.feeds.every((f) => f.up)
                           && cmDash.S.feeds.find((f) => f.name === 'compliance').last_record_ms > {t_up_ms}""",
                45, "every feed up, compliance events read again")
        wait_js(driver, "return document.getElementById('health').dataset.state === 'ok'", 15, "health ok")
        wait_js(driver, f"""const r = document.querySelector('#runner-rows tr[data-product="{city.product}"]');
                           return r && r.querySelector('.status-ok')""", 15, "runner ok")
        assert js(driver, "return window.sameLoad === true && cmDash.S.connected")
        driver.save_screenshot(str(tmp_path / "dashboard-broker-back.png"))
        assert publisher.errors  # the publisher did go through the outage

        # neither process crashed or restarted: the same pids, alive, no traceback in their logs
        assert runner.poll() is None, (tmp_path / "runner.log").read_text()[-4000:]
        assert dash.poll() is None, (tmp_path / "dashboard.log").read_text()[-4000:]
        no_traceback(tmp_path / "runner.log")
        no_traceback(tmp_path / "dashboard.log")
    finally:
        if flights is not None:
            flights.stop.set()
        if driver is not None:
            driver.quit()
        h.stop(dash, runner)
        if flights is not None:
            flights.join(15)
        broker.stop()
