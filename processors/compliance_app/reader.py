"""A reader of one busy topic on a thread of its own beside the faust worker.

faust takes a record at a time through its stream (~110 µs here) and a table write per record
costs ~190 µs more (bench/bench_compliance_app.py --faust: 3.3k events/s), so the app's
high-volume inputs (every runner's BATCH events, the operator's UAV deliveries at the fleet's
rate) are read in batches through librdkafka instead; the
low-volume, stateful work (incidents, surges) stays in faust. A reader that fails starts over
from what is durable (its `read()` sets itself up again), so a broker outage does not end it.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("citymesh.compliance")


class BatchReader:
    """Subclasses implement `read()`: set up, then loop until `stopping` is set."""

    name = "reader"

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.read()
            except Exception:  # noqa: BLE001 - a broker or state failure: start over from what is durable
                log.exception("%s failed; starting over", self.name)
                self.stopping.wait(2.0)

    def read(self) -> None:
        raise NotImplementedError
