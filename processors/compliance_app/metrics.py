"""Prometheus metrics of the compliance app (scraped like the runners')."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from processors.metrics import serve  # noqa: F401 - the same /metrics endpoint as the runners'

ALERTS = Counter("citymesh_alerts_total", "Alerts seen on cm.alerts (runner hits and the app's own)",
                 ["rule", "severity"])
INCIDENTS_OPEN = Gauge("citymesh_incidents_open", "Escalated incidents not yet closed")
METERED = Counter("citymesh_metered_records_total", "Delivered records metered from BATCH events", ["contract"])
DUPLICATES = Counter("citymesh_metering_duplicates_total", "BATCH events seen again (same event_id), not re-counted")

