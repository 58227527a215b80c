"""Prometheus metrics of the dataspace control plane (served on its own port at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from streams import topics

REQUESTS = Counter("citymesh_dsp_requests_total", "HTTP requests answered", ["route", "status"])
REQUEST_SECONDS = Histogram("citymesh_dsp_request_seconds", "Time to answer a request", ["route"],
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
SENT = Counter("citymesh_dsp_messages_sent_total", "DSP messages sent to counter-parties, by answer",
               ["message", "status"])
NEGOTIATIONS = Gauge("citymesh_dsp_negotiations", "Negotiations on cm.control.negotiations", ["side", "state"])
TRANSFERS = Gauge("citymesh_dsp_transfers", "Transfer processes on cm.control.transfers", ["side", "state"])
AGREEMENTS = Gauge("citymesh_dsp_agreements", "Finalized agreements on cm.control.agreements")


def set_gauges(store) -> None:
    """Process counts per side and state, from the control view (called on each scrape)."""
    for gauge, table in ((NEGOTIATIONS, topics.CONTROL_NEGOTIATIONS), (TRANSFERS, topics.CONTROL_TRANSFERS)):
        counts: dict[tuple[str, str], int] = {}
        for r in store.values(table):
            counts[(r["side"], r["state"])] = counts.get((r["side"], r["state"]), 0) + 1
        gauge.clear()
        for (side, state), n in counts.items():
            gauge.labels(side, state).set(n)
    AGREEMENTS.set(len(store.values(topics.CONTROL_AGREEMENTS)))
