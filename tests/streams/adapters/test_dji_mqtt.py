"""DJI Cloud API aircraft OSD published to a real MQTT broker, read back from the raw topic."""

from __future__ import annotations

import json

import paho.mqtt.client as mqtt
import pytest

from streams.adapters.base import Intake, UavClassMap
from streams.adapters.dji_mqtt import DjiMqttAdapter, DjiOsdDecoder


def osd(sn_seq: int, lat: float, head: float, mode: int = 5, battery: int = 76, **extra) -> dict:
    """An aircraft OSD message as DJI Pilot 2 / Dock publish it (fields per the thing model)."""
    data = {"mode_code": mode, "latitude": lat, "longitude": 113.95, "height": 112.4, "elevation": 95.1,
            "horizontal_speed": 12.5, "vertical_speed": -0.8, "attitude_head": head, "attitude_pitch": -2.1,
            "attitude_roll": 0.4, "home_distance": 820.0, "wind_speed": 3, "gear": 1, "firmware_version": "10.01",
            "battery": {"capacity_percent": battery, "remain_flight_time": 1200, "return_home_power": 25,
                        "landing_power": 10, "batteries": []},
            "position_state": {"gps_number": 18, "is_fixed": 2, "quality": 5, "rtk_number": 30}, **extra}
    return {"tid": f"tid-{sn_seq}", "bid": f"bid-{sn_seq}", "timestamp": 1_790_000_000_000 + sn_seq * 500,
            "gateway": "5YSZK7G00B0001", "data": data}


def test_osd_messages_on_a_real_broker_become_records_on_the_raw_topic(provider, read_topic, mqtt_broker, wait):
    conn, publish, topic = provider("UavTelemetry")
    adapter = DjiMqttAdapter(publish, mqtt_broker, classes=UavClassMap({"1581F5BK*": "LIGHT"}),
                             geoid_undulation_m=-2.5).start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-pub")
    host, port = mqtt_broker.rsplit("/", 1)[1].split(":")
    pub.connect(host, int(port))
    pub.loop_start()
    sent = []
    try:
        for i in range(30):
            sn = f"1581F5BKD22{i % 3:04d}"
            msg = osd(i, 22.53 + i * 1e-4, head=-90.0 if i % 2 else 135.5)
            sent.append((sn, msg))
            pub.publish(f"thing/product/{sn}/osd", json.dumps(msg), qos=1).wait_for_publish(5)
        noise = [("thing/product/5YSZK7G00B0001/osd", json.dumps({"data": {"capacity_percent": 80, "latitude": 22.5,
                                                                           "longitude": 113.9, "height": 10}})),
                 ("thing/product/1581F5BKD220000/osd", b"{not json"),
                 ("thing/product/1581F5BKD220000/osd", json.dumps(osd(99, 0.0, 0.0, longitude=0.0))),  # no fix
                 ("thing/product/1581F5BKD220000/osd", json.dumps(osd(98, 95.0, 0.0))),  # out of range
                 ("thing/product/1581F5BKD220000/osd", json.dumps({"data": {"horizontal_speed": 1.0}}))]
        for t, payload in noise:
            pub.publish(t, payload, qos=1).wait_for_publish(5)
        wait(lambda: sum(adapter.stats.values()) >= len(sent) + len(noise), what="all MQTT messages")
    finally:
        pub.loop_stop()
        pub.disconnect()
        adapter.stop()
    conn.flush()
    assert adapter.stats == {"position": 30, "not_aircraft": 1, "bad_json": 1, "no_fix": 1, "out_of_range": 1,
                             "incomplete": 1}
    got = read_topic(topic, 30, "UavTelemetry", settle_s=0.5)
    assert len(got) == 30
    want = {(sn, m["timestamp"]): m for sn, m in sent}
    for r in got:
        m = want[(r["serial_number"], r["timestamp_ms"])]["data"]
        assert r["source"] == "DJI_OSD" and r["uav_class"] == "LIGHT"
        assert r["lat"] == m["latitude"] and r["lon"] == 113.95
        assert r["alt_msl_m"] == pytest.approx(112.4 + 2.5)  # ellipsoid height - N
        assert r["height_agl_m"] == 95.1 and r["speed_h_mps"] == 12.5 and r["speed_v_mps"] == -0.8
        assert r["heading_deg"] == (270.0 if m["attitude_head"] == -90.0 else 135.5)
        assert r["battery_pct"] == 76.0
        assert r["flight_id"].startswith(r["serial_number"] + "-T")
    assert len({r["flight_id"] for r in got}) == 3


def test_flight_ids_follow_mode_code_and_track_id():
    out = []
    clock = [1_800_000_000.0]
    dec = DjiOsdDecoder(Intake("t", out.append), clock=lambda: clock[0])
    topic = "thing/product/SN1/osd"
    for mode in (0, 3, 3, 10, 0):  # standby, manual flight, auto landing, standby
        dec.message(topic, json.dumps(osd(1, 22.5, 0.0, mode=mode)).encode())
        clock[0] += 10
    dec.message(topic, json.dumps(osd(1, 22.5, 0.0, mode=4)).encode())  # automatic take-off: new flight
    dec.message(topic, json.dumps(osd(1, 22.5, 0.0, mode=5, track_id="trk-77")).encode())
    dec.message(topic, json.dumps(osd(1, 22.5, 0.0, mode=14)).encode())  # not connected
    ids = [r["flight_id"] for r in out]
    assert ids[0] == "SN1-T1800000000000"  # on the ground, first seen
    assert ids[1:5] == ["SN1-T1800000010000"] * 4  # took off at +10 s; landed state keeps the flight
    assert ids[5] == "SN1-T1800000050000" and ids[6] == "SN1-trk-77"
    assert len(out) == 7 and dec.intake.stats == {"position": 7, "not_connected": 1}
