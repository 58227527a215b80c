"""Prometheus series of the dashboard process, served on its own port at /metrics.

Names follow the mesh's `citymesh_*` convention (deploy/prometheus.yml scrapes them, the
Grafana dashboard in deploy/ plots them): the platform team sees whether the operations
page is being fed, not only whether it is up.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

RECORDS = Counter("citymesh_dashboard_records_total", "Records folded into the dashboard, by feed", ["feed"])
FEED_UP = Gauge("citymesh_dashboard_feed_up", "1 when the feed's last poll succeeded, 0 while it is failing", ["feed"])
LAST_RECORD = Gauge("citymesh_dashboard_feed_last_record_timestamp_seconds",
                    "Unix time of the last record a feed delivered (the page's 'no data since')", ["feed"])
CLIENTS = Gauge("citymesh_dashboard_sse_clients", "Browsers connected to the live feed")
MESSAGES = Counter("citymesh_dashboard_sse_messages_total", "Live-feed messages sent (one per flush per client)")
DRONES = Gauge("citymesh_dashboard_drones", "Drones on the map")
ALERTS_OPEN = Gauge("citymesh_dashboard_alerts_open", "Open incidents in the alert feed")
RUNNER_LAG = Gauge("citymesh_dashboard_runner_lag", "Raw records not yet committed by the product's runner group",
                   ["product"])
