"""DJI Cloud API aircraft OSD over MQTT -> UavTelemetry.

DJI Pilot 2 and DJI Dock publish each device's high-frequency properties ("osd",
pushMode 0) to `thing/product/{device_sn}/osd` on the cloud platform's MQTT broker, as
`{"tid", "bid", "timestamp" (ms), "gateway" (gateway SN), "data": {...properties}}`. The same
topic pattern carries remote-controller and dock OSD; only aircraft OSD (it has
`horizontal_speed` / `attitude_head`) becomes a record, the rest is counted as `not_aircraft`.

Field mapping (DJI Cloud API thing model, aircraft properties):

| OSD field | UavTelemetry | note |
| --- | --- | --- |
| topic `{device_sn}` | serial_number | the aircraft SN |
| `timestamp` | timestamp_ms | envelope time; reception time when absent |
| latitude, longitude | lat, lon | degrees; 0/0 means no GNSS fix and is skipped |
| height | alt_msl_m | DJI's "absolute height" is WGS-84 *ellipsoid* height; MSL = height - N, with N the geoid undulation at the operating area (`--geoid-undulation-m`, default 0 so the ellipsoid height passes through unchanged) |
| elevation | height_agl_m | height relative to the take-off point, the 真高 DJI reports |
| horizontal_speed, vertical_speed | speed_h_mps, speed_v_mps | m/s, vertical positive up |
| attitude_head | heading_deg | −180..180 → 0..360 |
| battery.capacity_percent | battery_pct | |
| mode_code | flight_id | a flight starts when mode_code leaves the ground states (0 standby, 1–2 take-off preparation, 13 upgrading); DJI Pilot's `track_id` is used when present; 14 (not connected) is skipped |

    python -m streams.adapters.dji_mqtt --provider P --product uav --mqtt mqtt://127.0.0.1:1883
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt

from .base import Intake, Publish, UavClassMap, common_parser, main_loop

log = logging.getLogger("citymesh.adapters.dji")

OSD_TOPIC = "thing/product/+/osd"
GROUND_MODES = {0, 1, 2, 13}
NOT_CONNECTED = 14


class DjiOsdDecoder:
    """One MQTT message (topic, payload) in, at most one UavTelemetry record out."""

    def __init__(self, intake: Intake, classes: UavClassMap | None = None, geoid_undulation_m: float = 0.0,
                 clock=time.time):
        self.intake = intake
        self.classes = classes or UavClassMap()
        self.geoid_undulation_m = geoid_undulation_m
        self.clock = clock
        self._flights: dict[str, list] = {}  # sn -> [anchor_ms, airborne]

    def message(self, topic: str, payload: bytes) -> str:
        result = self._decode(topic, payload)
        self.intake.count(result)
        return result

    def _decode(self, topic: str, payload: bytes) -> str:
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != "thing" or parts[1] != "product" or parts[3] != "osd" or not parts[2]:
            return "bad_topic"
        sn = parts[2]
        try:
            msg = json.loads(payload)
        except (UnicodeDecodeError, ValueError):
            return "bad_json"
        data = msg.get("data") if isinstance(msg, dict) else None
        if not isinstance(data, dict):
            return "bad_json"
        if "horizontal_speed" not in data and "attitude_head" not in data:
            return "not_aircraft"
        try:
            mode = int(data.get("mode_code", 3))
            if mode == NOT_CONNECTED:
                return "not_connected"
            lat, lon = float(data["latitude"]), float(data["longitude"])
            if lat == 0 and lon == 0:
                return "no_fix"
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                return "out_of_range"
            battery = data.get("battery")
            battery = battery.get("capacity_percent") if isinstance(battery, dict) else None
            now_ms = int(self.clock() * 1000)
            ts = msg.get("timestamp")
            record = {
                "serial_number": sn, "uin": None, "operator_id": None, "uav_class": self.classes(sn),
                "flight_id": self._flight_id(sn, mode, data.get("track_id"), now_ms),
                "timestamp_ms": int(ts) if isinstance(ts, (int, float)) and ts > 0 else now_ms,
                "lat": lat, "lon": lon,
                "alt_msl_m": float(data["height"]) - self.geoid_undulation_m,
                "height_agl_m": float(data["elevation"]),
                "speed_h_mps": float(data.get("horizontal_speed") or 0.0),
                "speed_v_mps": float(data.get("vertical_speed") or 0.0),
                "heading_deg": float(data.get("attitude_head") or 0.0) % 360.0,
                "battery_pct": None if battery is None else float(battery),
                "source": "DJI_OSD"}
        except KeyError:
            return "incomplete"
        except (TypeError, ValueError):
            return "bad_value"
        return "position" if self.intake.emit(record) else "invalid"

    def _flight_id(self, sn: str, mode: int, track_id, now_ms: int) -> str:
        if isinstance(track_id, str) and track_id:
            return f"{sn}-{track_id}"
        state = self._flights.get(sn)
        airborne = mode not in GROUND_MODES
        if state is None:
            state = self._flights[sn] = [now_ms, airborne]
        elif airborne and not state[1]:
            state[0] = now_ms
        state[1] = airborne
        return f"{sn}-T{state[0]}"


class DjiMqttAdapter:
    """A paho-mqtt session subscribed to the aircraft OSD topic; reconnects on its own."""

    name = "dji_mqtt"

    def __init__(self, publish: Publish, url: str = "mqtt://127.0.0.1:1883", topic: str = OSD_TOPIC,
                 qos: int = 1, classes: UavClassMap | None = None, geoid_undulation_m: float = 0.0,
                 client_id: str | None = None):
        self.intake = Intake(self.name, publish)
        self.decoder = DjiOsdDecoder(self.intake, classes, geoid_undulation_m)
        u = urlsplit(url)
        if u.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"unsupported MQTT URL {url!r}: use mqtt://host:port or mqtts://host:port")
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (8883 if u.scheme in ("mqtts", "ssl") else 1883)
        self.topic, self.qos = topic, qos
        self._subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"citymesh-dji-{uuid.uuid4().hex[:8]}")
        if u.username:
            c.username_pw_set(u.username, u.password)
        if u.scheme in ("mqtts", "ssl"):
            c.tls_set()
        c.on_connect = self._on_connect
        c.on_subscribe = lambda *a: self._subscribed.set()
        c.on_message = self._on_message
        c.reconnect_delay_set(1, 30)
        self._client = c

    @property
    def stats(self) -> dict[str, int]:
        return self.intake.stats

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT connect to %s:%d refused: %s", self.host, self.port, reason_code)
            return
        client.subscribe(self.topic, self.qos)  # again after every reconnect

    def _on_message(self, client, userdata, msg) -> None:
        try:
            self.decoder.message(msg.topic, msg.payload)
        except Exception:  # the sink failing must not kill paho's network thread
            log.exception("OSD message dropped")
            self.intake.count("error")

    def start(self, timeout_s: float = 10.0) -> "DjiMqttAdapter":
        self._client.connect(self.host, self.port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(timeout_s):
            self.stop()
            raise TimeoutError(f"no SUBACK for {self.topic} from {self.host}:{self.port} within {timeout_s:.0f}s")
        log.info("subscribed to %s on mqtt://%s:%d", self.topic, self.host, self.port)
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def main(argv: list[str] | None = None) -> int:
    p = common_parser("Subscribe to DJI Cloud API aircraft OSD over MQTT and publish UavTelemetry")
    p.add_argument("--mqtt", default="mqtt://127.0.0.1:1883", help="broker URL, mqtt://[user:pass@]host:port or mqtts://")
    p.add_argument("--topic", default=OSD_TOPIC)
    p.add_argument("--qos", type=int, default=1, choices=(0, 1, 2))
    p.add_argument("--geoid-undulation-m", type=float, default=0.0,
                   help="geoid height N of the operating area: alt_msl_m = OSD height - N")
    p.add_argument("--classes", help="YAML mapping serial number (or prefix*) -> uav class")
    args = p.parse_args(argv)
    classes = UavClassMap.load(args.classes)
    return main_loop(args, lambda publish: DjiMqttAdapter(publish, args.mqtt, args.topic, args.qos, classes,
                                                          args.geoid_undulation_m))


if __name__ == "__main__":
    raise SystemExit(main())
