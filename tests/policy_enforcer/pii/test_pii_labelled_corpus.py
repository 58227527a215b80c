"""Precision/recall per type on the hand-labelled corpus (labelled_corpus.jsonl).

The corpus is a literal data file: Chinese (12345) and English (311) citizen
requests written and labelled by hand, not generated and not derived from the
detector's rules. Each line holds ``text``, ``entities`` (``kind``, ``start``,
``end``, ``text``: the type of personal data and its exact span) and ``keep``
(spans of tricky non-PII - order and case numbers, dates, times, amounts,
addresses, rooms, routes, postcodes, service hotlines - that ``scrub`` must
leave intact).

``batch`` 1 (316 sentences) was written before the detector was extended and
used while extending it; batch 2 (70 sentences) was written afterwards and
measured once before the fixes it prompted (first-sight figures in
bench/RESULTS.md); both are in the figures this test asserts.

Labelling conventions: a name's span excludes titles and honorifics ("Mr.
[Patel]", "[张]先生"); a phone's span includes its country code, brackets and
extension; company service and toll-free numbers (400/800, 1-800, 95588, 12345)
are not personal and are ``keep`` spans; street, school and shop names built
from a person's name are not names. The types are the issue's, coarser than the
detector's kinds: ``TYPE_OF_KIND`` maps one onto the other. A match counts only
when type, start and end are all exact.

Run ``pytest tests/policy_enforcer/pii/test_pii_labelled_corpus.py -q -s`` to
see the table (bench/RESULTS.md quotes it).
"""

import json
from collections import Counter
from pathlib import Path

import pytest

from policy_enforcer.pii import KINDS, detect, scrub

CORPUS = Path(__file__).parent / "labelled_corpus.jsonl"
TYPES = ("name", "id", "phone", "email", "card", "iban", "plate")
TYPE_OF_KIND = {
    "name": "name",
    "id_card": "id", "passport": "id", "ssn": "id",
    "mobile": "phone", "landline": "phone", "phone": "phone",
    "email": "email",
    "bank_card": "card",
    "iban": "iban",
    "plate": "plate",
}
RECALL_GOAL = 0.98
PRECISION_GOAL = 0.95


@pytest.fixture(scope="module")
def records():
    with CORPUS.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_every_detector_kind_maps_to_a_type():
    assert set(TYPE_OF_KIND) == set(KINDS)
    assert set(TYPE_OF_KIND.values()) == set(TYPES)


def test_corpus_is_well_formed(records):
    assert len(records) >= 200
    assert {r["batch"] for r in records} == {1, 2}
    per_type = Counter()
    langs = Counter(r["lang"] for r in records)
    assert set(langs) == {"zh", "en"} and min(langs.values()) >= 100
    for r in records:
        text = r["text"]
        spans = sorted([(e["start"], e["end"]) for e in r["entities"]] + [(k["start"], k["end"]) for k in r["keep"]])
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), f"overlapping spans in {text!r}"
        for e in r["entities"]:
            assert e["kind"] in TYPES, e
            assert text[e["start"]:e["end"]] == e["text"], f"offsets of {e} do not match {text!r}"
            per_type[e["kind"], r["lang"]] += 1
        for k in r["keep"]:
            assert text[k["start"]:k["end"]] == k["text"], f"offsets of {k} do not match {text!r}"
    for t in TYPES:
        assert per_type[t, "zh"] + per_type[t, "en"] >= 14, f"too few {t} entities"
        assert per_type[t, "zh"] and per_type[t, "en"], f"{t} missing in one language"
    assert sum(1 for r in records if not r["entities"]) >= 60
    assert sum(len(r["keep"]) for r in records) >= 300


def _score(records):
    tp, fp, fn = Counter(), Counter(), Counter()
    misses = []
    for r in records:
        gold = {(e["kind"], e["start"], e["end"]) for e in r["entities"]}
        pred = {(TYPE_OF_KIND[m.kind], m.start, m.end) for m in detect(r["text"])}
        for t, *_ in gold & pred:
            tp[t] += 1
        for t, s, e in sorted(pred - gold, key=lambda x: x[1]):
            fp[t] += 1
            misses.append(f"FP {t:6} {r['text'][s:e]!r} in {r['text']!r}")
        for t, s, e in sorted(gold - pred, key=lambda x: x[1]):
            fn[t] += 1
            misses.append(f"FN {t:6} {r['text'][s:e]!r} in {r['text']!r}")
    return tp, fp, fn, misses


def _ratio(a, b):
    return a / b if b else 1.0


def test_precision_and_recall_per_type(records):
    tp, fp, fn, misses = _score(records)
    rows = [f"| {'type':8} | {'tp':>4} | {'fp':>3} | {'fn':>3} | {'precision':>9} | {'recall':>6} |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    prec, rec = {}, {}
    for t in (*TYPES, "overall"):
        if t == "overall":
            a, p, n = sum(tp.values()), sum(fp.values()), sum(fn.values())
        else:
            a, p, n = tp[t], fp[t], fn[t]
        prec[t], rec[t] = _ratio(a, a + p), _ratio(a, a + n)
        rows.append(f"| {t:8} | {a:4} | {p:3} | {n:3} | {prec[t]:9.3f} | {rec[t]:6.3f} |")
    report = "\n".join(rows + misses)
    print(f"\n{len(records)} sentences\n{report}")
    low = [t for t in TYPES if rec[t] < RECALL_GOAL]
    assert not low, f"recall below {RECALL_GOAL} for {low}\n{report}"
    assert prec["overall"] >= PRECISION_GOAL, f"overall precision below {PRECISION_GOAL}\n{report}"


def test_scrub_keeps_tricky_negatives_intact(records):
    broken = []
    for r in records:
        found = detect(r["text"])
        for k in r["keep"]:
            if any(m.start < k["end"] and k["start"] < m.end for m in found):
                broken.append(f"{k['text']!r} in {r['text']!r}")
    assert not broken, "scrub would change:\n" + "\n".join(broken)
    # and scrub really leaves them in the output
    for r in records:
        out = scrub(r["text"])
        for k in r["keep"]:
            assert k["text"] in out, (k, out)

