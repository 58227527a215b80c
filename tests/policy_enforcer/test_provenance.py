"""policy_enforcer/provenance.py: the traceparents of a slice, however it is laid out."""

import os

import pytest
from hypothesis import given, settings, strategies as st

from policy_enforcer.provenance import TraceIds, source_blocks, trace_blocks, traceparents


def _one_by_one(trace_hex: bytes, source_hex: bytes) -> list[bytes]:
    """The definition, record by record: 00-<trace id>-<span id>-01, all-zero ids made ...01."""
    out = []
    for i in range(0, len(trace_hex), 32):
        t, s = trace_hex[i:i + 32], source_hex[i:i + 16]
        out.append(b"00-%b-%b-01" % (b"0" * 31 + b"1" if t == b"0" * 32 else t,
                                      b"0" * 15 + b"1" if s == b"0" * 16 else s))
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300), st.randoms(use_true_random=False))
def test_a_slice_of_any_size_gets_the_traceparents_of_the_definition(n, rnd):
    trace_hex, source_hex = rnd.randbytes(16 * n).hex().encode(), rnd.randbytes(16 * n).hex().encode()
    assert traceparents(trace_hex, source_hex) == _one_by_one(trace_hex, source_hex)


@pytest.mark.parametrize("n", [5, 100])
def test_an_all_zero_trace_or_span_id_becomes_one(n):
    trace_hex, source_hex = bytearray(os.urandom(16 * n).hex().encode()), bytearray(os.urandom(16 * n).hex().encode())
    trace_hex[32:64] = b"0" * 32  # record 1: a zero trace id
    source_hex[64:80] = b"0" * 16  # record 2: a zero span id (the source block's first half)
    got = traceparents(bytes(trace_hex), bytes(source_hex))
    assert got == _one_by_one(bytes(trace_hex), bytes(source_hex))
    assert got[1][3:35] == b"0" * 31 + b"1" and got[2][36:52] == b"0" * 15 + b"1"


def test_the_mesh_opens_every_traceparent_of_a_long_slice():
    traces = TraceIds(os.urandom(32))
    given_ids = [os.urandom(16).hex().encode() for _ in range(200)]
    sources = source_blocks(3, range(10_000, 10_200))
    sealed = traces.seal(trace_blocks([b"00-%b-%b-01" % (t, b"1" * 16) for t in given_ids], sources), sources)
    assert [traces.open(tp) for tp in sealed] == [t.decode() for t in given_ids]
    assert len({tp[36:52] for tp in sealed}) == 200  # a span of its own per delivery
