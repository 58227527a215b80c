"""The admission stage on its own (no broker): a provider's real records are admitted and
decoded, and each way a raw record can be wrong is refused under its own rule."""

from __future__ import annotations

import dataclasses

import pytest

import schemas
from processors.stages.base import PartitionSlice
from streams import envelope
from streams.keyring import Keyring

from tests.processors.stages.samples import HOTLINE, NOW, Provider, uav, with_headers, with_value

GOOD = uav(1)
SCHEMA_HEADER = schemas.load("UavTelemetry").header


def run(admission, msgs: list) -> tuple[list, dict[int, tuple[str, str]]]:
    """(admitted records, offset -> (rule, reason) of those refused)."""
    s = PartitionSlice(0, msgs, NOW)
    admission.process(s)
    return s.good, {r.offset: (r.rule, r.reason) for r in s.rejected}


def rule_of(provider: Provider, m, **kw) -> str:
    good, bad = run(provider.admission(**kw), [m])
    assert not good and list(bad) == [m.offset()]
    return bad[m.offset()][0]


def test_a_providers_records_are_admitted_decoded_with_their_headers_and_key():
    provider = Provider()
    msgs = [provider.message(uav(i), 10 + i) for i in range(5)]
    good, bad = run(provider.admission(), msgs)
    assert bad == {}
    assert [g.offset for g in good] == [10, 11, 12, 13, 14]
    assert [g.record for g in good] == [uav(i) for i in range(5)]
    assert [g.key for g in good] == [f"SN{i:012d}".encode() for i in range(5)]
    assert good[0].msg is msgs[0] and good[0].headers == dict(msgs[0].headers())


def test_a_record_of_the_previous_release_without_a_sequence_is_admitted():
    provider = Provider()
    good, bad = run(provider.admission(), [provider.message(GOOD, 0, sequence=False)])
    assert bad == {} and [g.record for g in good] == [GOOD]


def test_empty_and_short_payloads():
    provider = Provider()
    assert rule_of(provider, provider.message(GOOD, 0, payload=b"")) == "reject:empty-or-short"
    assert rule_of(provider, provider.message(GOOD, 0, payload=SCHEMA_HEADER[:-1])) == "reject:empty-or-short"
    none = provider.message(GOOD, 0)
    none.set_value(None)
    good, bad = run(provider.admission(), [none])
    assert not good and bad == {0: ("reject:empty-or-short", "payload of 0 bytes")}


def test_oversized():
    provider = Provider()
    m = provider.message(GOOD, 0)
    size = len(m.value())
    good, bad = run(provider.admission(max_bytes=size - 1), [m])
    assert not good and bad == {0: ("reject:oversized", f"{size} bytes > {size - 1}")}
    assert run(provider.admission(max_bytes=size), [m])[1] == {}  # the limit itself is allowed


def test_not_avro_and_another_schema():
    provider = Provider()
    assert rule_of(provider, provider.message(GOOD, 0, payload=b'{"serial_number": "SN1"}')) == "reject:not-avro"
    hotline = schemas.load(HOTLINE["schema_name"])
    other = hotline.header + provider.route.schema.encode(GOOD)[len(hotline.header):]
    good, bad = run(provider.admission(), [provider.message(GOOD, 0, payload=other)])
    assert bad[0][0] == "reject:wrong-schema"
    assert bad[0][1].startswith(f"written with {hotline.full_name}, product expects ")
    unknown = b"\xc3\x01" + bytes(range(8)) + b"rest"
    good, bad = run(provider.admission(), [provider.message(GOOD, 0, payload=unknown)])
    assert bad[0] == ("reject:wrong-schema", f"written with unknown fingerprint {bytes(range(8)).hex()}, product "
                      f"expects {provider.route.schema.full_name} {provider.route.schema.fingerprint}")


