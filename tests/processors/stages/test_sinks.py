"""The sinks stage on its own (no broker): what it hands a real producer that has no broker
to reach. Purging the producer's queue returns every record it was given (topic, partition,
key, value) in the order given, through the producer's own delivery reports. (Delivery
reports carry no headers, so the dead letters' rule and reason headers are checked by the
broker tests, tests/processors/test_runner.py.)"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, Producer

import schemas
from processors import evidence
from processors.fencing import PartitionFence
from processors.stages.base import DeadLetter, PartitionSlice
from processors.stages.seal import Seal
from processors.stages.sinks import HEADROOM, Sinks
from streams import envelope, topics
from tests.processors.stages.samples import (MAX_RECORD_BYTES, NOW, UAV, Provider, admitted_slice, contracts_stage,
                                             uav)

DLQ = topics.dead_letter(UAV["provider_id"], UAV["product_id"])
DLQ_PARTITIONS = 3


class Queued:
    """A producer without a broker, and what it was given to write."""

    def __init__(self):
        self.reports: list = []
        self.producer = Producer({"on_delivery": lambda err, msg: self.reports.append((err, msg))})

    def produce(self, topic, value, key, partition, headers, timestamp=0):
        """The runner's produce(topic, value, key, partition, headers, timestamp)."""
        if partition is None:
            self.producer.produce(topic, value, key, headers=headers, timestamp=timestamp)
        else:
            self.producer.produce(topic, value, key, partition, headers=headers, timestamp=timestamp)

    def written(self) -> list[tuple]:
        """(topic, partition, key, value) of every record queued, in order."""
        self.producer.purge()
        self.producer.poll(0)
        assert all(err.code() == KafkaError._PURGE_QUEUE for err, _ in self.reports)
        out = [(m.topic(), m.partition(), m.key(), m.value()) for _, m in self.reports]
        self.reports.clear()
        return out


@pytest.fixture
def queued():
    q = Queued()
    yield q
    q.producer.purge()
    q.producer.flush(0)


def sinks(q: Queued, max_record_bytes: int = MAX_RECORD_BYTES) -> Sinks:
    return Sinks(UAV["product_id"], UAV["provider_id"], UAV["raw_topic"], DLQ, q.producer, q.produce,
                 lambda topic: DLQ_PARTITIONS, max_record_bytes)


def mixed_slice(p: int = 4, fence=None) -> PartitionSlice:
    """Offsets 10..14 of partition p: 11 refused by admission, 13 over a limit (a dead letter
    without an event of its own), the rest admitted."""
    provider = Provider()
    msgs = [provider.message(uav(o), o, p, payload=b"not an avro record" if o == 11 else None) for o in range(10, 15)]
    s = PartitionSlice(p, msgs, NOW, fence)
    provider.admission().process(s)
    s.dead.append(DeadLetter(msgs[3], 13, "ratelimit:ingress", "over the provider's ingress limit"))
    s.good = [g for g in s.good if g.offset != 13]
    return s


def test_dead_letters_in_source_order_and_a_reject_event_for_each_admission_reject(queued):
    s = mixed_slice()
    sinks(queued).process(s)
    assert queued.written() == [(DLQ, 4 % DLQ_PARTITIONS, b"SN000000000011", b"not an avro record"),
                                (DLQ, 4 % DLQ_PARTITIONS, b"SN000000000013", s.msgs[3].value())]
    [event] = s.events
    assert (event.kind, event.rule, event.first_offset, event.source_partition) == \
        ("REJECT", "reject:not-avro", 11, 4)
    assert event.counts == {"reject:not-avro": 1}
    assert event.details == {"claimed_participant": "skyway"}
    assert event.trace_id == envelope.trace_id_of(dict(s.msgs[1].headers())[envelope.H_TRACE])


def test_deliveries_go_to_each_contracts_topic_in_source_order(queued):
    stage = contracts_stage(["logistics-routes", "regulator-uav"])
    s = admitted_slice(Provider(), [uav(0), uav(1, lat=22.0, lon=113.5), uav(2)], p=4, first=20)
    stage.process(s)
    Seal().process(s)
    sinks(queued).process(s)
    expected = []
    for ap, result, _ in s.deliveries:
        expected += [(ap.topic, 4 % ap.partitions, key, payload) for payload, key in zip(result.records, result.keys)
                     if payload is not None]
    written = queued.written()
    assert written == expected
    assert [t for t, *_ in written] == ["cm.dlv.logistics-routes"] * 2 + ["cm.dlv.regulator-uav"] * 3


def test_after_a_crash_what_the_fence_says_was_written_is_skipped(queued):
    stage = contracts_stage(["regulator-uav"])
    topic = stage.plans["regulator-uav"].topic
    fence = PartitionFence(10, outputs={topic: 12, DLQ: 11})
    s = mixed_slice(fence=fence)
    stage.process(s)
    out = sinks(queued)
    out.process(s)
    [(_, result, _)] = s.deliveries
    # the dead letter of 11 and the deliveries of 10 and 12 were written before the crash
    assert [g.offset for g in s.good] == [10, 12, 14]
    assert queued.written() == [(DLQ, 1, b"SN000000000013", s.msgs[3].value()),
                                (topic, 4, result.keys[2], result.records[2])]
    assert out.fenced == 3
    # the reject event is queued all the same: the runner drops the ids a crashed batch already wrote
    assert [e.first_offset for e in s.events if e.kind == "REJECT"] == [11]


def test_a_dead_letter_too_large_for_the_broker_is_a_reference(queued):
    s = mixed_slice()
    size = len(s.msgs[1].value()) + sum(len(k) + len(v) for k, v in s.msgs[1].headers())
    sinks(queued, max_record_bytes=size + HEADROOM - 1).process(s)
    assert [value for _, _, _, value in queued.written()] == [None, None]
    s = mixed_slice()
    sinks(queued, max_record_bytes=size + HEADROOM + 1000).process(s)
    assert [value for _, _, _, value in queued.written()] == [b"not an avro record", s.msgs[3].value()]


def test_alerts_go_to_the_alerts_topic_keyed_by_their_subject(queued):
    s = PartitionSlice(4, [Provider().message(uav(0), 7, 4)], NOW)
    alert = evidence.runner_alert(NOW, "uav-telemetry", "quarantine:poison", "HIGH", "uav-telemetry:4", "why",
                                  UAV["raw_topic"], 4, 7)
    s.alerts.append((alert, b"uav-telemetry:4", 7))
    sinks(queued).process(s)
    [(topic, partition, key, value)] = queued.written()
    assert (topic, partition, key) == (topics.ALERTS, None, b"uav-telemetry:4")
    assert schemas.load("Alert").decode(value) == alert
