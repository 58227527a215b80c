"""Realistic sample records and geofences for the policy engine tests (Wuhan, 2026)."""

from __future__ import annotations

import random

import schemas

UAV = schemas.load("UavTelemetry")
HOTLINE = schemas.load("HotlineTicket")
NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
KEY = bytes(range(32))

# Wuhan: a city box, and an irregular district polygon (Wuchang-ish) inside it, lon/lat order
CITY_BOX = {"type": "Polygon", "coordinates": [[[114.1, 30.5], [114.5, 30.5], [114.5, 30.8], [114.1, 30.8], [114.1, 30.5]]]}
DISTRICT = {"type": "Polygon", "coordinates": [[
    [114.28, 30.52], [114.36, 30.50], [114.42, 30.55], [114.40, 30.62], [114.33, 30.66],
    [114.30, 30.60], [114.26, 30.58], [114.28, 30.52]]]}
AIRPORT_ZONES = {"type": "FeatureCollection", "features": [
    {"type": "Feature", "properties": {"name": "Tianhe airport"},
     "geometry": {"type": "Polygon", "coordinates": [[[114.17, 30.74], [114.25, 30.74], [114.25, 30.80],
                                                      [114.17, 30.80], [114.17, 30.74]]]}},
    {"type": "Feature", "properties": {"name": "helipads"},
     "geometry": {"type": "MultiPolygon", "coordinates": [
         [[[114.30, 30.58], [114.31, 30.58], [114.31, 30.59], [114.30, 30.59], [114.30, 30.58]]],
         [[[114.40, 30.52], [114.41, 30.52], [114.41, 30.53], [114.40, 30.53], [114.40, 30.52]]]]}}]}


def uav(**over) -> dict:
    rec = {"serial_number": "1581F5FJB22A0012", "uin": "UAS-CN-00012345", "operator_id": "OP-WH-0007",
           "uav_class": "LIGHT", "flight_id": "F20260101-0001", "timestamp_ms": NOW_MS - 1500,
           "lat": 30.58321, "lon": 114.33456, "alt_msl_m": 98.2, "height_agl_m": 75.4, "speed_h_mps": 12.3,
           "speed_v_mps": -0.4, "heading_deg": 271.5, "battery_pct": 64.0, "source": "MAVLINK"}
    rec.update(over)
    return rec


def ticket(**over) -> dict:
    rec = {"order_no": "WH2026010100123", "call_time": NOW_MS - 3_600_000, "channel": "PHONE",
           "caller_name": "张伟", "caller_phone": "13812345678", "caller_email": None,
           "category_code": "0301", "category_name": "道路积水", "district": "武昌区",
           "address": "武昌区中北路 123 号", "address_id": None, "zipcode": "430071",
           "lat": 30.5621, "lon": 114.3476, "content": "中北路口积水严重，请尽快处理。联系电话 13812345678。",
           "handling_unit": "武昌区水务局", "status": "RECEIVED", "status_notes": None, "deadline": None,
           "completed_time": None, "updated_time": None, "confidential": False, "media_url": None,
           "service_notice": None, "device_id": None, "account_id": None, "attributes": {}}
    rec.update(over)
    return rec


def uav_batch(n: int, seed: int = 0) -> list[dict]:
    rnd = random.Random(seed)
    return [uav(serial_number=f"1581F{rnd.randrange(50):011d}", lat=rnd.uniform(30.45, 30.85),
                lon=rnd.uniform(114.05, 114.55), height_agl_m=rnd.uniform(0, 200),
                timestamp_ms=NOW_MS - rnd.randrange(0, 300_000)) for _ in range(n)]
