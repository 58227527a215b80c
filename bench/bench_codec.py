"""The C Avro codec (schemas/native.py) against fastavro, its reference, in the same run.

What the runner does per record: decode a raw body (admission), encode a delivery from its
field values (a contract's plan, positional) or from a dict (compliance events, alerts).
Baseline: fastavro's schemaless reader and writer (strict, defaults allowed, as the
fallback in schemas/loader.py), on the same records. Prints µs per record and the speed-up;
best of 5 rounds each (this machine swings by ±20 % from run to run).

    .venv/bin/python bench/bench_codec.py [--records N]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fastavro  # noqa: E402

import schemas  # noqa: E402
from bench.common import machine  # noqa: E402
from schemas import native  # noqa: E402
from streams.simulators import FleetSimulator  # noqa: E402


def _best(fn, items, rounds: int = 5) -> float:
    """Best µs per item over `rounds` passes."""
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for x in items:
            fn(x)
        best = min(best, (time.perf_counter() - t) / len(items) * 1e6)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=20_000)
    n = ap.parse_args().records
    s = schemas.load("UavTelemetry")
    fleet, records = FleetSimulator(drones=500, seed=5, violators=0.1), []
    while len(records) < n:
        records += fleet.tick(1.0)
    records = records[:n]
    names = [f["name"] for f in s.definition["fields"]]
    values = [[r[k] for k in names] for r in records]
    bodies = [s.encode_body(r) for r in records]

    def fa_read(b):
        bio = io.BytesIO(b)
        return fastavro.schemaless_reader(bio, s.parsed, None)

    def fa_write(r):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, s.parsed, r, strict_allow_default=True)
        return buf.getvalue()

    dec, enc, fenc = native.decoder(s.definition), native.encoder(s.definition), native.fields_encoder(s.definition)
    assert all(dec(b, 0)[0] == fa_read(b) for b in bodies[:1000])
    assert all(enc(r) == fa_write(r) == fenc(*v) for r, v in zip(records[:1000], values[:1000]))
    rows = [("decode a body", _best(fa_read, bodies), _best(lambda b: dec(b, 0), bodies)),
            ("encode a dict", _best(fa_write, records), _best(enc, records)),
            ("encode field values", _best(fa_write, records), _best(lambda v: fenc(*v), values))]
    print(f"machine: {machine()}; fastavro {fastavro.__version__}; {n} UavTelemetry records (~{len(bodies[0])} B)")
    print("command: .venv/bin/python bench/bench_codec.py" + (f" --records {n}" if n != 20_000 else ""))
    for what, base, ours in rows:
        print(f"{what:<22} fastavro {base:6.2f} us   C {ours:5.2f} us   speed-up {base / ours:5.1f}x")


if __name__ == "__main__":
    main()
