"""Lost link: an airborne drone whose telemetry stopped, from the operator's UAV deliveries.

The delivery topic carries every fix the operator may read, at the fleet's full rate (the busiest
topic the app reads), so this is a `BatchReader` (reader.py) holding the last fix per drone in
memory. A drone is silent when its last fix was *delivered* (the record's timestamp) more than
`lost_link_s` ago; silence is judged only on partitions read to their end, so a backlog being
caught up cannot look like a silent fleet. On (re)start the state is read again from the topic's
last `lookback` (a drone's fixes share a partition by its serial number): a drone that fell silent
while the app was down is still reported, one silent for longer than that is not. Alert ids are
hashes of (drone, last fix), so a restarted app that reports a drone again reports it with the same id.
"""

from __future__ import annotations

import time

from confluent_kafka import OFFSET_END, TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, Producer, TopicPartition

import schemas
from schemas.headers import ORIGIN as H_ORIGIN

from . import logic
from .config import AppConfig
from .reader import BatchReader

ALERT = schemas.load("Alert")


def _now_ms() -> int:
    return int(time.time() * 1000)


class LostLink(BatchReader):
    name = "lost-link"

    def __init__(self, cfg: AppConfig, client_config: dict, contracts):
        super().__init__()
        self.client, self.contracts, self.topic = client_config, contracts, cfg.uav_topic
        self.group, self.alerts_topic = f"{cfg.app_id}-lost-link", cfg.alerts_topic
        self.lost_ms, self.airborne_m = int(cfg.lost_link_s * 1000), cfg.airborne_m
        self.lookback_ms = max(60_000, 30 * self.lost_ms)
        self.product = (contracts.by_id.get(cfg.uav_contract) or {}).get("product_id", "uav-telemetry")
        self.origin = [(H_ORIGIN, cfg.app_id.encode())]
        self.last: dict[str, dict] = {}          # serial -> its last fix
        self.reported: set[tuple[str, int]] = set()  # (serial, fix time) already reported

    def read(self) -> None:
        consumer = Consumer({**self.client, "group.id": self.group, "enable.auto.commit": False,
                             "enable.partition.eof": True})
        producer = Producer({**self.client, "linger.ms": 5})
        try:
            parts = list(consumer.list_topics(self.topic, timeout=10).topics[self.topic].partitions)
            since = _now_ms() - self.lookback_ms
            starts = consumer.offsets_for_times([TopicPartition(self.topic, p, since) for p in parts], timeout=10)
            consumer.assign([TopicPartition(self.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
                             for tp in starts])
            self.last.clear()
            at_end: set[int] = set()
            next_check = time.monotonic() + 1.0
            while not self.stopping.is_set():
                for m in consumer.consume(2000, 0.2):
                    if m.error() is not None:
                        if m.error().code() == KafkaError._PARTITION_EOF:
                            at_end.add(m.partition())
                        continue
                    at_end.discard(m.partition())
                    self._take(m)
                if time.monotonic() >= next_check:
                    self._report(producer, at_end)
                    next_check = time.monotonic() + 1.0
        finally:
            consumer.close()
            producer.flush(5)

    def _take(self, m) -> None:
        r = self.contracts.decode(m.value(), self.topic)
        if r is None:
            return
        serial, t = r.get("serial_number"), r.get("timestamp_ms")
        if serial is None or t is None:
            return
        prev = self.last.get(serial)
        if prev is not None and prev["t"] > t:
            return  # an older fix arriving late says nothing about the link now
        kind, ts = m.timestamp()
        self.last[serial] = {"t": t, "h": r.get("height_agl_m"), "lat": r.get("lat"), "lon": r.get("lon"),
                             "flight": r.get("flight_id"), "recv_ms": ts if kind != TIMESTAMP_NOT_AVAILABLE else _now_ms(),
                             "topic": m.topic(), "partition": m.partition(), "offset": m.offset()}

    def _report(self, producer: Producer, at_end: set[int]) -> None:
        now, sent = _now_ms(), []
        for serial, last in self.last.items():
            h = last["h"]
            if (h is None or h <= self.airborne_m or now - last["recv_ms"] <= self.lost_ms
                    or last["partition"] not in at_end or (serial, last["t"]) in self.reported):
                continue
            alert = logic.lost_link_alert(self.product, serial, last, now - last["recv_ms"], now)
            producer.produce(self.alerts_topic, ALERT.encode(alert), serial.encode(), headers=self.origin)
            sent.append((serial, last["t"]))
        if sent:
            if producer.flush(10):
                raise RuntimeError(f"{len(sent)} lost-link alerts not written in 10 s")
            self.reported.update(sent)  # only once written: a failed write is reported again after the restart
