"""MAVLink v2: real frames built with pymavlink, over real UDP, onto a real raw topic."""

from __future__ import annotations

import math
import socket
from collections import defaultdict

from pymavlink.dialects.v20 import common as mavlink

from streams.adapters.base import Intake, UavClassMap
from streams.adapters.mavlink_sim import DroneLink, MavlinkFleet
from streams.adapters.mavlink_udp import MavlinkDecoder, MavlinkUdpAdapter

RUST_HEARTBEAT = bytes.fromhex("fd0900 00ef0101 000000 0500000002035903 0310f0".replace(" ", ""))


def test_rust_mavlink_heartbeat_vector_decodes_and_reencodes_byte_for_byte():
    mav = mavlink.MAVLink(None)
    (msg,) = mav.parse_buffer(RUST_HEARTBEAT)
    assert msg.get_type() == "HEARTBEAT"
    assert (msg.get_seq(), msg.get_srcSystem(), msg.get_srcComponent()) == (239, 1, 1)
    assert (msg.type, msg.autopilot, msg.base_mode, msg.custom_mode, msg.system_status, msg.mavlink_version) == (
        2, 3, 0x59, 5, 3, 3)
    out = mavlink.MAVLink(None, srcSystem=1, srcComponent=1)
    out.seq = 239
    assert msg.pack(out) == RUST_HEARTBEAT


def _bad_frames(link: DroneLink) -> tuple[bytes, bytes, bytes]:
    """(good heartbeat + frame with a broken CRC + unknown message id + good heartbeat,
        a datagram ending in a truncated frame, junk)."""
    bad_crc = bytearray(link.heartbeat(True))
    bad_crc[-1] ^= 0xFF
    # msgid 0xABCDE is in no dialect; MAVLink v2 header: magic len incompat compat seq sys comp msgid(3)
    unknown = bytes([0xFD, 3, 0, 0, 7, link.sysid, 1, 0xDE, 0xBC, 0x0A, 1, 2, 3, 0x12, 0x34])
    first = link.heartbeat(True) + bytes(bad_crc) + unknown + link.heartbeat(True)
    truncated = link.heartbeat(True) + link.sys_status(50)[:-5]
    return first, truncated, b"\x00\x01garbage"


