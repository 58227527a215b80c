"""Topic administration that is safe to repeat: create what is missing, grow what is short,
set what the topology says on topics that already exist (a product's retention changed in
the topology reaches its topics on the next `citymesh apply`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic

log = logging.getLogger("citymesh.admin")

KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588  # Apache Kafka's message.max.bytes default


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int = 1
    config: dict = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash(self.name)


COMPACTED = {"cleanup.policy": "compact"}


def ensure_topics(admin: AdminClient, specs: list[TopicSpec], replication: int = 1,
                  timeout_s: float = 15.0) -> dict[str, str]:
    """Create missing topics, add partitions where a topic has fewer than asked, and set the
    spec's settings on a topic that exists with others (only those the spec names).

    Returns name -> "created" | "grown" | "cannot-grow" | "reconfigured" | "cannot-reconfigure" |
    "exists" (a topic grown and reconfigured: "grown"). Never deletes or shrinks anything:
    running it twice is a no-op the second time.
    """
    result: dict[str, str] = {}
    existing = admin.list_topics(timeout=timeout_s).topics
    missing = [s for s in specs if s.name not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, replication, config={k: str(v) for k, v in s.config.items()})
             for s in missing], operation_timeout=timeout_s, request_timeout=timeout_s)
        for name, fut in futures.items():
            try:
                fut.result()
                result[name] = "created"
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
                result[name] = "exists"
    grow = [s for s in specs if s.name in existing and len(existing[s.name].partitions) < s.partitions]
    if grow:
        futures = admin.create_partitions([NewPartitions(s.name, s.partitions) for s in grow],
                                          operation_timeout=timeout_s, request_timeout=timeout_s)
        for name, fut in futures.items():
            try:
                fut.result()
                result[name] = "grown"
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError._UNSUPPORTED_FEATURE:
                    raise
                # e.g. the embedded broker: the topic keeps its partitions, and apply says so
                result[name] = "cannot-grow"
    _reconfigure(admin, [s for s in specs if s.name in existing and s.config], result, timeout_s)
    for s in specs:
        result.setdefault(s.name, "exists")
    _wait_for_leaders(admin, [n for n, st in result.items() if st in ("created", "grown")], timeout_s)
    return result


def _reconfigure(admin: AdminClient, specs: list[TopicSpec], result: dict[str, str], timeout_s: float) -> None:
    """Set the settings of `specs` whose topics hold other values (one describe, one alter)."""
    if not specs:
        return
    described = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in specs],
                                       request_timeout=timeout_s)
    by_name = {res.name: fut for res, fut in described.items()}
    changes = []
    for s in specs:
        try:
            current = by_name[s.name].result()
        except KafkaException as exc:
            log.warning("topic %s: its settings cannot be read, so they are left as they are: %s", s.name,
                        exc.args[0].str())
            result.setdefault(s.name, "cannot-reconfigure")
            continue
        entries = [ConfigEntry(k, str(v), incremental_operation=AlterConfigOpType.SET) for k, v in s.config.items()
                   if k not in current or current[k].value != str(v)]
        if entries:
            changes.append(ConfigResource(ConfigResource.Type.TOPIC, s.name, incremental_configs=entries))
    if not changes:
        return
    for res, fut in admin.incremental_alter_configs(changes, request_timeout=timeout_s).items():
        try:
            fut.result()
            result.setdefault(res.name, "reconfigured")
        except KafkaException as exc:
            log.warning("topic %s keeps its settings, the broker refused %s: %s", res.name,
                        ", ".join(f"{e.name}={e.value}" for e in res.incremental_configs), exc.args[0].str())
            result.setdefault(res.name, "cannot-reconfigure")


def max_message_bytes(admin: AdminClient, topic: str, timeout_s: float = 10.0) -> int:
    """The largest record batch the broker takes into `topic`: the topic's max.message.bytes,
    else the brokers' message.max.bytes, else Apache Kafka's default (a broker that does not
    describe its configuration, as the embedded one, gets the default: what every broker takes)."""
    resources = [ConfigResource(ConfigResource.Type.TOPIC, topic)]
    try:
        brokers = admin.list_topics(timeout=timeout_s).brokers
        resources += [ConfigResource(ConfigResource.Type.BROKER, str(b)) for b in sorted(brokers)[:1]]
        for key, res in zip(("max.message.bytes", "message.max.bytes"), resources):
            entry = admin.describe_configs([res], request_timeout=timeout_s)[res].result().get(key)
            if entry is not None and entry.value and str(entry.value).isdigit():
                return int(entry.value)
    except KafkaException:
        pass
    return KAFKA_DEFAULT_MAX_MESSAGE_BYTES


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout_s: float) -> None:
    """Until every partition of these topics has a leader. Apache Kafka answers CreateTopics
    before the new partitions have leaders; a read right after (the control tables) would get
    NOT_LEADER_FOR_PARTITION."""
    import time
    deadline = time.monotonic() + timeout_s
    waiting = set(names)
    while waiting:
        md = admin.list_topics(timeout=timeout_s).topics
        waiting = {n for n in waiting if n not in md or md[n].error is not None or not md[n].partitions
                   or any(p.leader < 0 for p in md[n].partitions.values())}
        if waiting and time.monotonic() > deadline:
            raise TimeoutError(f"topics without leaders after {timeout_s:.0f}s: {sorted(waiting)[:5]}")
        if waiting:
            time.sleep(0.05)


class TopicCounter:
    """Record counts per topic (sum over partitions of high - low watermark), for live views.
    (On a compacted topic that is offsets, not live keys.)"""

    def __init__(self, client_config: dict):
        from confluent_kafka import Consumer
        self._consumer = Consumer({**client_config, "group.id": "citymesh-counter", "enable.auto.commit": False})

    def counts(self, prefix: str = "cm.", timeout_s: float = 5.0) -> dict[str, int]:
        from confluent_kafka import TopicPartition
        from .offsets import end_offsets
        md = self._consumer.list_topics(timeout=timeout_s)
        parts = [TopicPartition(name, p) for name, t in md.topics.items() if name.startswith(prefix)
                 for p in t.partitions]
        out = {name: 0 for name in sorted(md.topics) if name.startswith(prefix)}
        for (name, _), (lo, hi) in end_offsets(self._consumer, parts, timeout_s).items():
            out[name] += max(0, hi - lo)
        return out

    def close(self) -> None:
        self._consumer.close()
