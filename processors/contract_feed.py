"""Follow cm.control.contracts so a runner hot-reloads contracts at batch boundaries.

`sync()` first asks the broker for the control topic's end offset (through an admin client,
whose connection no long-poll fetch holds up) and then reads up to it.
Called after a batch is consumed and before it is evaluated, this guarantees that any
contract change written before a record of the batch was produced is applied to that
record: a revocation is never late for records produced after it.
"""

from __future__ import annotations

import time
from typing import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

import schemas
from streams import topics
from streams.offsets import fetched_high


class ContractFeed:
    def __init__(self, client_config: dict, product_id: str, owns: Callable[[str], bool] = lambda _cid: True):
        self.product_id = product_id
        self._owns = owns  # which of the product's contracts this runner enforces (processors/sharding.py)
        self.contracts: dict[str, dict] = {}
        self._schema = schemas.load("Contract")
        self._consumer = Consumer({**client_config, "group.id": f"citymesh-contract-feed-{product_id}",
                                   "enable.auto.commit": False, "enable.partition.eof": False,
                                   # a long poll of the (mostly idle) topic answers as soon as a
                                   # change arrives; a short one would fetch 200 times a second
                                   "fetch.wait.max.ms": 100})
        md = self._consumer.list_topics(topics.CONTROL_CONTRACTS, timeout=10).topics[topics.CONTROL_CONTRACTS]
        self._parts = [TopicPartition(topics.CONTROL_CONTRACTS, p, OFFSET_BEGINNING) for p in md.partitions]
        self._consumer.assign(self._parts)
        self._position = {p.partition: 0 for p in self._parts}
        self._admin = AdminClient(client_config)
        self._latest = {TopicPartition(tp.topic, tp.partition): OffsetSpec.latest() for tp in self._parts}

    def sync(self, timeout_s: float = 10.0) -> list[tuple[dict, dict | None]]:
        """Read up to the current end; return (new contract, previous) for this product's changes."""
        # the end offset of every partition in one ListOffsets(latest) request, sent by an
        # admin client: this runs once per batch, and on the feed consumer's own connection the
        # request waited behind its long-poll fetch (a broker answers a connection's requests
        # in order): 6 ms against 0.4 ms (probe in bench/RESULTS.md)
        ends = {}
        for tp, answer in self._admin.list_offsets(self._latest, request_timeout=timeout_s).items():
            hi = answer.result().offset  # KafkaException when the broker could not answer
            if hi > self._position[tp.partition]:
                ends[tp.partition] = hi
        changes = []
        deadline = time.monotonic() + timeout_s
        while ends:
            if all(self._position[p] >= hi for p, hi in ends.items()):
                # the broker's answer can fall short (streams/offsets.py): read up to the end
                # the fetches carried too, or the rest of that batch (a contract written together
                # with others) would wait for the next sync
                ends = {p: hi for p in ends
                        if (hi := fetched_high(self._consumer, topics.CONTROL_CONTRACTS, p)) > self._position[p]}
                if not ends:
                    break
            # consume() waits until it has num_messages or the timeout passed: ask for exactly
            # what is missing (a compacted topic may have fewer), and wait in short slices, so a
            # contract change takes milliseconds to read, not the whole timeout
            missing = sum(hi - self._position[p] for p, hi in ends.items())
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topics.CONTROL_CONTRACTS} to its end within {timeout_s:.0f}s")
            for m in self._consumer.consume(max(1, min(missing, 1000)), 0.05):
                if m.error():
                    continue
                self._position[m.partition()] = m.offset() + 1
                key = m.key().decode()
                if m.value() is None:  # tombstone: the contract is gone
                    old = self.contracts.pop(key, None)
                    if old is not None:
                        changes.append(({**old, "state": "REVOKED"}, old))
                    continue
                c = self._schema.decode(m.value())
                if c["product_id"] != self.product_id or not self._owns(key):
                    continue
                old = self.contracts.get(key)
                if old is None or _differs(old, c):
                    self.contracts[key] = c
                    changes.append((c, old))
        return changes

    def close(self) -> None:
        self._consumer.close()


def _differs(a: dict, b: dict) -> bool:
    return {k: v for k, v in a.items() if k != "updated_ms"} != {k: v for k, v in b.items() if k != "updated_ms"}
