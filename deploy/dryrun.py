"""`citymesh contract dry-run`: the sandbox. What would this contract's consumer receive,
and why would each other record be dropped, on sample data, writing nothing.

The same compiled plan as the live runner, so a dry run is a faithful preview. The
dataspace API (POST /api/dry-run) runs the same preview on a policy still under negotiation.
"""

from __future__ import annotations

import json
import sys
import time

from confluent_kafka import Consumer, TopicPartition

import policy_enforcer
import schemas
from streams import keyring, topics
from streams.control import read_table
from streams.offsets import end_offsets, take


def _sample_from_file(path: str) -> list[dict]:
    out = []
    with (sys.stdin if path == "-" else open(path, encoding="utf-8")) as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise SystemExit(f"{path}:{lineno}: not JSON: {exc}") from None
    return out


def sample_from_topic(client: dict, topic: str, schema: schemas.RecordSchema, n: int) -> list[dict]:
    c = Consumer({**client, "group.id": "citymesh-dry-run", "enable.auto.commit": False})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        parts = []
        per = max(1, n // max(1, len(md.partitions)))
        for (_, p), (lo, hi) in end_offsets(c, [TopicPartition(topic, p) for p in md.partitions]).items():
            if hi > lo:
                parts.append(TopicPartition(topic, p, max(lo, hi - per)))
        c.assign(parts)
        out, deadline = [], time.monotonic() + 10
        while len(out) < n and time.monotonic() < deadline:
            for m in take(c, 1000, 0.5):
                if not m.error() and m.value() and m.value()[:10] == schema.header:
                    out.append(schema.decode(m.value()))
        return out[:n]
    finally:
        c.close()


def preview(plan: policy_enforcer.Plan, records: list[dict], now_ms: int) -> tuple[list[dict], dict]:
    """One line per record (decision; what would be delivered, or the rule and why not) and the counts."""
    result = plan.evaluate(records, now_ms)
    lines = []
    for i, (decision, delivered, rule) in enumerate(result):
        line = {"record": i, "decision": decision}
        if decision == policy_enforcer.DELIVER:
            line["delivered"] = delivered
            key = result.keys[i]
            line["key"] = None if key is None else key.decode("utf-8", "replace")
        else:
            line["rule"] = rule
            if i in result.messages:
                line["why"] = result.messages[i]
        lines.append(line)
    return lines, result.counts


def dry_run(client: dict, keys_dir, contract_id: str, sample: str | None, from_topic: int | None,
            now_ms: int | None = None, out=sys.stdout) -> dict:
    """Print one JSON line per sample record (decision, rule, what would be delivered) and a summary."""
    contract = read_table(client, topics.CONTROL_CONTRACTS).get(contract_id)
    if contract is None:
        raise SystemExit(f"no contract {contract_id!r} in {topics.CONTROL_CONTRACTS}")
    product = read_table(client, topics.CONTROL_CATALOG)[contract["product_id"]]
    plan = policy_enforcer.plan_for(contract, product, keyring.mesh_secret(keys_dir))
    records = (_sample_from_file(sample) if sample is not None
               else sample_from_topic(client, product["raw_topic"], plan.source_schema, from_topic or 100))
    lines, counts = preview(plan, records, now_ms if now_ms is not None else int(time.time() * 1000))
    for line in lines:
        print(json.dumps(line, ensure_ascii=False, default=str), file=out)
    summary = {"contract": contract_id, "version": contract["version"], "state": contract["state"],
               "records": len(records), "counts": counts,
               "note": None if contract["state"] == "ACTIVE" else f"contract is {contract['state']}: the live runner "
                                                                 "delivers nothing under it"}
    print(json.dumps({"summary": summary}, ensure_ascii=False), file=out)
    return summary
