"""Follow cm.control.contracts so a runner hot-reloads contracts at batch boundaries.

`sync()` first asks the broker for the control topic's end offset and then reads up to it.
Called after a batch is consumed and before it is evaluated, this guarantees that any
contract change written before a record of the batch was produced is applied to that
record: a revocation is never late for records produced after it.
"""

from __future__ import annotations

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

import schemas
from streams import topics


class ContractFeed:
    def __init__(self, client_config: dict, product_id: str):
        self.product_id = product_id
        self.contracts: dict[str, dict] = {}
        self._schema = schemas.load("Contract")
        self._consumer = Consumer({**client_config, "group.id": f"citymesh-contract-feed-{product_id}",
                                   "enable.auto.commit": False, "enable.partition.eof": False})
        md = self._consumer.list_topics(topics.CONTROL_CONTRACTS, timeout=10).topics[topics.CONTROL_CONTRACTS]
        self._parts = [TopicPartition(topics.CONTROL_CONTRACTS, p, OFFSET_BEGINNING) for p in md.partitions]
        self._consumer.assign(self._parts)
        self._position = {p.partition: 0 for p in self._parts}

    def sync(self, timeout_s: float = 10.0) -> list[tuple[dict, dict | None]]:
        """Read up to the current end; return (new contract, previous) for this product's changes."""
        ends = {}
        for tp in self._parts:
            _, hi = self._consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=timeout_s,
                                                         cached=False)
            if hi > self._position[tp.partition]:
                ends[tp.partition] = hi
        changes = []
        while ends:
            for m in self._consumer.consume(1000, timeout_s):
                if m.error():
                    continue
                self._position[m.partition()] = m.offset() + 1
                if m.offset() + 1 >= ends.get(m.partition(), 0):
                    ends.pop(m.partition(), None)
                key = m.key().decode()
                if m.value() is None:  # tombstone: the contract is gone
                    old = self.contracts.pop(key, None)
                    if old is not None:
                        changes.append(({**old, "state": "REVOKED"}, old))
                    continue
                c = self._schema.decode(m.value())
                if c["product_id"] != self.product_id:
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
