"""The C codec (schemas/native.py, schemas/_avro.c) against fastavro, the reference.

Every record the decoder returns must be the one fastavro reads from the same bytes, and it
must never accept bytes fastavro cannot read: admission trusts it to decide what is bad
input. The encoder must write fastavro's bytes, and never write a record fastavro refuses."""

import io
import random

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from schemas import native
from schemas.native import Unsupported

native_decoder = native.decoder


def native_encoder(definition, prefix=None):
    return native.encoder(definition) if prefix is None else native.fields_encoder(definition, prefix)


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EXTRA = {"type": "record", "name": "T", "fields": [
    {"name": "xs", "type": {"type": "array", "items": "long"}},
    {"name": "m", "type": {"type": "map", "values": ["null", "string"]}},
    {"name": "f", "type": "float"}, {"name": "b", "type": "boolean"}, {"name": "raw", "type": "bytes"},
    {"name": "fx", "type": {"type": "fixed", "name": "F4", "size": 4}},
    {"name": "n", "type": ["string", "null"]},
    {"name": "sub", "type": {"type": "record", "name": "Sub", "fields": [
        {"name": "i", "type": "int"}, {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}},
        {"name": "d1", "type": "double"}, {"name": "d2", "type": "double"}]}}]}


def _strategy(t, named):
    if isinstance(t, dict) and t.get("type") in ("null", "boolean", "int", "long", "float", "double", "bytes", "string"):
        t = t["type"]
    if isinstance(t, str):
        prims = {"null": st.none(), "boolean": st.booleans(), "int": st.integers(-(2**31), 2**31 - 1),
                 "long": st.integers(-(2**63), 2**63 - 1), "float": st.floats(width=32, allow_nan=False),
                 "double": st.floats(allow_nan=False), "bytes": st.binary(max_size=40), "string": st.text(max_size=40)}
        return prims[t] if t in prims else named[t]
    if isinstance(t, list):
        return st.one_of(*[_strategy(b, named) for b in t])
    kind = t["type"]
    if kind == "record":
        s = st.fixed_dictionaries({f["name"]: _strategy(f["type"], named) for f in t["fields"]})
    elif kind == "enum":
        s = st.sampled_from(t["symbols"])
    elif kind == "fixed":
        s = st.binary(min_size=t["size"], max_size=t["size"])
    elif kind == "array":
        s = st.lists(_strategy(t["items"], named), max_size=5)
    else:
        s = st.dictionaries(st.text(max_size=8), _strategy(t["values"], named), max_size=5)
    if "name" in t:
        named[t["name"]] = s
    return s


def _cases():
    out = [("EXTRA", EXTRA, fastavro.parse_schema(EXTRA))]
    for name in schemas.available():
        s = schemas.load(name)
        try:
            native.decoder(s.definition)
        except Unsupported:
            continue
        out.append((name, s.definition, s.parsed))
    return out


CASES = _cases()


def _fastavro_read(parsed, buf):
    bio = io.BytesIO(buf)
    rec = fastavro.schemaless_reader(bio, parsed, None)
    return rec, bio.tell()


def _fastavro_write(parsed, rec):
    buf = io.BytesIO()
    # strict, but a missing field with a default takes it, as the Avro spec's writer does
    fastavro.schemaless_writer(buf, parsed, rec, strict_allow_default=True)
    return buf.getvalue()


def test_the_product_schemas_compile():
    assert {"UavTelemetry", "HotlineTicket"} <= {name for name, _, _ in CASES}


def test_the_native_codec_is_built_and_used():
    """`pip install -e .` (make test, make demo) builds schemas._avro; the hot path uses it."""
    assert native.native_available()
    s = schemas.load("UavTelemetry")
    assert type(s._body_decoder).__module__ == type(s._body_encoder).__module__ == "schemas._avro"


@pytest.mark.parametrize("name,definition,parsed", CASES, ids=[c[0] for c in CASES])
@SETTINGS
@given(data=st.data())
def test_decodes_what_fastavro_wrote_to_the_same_record(name, definition, parsed, data):
    rec = data.draw(_strategy(definition, {}))
    body = b"\xc3\x01" + _fastavro_write(parsed, rec)  # read from an offset, as admission does
    assert native_decoder(definition)(body, 2) == (_fastavro_read(parsed, body[2:])[0], len(body))


