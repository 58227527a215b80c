"""Throughput of ``policy_enforcer.pii.scrub`` on the two labelled corpora.

Prints sentences/s for ``scrub`` and for a baseline measured in the same run
(one pre-compiled ``re.sub`` replacing digit runs), and their ratio, so the
figure means something on any machine; once on the generated Chinese hotline
corpus and once on the hand-labelled Chinese/English one. Also prints what
the first call costs (libphonenumber metadata and the name lists load then).
Run: ``python bench/bench_pii.py``.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

t_import = time.perf_counter()
from policy_enforcer.pii import scrub  # noqa: E402

t_import = time.perf_counter() - t_import
CORPORA = {
    "generated (zh)": ROOT / "tests" / "policy_enforcer" / "pii" / "pii_corpus.jsonl",
    "hand-labelled (zh+en)": ROOT / "tests" / "policy_enforcer" / "pii" / "labelled_corpus.jsonl",
}
_DIGITS = re.compile(r"[0-9０-９]+")


def baseline(text: str) -> str:
    return _DIGITS.sub("#", text)


def rate(fn, texts: list[str], repeat: int = 5) -> float:
    """Best-of-``repeat`` sentences per second."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for t in texts:
            fn(t)
        best = min(best, time.perf_counter() - t0)
    return len(texts) / best


def main() -> None:
    t0 = time.perf_counter()
    scrub("Call me at 415-555-0199, John Smith, 电话0755-83211234")
    print(f"import {t_import * 1000:.0f} ms, first call {(time.perf_counter() - t0) * 1000:.0f} ms")
    for label, path in CORPORA.items():
        if not path.exists():
            continue
        with path.open(encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for line in f]
        texts = texts * max(1, 20_000 // len(texts))
        scrub_rate = rate(scrub, texts)
        base_rate = rate(baseline, texts)
        avg = sum(map(len, texts)) / len(texts)
        print(f"{label}: {len(texts)} sentences, {avg:.0f} chars on average")
        print(f"  scrub:    {scrub_rate:10,.0f} sentences/s")
        print(f"  baseline: {base_rate:10,.0f} sentences/s  (one re.sub of digit runs)")
        print(f"  ratio:    {scrub_rate / base_rate:10.3f}  (scrub / baseline)")


if __name__ == "__main__":
    main()