def test_each_authenticity_reason():
    provider = Provider()
    m = provider.message(GOOD, 0)
    auth = dict(m.headers())[envelope.H_AUTH]
    key_id, _, tag = auth.partition(b":")
    flipped = tag[:-1] + (b"0" if tag[-1:] != b"0" else b"1")
    other_key = dataclasses.replace(provider.ring, hmac_key=b"x" * 32)  # the same key id, another secret
    cases = {
        "missing-participant": with_headers(m, {envelope.H_PARTICIPANT: None}),
        "not-the-provider": Provider(ring=Keyring.generate("hotline-12345")).message(GOOD, 0),
        "wrong-product": provider.message(GOOD, 0, product="hotline-tickets"),
        "missing-auth-tag": with_headers(m, {envelope.H_AUTH: None}),
        "unknown-key-id": with_headers(m, {envelope.H_AUTH: b"ffffffff:" + tag}),
        "bad-auth-tag": with_headers(m, {envelope.H_AUTH: key_id + b":" + flipped}),
    }
    for why, msg in cases.items():
        assert rule_of(provider, msg) == f"reject:{why}", why
    forged = [with_headers(m, {envelope.H_AUTH: key_id + b":zz" + tag[2:]}),  # not hex
              Provider(ring=other_key).message(GOOD, 0),  # tagged with another secret
              with_headers(m, {envelope.H_EVENT_TIME: b"%d" % (NOW - 1)}),  # each part the tag covers
              with_headers(m, {envelope.H_SEQUENCE: b"0123456789abcdef:0:99"}),
              with_headers(m, {envelope.H_SEQUENCE: None})]
    for msg in forged:
        assert rule_of(provider, msg) == "reject:bad-auth-tag"
    changed = bytearray(m.value())
    changed[-3] ^= 1
    assert rule_of(provider, with_value(m, bytes(changed))) == "reject:bad-auth-tag"


def test_a_tagged_payload_that_does_not_decode_or_leaves_bytes_over():
    """The provider's own tag over a bad body: authentic, but not the product's schema."""
    provider = Provider()
    body = provider.route.schema.encode(GOOD)
    header = provider.route.schema.header
    good, bad = run(provider.admission(), [provider.message(GOOD, 0, payload=header + b"\xff" * 12),
                                           provider.message(GOOD, 1, payload=body + b"\x00"),
                                           provider.message(GOOD, 2, payload=body[:-4])])
    assert not good
    assert {o: r for o, (r, _) in bad.items()} == {0: "reject:bad-avro", 1: "reject:bad-avro", 2: "reject:bad-avro"}
    assert bad[1][1] == "1 trailing bytes"


def test_a_mixed_batch_keeps_the_good_records_in_order_and_names_each_refusal():
    provider = Provider()
    msgs = [provider.message(uav(0), 0), provider.message(uav(1), 1, payload=b"x"), provider.message(uav(2), 2),
            provider.message(uav(3), 3, product="hotline-tickets"), provider.message(uav(4), 4)]
    good, bad = run(provider.admission(), msgs)
    assert [g.offset for g in good] == [0, 2, 4] and [g.record["serial_number"] for g in good] == \
        ["SN000000000000", "SN000000000002", "SN000000000004"]
    assert {o: r for o, (r, _) in bad.items()} == {1: "reject:empty-or-short", 3: "reject:wrong-product"}


@pytest.mark.parametrize("native", [True, False], ids=["native-tagger", "python-tagger"])
def test_the_hot_path_and_the_checks_agree_with_either_tagger(native, monkeypatch):
    """Admission's inline check (Tagger.matches) and its step-by-step one (Tagger.tag) take the
    same records with the C tagger and with its Python reference."""
    if not native:
        monkeypatch.setattr(envelope, "Tagger", envelope.PyTagger)
    provider = Provider()
    m = provider.message(GOOD, 0)
    admission = provider.admission()
    assert isinstance(admission._tagger, envelope.PyTagger) is not native
    assert [g.offset for g in run(admission, [m])[0]] == [0]
    assert admission._check(m, m.value(), dict(m.headers())).__class__.__name__ == "Admitted"
    assert rule_of(provider, with_headers(m, {envelope.H_EVENT_TIME: b"1"})) == "reject:bad-auth-tag"