def _fuzzed_bodies(name, definition, parsed, n=4000):
    """Random bytes, and valid bodies cut short, with a byte changed or with bytes added."""
    rnd = random.Random(name)
    strategy = _strategy(definition, {})
    seeds = []
    for _ in range(30):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, strategy.example())
        seeds.append(buf.getvalue())
    for i in range(n):
        base = bytearray(rnd.choice(seeds))
        how = i % 4
        if how == 0:
            yield bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 80)))
        elif how == 1:
            yield bytes(base[:rnd.randrange(0, len(base) + 1)])
        elif how == 2 and base:
            base[rnd.randrange(len(base))] = rnd.getrandbits(8)
            yield bytes(base)
        else:
            yield bytes(base) + bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 4)))


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
@pytest.mark.parametrize("name,definition,parsed", CASES, ids=[c[0] for c in CASES])
def test_never_accepts_bytes_fastavro_cannot_read(name, definition, parsed):
    """Random and mutated bodies: whatever the decoder reads whole, fastavro reads whole too,
    and to the same record."""
    dec = native_decoder(definition)
    accepted = 0
    for body in _fuzzed_bodies(name, definition, parsed):
        try:
            rec, end = dec(body, 0)
        except Exception:  # noqa: BLE001 - rejected: fine whatever fastavro thinks
            continue
        if end != len(body):
            continue
        accepted += 1
        theirs = _fastavro_read(parsed, body)
        assert theirs == (rec, end) or repr(theirs) == repr((rec, end)), body  # NaN != NaN
    assert accepted > 0


@pytest.mark.parametrize("body,why", [
    (b"\x01", "negative enum index"),  # zigzag -1
    (b"\x06", "enum index past the symbols"),
])
def test_rejects_an_enum_index_out_of_range(body, why):
    dec = native_decoder({"type": "record", "name": "R", "fields": [
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}}]})
    with pytest.raises((ValueError, IndexError)):
        dec(body, 0)


def test_rejects_bad_boolean_union_branch_length_and_overlong_varint():
    dec = native_decoder({"type": "record", "name": "R", "fields": [
        {"name": "b", "type": "boolean"}, {"name": "u", "type": ["null", "long"]}, {"name": "s", "type": "string"}]})
    assert dec(b"\x01\x02\x04\x04ab", 0) == ({"b": True, "u": 2, "s": "ab"}, 6)
    for bad in (b"\x02\x00\x00", b"\x00\x04\x00", b"\x00\x00\x03", b"\x00\x00\x02\xff",
                b"\x00\x02" + b"\xff" * 11 + b"\x01\x00", b"\x00\x00\x02\xc3\x28"):
        with pytest.raises((ValueError, IndexError, UnicodeDecodeError)):
            dec(bad, 0)
    with pytest.raises(ValueError, match="1 more byte"):  # a string cut short
        dec(b"\x00\x00\x04a", 0)


def test_the_native_decoder_refuses_a_block_count_the_bytes_cannot_hold():
    longs = native_decoder({"type": "record", "name": "R", "fields": [
        {"name": "xs", "type": {"type": "array", "items": "long"}}]})
    assert longs(b"\x04\x02\x04\x00", 0) == ({"xs": [1, 2]}, 4)
    with pytest.raises(ValueError, match="block of"):
        longs(b"\xfe\xff\xff\xff\x0f\x02", 0)  # 2^31 - 1 items in one byte
    nulls = native_decoder({"type": "record", "name": "R", "fields": [
        {"name": "xs", "type": {"type": "array", "items": "null"}}]})
    assert nulls(b"\x06\x00", 0) == ({"xs": [None, None, None]}, 2)
    with pytest.raises(ValueError, match="block of"):
        nulls(b"\xfe\xff\xff\xff\x0f\x00", 0)
    empty_records = native_decoder({"type": "record", "name": "R", "fields": [
        {"name": "xs", "type": {"type": "array", "items": {"type": "record", "name": "E", "fields": [
            {"name": "n", "type": "null"}]}}}]})
    assert empty_records(b"\x04\x00", 0) == ({"xs": [{"n": None}, {"n": None}]}, 2)
    with pytest.raises(ValueError, match="block of"):
        empty_records(b"\xfe\xff\xff\xff\x0f\x00", 0)


