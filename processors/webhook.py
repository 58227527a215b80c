"""HTTP push delivery: a consumer that cannot read Kafka gets its records POSTed in batches.

Records stay in the contract's delivery topic until the endpoint has taken them: offsets
are committed only after a 2xx answer, so an endpoint that fails or times out loses
nothing, and delivery resumes from the first record it has not acknowledged. A circuit
breaker stops hammering a failing endpoint: after `min_requests` with a failure share over
`failure_ratio` it opens for `open_s`, then one probe batch goes out half-open, and a
success closes it. Each batch carries an `Idempotency-Key` (contract and offset ranges)
and every record its partition and offset, so a receiver can drop the rare resend after a
timeout whose request did arrive.

    python -m processors.webhook --contract CONTRACT_ID
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import signal
import time
import urllib.error
import urllib.request

from confluent_kafka import Consumer, TopicPartition
from prometheus_client import Counter

import schemas
from policy_enforcer.limits import CLOSED, HALF_OPEN, OPEN, BreakerConfig, CircuitBreaker
from streams import topics
from streams.control import read_table
from streams.settings import get_settings, group_session

from . import evidence, metrics

log = logging.getLogger("citymesh.webhook")

BREAKER_STATE = metrics.BREAKER_STATE  # shared with the runner's provider breakers
PUSHED = Counter("citymesh_webhook_records_total", "Records acknowledged by the endpoint", ["contract"])
REQUESTS = Counter("citymesh_webhook_requests_total", "POSTs by outcome", ["contract", "outcome"])
_STATE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


class WebhookWorker:
    def __init__(self, contract_id: str, client_config: dict, session_timeout_ms: int = 6000):
        contract = read_table(client_config, topics.CONTROL_CONTRACTS).get(contract_id)
        if contract is None or not contract.get("push_json"):
            raise SystemExit(f"contract {contract_id!r} has no push delivery configured")
        self.contract = contract
        self.push = json.loads(contract["push_json"])
        self.topic = topics.delivery(contract_id)
        self.schema = schemas.RecordSchema.from_definition(json.loads(contract["delivery_schema_json"]))
        self.breaker = CircuitBreaker(BreakerConfig(
            failure_ratio=self.push["failure_ratio"], window_ms=60_000, min_samples=self.push["min_requests"],
            open_ms=int(self.push["open_s"] * 1000), probe_samples=1))
        self.consumer = Consumer({**client_config, "group.id": f"citymesh-webhook.{contract_id}",
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                  **group_session(session_timeout_ms)})
        self.consumer.subscribe([self.topic])
        from confluent_kafka import Producer
        self._events = Producer({**client_config, "enable.idempotence": True})
        self._pending: list = []  # the batch not yet acknowledged, resent as is
        self._paused: list[TopicPartition] = []
        self._stopping = False
        BREAKER_STATE.labels("webhook", contract_id).set(0)

    @property
    def contract_id(self) -> str:
        return self.contract["contract_id"]

    def step(self) -> int:
        """Send at most one batch; returns the number of records the endpoint acknowledged."""
        now = int(time.time() * 1000)
        state = self.breaker.allow(now)
        if state == OPEN:
            self._hold()
            return 0
        if self._paused:
            held, self._paused = self._paused, []
            try:
                self.consumer.resume(held)
            except Exception as exc:  # a rebalance while held hands out fresh, unpaused partitions
                log.info("resume after breaker: %s", exc)
        if not self._pending:
            self._pending = [m for m in self.consumer.consume(self.push["batch_size"], 0.5) if not m.error()]
            if not self._pending:
                return 0
        ok = self._post(self._pending)
        transition = self.breaker.record(int(time.time() * 1000), 1 if ok else 0, 0 if ok else 1)
        if transition:
            self._breaker_event(*transition)
        if not ok:
            return 0
        offsets = {}
        for m in self._pending:
            offsets[m.partition()] = m.offset() + 1
        self.consumer.commit(offsets=[TopicPartition(self.topic, p, o) for p, o in offsets.items()],
                             asynchronous=False)
        n = len(self._pending)
        self._pending = []
        PUSHED.labels(self.contract_id).inc(n)
        return n

    def _hold(self) -> None:
        """Wait out an open breaker while staying in the group: the assignment is paused so
        that polling (needed within max.poll.interval.ms) hands out no records; a record
        that was already queued is sought back to, never dropped."""
        if not self._paused:
            self._paused = self.consumer.assignment()
            if self._paused:
                self.consumer.pause(self._paused)
        m = self.consumer.poll(0.2)
        if m is not None and not m.error():
            self.consumer.seek(TopicPartition(m.topic(), m.partition(), m.offset()))

    def _post(self, msgs: list) -> bool:
        ranges = {}
        for m in msgs:
            lo, hi = ranges.get(m.partition(), (m.offset(), m.offset()))
            ranges[m.partition()] = (min(lo, m.offset()), max(hi, m.offset()))
        key = hashlib.sha256(json.dumps([self.contract_id, sorted(ranges.items())]).encode()).hexdigest()[:32]
        body = json.dumps({
            "contract": self.contract_id, "version": self.contract["version"],
            "records": [{"partition": m.partition(), "offset": m.offset(),
                         "key": m.key().decode("utf-8", "replace") if m.key() else None,
                         "value": self.schema.decode(m.value())} for m in msgs]},
            ensure_ascii=False).encode()
        req = urllib.request.Request(self.push["url"], data=body, method="POST", headers={
            "Content-Type": "application/json", "Idempotency-Key": key, **self.push.get("headers", {})})
        try:
            with urllib.request.urlopen(req, timeout=self.push["timeout_s"]) as resp:
                ok = 200 <= resp.status < 300
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            log.warning("push to %s failed: %s", self.push["url"], exc)
            ok = False
        REQUESTS.labels(self.contract_id, "ok" if ok else "failed").inc()
        return ok

    def _breaker_event(self, old: str, new: str) -> None:
        BREAKER_STATE.labels("webhook", self.contract_id).set(_STATE_VALUE[new])
        log.warning("breaker of %s: %s -> %s", self.push["url"], old, new)
        now = int(time.time() * 1000)
        ev = evidence.ComplianceEvent(
            evidence.event_id("breaker", self.contract_id, old, new, now), now, evidence.Kind.BREAKER,
            self.contract["product_id"], self.contract["provider_id"], self.contract_id, self.contract["version"],
            self.contract["consumer_id"], rule="breaker:webhook", reason=f"{old} -> {new}", source_topic=self.topic,
            details={"endpoint": self.push["url"]})
        self._events.produce(topics.COMPLIANCE, schemas.load("ComplianceEvent").encode(ev.record()),
                             self.contract_id.encode())
        self._events.flush(10)

    def run(self, until=None) -> None:
        while not self._stopping and (until is None or not until()):
            self.step()

    def stop(self, *_args) -> None:
        self._stopping = True

    def close(self) -> None:
        self.consumer.close()
        self._events.flush(10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m processors.webhook", description=__doc__.split("\n")[0])
    ap.add_argument("--contract", required=True)
    ap.add_argument("--metrics-port", type=int, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = get_settings()
    port = metrics.serve(args.metrics_port if args.metrics_port is not None else settings.metrics_port)
    worker = WebhookWorker(args.contract, settings.client_config(), settings.session_timeout_ms)
    log.info("pushing %s to %s; metrics on :%d", worker.topic, worker.push["url"], port)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    try:
        worker.run()
    finally:
        worker.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
