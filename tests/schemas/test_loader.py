import io
import json

import fastavro
import pytest

import schemas
from schemas.native import encoder
from streams.simulators import FleetSimulator, HotlineSimulator


def test_every_schema_parses_and_has_a_stable_fingerprint():
    names = schemas.available()
    assert {"UavTelemetry", "HotlineTicket", "ComplianceEvent", "Alert", "UsageRecord", "Contract",
            "Participant", "DataProduct"} <= set(names)
    fps = {n: schemas.load(n).fingerprint for n in names}
    assert len(set(fps.values())) == len(names)
    # the fingerprint is CRC-64-AVRO of the canonical form, as any Avro library computes it
    for n in names:
        s = schemas.load(n)
        assert fastavro.schema.fingerprint(fastavro.schema.to_parsing_canonical_form(s.definition),
                                           "CRC-64-AVRO") == s.fingerprint


def test_round_trip_and_single_object_header():
    rec = FleetSimulator(drones=3, violators=0).tick(30)[0]
    s = schemas.load("UavTelemetry")
    payload = s.encode(rec)
    assert payload[:2] == b"\xc3\x01" and payload[2:10] == bytes.fromhex(s.fingerprint)
    assert s.decode(payload) == rec
    assert schemas.default_registry().decode(payload) == (s, rec)


def test_decode_takes_the_whole_payload_and_nothing_else():
    """A consumer's decode is as strict as admission: a body cut short, trailing bytes or
    malformed Avro raise RecordInvalid naming the schema, for one schema and the registry."""
    rec = FleetSimulator(drones=1, violators=0).tick(30)[0]
    s = schemas.load("UavTelemetry")
    payload = s.encode(rec)
    assert s.decode(payload) == rec == schemas.default_registry().decode(payload)[1]
    for bad, why in ((payload + b"\x00", "1 trailing byte"), (payload[:-3], "malformed Avro body"),
                     (payload[:10] + b"\xff" * 40, "malformed Avro body")):
        for decode in (s.decode, lambda p: schemas.default_registry().decode(p)[1]):
            with pytest.raises(schemas.RecordInvalid, match=f"UavTelemetry: {why}"):
                decode(bad)


@pytest.mark.parametrize("name,make", [
    ("UavTelemetry", lambda i: FleetSimulator(drones=5, seed=i).tick(40)),
    ("HotlineTicket", lambda i: [HotlineSimulator(seed=i).ticket() for _ in range(20)]),
])
def test_compiled_encoder_matches_fastavro_byte_for_byte(name, make):
    s = schemas.load(name)
    for i in range(5):
        for rec in make(i):
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, fastavro.parse_schema(s.definition), rec)
            assert s.encode_body(rec) == buf.getvalue()


def test_native_encoder_covers_arrays_maps_and_longs():
    definition = {"type": "record", "name": "T", "fields": [
        {"name": "xs", "type": {"type": "array", "items": "long"}},
        {"name": "m", "type": {"type": "map", "values": ["null", "string"]}},
        {"name": "f", "type": "float"}, {"name": "b", "type": "boolean"}, {"name": "raw", "type": "bytes"},
        {"name": "fx", "type": {"type": "fixed", "name": "F4", "size": 4}}]}
    enc = encoder(definition)
    for rec in ({"xs": [0, -1, 2**62, -(2**63)], "m": {"a": None, "ü": "é"}, "f": 1.5, "b": True, "raw": b"\x00\xff",
                 "fx": b"abcd"},
                {"xs": [], "m": {}, "f": -0.0, "b": False, "raw": b"", "fx": b"\x00\x00\x00\x00"}):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, fastavro.parse_schema(definition), rec)
        assert enc(rec) == buf.getvalue()


@pytest.mark.parametrize("change,message", [
    (lambda r: r.update(lat="north"), "field 'lat'"),
    (lambda r: r.pop("flight_id"), "missing required field 'flight_id'"),
    (lambda r: r.update(colour="red"), "unknown field(s) colour"),
    (lambda r: r.update(uav_class="HUGE"), "field 'uav_class'"),
    (lambda r: r.update(timestamp_ms=2**64), "field 'timestamp_ms'"),
    (lambda r: r.update(uin=12345), "field 'uin'"),
])
def test_invalid_records_raise_a_clear_error(change, message):
    rec = FleetSimulator(drones=1, violators=0).tick(30)[0]
    change(rec)
    with pytest.raises(schemas.RecordInvalid) as err:
        schemas.load("UavTelemetry").encode(rec)
    assert message in str(err.value)


def test_broken_schema_file_names_itself(tmp_path):
    bad = tmp_path / "Bad.avsc"
    bad.write_text(json.dumps({"type": "record", "name": "Bad", "fields": [{"name": "x", "type": "nosuchtype"}]}))
    with pytest.raises(schemas.SchemaError, match="Bad.avsc"):
        schemas.load_file(bad)
    with pytest.raises(schemas.SchemaError, match="known:"):
        schemas.load("NoSuchSchema")


def test_unknown_fingerprint_is_refused():
    with pytest.raises(schemas.UnknownSchema):
        schemas.default_registry().decode(b"\xc3\x01" + bytes(8) + b"\x00")
    with pytest.raises(schemas.UnknownSchema):
        schemas.default_registry().decode(b"not avro at all")
