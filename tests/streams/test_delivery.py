"""The delivery tag of a batch in one call (streams/_hmac.c's tag_deliveries) against its
Python reference (delivery.tag_deliveries_py) and against the consumer's check as
streams/delivery.py documents it: the same tags, appended to the same headers."""

import copy
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import delivery, envelope

AUTH = "cm.auth"
record = st.tuples(st.one_of(st.none(), st.binary(max_size=300)),  # payload (None: not delivered)
                   st.one_of(st.none(), st.binary(max_size=30)),  # key
                   st.binary(min_size=1, max_size=60), st.binary(max_size=60))  # cm.src, traceparent


def _batch(records):
    payloads = [r[0] for r in records]
    keys = [r[1] for r in records]
    headers = [[("cm.contract", b"c"), ("x", b""), ("cm.src", r[2]), ("traceparent", r[3])] for r in records]
    return payloads, keys, headers


@settings(max_examples=200, deadline=None)
@given(key=st.binary(min_size=1, max_size=80), contract=st.binary(max_size=40), ts=st.integers(0, 2**62),
       records=st.lists(record, max_size=20))
def test_native_batch_tags_equal_the_reference_and_the_consumers_check(key, contract, ts, records):
    payloads, keys, headers = _batch(records)
    py_headers = copy.deepcopy(headers)
    native = envelope.Tagger(key).tag_deliveries(contract, ts, payloads, keys, headers, 2, 3, AUTH)
    reference = delivery.tag_deliveries_py(envelope.PyTagger(key), contract, ts, payloads, keys, py_headers, 2, 3,
                                           AUTH)
    assert native == reference and headers == py_headers
    for (payload, k, ref, trace), tag, hs in zip(records, native, headers):
        if payload is None:
            assert tag is None and len(hs) == 4
            continue
        msg = b"\x00".join([contract, ref, k or b"", b"%d" % ts, trace, payload])  # as a plain consumer checks
        assert tag == hmac.new(key, msg, "sha256").hexdigest()[:32].encode() and hs[-1] == (AUTH, tag)


def test_the_native_batch_tagger_refuses_what_it_cannot_tag():
    t = envelope.Tagger(hashlib.sha256(b"k").digest())
    payloads, keys, headers = _batch([(b"v", None, b"r", b"t")])
    with pytest.raises(TypeError):
        t.tag_deliveries("c", 1, payloads, keys, headers, 2, 3, AUTH)  # contract not bytes
    with pytest.raises(IndexError):
        t.tag_deliveries(b"c", 1, payloads, keys, headers, 7, 3, AUTH)  # no header there
    with pytest.raises(ValueError):
        t.tag_deliveries(b"c", 1, payloads, keys + [None], headers, 2, 3, AUTH)
    with pytest.raises(TypeError):
        t.tag_deliveries(b"c", 1, ["v"], keys, headers, 2, 3, AUTH)
    assert headers == _batch([(b"v", None, b"r", b"t")])[2]  # (the first record failed: nothing appended)
