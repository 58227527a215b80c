"""Prometheus metrics of the stream processors (names documented in README, scraped by deploy/)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from streams.exposition import serve_metrics

RECORDS_IN = Counter("citymesh_runner_records_in_total", "Raw records consumed", ["product"])
DECISIONS = Counter("citymesh_runner_decisions_total", "Per-contract decisions", ["product", "contract", "decision", "rule"])
REJECTED = Counter("citymesh_runner_rejected_total", "Records sent to the dead-letter topic", ["product", "rule"])
FENCED = Counter("citymesh_runner_fenced_total", "Outputs skipped after a restart because they were already written",
                 ["product"])
BATCH_SECONDS = Histogram("citymesh_runner_batch_seconds", "Time to enforce, write and commit one batch", ["product"],
                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
TRANSACTIONS = Counter("citymesh_runner_transactions_total",
                       "Batches written in one Kafka transaction with their offsets, by outcome (committed, aborted)",
                       ["product", "outcome"])
LAG = Gauge("citymesh_runner_consumer_lag", "Records behind the end of the raw topic", ["product", "partition"])
ACTIVE_CONTRACTS = Gauge("citymesh_runner_active_contracts", "Contracts enforced on the product", ["product"])
# breakers of every kind: a provider stream (kind=provider, subject=product), a push endpoint (kind=webhook)
BREAKER_STATE = Gauge("citymesh_breaker_state", "0 closed, 1 half-open, 2 open", ["kind", "subject"])
BREAKER_STATE_VALUE = {"CLOSED": 0, "HALF_OPEN": 1, "OPEN": 2}
QUARANTINED = Counter("citymesh_breaker_quarantined_total",
                      "Raw records sent to the dead-letter topic unprocessed while the provider's breaker was open",
                      ["product"])
QUARANTINED_RECORDS = Counter("citymesh_runner_quarantined_total",
                              "Raw records set aside to the dead-letter topic because they could not be processed "
                              "or written (rule quarantine:poison or quarantine:unwritable)", ["product", "rule"])
HELD_PARTITIONS = Gauge("citymesh_runner_held_partitions",
                        "Source partitions held because the broker kept refusing their outputs "
                        "(rule quarantine:partition, processors/quarantine.py)", ["product"])
RATELIMIT_THROTTLED = Counter("citymesh_ratelimit_throttled_total",
                              "Times an ingress limit paused a partition (back-pressure)", ["product"])
RATELIMIT_PAUSED = Gauge("citymesh_ratelimit_paused_partitions", "Source partitions paused by an ingress limit",
                         ["product"])
RATELIMIT_DROPPED = Counter("citymesh_ratelimit_dropped_total",
                            "Records dropped by an ingress limit (subject=ingress) or a contract quota",
                            ["product", "subject", "action"])
RATELIMIT_PASSED = Counter("citymesh_ratelimit_passed_total",
                           "Records a limit let through (quota: beyond it, as a sample or an aggregate)",
                           ["product", "subject", "action"])


def serve(port: int) -> int:
    """Start this process's /metrics (port 0: the OS picks one); returns the port."""
    return serve_metrics(port).server_port
