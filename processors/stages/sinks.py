"""The sinks stage: write what the stages decided about a slice.

- dead letters (admission rejects, replays, limits, the breaker, poison records) to
  cm.dlq.<provider>.<product>, in source order, the original payload and headers plus the
  rule, the reason and the source position; each admission reject also gets its REJECT
  compliance event;
- every contract's deliveries to its cm.dlv.<contract>, in source order;
- alerts to cm.alerts, keyed by their subject.

A runner group other than the product's lead (processors/sharding.py) writes its contracts'
deliveries only: dead letters, their events and alerts are about the product, the lead's.

Outputs of source partition p go to partition p mod n of their topic (alerts: by subject),
from the runner's idempotent producer. After a crash, what the previous owner already wrote
beyond the committed offset is skipped: by source offset for dead letters and deliveries
(the partition's fence, processors/fencing.py), by id for alerts (the rules stage).

No record can stall its partition here: what would not fit in a record the broker takes is
decided before anything is written, the same way every time. A dead letter that large (a
provider can write records far larger than the mesh accepts) carries a reference instead of
the payload: its size, its SHA-256 and its source position (a delivery that large never
gets here: the contracts stage quarantines its record as quarantine:unwritable).
"""

from __future__ import annotations

import hashlib
import logging

from schemas.headers import (EVENT_ID, PAYLOAD_BYTES, PAYLOAD_SHA256, REASON, RULE, SRC_OFFSET, SRC_PARTITION,
                             SRC_TOPIC)
from streams import envelope, topics

from .. import evidence, metrics
from .base import PartitionSlice, Stage

log = logging.getLogger("citymesh.runner")

HEADROOM = 4096  # the record batch's own overhead, on top of the payload and the headers


class Sinks(Stage):
    name = "sinks"

    def __init__(self, product_id: str, provider_id: str, raw_topic: str, dlq_topic: str, producer, produce,
                 n_partitions, max_record_bytes: int, product_wide: bool = True):
        self.product_id, self.provider_id = product_id, provider_id
        self.raw_topic, self.dlq_topic = raw_topic, dlq_topic
        self.producer = producer
        self._produce = produce  # the runner's produce(topic, value, key, partition, headers, timestamp)
        self.n_partitions = n_partitions
        self.max_record_bytes = max_record_bytes  # the largest record the broker and the producer take
        self._src_topic = (SRC_TOPIC, raw_topic.encode())
        self._alert = None
        self.fenced = 0  # outputs skipped because a previous owner had written them
        self.product_wide = product_wide  # dead letters, REJECT events and alerts too (the lead group)

    def process(self, s: PartitionSlice) -> None:
        fence, p = s.fence, s.p
        fenced = 0
        # dead letters, in source order (the fence needs it), with the reason
        dead = sorted([(r.offset, r.msg, r.rule, r.reason, r.headers, True) for r in s.rejected]
                      + [(d.offset, d.msg, d.rule, d.reason, None, d.event) for d in s.dead],
                      key=lambda x: x[0]) if self.product_wide else ()
        for offset, msg, rule, reason, headers, event in dead:
            if fence is not None and fence.written(self.dlq_topic, offset):
                fenced += 1
            else:
                self.dead_letter(p, offset, msg, rule, reason)
            if event:
                h = headers if headers is not None else dict(msg.headers() or ())
                trace = h.get(envelope.H_TRACE)
                s.events.append(evidence.reject_event(
                    s.now_ms, self.product_id, self.provider_id, self.raw_topic, p, offset, rule, reason,
                    envelope.trace_id_of(trace) if trace else None,
                    (h.get(envelope.H_PARTICIPANT) or b"").decode("utf-8", "replace")))
                metrics.REJECTED.labels(self.product_id, rule).inc()
        # deliveries: whole records from the contracts and seal stages
        raw_produce = self.producer.produce
        ts = s.now_ms  # the batch's processing time: nothing of the record, the same for every contract
        for ap, result, _ in s.deliveries:
            topic, q = ap.topic, p % ap.partitions
            written_to = fence.outputs.get(topic, -1) if fence is not None else -1
            for payload, g, key, hdrs in zip(result.records, s.good, result.keys, result.headers):
                if payload is None:
                    continue
                if g.offset <= written_to:
                    fenced += 1
                    continue
                try:  # positional (callback, on_delivery, timestamp, headers): no keyword dict per call
                    raw_produce(topic, payload, key, q, None, None, ts, hdrs)
                except BufferError:
                    self._produce(topic, payload, key, q, hdrs, ts)
        # alerts, fenced by id in the rules stage
        if s.alerts and self.product_wide:
            if self._alert is None:
                import schemas
                self._alert = schemas.load("Alert")
            encode = self._alert.encode
            for alert, subject, offset in s.alerts:
                self._produce(topics.ALERTS, encode(alert), subject, None,
                              s.batch_headers + [(SRC_OFFSET, b"%d" % offset), (EVENT_ID, alert["alert_id"].encode())])
        if fenced:
            self.fenced += fenced
            metrics.FENCED.labels(self.product_id).inc(fenced)
            if fence is not None:
                log.info("partition %d: %d output(s) already written before the restart, skipped", p, fenced)

    def dead_letter(self, p: int, offset: int, msg, rule: str, reason: str) -> None:
        """The raw record to the dead-letter topic, or a reference to it when it would not fit."""
        value, headers = msg.value(), list(msg.headers() or [])
        size = len(value or b"") + sum(len(k) + len(v or b"") for k, v in headers)
        if size + HEADROOM > self.max_record_bytes:
            reason = f"{reason}; the record ({size} bytes) is not copied: see {PAYLOAD_SHA256}"
            headers = [(PAYLOAD_BYTES, b"%d" % len(value or b"")),
                       (PAYLOAD_SHA256, hashlib.sha256(value or b"").hexdigest().encode())]
            value = None
        key = msg.key()
        self._produce(self.dlq_topic, value, key if key is None or len(key) <= 1024 else key[:1024],
                      p % self.n_partitions(self.dlq_topic),
                      headers + [(RULE, rule.encode()), (REASON, reason.encode()), self._src_topic,
                                 (SRC_PARTITION, str(p).encode()), (SRC_OFFSET, b"%d" % offset)])