def test_fifty_vehicles_over_udp_reach_the_raw_topic_with_units_converted(provider, read_topic, wait):
    conn, publish, topic = provider("UavTelemetry")
    fleet = MavlinkFleet(drones=50, seed=3, violators=0.2, remote_id=5)
    # the operator's registration data: serial -> class (here read off the simulator's fleet)
    classes = UavClassMap({d.serial: d.uav_class for d in fleet.sim._fleet})
    adapter = MavlinkUdpAdapter(publish, "127.0.0.1", 0, classes=classes).start()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    truth: list[dict] = []
    try:
        now = 1_800_000_000.0
        for step in range(60):  # 5 min of flying: long enough for landings and second flights
            datagrams, recs = fleet.step(5.0, now)
            now += 5.0
            truth += recs
            if step == 30:  # broken input mid-stream, from a vehicle that is also flying
                datagrams += _bad_frames(fleet.links[recs[0]["serial_number"]])
            for d in datagrams:
                sender.sendto(d, adapter.address)
            # pace like real traffic so the loopback socket buffer never overflows
            wait(lambda: adapter.stats.get("position", 0) >= len(truth), what=f"step {step} positions")
    finally:
        sender.close()
        adapter.stop()
    conn.flush()
    stats = adapter.stats
    assert stats["position"] == len(truth) > 1000
    assert (stats["bad_crc"], stats["unknown_msgid"], stats["truncated"], stats["bad_prefix"]) == (1, 1, 1, 1)
    assert "malformed" not in stats and "invalid" not in stats and "error" not in stats
    assert adapter.intake.records == len(truth)

    got = read_topic(topic, len(truth), "UavTelemetry", settle_s=0.5)
    assert len(got) == len(truth)
    by_serial_got, by_serial_truth = defaultdict(list), defaultdict(list)
    for r in got:
        by_serial_got[r["serial_number"]].append(r)
    for r in truth:
        by_serial_truth[r["serial_number"]].append(r)
    assert by_serial_got.keys() == by_serial_truth.keys() and len(by_serial_got) > 20
    flights = {}
    sources = set()
    for serial, want in by_serial_truth.items():
        have = by_serial_got[serial]  # one key, one partition: order preserved
        assert len(have) == len(want)
        for h, w in zip(have, want):
            assert abs(h["lat"] - w["lat"]) < 1e-7 and abs(h["lon"] - w["lon"]) < 1e-7
            assert abs(h["alt_msl_m"] - w["alt_msl_m"]) < 0.006
            assert abs(h["height_agl_m"] - w["height_agl_m"]) < 0.006
            assert abs(h["speed_h_mps"] - w["speed_h_mps"]) < 0.02
            assert abs(h["speed_v_mps"] - w["speed_v_mps"]) < 0.011
            assert abs((h["heading_deg"] - w["heading_deg"] + 180) % 360 - 180) < 0.011
            assert (h["uin"], h["operator_id"], h["uav_class"]) == (w["uin"], w["operator_id"], w["uav_class"])
            if h["source"] == "MAVLINK":
                assert abs(h["battery_pct"] - w["battery_pct"]) <= 1.0
            else:
                assert h["source"] == "REMOTE_ID" and h["battery_pct"] is None
            sources.add(h["source"])
            if h["source"] == "MAVLINK":  # the simulator's Remote ID drones go silent on the ground
                flights.setdefault(w["flight_id"], set()).add(h["flight_id"])  # instead of saying so
    assert sources == {"MAVLINK", "REMOTE_ID"}
    # one flight in the simulator is one flight_id on the topic, and no two share one
    assert all(len(ids) == 1 for ids in flights.values())
    assert len({next(iter(ids)) for ids in flights.values()}) == len(flights)
    assert any(len([f for f in flights if f.startswith(s)]) > 1 for s in by_serial_truth)  # re-flights seen


def _decoder(now_ms: list[int]):
    out: list[dict] = []
    intake = Intake("test", out.append)
    return MavlinkDecoder(intake, clock=lambda: now_ms[0] / 1000), out, intake


def _pos(link: DroneLink, time_boot_ms: int, hdg: int, vx=300, vy=-400, vz=-150, lat=225405000, lon=1139345000):
    return link.pack(mavlink.MAVLink_global_position_int_message(
        time_boot_ms, lat, lon, 52_345, 40_120, vx, vy, vz, hdg))


def test_unit_conversions_unknown_heading_battery_and_flight_ids():
    now = [1_800_000_000_000]
    dec, out, intake = _decoder(now)
    link = DroneLink(42)
    dec.datagram(link.sys_status(None) + _pos(link, 10_000, 0xFFFF))
    r = out[-1]
    assert (r["serial_number"], r["source"], r["battery_pct"], r["uav_class"]) == ("MAV-42", "MAVLINK", None, "UNKNOWN")
    assert (r["lat"], r["lon"], r["alt_msl_m"], r["height_agl_m"]) == (22.5405, 113.9345, 52.345, 40.12)
    assert r["speed_h_mps"] == 5.0 and r["speed_v_mps"] == 1.5  # hypot(3, -4); NED vz -1.5 m/s is climbing
    assert abs(r["heading_deg"] - (math.degrees(math.atan2(-400, 300)) % 360)) < 1e-9  # from velocity: ~306.87
    first_flight = r["flight_id"]
    assert first_flight == f"MAV-42-B{now[0] - 10_000}"

    dec.datagram(link.ident({"serial_number": "SN-REAL-1", "uin": "UAS000000001", "operator_id": "CHN-OP-1"})
                 + link.sys_status(87.4) + link.heartbeat(False) + _pos(link, 11_000, 9000))
    r = out[-1]
    assert (r["serial_number"], r["uin"], r["operator_id"], r["battery_pct"], r["heading_deg"]) == (
        "SN-REAL-1", "UAS000000001", "CHN-OP-1", 87.0, 90.0)
    now[0] += 60_000
    dec.datagram(link.heartbeat(True) + _pos(link, 71_000, 18000))  # armed: a new flight
    assert out[-1]["flight_id"] == f"SN-REAL-1-A{now[0]}"
    now[0] += 1000
    dec.datagram(_pos(link, 500, 18000))  # time_boot_ms went back: rebooted, a new flight
    assert out[-1]["flight_id"] == f"SN-REAL-1-B{now[0] - 500}"
    dec.datagram(_pos(link, 1500, 18000, lat=0, lon=0))  # no GNSS fix: not a position
    assert len(out) == 4 and intake.stats["no_fix"] == 1
    assert intake.stats["position"] == 4


