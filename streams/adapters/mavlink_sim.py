"""A drone fleet that speaks MAVLink v2 over UDP, for demos, tests and benchmarks.

The flight profiles come from `streams.simulators.FleetSimulator` (take-off, climb, cruise,
descend, land); this module only turns each position update into the frames a real
autopilot would send, built with pymavlink so the bytes are the protocol's and not ours:

- every vehicle has its own system id and sequence counter;
- HEARTBEAT (armed while airborne) once a second and at every arm/disarm, SYS_STATUS with
  the battery once a second, OPEN_DRONE_ID_BASIC_ID (serial number, and the CAA
  registration as a second BASIC_ID) and OPEN_DRONE_ID_OPERATOR_ID at first sight and then
  every few seconds, GLOBAL_POSITION_INT at every update;
- `remote_id` vehicles have no autopilot link: a Remote ID receiver (system id 250) relays
  their OPEN_DRONE_ID_* broadcasts, naming each aircraft by a MAC in `id_or_mac`.

One datagram per vehicle and update carries all its frames, as a MAVLink router batches them.

    python -m streams.adapters.mavlink_sim --target 127.0.0.1:14550 --drones 50 --rate 5
"""

from __future__ import annotations

import argparse
import math
import signal
import socket
import time

from pymavlink.dialects.v20 import common as mavlink

from streams.simulators import FleetSimulator

from .base import host_port

RECEIVER_SYSID = 250
MAX_VEHICLES = 249  # system ids 1..249; 250 is the Remote ID receiver, 255 is usually a GCS


class DroneLink:
    """The MAVLink endpoint of one vehicle: system id, sequence numbers, frame builders."""

    def __init__(self, sysid: int, mac: bytes | None = None, boot_wall: float | None = None):
        self.mav = mavlink.MAVLink(None, srcSystem=RECEIVER_SYSID if mac else sysid, srcComponent=1)
        self.sysid = sysid
        self.mac = list((mac or b"").ljust(20, b"\0"))
        self.armed: bool | None = None
        self.boot_wall = time.time() if boot_wall is None else boot_wall
        self.next_heartbeat = 0.0
        self.next_ident = 0.0

    def pack(self, msg) -> bytes:
        buf = msg.pack(self.mav)
        self.mav.seq = (self.mav.seq + 1) & 0xFF
        return buf

    def heartbeat(self, armed: bool) -> bytes:
        mode = mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED | (mavlink.MAV_MODE_FLAG_SAFETY_ARMED if armed else 0)
        state = mavlink.MAV_STATE_ACTIVE if armed else mavlink.MAV_STATE_STANDBY
        return self.pack(mavlink.MAVLink_heartbeat_message(
            mavlink.MAV_TYPE_QUADROTOR, mavlink.MAV_AUTOPILOT_PX4, mode, 0, state, 3))

    def sys_status(self, battery_pct: float | None) -> bytes:
        remaining = -1 if battery_pct is None else int(round(battery_pct))
        return self.pack(mavlink.MAVLink_sys_status_message(0, 0, 0, 250, 15800, 1200, remaining, 0, 0, 0, 0, 0, 0))

    def ident(self, rec: dict) -> bytes:
        ua = mavlink.MAV_ODID_UA_TYPE_HELICOPTER_OR_MULTIROTOR
        out = self.pack(mavlink.MAVLink_open_drone_id_basic_id_message(
            0, 0, self.mac, mavlink.MAV_ODID_ID_TYPE_SERIAL_NUMBER, ua, list(rec["serial_number"].encode()[:20].ljust(20, b"\0"))))
        if rec.get("uin"):
            out += self.pack(mavlink.MAVLink_open_drone_id_basic_id_message(
                0, 0, self.mac, mavlink.MAV_ODID_ID_TYPE_CAA_REGISTRATION_ID, ua, list(rec["uin"].encode()[:20].ljust(20, b"\0"))))
        if rec.get("operator_id"):
            out += self.pack(mavlink.MAVLink_open_drone_id_operator_id_message(
                0, 0, self.mac, mavlink.MAV_ODID_OPERATOR_ID_TYPE_CAA, rec["operator_id"].encode()[:20]))
        return out

    def global_position_int(self, rec: dict, now: float) -> bytes:
        hdg = rec["heading_deg"]
        vx = rec["speed_h_mps"] * math.cos(math.radians(hdg)) * 100
        vy = rec["speed_h_mps"] * math.sin(math.radians(hdg)) * 100
        return self.pack(mavlink.MAVLink_global_position_int_message(
            int((now - self.boot_wall) * 1000) & 0xFFFFFFFF, round(rec["lat"] * 1e7), round(rec["lon"] * 1e7),
            round(rec["alt_msl_m"] * 1000), round(rec["height_agl_m"] * 1000), round(vx), round(vy),
            round(-rec["speed_v_mps"] * 100), round(hdg * 100) % 36000))

    def odid_location(self, rec: dict, now: float, status: int = mavlink.MAV_ODID_STATUS_AIRBORNE) -> bytes:
        return self.pack(mavlink.MAVLink_open_drone_id_location_message(
            0, 0, self.mac, status, round(rec["heading_deg"] * 100) % 36000,
            round(rec["speed_h_mps"] * 100), round(rec["speed_v_mps"] * 100),
            round(rec["lat"] * 1e7), round(rec["lon"] * 1e7), rec["alt_msl_m"], rec["alt_msl_m"],
            mavlink.MAV_ODID_HEIGHT_REF_OVER_TAKEOFF, rec["height_agl_m"], mavlink.MAV_ODID_HOR_ACC_10_METER,
            mavlink.MAV_ODID_VER_ACC_10_METER, mavlink.MAV_ODID_VER_ACC_10_METER,
            mavlink.MAV_ODID_SPEED_ACC_1_METERS_PER_SECOND, round(now % 3600, 1), mavlink.MAV_ODID_TIME_ACC_1_0_SECOND))


