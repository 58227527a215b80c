"""The record authenticity tag: the C Tagger (streams/_hmac.c) against the Python reference
(envelope.PyTagger) and against the standard library's HMAC (RFC 2104)."""

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import envelope

TAGGERS = pytest.mark.parametrize("make", [envelope.Tagger, envelope.PyTagger], ids=["native", "python"])


def test_the_native_tagger_is_built_and_used():
    assert envelope.Tagger is not envelope.PyTagger and envelope.Tagger.__module__ == "streams._hmac"


@TAGGERS
@settings(max_examples=300, deadline=None)
@given(key=st.binary(max_size=200), parts=st.tuples(st.binary(max_size=40), st.binary(max_size=40),
                                                    st.binary(max_size=20), st.binary(max_size=3000)))
def test_tags_are_rfc2104_hmac_sha256(make, key, parts):
    """Keys shorter than, equal to and longer than the 64-byte block (a long key is hashed
    first), payloads across block boundaries."""
    expected = hmac.digest(key, b"\x00".join(parts), "sha256")[:envelope.TAG_BYTES]
    t = make(key)
    assert t.tag(*parts) == expected
    assert t.tag_hex(*parts) == expected.hex()


@TAGGERS
def test_matches_only_the_exact_hex_tag_after_the_key_id(make):
    t = make(b"k" * 32)
    parts = (b"skyway", b"uav-telemetry", b"1795567617276", b"\xc3\x01payload")
    header = b"key-1:" + t.tag_hex(*parts).encode()
    assert t.matches(*parts, header, 6)
    assert not t.matches(*parts, header + b"0", 6)  # longer
    assert not t.matches(*parts, header[:-1], 6)  # shorter
    assert not t.matches(*parts, header.upper(), 6)  # the header carries lower-case hex
    assert not t.matches(*parts, header, 5)
    assert not t.matches(b"other", *parts[1:], header, 6)  # the tag covers the participant
    assert not t.matches(*parts[:3], parts[3] + b"x", header, 6)  # and the payload
    flipped = bytearray(header)
    flipped[-1] ^= 1
    assert not t.matches(*parts, bytes(flipped), 6)


def test_the_native_tagger_refuses_what_is_not_bytes():
    t = envelope.Tagger(hashlib.sha256(b"k").digest())
    with pytest.raises(TypeError):
        t.tag("skyway", b"p", b"1", b"v")
    with pytest.raises(TypeError):
        t.matches(b"skyway", b"p", b"1", b"v", "abc", 0)
    with pytest.raises(TypeError):
        t.tag(b"skyway", b"p", b"1")