# ---- encoders ---------------------------------------------------------------------------

@pytest.mark.parametrize("name,definition,parsed", CASES, ids=[c[0] for c in CASES])
@SETTINGS
@given(data=st.data())
def test_the_encoders_write_fastavros_bytes(name, definition, parsed, data):
    rec = data.draw(_strategy(definition, {}))
    theirs = _fastavro_write(parsed, rec)
    values = [rec[f["name"]] for f in definition["fields"]]
    assert native_encoder(definition)(rec) == theirs
    assert native_encoder(definition, b"H")(*values) == b"H" + theirs


WRONG = [None, "x", "HUGE", 1, -1, 2**31, 2**64, 1.5, float("nan"), True, b"\x00", bytearray(b"abcd"), [], [1, "a"],
         {}, {"a": 1}, {1: "a"}, "\ud800", object()]


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
@pytest.mark.parametrize("name,definition,parsed", CASES, ids=[c[0] for c in CASES])
def test_the_native_encoder_writes_nothing_fastavro_would_not(name, definition, parsed):
    """Each field in turn given each value of WRONG (and one field dropped, one added): what
    the native encoder writes, strict fastavro (defaults allowed) writes byte for byte; the rest it refuses with
    TypeError, ValueError, KeyError or OverflowError."""
    ours, ours_f = native_encoder(definition), native_encoder(definition, b"")
    rec = _strategy(definition, {}).example()
    cases = [dict(rec, **{f["name"]: w}) for f in definition["fields"] for w in WRONG]
    cases += [{k: v for k, v in rec.items() if k != f["name"]} for f in definition["fields"]]
    cases.append(dict(rec, colour="red"))
    written = refused = 0
    for case in cases:
        positional = {f["name"]: case.get(f["name"]) for f in definition["fields"]}  # what ours_f is given
        for o, args, meant in ((ours, (case,), case), (ours_f, list(positional.values()), positional)):
            try:
                got = o(*args)
            except (TypeError, ValueError, KeyError, OverflowError):
                refused += 1
                continue
            assert _fastavro_write(parsed, meant) == got, case
            written += 1
    assert written and refused


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
def test_the_native_encoder_names_the_problem():
    enc = native_encoder(EXTRA)
    rec = _strategy(EXTRA, {}).example()
    with pytest.raises(ValueError, match="unknown field"):
        enc(dict(rec, colour="red"))
    with pytest.raises(KeyError, match="xs"):
        enc({k: v for k, v in rec.items() if k != "xs"})
    with pytest.raises(OverflowError, match="does not fit an int"):
        enc(dict(rec, sub=dict(rec["sub"], i=2**31)))
    with pytest.raises(TypeError, match="expected a boolean, got int"):
        enc(dict(rec, b=1))
    with pytest.raises(TypeError, match="takes 1 positional"):
        enc(rec, rec)
    with pytest.raises(TypeError, match="takes 8 positional"):
        native_encoder(EXTRA, b"")(1)


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
def test_with_the_c_parts_switched_off_records_go_through_fastavro(monkeypatch):
    definition = schemas.load("UavTelemetry").definition
    rec = _strategy(definition, {}).example()
    on = schemas.RecordSchema.from_definition(definition)
    monkeypatch.setenv("CITYMESH_NATIVE", "0")
    off = schemas.RecordSchema.from_definition(definition)
    assert off._body_decoder is None and off._body_encoder is None
    assert off.encode(rec) == on.encode(rec)
    assert off.decode(on.encode(rec)) == on.decode(on.encode(rec))
    with pytest.raises(Unsupported):  # a contract's plan then encodes its dict (policy_enforcer/plan.py)
        native.fields_encoder(definition)
