"""Prometheus metrics of the ledger sink (its own module so the sink's /metrics page shows
only ledger series, not the runner's)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from processors.metrics import serve  # noqa: F401 - the same /metrics endpoint as the runners'

HEIGHT = Gauge("citymesh_ledger_height", "Seq of the last ledger entry")
ENTRIES = Counter("citymesh_ledger_entries_total", "Entries appended to the ledger", ["kind"])
DUPLICATES = Counter("citymesh_ledger_duplicates_total", "Replayed events (event id already in the ledger) skipped")
FENCED = Counter("citymesh_ledger_fenced_total", "Records below the stored position of their partition, skipped")
REJECTED = Counter("citymesh_ledger_rejected_total", "Records that are not a ComplianceEvent or Alert", ["reason"])
CHECKPOINTS = Counter("citymesh_ledger_checkpoints_total", "Signed checkpoints written")
BATCH_SECONDS = Histogram("citymesh_ledger_batch_seconds", "Time to decode, chain and commit one batch",
                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))


