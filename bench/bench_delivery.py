"""What one more contract costs a runner per record, beyond the produce of its delivery, when
its policy's evaluation is shared with other contracts (issue 14: "per extra contract
≤ 0.5 µs above the raw fan-out's").

A contract whose policy another contract of the product has shares that contract's
evaluation and encoded outputs (policy_enforcer/plan.py, `output_key`); what it still pays
per delivery is its own: the sealed source reference and traceparent (AES under its own key,
policy_enforcer/provenance.py), its header list, its delivery tag (HMAC under its own key,
streams/delivery.py) and the seal digest (processors/stages/seal.py), issue 15's guarantees
that a consumer can check what it got and cannot link it to another consumer's records. The
raw fan-out, the issue's baseline, pays none of that: it copies the bytes.

This script times exactly that work — `Plan.deliver` of contracts sharing one policy (the
first one of each slice evaluates; its time is left out), `tag_deliveries`, the seal's
digest and its Ed25519 signature — on slices of 500 records (the runner's slice at 50
contracts), in the same run as the baseline it is compared with: producing those
deliveries, with their five headers, to a topic of their own per contract, on the broker
(the runner's producer settings), every ten slices flushed. Medians of the rounds.

    .venv/bin/python bench/bench_delivery.py [--contracts 10] [--records 100000] [--rounds 5] [--keywords-too]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time

import bench_runner as b
from common import cluster, machine

from policy_enforcer import ContractTerms, compile_plan, derive_contract_key
from policy_enforcer.plan import SOURCE_REF_AT, TRACE_AT, SourceBatch
from processors.runner import PRODUCER_CONFIG
from schemas import load
from schemas.headers import AUTH
from streams.admin import TopicSpec, ensure_topics
from streams.delivery import seal_digest, seal_message, tag_deliveries
from streams.envelope import Tagger

SLICE = 500
FLUSH_EVERY = 10
POLICY = {"permission": {"constraints": [{"type": "purpose", "in": ["airspace-supervision"]}]}}


def slices(n: int):
    schema = load("UavTelemetry")
    records = b.make_records(n)
    values = [schema.encode(r) for r in records]
    traces = [b"00-%s-%s-01" % (os.urandom(16).hex().encode(), os.urandom(8).hex().encode()) for _ in records]
    return [(records[i:i + SLICE], values[i:i + SLICE], list(range(i, min(i + SLICE, n))), traces[i:i + SLICE])
            for i in range(0, n, SLICE)]


def contracts(k: int):
    """k contracts with one policy, each with its own keys, as the contracts stage holds them."""
    schema, secret = load("UavTelemetry"), os.urandom(32)
    out = []
    for i in range(k):
        key = derive_contract_key(secret, f"bench-c{i}")
        plan = compile_plan(ContractTerms(f"bench-c{i}", 1, "bench-regulator", ["airspace-supervision"], POLICY),
                            schema, key)
        out.append((plan, Tagger(plan.delivery_key), f"bench-c{i}"))
    assert len({p.output_key for p, _, _ in out}) == 1, "the contracts should share their outputs"
    return out


def one_round(work, plans, now_ms: int, signer, producer, topics: list[str], keywords: bool = False) -> list[float]:
    """Seconds spent, on the contracts after the first (which evaluates for all), in
    `Plan.deliver`, the tags, the seal, and the produce of their deliveries (each contract to
    a topic of its own, flushed every FLUSH_EVERY slices: a runner's batch holds several).
    Slice by slice, as the runner goes, so that no more is held than a batch. The produce call
    is the runner's (processors/stages/sinks.py: positional), or with `keywords` the same call
    with headers and timestamp by name."""
    spent = [0.0, 0.0, 0.0, 0.0]
    clock, produce = time.perf_counter, producer.produce
    for n, (records, values, offsets, traces) in enumerate(work):
        batch = SourceBatch(0, records, values, offsets, traces)
        delivered = []
        for i, (plan, tagger, _) in enumerate(plans):
            t0 = clock()
            result = plan.deliver(batch, now_ms)
            t1 = clock()
            contract = plan.static_headers[0][1]
            tags = tag_deliveries(tagger, contract, now_ms, result.records, result.keys, result.headers,
                                  SOURCE_REF_AT, TRACE_AT, AUTH)
            t2 = clock()
            tags = [t for t in tags if t is not None]
            signer.sign(seal_message(contract, 0, len(tags), seal_digest(tags)))  # the slice's seal
            t3 = clock()
            if i:
                spent[0] += t1 - t0
                spent[1] += t2 - t1
                spent[2] += t3 - t2
                delivered.append((topics[i], result))
        t0 = clock()
        for topic, result in delivered:
            for payload, key, hdrs in zip(result.records, result.keys, result.headers):
                if payload is None:
                    continue
                while True:
                    try:
                        if keywords:
                            produce(topic, payload, key, 0, headers=hdrs, timestamp=now_ms)
                        else:
                            produce(topic, payload, key, 0, None, None, now_ms, hdrs)
                        break
                    except BufferError:
                        producer.poll(0.05)
        if n % FLUSH_EVERY == FLUSH_EVERY - 1 or n == len(work) - 1:
            producer.flush(60)
        spent[3] += clock() - t0
    return spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--contracts", type=int, default=10)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--keywords-too", action="store_true",
                    help="every other round produces with headers and timestamp passed by name: what the "
                         "runner's positional call saves per delivery")
    args = ap.parse_args()
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    print(f"machine: {machine()}")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    work, plans, signer = slices(args.records), contracts(args.contracts), Ed25519PrivateKey.generate()
    extra = (args.contracts - 1) * args.records  # deliveries timed per round
    with cluster() as bootstrap:
        conf = {"bootstrap.servers": bootstrap}
        u = f"bd{time.time_ns() % 10**6}"
        topics = [f"bench.delivery.{u}.{i}" for i in range(args.contracts)]
        ensure_topics(AdminClient(conf), [TopicSpec(t, 1) for t in topics])
        producer = Producer({**conf, **PRODUCER_CONFIG})  # the runner's
        for t in topics:  # each topic's metadata and leader known before anything is timed
            producer.produce(t, b"warm-up", partition=0)
        producer.flush(30)
        gc.freeze()
        rounds = []  # (deliver, tags, seal, produce) µs per extra contract and record
        by_name = []  # with --keywords-too: the produce of the rounds that passed headers and timestamp by name
        for r in range(args.rounds * (2 if args.keywords_too else 1)):
            now_ms = int(time.time() * 1000)
            keywords = args.keywords_too and r % 4 in (1, 2)  # alternating which goes first
            spent = [1e6 * x / extra for x in one_round(work, plans, now_ms, signer, producer, topics, keywords)]
            d, t, s, p = spent
            if keywords:
                by_name.append(p)
                print(f"round {r + 1}: its produce, headers and timestamp by name: {p:.2f} µs", flush=True)
                continue
            rounds.append(spent)
            print(f"round {r + 1}: per extra contract and record: deliver {d:.2f} + tags {t:.2f} + seal {s:.2f} "
                  f"= {d + t + s:.2f} µs; its produce {p:.2f} µs ({(d + t + s) / p:.2f})", flush=True)
        d, t, s, p = (statistics.median(x) for x in zip(*rounds))
        w = statistics.median(sum(x[:3]) for x in rounds)
        print(f"median ({args.contracts} contracts of one policy, slices of {SLICE}): per extra contract and record "
              f"deliver {d:.2f} + tags {t:.2f} + seal {s:.2f}, together {w:.2f} µs; produce {p:.2f} µs; "
              f"work / produce {w / p:.2f}")
        if by_name:
            k = statistics.median(by_name)
            print(f"the produce with headers and timestamp by name: {k:.2f} µs; positional (the runner's) {p:.2f} µs "
                  f"({p / k:.2f}); {k - p:.2f} µs less per delivery")


if __name__ == "__main__":
    main()
