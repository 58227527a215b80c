"""The generated decoder (schemas.codegen.compile_decoder) against fastavro's reader.

Every record it returns must be the one fastavro reads from the same bytes, and it must
never accept bytes fastavro cannot read: admission trusts it to decide what is bad input."""

import io
import random

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from schemas.codegen import Unsupported, compile_decoder

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
            compile_decoder(s.definition)
        except Unsupported:
            continue
        out.append((name, s.definition, s.parsed))
    return out


CASES = _cases()


def _fastavro_read(parsed, buf):
    bio = io.BytesIO(buf)
    rec = fastavro.schemaless_reader(bio, parsed, None)
    return rec, bio.tell()


def test_the_product_schemas_compile():
    assert {"UavTelemetry", "HotlineTicket"} <= {name for name, _, _ in CASES}


@pytest.mark.parametrize("name,definition,parsed", CASES, ids=[c[0] for c in CASES])
@SETTINGS
@given(data=st.data())
def test_decodes_what_fastavro_wrote_to_the_same_record(name, definition, parsed, data):
    rec = data.draw(_strategy(definition, {}))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, rec)
    body = b"\xc3\x01" + buf.getvalue()  # read from an offset, as admission does
    assert compile_decoder(definition)(body, 2) == (_fastavro_read(parsed, body[2:])[0], len(body))


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
@pytest.mark.parametrize("name,definition,parsed", CASES, ids=[c[0] for c in CASES])
def test_never_accepts_bytes_fastavro_cannot_read(name, definition, parsed):
    """Random and mutated bodies: whatever the decoder reads whole, fastavro reads whole too,
    and to the same record."""
    dec, rnd = compile_decoder(definition), random.Random(name)
    strategy = _strategy(definition, {})
    seeds = []
    for _ in range(30):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, strategy.example())
        seeds.append(buf.getvalue())
    accepted = 0
    for i in range(4000):
        base = bytearray(rnd.choice(seeds))
        how = i % 4
        if how == 0:
            body = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 80)))
        elif how == 1:
            body = bytes(base[:rnd.randrange(0, len(base) + 1)])
        elif how == 2 and base:
            base[rnd.randrange(len(base))] = rnd.getrandbits(8)
            body = bytes(base)
        else:
            body = bytes(base) + bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 4)))
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
    dec = compile_decoder({"type": "record", "name": "R", "fields": [
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}}]})
    with pytest.raises((ValueError, IndexError)):
        dec(body, 0)


def test_rejects_bad_boolean_union_branch_length_and_overlong_varint():
    dec = compile_decoder({"type": "record", "name": "R", "fields": [
        {"name": "b", "type": "boolean"}, {"name": "u", "type": ["null", "long"]}, {"name": "s", "type": "string"}]})
    assert dec(b"\x01\x02\x04\x04ab", 0) == ({"b": True, "u": 2, "s": "ab"}, 6)
    for bad in (b"\x02\x00\x00", b"\x00\x04\x00", b"\x00\x00\x03", b"\x00\x00\x02\xff",
                b"\x00\x02" + b"\xff" * 11 + b"\x01\x00", b"\x00\x00\x02\xc3\x28"):
        with pytest.raises((ValueError, IndexError, UnicodeDecodeError)):
            dec(bad, 0)
    # a string cut short reads what is there; the end position says the record needs more
    rec, end = dec(b"\x00\x00\x04a", 0)
    assert end == 5 > len(b"\x00\x00\x04a")