def test_bad_frames_are_counted_and_the_good_ones_around_them_still_count():
    now = [1_800_000_000_000]
    dec, out, intake = _decoder(now)
    link = DroneLink(7)
    first, truncated, junk = _bad_frames(link)
    dec.datagram(first + _pos(link, 1000, 100))
    assert len(out) == 1 and out[0]["heading_deg"] == 1.0
    dec.datagram(truncated)
    dec.datagram(_pos(link, 2000, 200))  # the truncated tail did not poison the next datagram
    dec.datagram(junk + _pos(link, 3000, 300))
    dec.datagram(b"")
    assert len(out) == 3
    assert intake.stats == {"state": 3, "position": 3, "bad_crc": 1, "unknown_msgid": 1, "truncated": 1,
                            "bad_prefix": 1}


def test_remote_id_relay_keys_aircraft_by_id_or_mac():
    now = [1_800_000_000_000]
    dec, out, intake = _decoder(now)
    a, b = DroneLink(1, b"\x02\xc1\x7e\x00\x00\x01"), DroneLink(2, b"\x02\xc1\x7e\x00\x00\x02")
    ra = {"serial_number": "RID-A", "uin": None, "operator_id": "OP-A", "lat": 22.5, "lon": 114.0,
          "alt_msl_m": 80.5, "height_agl_m": 60.25, "speed_h_mps": 7.5, "speed_v_mps": -1.0, "heading_deg": 45.0}
    rb = {**ra, "serial_number": "RID-B", "operator_id": "OP-B", "lat": 22.6}
    # both arrive from the same receiver system id; only id_or_mac tells them apart
    dec.datagram(a.ident(ra) + b.ident(rb) + a.odid_location(ra, now[0] / 1000) + b.odid_location(rb, now[0] / 1000))
    assert [(r["serial_number"], r["operator_id"], r["lat"]) for r in out] == [("RID-A", "OP-A", 22.5), ("RID-B", "OP-B", 22.6)]
    r = out[0]
    assert (r["source"], r["alt_msl_m"], r["height_agl_m"], r["speed_h_mps"], r["speed_v_mps"], r["heading_deg"]) == (
        "REMOTE_ID", 80.5, 60.25, 7.5, -1.0, 45.0)
    assert abs(r["timestamp_ms"] - now[0]) <= 100
    flight = r["flight_id"]
    now[0] += 60_000
    dec.datagram(a.odid_location(ra, now[0] / 1000, mavlink.MAV_ODID_STATUS_GROUND))
    assert out[-1]["flight_id"] == flight  # landed: same flight until it takes off again
    now[0] += 60_000
    dec.datagram(a.odid_location(ra, now[0] / 1000))
    assert out[-1]["flight_id"] == f"RID-A-A{now[0]}"
    assert intake.stats == {"state": 4, "position": 4}
