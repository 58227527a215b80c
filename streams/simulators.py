"""Simulated sources for demos and tests: a drone fleet flying realistic profiles and a
12345 hotline taking calls. Deterministic for a given seed.

Flights take off, climb to a cruise height, fly a straight leg at cruise speed, descend
and land, then the drone takes off again on a new flight. A share of drones break the
rules the regulator watches (fly above 120 m true height, or without a real-name id) so
the compliance path always has something to show.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

# Shenzhen, around Nanshan and Futian
BASES = [(22.5405, 113.9345), (22.5330, 114.0550), (22.5600, 113.9000), (22.5200, 113.9300), (22.6050, 114.0600)]
EARTH_R = 6_371_000.0
_CLASSES = ["MICRO", "LIGHT", "LIGHT", "SMALL", "SMALL", "MEDIUM"]


def _move(lat: float, lon: float, bearing_deg: float, metres: float) -> tuple[float, float]:
    b = math.radians(bearing_deg)
    dlat = metres * math.cos(b) / EARTH_R
    dlon = metres * math.sin(b) / (EARTH_R * math.cos(math.radians(lat)))
    return lat + math.degrees(dlat), lon + math.degrees(dlon)


@dataclass
class _Drone:
    serial: str
    uin: str | None
    operator_id: str
    uav_class: str
    cruise_h: float
    cruise_v: float
    lat: float
    lon: float
    ground_msl: float
    flight_no: int = 0
    phase: str = "ground"
    h: float = 0.0
    heading: float = 0.0
    leg_left_m: float = 0.0
    battery: float = 100.0
    t_in_phase: float = 0.0


@dataclass
class FleetSimulator:
    """Yields UavTelemetry records; `tick(dt_s)` advances every drone by dt seconds."""

    drones: int = 20
    seed: int = 7
    violators: float = 0.15
    start_ms: int = 1_790_000_000_000
    _fleet: list[_Drone] = field(default_factory=list, init=False)
    now_ms: int = field(init=False)

    def __post_init__(self) -> None:
        rnd = random.Random(self.seed)
        self._rnd = rnd
        self.now_ms = self.start_ms
        for i in range(self.drones):
            base = BASES[i % len(BASES)]
            bad = rnd.random() < self.violators
            cls = rnd.choice(_CLASSES)
            self._fleet.append(_Drone(
                serial=f"1581F{rnd.randrange(16**7):07X}{i:04d}",
                uin=None if bad and rnd.random() < 0.3 else f"UAS{rnd.randrange(10**9):09d}",
                operator_id=f"CHN-OP-{rnd.randrange(10**6):06d}",
                uav_class=cls,
                cruise_h=rnd.uniform(125, 160) if bad else rnd.uniform(40 if cls == "MICRO" else 60, 45 if cls == "MICRO" else 115),
                cruise_v=rnd.uniform(8, 16),
                lat=base[0] + rnd.uniform(-0.01, 0.01), lon=base[1] + rnd.uniform(-0.01, 0.01),
                ground_msl=rnd.uniform(5, 40)))

    def tick(self, dt_s: float = 1.0) -> list[dict]:
        """Advance the fleet by dt_s and return one position update per airborne drone."""
        self.now_ms += int(dt_s * 1000)
        out = []
        for d in self._fleet:
            vs = self._advance(d, dt_s)
            if d.phase == "ground":
                continue
            out.append({
                "serial_number": d.serial, "uin": d.uin, "operator_id": d.operator_id, "uav_class": d.uav_class,
                "flight_id": f"{d.serial}-{d.flight_no:04d}", "timestamp_ms": self.now_ms,
                "lat": round(d.lat, 7), "lon": round(d.lon, 7), "alt_msl_m": round(d.ground_msl + d.h, 2),
                "height_agl_m": round(d.h, 2), "speed_h_mps": round(d.cruise_v if d.phase == "cruise" else 0.5, 2),
                "speed_v_mps": round(vs, 2), "heading_deg": round(d.heading % 360, 1),
                "battery_pct": round(d.battery, 1), "source": "SIMULATOR"})
        return out

    def _advance(self, d: _Drone, dt: float) -> float:
        rnd = self._rnd
        d.t_in_phase += dt
        if d.phase == "ground":
            if d.t_in_phase > rnd.uniform(2, 20):
                d.phase, d.t_in_phase, d.flight_no = "climb", 0.0, d.flight_no + 1
                d.heading = rnd.uniform(0, 360)
                d.leg_left_m = rnd.uniform(1500, 6000)
                d.battery = min(100.0, d.battery + 60)
            return 0.0
        d.battery = max(5.0, d.battery - 0.02 * dt)
        if d.phase == "climb":
            d.h = min(d.cruise_h, d.h + 4.0 * dt)
            if d.h >= d.cruise_h:
                d.phase, d.t_in_phase = "cruise", 0.0
            return 4.0
        if d.phase == "cruise":
            step = d.cruise_v * dt
            d.lat, d.lon = _move(d.lat, d.lon, d.heading, step)
            d.heading += rnd.uniform(-3, 3)
            d.leg_left_m -= step
            if d.leg_left_m <= 0:
                d.phase, d.t_in_phase = "descend", 0.0
            return 0.0
        d.h = max(0.0, d.h - 3.0 * dt)  # descend
        if d.h <= 0:
            d.phase, d.t_in_phase = "ground", 0.0
        return -3.0


DISTRICTS = ["福田区", "罗湖区", "南山区", "宝安区", "龙岗区", "龙华区", "坪山区", "光明区", "盐田区", "大鹏新区"]
CATEGORIES = [
    ("0101", "噪音扰民", "{place}附近{when}有施工噪音，严重影响休息，请尽快处理。"),
    ("0102", "占道经营", "{place}门口长期有流动摊贩占道经营，行人通行困难。"),
    ("0203", "物业管理", "小区物业{when}停水未提前通知，请相关部门督促物业整改。"),
    ("0301", "道路积水", "{place}路段积水严重，车辆无法通行，存在安全隐患。"),
    ("0302", "井盖缺失", "{place}人行道井盖缺失，已有行人差点跌落，请紧急处理。"),
    ("0401", "违章停车", "{place}长期有车辆违停，车牌粤B{plate}，堵塞消防通道。"),
    ("0501", "燃气泄漏", "{place}闻到明显燃气味，怀疑泄漏，请立即派人查看。"),
    ("0702", "拖欠工资", "本人在{place}附近工地务工，老板拖欠三个月工资共{amount}元。"),
    ("0905", "无人机扰民", "{place}上空{when}有无人机低空盘旋，担心安全和隐私。"),
]
PLACES = ["深南大道与科技南路交汇处", "南山区桃园路", "福田区彩田路", "宝安区新安街道", "罗湖区东门步行街",
          "龙华区民治大道", "科技园南区", "前海自贸区", "蛇口海上世界"]
WHEN = ["每天晚上十点以后", "今天凌晨", "最近一周", "周末上午", "昨天下午"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = ["伟", "芳", "娜", "敏", "静", "磊", "强", "洋", "艳", "杰", "军", "婷", "明", "华", "建国"]
# (lat, lon) of the district centres, roughly
DISTRICT_POS = {"福田区": (22.541, 114.055), "罗湖区": (22.548, 114.131), "南山区": (22.533, 113.930),
                "宝安区": (22.555, 113.883), "龙岗区": (22.721, 114.247), "龙华区": (22.697, 114.045),
                "坪山区": (22.691, 114.346), "光明区": (22.749, 113.936), "盐田区": (22.557, 114.237),
                "大鹏新区": (22.594, 114.479)}


@dataclass
class HotlineSimulator:
    """Yields HotlineTicket records as the 12345 centre would take them."""

    seed: int = 11
    start_ms: int = 1_790_000_000_000
    _n: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._rnd = random.Random(self.seed)

    def ticket(self, now_ms: int | None = None) -> dict:
        rnd = self._rnd
        self._n += 1
        now = now_ms if now_ms is not None else self.start_ms + self._n * 1000
        code, name, text = rnd.choice(CATEGORIES)
        district = rnd.choice(DISTRICTS)
        content = text.format(place=rnd.choice(PLACES), when=rnd.choice(WHEN), plate=f"{rnd.randrange(10**5):05d}",
                              amount=rnd.randrange(3000, 30000))
        caller = rnd.choice(SURNAMES) + rnd.choice(GIVEN)
        phone = f"1{rnd.choice('3578')}{rnd.randrange(10**9):09d}"
        if rnd.random() < 0.2:  # citizens often repeat their contact details in the text
            content += f"我叫{caller}，电话{phone}。"
        lat, lon = DISTRICT_POS[district]
        return {
            "order_no": f"SZ{now // 86_400_000:05d}{self._n:07d}", "call_time": now,
            "channel": rnd.choice(["PHONE", "PHONE", "PHONE", "WECHAT", "APP", "WEB"]),
            "caller_name": caller, "caller_phone": phone, "caller_email": None,
            "category_code": code, "category_name": name, "district": district,
            "address": f"深圳市{district}{rnd.choice(PLACES)}", "address_id": None, "zipcode": None,
            "lat": round(lat + rnd.uniform(-0.02, 0.02), 6), "lon": round(lon + rnd.uniform(-0.02, 0.02), 6),
            "content": content, "handling_unit": f"{district}城市管理和综合执法局",
            "status": "RECEIVED", "status_notes": None, "deadline": now + 3 * 86_400_000,
            "completed_time": None, "updated_time": None, "confidential": rnd.random() < 0.05,
            "media_url": None, "service_notice": None, "device_id": None, "account_id": None, "attributes": {}}