class MavlinkFleet:
    """FleetSimulator kinematics rendered as MAVLink datagrams.

    `step(dt_s, now)` advances the fleet and returns (datagrams, truth): the bytes to send,
    and the simulator's records of this step (what an adapter should reconstruct).
    """

    def __init__(self, drones: int = 50, seed: int = 7, violators: float = 0.15, remote_id: int = 0,
                 ident_every_s: float = 5.0):
        if drones > MAX_VEHICLES:
            raise ValueError(f"at most {MAX_VEHICLES} vehicles fit in MAVLink system ids, asked for {drones}")
        self.sim = FleetSimulator(drones=drones, seed=seed, violators=violators)
        self.remote_id = remote_id
        self.ident_every_s = ident_every_s
        self.links: dict[str, DroneLink] = {}
        self.frames_sent = 0

    def _link(self, serial: str, now: float) -> DroneLink:
        link = self.links.get(serial)
        if link is None:
            n = len(self.links) + 1
            mac = bytes([0x02, 0xC1, 0x7E, 0, 0, n]) if n <= self.remote_id else None
            link = self.links[serial] = DroneLink(n, mac, boot_wall=now - 30.0)  # booted before take-off
        return link

    def step(self, dt_s: float, now: float | None = None) -> tuple[list[bytes], list[dict]]:
        now = time.time() if now is None else now
        truth = self.sim.tick(dt_s)
        airborne = set()
        datagrams = []
        for rec in truth:
            link = self._link(rec["serial_number"], now)
            airborne.add(rec["serial_number"])
            frames = b""
            if link.mac[0]:  # Remote ID only
                if now >= link.next_ident:
                    frames += link.ident(rec)
                    link.next_ident = now + self.ident_every_s
                frames += link.odid_location(rec, now)
            else:
                if link.armed is not True or now >= link.next_heartbeat:
                    frames += link.heartbeat(True) + link.sys_status(rec["battery_pct"])
                    link.armed, link.next_heartbeat = True, now + 1.0
                if now >= link.next_ident:
                    frames += link.ident(rec)
                    link.next_ident = now + self.ident_every_s
                frames += link.global_position_int(rec, now)
            datagrams.append(frames)
        for serial, link in self.links.items():  # landed vehicles keep their heartbeat, disarmed
            if serial not in airborne and not link.mac[0] and (link.armed or now >= link.next_heartbeat):
                datagrams.append(link.heartbeat(False))
                link.armed, link.next_heartbeat = False, now + 1.0
        return datagrams, truth


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Simulated drone fleet sending MAVLink v2 over UDP")
    p.add_argument("--target", type=lambda s: host_port(s, "127.0.0.1"), default=("127.0.0.1", 14550))
    p.add_argument("--drones", type=int, default=50)
    p.add_argument("--rate", type=float, default=5.0, help="position updates per second per drone")
    p.add_argument("--remote-id", type=int, default=0, help="how many drones are seen only through Remote ID")
    p.add_argument("--violators", type=float, default=0.15, help="share of drones breaking the rules")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--duration", type=float, default=0.0, help="seconds to run (0: until SIGTERM)")
    args = p.parse_args(argv)
    fleet = MavlinkFleet(args.drones, args.seed, args.violators, args.remote_id)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    dt = 1.0 / args.rate
    start = next_tick = time.monotonic()
    sent = 0
    try:
        while not stop and (not args.duration or time.monotonic() - start < args.duration):
            for d in fleet.step(dt)[0]:
                sock.sendto(d, args.target)
                sent += 1
            next_tick += dt
            time.sleep(max(0.0, next_tick - time.monotonic()))
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    print(f"sent {sent} datagrams to {args.target[0]}:{args.target[1]}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
