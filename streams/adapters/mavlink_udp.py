"""MAVLink v2 over UDP -> UavTelemetry.

A ground station, MAVLink router or Remote ID receiver sends datagrams to this adapter
(default 0.0.0.0:14550, the port QGroundControl and mavlink-router use). Frames are
parsed with pymavlink's `common` dialect in robust mode, so a bad CRC, junk bytes or an
unknown message id comes back as a value to count instead of an exception. A datagram is
a complete unit on UDP: bytes left in the parser after one datagram are a truncated frame
and are dropped, so they can never corrupt the next sender's frame.

Many vehicles share the socket. State is kept per vehicle, keyed by MAVLink system id,
or for Open Drone ID messages that relay *another* aircraft (non-zero `id_or_mac`) by that
id. HEARTBEAT (armed state), SYS_STATUS (battery), OPEN_DRONE_ID_BASIC_ID (serial number,
CAA registration) and OPEN_DRONE_ID_OPERATOR_ID are merged into that state; every position
update (GLOBAL_POSITION_INT, or OPEN_DRONE_ID_LOCATION for aircraft seen only through
Remote ID) yields exactly one UavTelemetry record.

    python -m streams.adapters.mavlink_udp --provider P --product uav [--listen 0.0.0.0:14550]
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from dataclasses import dataclass

from pymavlink.dialects.v20 import common as mavlink

from .base import Intake, Publish, UavClassMap, common_parser, host_port, main_loop

log = logging.getLogger("citymesh.adapters.mavlink")

UINT16_MAX = 0xFFFF
ARMED_FLAG = mavlink.MAV_MODE_FLAG_SAFETY_ARMED
NOT_AN_AIRCRAFT = {mavlink.MAV_TYPE_GCS, mavlink.MAV_TYPE_ODID}  # their HEARTBEAT says nothing of arming
ODID_ID_SERIAL = mavlink.MAV_ODID_ID_TYPE_SERIAL_NUMBER
ODID_ID_CAA = mavlink.MAV_ODID_ID_TYPE_CAA_REGISTRATION_ID
ODID_AIRBORNE = mavlink.MAV_ODID_STATUS_AIRBORNE
ODID_UNKNOWN_ALT = -1000.0
# a vehicle that sent GLOBAL_POSITION_INT this recently is not re-reported from its own
# Remote ID broadcast: one record per position update, not two
SUPERSEDE_MS = 5000


@dataclass(slots=True)
class Vehicle:
    """What is known about one aircraft between its position updates."""

    label: str  # fallback serial: MAV-<sysid> or RID-<id_or_mac hex>
    serial: str | None = None
    uin: str | None = None
    operator_id: str | None = None
    uav_class: str = "UNKNOWN"
    battery: float | None = None
    armed: bool | None = None  # None: no HEARTBEAT yet
    anchor: str | None = None  # second half of flight_id: "A<arm ms>", "B<boot ms>" or "S<first seen ms>"
    anchor_ms: int = 0
    boot_ms: int | None = None  # wall-clock ms of the autopilot's boot
    last_time_boot: int = -1
    heading: float = 0.0
    last_mavlink_pos_ms: int = -SUPERSEDE_MS
    airborne: bool | None = None  # ODID status


def _text(value) -> str:
    """ODID ids arrive as a list of uint8 (uas_id) or a str/bytes (char[]): NUL-padded ASCII."""
    if isinstance(value, str):
        return value.rstrip("\x00").strip()
    return bytes(value).rstrip(b"\x00").decode("ascii", "replace").strip()


def _bad_reason(reason: str) -> str:
    reason = reason.lower()
    if "crc" in reason:
        return "bad_crc"
    if "prefix" in reason:
        return "bad_prefix"
    if "length" in reason:
        return "truncated"
    return "malformed"


class MavlinkDecoder:
    """Datagrams in, UavTelemetry records out through `intake`; free of sockets so it can be
    tested and benchmarked on bytes alone."""

    def __init__(self, intake: Intake, classes: UavClassMap | None = None, clock=time.time):
        self.intake = intake
        self.classes = classes or UavClassMap()
        self.clock = clock
        self.vehicles: dict[object, Vehicle] = {}
        self._mav = mavlink.MAVLink(None)
        self._mav.robust_parsing = True
        self._handlers = {
            mavlink.MAVLink_global_position_int_message: self._global_position_int,
            mavlink.MAVLink_heartbeat_message: self._heartbeat,
            mavlink.MAVLink_sys_status_message: self._sys_status,
            mavlink.MAVLink_open_drone_id_basic_id_message: self._basic_id,
            mavlink.MAVLink_open_drone_id_operator_id_message: self._operator_id,
            mavlink.MAVLink_open_drone_id_location_message: self._odid_location,
        }

    # ---- framing -------------------------------------------------------------------------
    def datagram(self, data: bytes) -> None:
        """Parse one UDP datagram (zero or more frames) and publish its position updates."""
        counts: dict[str, int] = {}
        now_ms = int(self.clock() * 1000)
        mav = self._mav
        try:
            msgs = mav.parse_buffer(data) or ()
        except Exception as exc:  # robust mode should not raise; a pymavlink bug must not stop intake
            log.debug("unparseable datagram: %s", exc)
            msgs = ()
            counts["malformed"] = 1
        if mav.buf_len():
            counts["truncated"] = counts.get("truncated", 0) + 1
            mav.buf = bytearray()
            mav.buf_index = 0
            mav.expected_length = mavlink.HEADER_LEN_V1 + 2
        handlers = self._handlers
        for msg in msgs:
            handler = handlers.get(msg.__class__)
            if handler is not None:
                try:
                    result = handler(msg, now_ms)
                except Exception:  # a value pymavlink accepted but we cannot map
                    log.exception("cannot map %s", msg.get_type())
                    result = "malformed"
            elif msg.__class__ is mavlink.MAVLink_bad_data:
                result = _bad_reason(msg.reason)
            elif msg.__class__ is mavlink.MAVLink_unknown:
                result = "unknown_msgid"
            else:
                result = "ignored"  # a valid message this adapter does not use (ATTITUDE, ...)
            counts[result] = counts.get(result, 0) + 1
        self.intake.count_many(counts)

    # ---- vehicle state -------------------------------------------------------------------
    def _vehicle(self, key, label: str) -> Vehicle:
        v = self.vehicles.get(key)
        if v is None:
            v = self.vehicles[key] = Vehicle(label, uav_class=self.classes(label))
        return v

    def _by_sysid(self, msg) -> Vehicle:
        sysid = msg._header.srcSystem
        v = self.vehicles.get(sysid)
        return v if v is not None else self._vehicle(sysid, f"MAV-{sysid}")

    def _by_odid(self, msg) -> Vehicle:
        mac = bytes(msg.id_or_mac)
        if not any(mac):  # zero-filled: the data is about the sender itself
            return self._by_sysid(msg)
        return self._vehicle(("odid", mac), "RID-" + mac.rstrip(b"\0").hex())

    def _flight_id(self, v: Vehicle, serial: str, now_ms: int) -> str:
        """serial + arm time when the arming was seen, else + boot time (MAVLink) or first
        sight (Remote ID): stable for one take-off to landing, new on the next."""
        if v.anchor is None:
            if v.boot_ms is not None:
                self._anchor(v, "B", v.boot_ms)
            else:
                self._anchor(v, "S", now_ms)
        return f"{serial}-{v.anchor}"

    @staticmethod
    def _anchor(v: Vehicle, kind: str, ms: int) -> None:
        v.anchor, v.anchor_ms = f"{kind}{ms}", ms

    def _heartbeat(self, msg, now_ms: int) -> str:
        if msg.type in NOT_AN_AIRCRAFT:
            return "ignored"
        v = self._by_sysid(msg)
        armed = bool(msg.base_mode & ARMED_FLAG)
        if armed and v.armed is False:
            self._anchor(v, "A", now_ms)
        v.armed = armed
        return "state"

    def _sys_status(self, msg, now_ms: int) -> str:
        rem = msg.battery_remaining
        self._by_sysid(msg).battery = None if rem < 0 else float(rem)
        return "state"

    def _basic_id(self, msg, now_ms: int) -> str:
        v = self._by_odid(msg)
        ident = _text(msg.uas_id)
        if not ident:
            return "incomplete"
        if msg.id_type == ODID_ID_SERIAL:
            if ident != v.serial:
                v.serial = ident
                v.uav_class = self.classes(ident)
        elif msg.id_type == ODID_ID_CAA:
            v.uin = ident
        else:  # UTM UUID or session id: not an identity the regulator keys on
            return "ignored"
        return "state"

    def _operator_id(self, msg, now_ms: int) -> str:
        ident = _text(msg.operator_id)
        self._by_odid(msg).operator_id = ident or None
        return "state"

    # ---- position updates ----------------------------------------------------------------
    def _global_position_int(self, m, now_ms: int) -> str:
        lat, lon = m.lat, m.lon
        if lat == 0 and lon == 0:
            return "no_fix"
        if not (-900_000_000 <= lat <= 900_000_000 and -1_800_000_000 <= lon <= 1_800_000_000):
            return "out_of_range"
        v = self._by_sysid(m)
        tb = m.time_boot_ms
        if tb < v.last_time_boot or v.boot_ms is None:  # first sight or the autopilot rebooted
            v.boot_ms = now_ms - tb
            if v.anchor is not None and v.anchor_ms < v.boot_ms:  # a flight of an earlier boot
                v.anchor = None
        v.last_time_boot = tb
        v.last_mavlink_pos_ms = now_ms
        vx, vy = m.vx, m.vy
        hdg = m.hdg
        if hdg != UINT16_MAX:
            v.heading = hdg / 100.0
        elif vx or vy:  # NED: vx north, vy east
            v.heading = math.degrees(math.atan2(vy, vx)) % 360.0
        serial = v.serial or v.label
        ok = self.intake.emit({
            "serial_number": serial, "uin": v.uin, "operator_id": v.operator_id, "uav_class": v.uav_class,
            "flight_id": self._flight_id(v, serial, now_ms), "timestamp_ms": now_ms,
            "lat": lat / 1e7, "lon": lon / 1e7, "alt_msl_m": m.alt / 1000.0, "height_agl_m": m.relative_alt / 1000.0,
            "speed_h_mps": math.hypot(vx, vy) / 100.0, "speed_v_mps": -m.vz / 100.0,
            "heading_deg": v.heading % 360.0, "battery_pct": v.battery, "source": "MAVLINK"})
        return "position" if ok else "invalid"

    def _odid_location(self, m, now_ms: int) -> str:
        v = self._by_odid(m)
        if now_ms - v.last_mavlink_pos_ms < SUPERSEDE_MS:
            return "superseded"
        lat, lon = m.latitude, m.longitude
        if lat == 0 and lon == 0:
            return "no_fix"
        if not (-900_000_000 <= lat <= 900_000_000 and -1_800_000_000 <= lon <= 1_800_000_000):
            return "out_of_range"
        # altitude_geodetic is WGS-84 ellipsoid height; barometric is pressure altitude. Either
        # is the best MSL figure Remote ID offers (see dji_mqtt for the geoid difference).
        alt = m.altitude_geodetic if m.altitude_geodetic > ODID_UNKNOWN_ALT else m.altitude_barometric
        if alt <= ODID_UNKNOWN_ALT or m.height <= ODID_UNKNOWN_ALT:
            return "incomplete"
        airborne = m.status == ODID_AIRBORNE
        if airborne and v.airborne is False:
            self._anchor(v, "A", now_ms)
        v.airborne = airborne
        if m.direction <= 36000:
            v.heading = m.direction / 100.0
        serial = v.serial or v.label
        ok = self.intake.emit({
            "serial_number": serial, "uin": v.uin, "operator_id": v.operator_id, "uav_class": v.uav_class,
            "flight_id": self._flight_id(v, serial, now_ms), "timestamp_ms": _odid_time(m.timestamp, now_ms),
            "lat": lat / 1e7, "lon": lon / 1e7, "alt_msl_m": round(alt, 2), "height_agl_m": round(m.height, 2),  # float32 on the wire
            "speed_h_mps": 0.0 if m.speed_horizontal == 25500 else m.speed_horizontal / 100.0,
            "speed_v_mps": 0.0 if m.speed_vertical == 6300 else m.speed_vertical / 100.0,
            "heading_deg": v.heading % 360.0, "battery_pct": v.battery,
            "source": "REMOTE_ID"})
        return "position" if ok else "invalid"


def _odid_time(seconds_after_hour: float, now_ms: int) -> int:
    """ODID timestamps are seconds after the full UTC hour: place them in the hour of
    reception, or the previous one when that would put them in the future."""
    if not 0 <= seconds_after_hour < 3600:
        return now_ms
    t = now_ms - now_ms % 3_600_000 + int(round(seconds_after_hour * 1000))
    return t - 3_600_000 if t > now_ms + 60_000 else t


class MavlinkUdpAdapter:
    """Owns the UDP socket and a reader thread feeding `MavlinkDecoder`."""

    name = "mavlink_udp"

    def __init__(self, publish: Publish, host: str = "0.0.0.0", port: int = 14550,
                 classes: UavClassMap | None = None, rcvbuf: int = 8 << 20):
        self.intake = Intake(self.name, publish)
        self.decoder = MavlinkDecoder(self.intake, classes)
        self._host, self._port, self._rcvbuf = host, port, rcvbuf
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def stats(self) -> dict[str, int]:
        return self.intake.stats

    @property
    def address(self) -> tuple[str, int]:
        return self._sock.getsockname()

    def start(self) -> "MavlinkUdpAdapter":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # bursts from many vehicles must queue in the kernel, not be dropped, while we publish
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._rcvbuf)
        sock.bind((self._host, self._port))
        sock.settimeout(0.2)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="mavlink-udp", daemon=True)
        self._thread.start()
        log.info("listening for MAVLink on udp://%s:%d", *self.address)
        return self

    def _run(self) -> None:
        recv, feed = self._sock.recv, self.decoder.datagram
        while not self._stop.is_set():
            try:
                data = recv(65535)
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                raise
            try:
                feed(data)
            except Exception:  # never let one datagram end intake; the sink's own failures included
                log.exception("datagram dropped")
                self.intake.count("error")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()


def main(argv: list[str] | None = None) -> int:
    p = common_parser("Receive MAVLink v2 over UDP and publish UavTelemetry")
    p.add_argument("--listen", type=host_port, default=("0.0.0.0", 14550), help="HOST:PORT to bind")
    p.add_argument("--classes", help="YAML mapping serial number (or prefix*) -> uav class")
    args = p.parse_args(argv)
    classes = UavClassMap.load(args.classes)
    return main_loop(args, lambda publish: MavlinkUdpAdapter(publish, *args.listen, classes=classes))


if __name__ == "__main__":
    raise SystemExit(main())
