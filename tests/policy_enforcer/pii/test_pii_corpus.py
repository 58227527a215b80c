"""Precision/recall of the detector on the labelled hotline corpus.

An entity counts as found only when kind, start and end all match exactly.
"""

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from policy_enforcer.pii import KINDS, detect

HERE = Path(__file__).parent
CORPUS = HERE / "pii_corpus.jsonl"
# The generated corpus covers the Chinese formats; the other kinds are
# measured on the hand-labelled corpus (test_pii_labelled_corpus.py).
GENERATED_KINDS = {"id_card", "mobile", "landline", "plate", "bank_card", "email", "name"}


def _load_generator():
    spec = importlib.util.spec_from_file_location("pii_make_corpus", HERE / "make_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def records():
    with CORPUS.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_committed_corpus_is_what_the_script_generates(records):
    gen = _load_generator()
    assert CORPUS.read_text(encoding="utf-8") == gen.render(gen.build()), (
        "pii_corpus.jsonl is stale: run python tests/policy_enforcer/pii/make_corpus.py"
    )
    assert len(gen.HAND_WRITTEN) >= 40


def test_corpus_is_well_formed(records):
    assert len(records) >= 500
    kinds = Counter()
    for r in records:
        for e in r["entities"]:
            assert e["kind"] in KINDS
            assert 0 <= e["start"] < e["end"] <= len(r["text"])
            kinds[e["kind"]] += 1
    assert set(kinds) == GENERATED_KINDS <= set(KINDS)
    assert min(kinds[k] for k in ("id_card", "mobile", "landline")) >= 100
    assert sum(1 for r in records if not r["entities"]) >= 50  # plenty of PII-free sentences


def _score(records):
    tp, fp, fn = Counter(), Counter(), Counter()
    misses = []
    for r in records:
        gold = {(e["kind"], e["start"], e["end"]) for e in r["entities"]}
        pred = {(m.kind, m.start, m.end) for m in detect(r["text"])}
        for kind, *_ in gold & pred:
            tp[kind] += 1
        for item in pred - gold:
            fp[item[0]] += 1
            misses.append(f"FP {item[0]:9} {r['text'][item[1]:item[2]]!r} in {r['text']!r}")
        for item in gold - pred:
            fn[item[0]] += 1
            misses.append(f"FN {item[0]:9} {r['text'][item[1]:item[2]]!r} in {r['text']!r}")
    return tp, fp, fn, misses


def _ratio(a, b):
    return a / b if b else 1.0


def test_precision_and_recall(records):
    tp, fp, fn, misses = _score(records)
    rows = [f"{'kind':10} {'tp':>5} {'fp':>4} {'fn':>4} {'precision':>9} {'recall':>7}"]
    prec, rec = {}, {}
    for kind in [*sorted(GENERATED_KINDS), "overall"]:
        if kind == "overall":
            t, p, n = sum(tp.values()), sum(fp.values()), sum(fn.values())
        else:
            t, p, n = tp[kind], fp[kind], fn[kind]
        prec[kind], rec[kind] = _ratio(t, t + p), _ratio(t, t + n)
        rows.append(f"{kind:10} {t:5} {p:4} {n:4} {prec[kind]:9.3f} {rec[kind]:7.3f}")
    report = "\n".join(rows + misses[:40])
    print("\n" + report)
    for kind in ("id_card", "mobile", "landline"):
        assert rec[kind] >= 0.99, f"{kind} recall below 0.99\n{report}"
    assert prec["overall"] >= 0.95, f"overall precision below 0.95\n{report}"
