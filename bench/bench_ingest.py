"""Ingestion throughput per source adapter, each against a baseline measured in the same run:

- MAVLink: position frames/s in and records/s out (decode + merge + map + connector publish to
  the broker), against pymavlink parsing the same datagrams alone (goal: >= 20k updates/s);
- Open311: POSTs/s through the endpoint to the broker, against the same POSTs to a bare
  stdlib ThreadingHTTPServer that only answers 200 (the HTTP floor, and what the endpoint
  was served by before it moved to the project's one HTTP stack) and to a bare FastAPI app
  on uvicorn that only answers 200 (the floor of that stack);
- CSV: rows/s through the NYC 311 mapping to the broker, against csv.DictReader alone.

The benchmark process is pinned to one core (librdkafka's threads included) unless --all-cores.

    .venv/bin/python bench/bench_ingest.py [--frames 100000] [--posts 3000] [--csv-rows 50000]
"""

from __future__ import annotations

import argparse
import csv
import http.client
import os
import socket
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

from common import Timer, cluster, machine
from confluent_kafka.admin import AdminClient
from fastapi import FastAPI, Request, Response
from pymavlink.dialects.v20 import common as mavlink

import schemas
from streams import keyring, topics
from streams.adapters.base import Intake
from streams.adapters.csv_import import Mapping, import_csv
from streams.adapters.mavlink_sim import MavlinkFleet
from streams.adapters.mavlink_udp import MavlinkDecoder
from streams.adapters.open311_http import Open311Endpoint
from streams.admin import TopicSpec, ensure_topics
from streams.connectors import ProviderConnector
from streams.http_server import Background, bind

NYC = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "nyc311" / "311_nyc_sample.csv"


def connector(conf: dict, keys: Path, provider: str, product: str, schema_name: str):
    s = schemas.load(schema_name)
    key, et = ("serial_number", "timestamp_ms") if s.name == "UavTelemetry" else ("order_no", "call_time")
    entry = {"product_id": product, "provider_id": provider, "name": product, "schema_name": s.full_name,
             "schema_fingerprint": s.fingerprint, "classification": "IMPORTANT", "partitions": 3,
             "retention_ms": 3_600_000, "raw_topic": topics.raw(provider, product), "key_field": key,
             "event_time_field": et, "description": "", "updated_ms": 0}
    ensure_topics(AdminClient(conf), [TopicSpec(entry["raw_topic"], 3)])
    ring, _ = keyring.create(keys, provider)
    conn = ProviderConnector(ring, conf, catalog={product: entry})
    return conn, (lambda rec: conn.publish(product, rec))


def bench_mavlink(conf: dict, keys: Path, frames: int) -> None:
    fleet = MavlinkFleet(drones=200, seed=1, violators=0.1)
    datagrams, positions, now = [], 0, 1_800_000_000.0
    while positions < frames:  # 5 Hz positions, 1 Hz HEARTBEAT + SYS_STATUS, Remote ID ids every 5 s
        d, recs = fleet.step(0.2, now)
        now += 0.2
        datagrams += d
        positions += len(recs)
    total_frames = sum(len(mavlink.MAVLink(None).parse_buffer(d) or ()) for d in datagrams)

    mav = mavlink.MAVLink(None)
    mav.robust_parsing = True
    with Timer() as base:
        for d in datagrams:
            mav.parse_buffer(d)
    dec = MavlinkDecoder(Intake("bench-null", lambda r: None))
    with Timer() as nosink:
        for d in datagrams:
            dec.datagram(d)
    conn, publish = connector(conf, keys, "bench-mav", "uav", "UavTelemetry")
    dec = MavlinkDecoder(Intake("bench-kafka", publish))
    with Timer() as full:
        for d in datagrams:
            dec.datagram(d)
        conn.flush(60)
    assert dec.intake.records == positions
    print(f"MAVLink  {len(datagrams):,} datagrams, {total_frames:,} frames, {positions:,} position updates")
    print(f"  baseline pymavlink parse_buffer alone        {total_frames / base.seconds:>10,.0f} frames/s")
    print(f"  adapter decode+merge+map, no sink            {total_frames / nosink.seconds:>10,.0f} frames/s  "
          f"{positions / nosink.seconds:>9,.0f} records/s  ratio {base.seconds / nosink.seconds:.2f}")
    print(f"  adapter -> ProviderConnector -> broker       {total_frames / full.seconds:>10,.0f} frames/s  "
          f"{positions / full.seconds:>9,.0f} records/s  ratio {base.seconds / full.seconds:.2f}  "
          f"(goal >= 20,000 records/s: {'met' if positions / full.seconds >= 20_000 else 'NOT met'})")


class _Bare(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as the endpoint: a fair floor

    def log_message(self, *a):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'[{"service_request_id":"1","service_notice":null,"account_id":null}]'
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _post_all(host: str, port: int, path: str, bodies: list[bytes]) -> float:
    c = http.client.HTTPConnection(host, port, timeout=30)
    c.connect()
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # http.client sends headers and body apart
    with Timer() as t:
        for b in bodies:
            c.request("POST", path, b, {"Content-Type": "application/x-www-form-urlencoded"})
            r = c.getresponse()
            r.read()
            assert r.status == 200, r.status
    c.close()
    return len(bodies) / t.seconds


def bench_open311(conf: dict, keys: Path, posts: int) -> None:
    bodies = [urlencode({"service_code": ("0101", "0301", "0905")[i % 3], "lat": 22.54 + i * 1e-5, "long": 113.93,
                         "description": f"深南大道施工噪音扰民，第{i}次反映", "first_name": "伟", "last_name": "王",
                         "phone": "13800138000"}).encode() for i in range(posts)]
    bare = ThreadingHTTPServer(("127.0.0.1", 0), _Bare)
    th = threading.Thread(target=bare.serve_forever, daemon=True)
    th.start()
    try:
        base = _post_all(*bare.server_address[:2], "/open311/v2/requests.json", bodies)
    finally:
        bare.shutdown()
        bare.server_close()
    floor = FastAPI()

    @floor.post("/{path:path}")
    async def answer(request: Request) -> Response:
        await request.body()
        return Response(b'[{"service_request_id":"1","service_notice":null,"account_id":null}]',
                        media_type="application/json; charset=utf-8")

    asgi = Background(floor, bind("127.0.0.1", 0)).start()
    try:
        stack = _post_all(*asgi.address, "/open311/v2/requests.json", bodies)
    finally:
        asgi.stop()
    conn, publish = connector(conf, keys, "bench-311", "tickets", "HotlineTicket")
    ep = Open311Endpoint(publish, "127.0.0.1", 0).start()
    try:
        rate = _post_all(*ep.address, "/open311/v2/requests.json", bodies)
        conn.flush(60)
    finally:
        ep.stop()
    print(f"Open311  {posts:,} POSTs on one keep-alive connection")
    print(f"  baseline bare ThreadingHTTPServer            {base:>10,.0f} POSTs/s")
    print(f"  baseline bare FastAPI app on uvicorn         {stack:>10,.0f} POSTs/s")
    print(f"  endpoint -> ProviderConnector -> broker      {rate:>10,.0f} POSTs/s  ratio {rate / base:.2f} "
          f"(to the uvicorn floor: {rate / stack:.2f})")


def bench_csv(conf: dict, keys: Path, rows: int, tmp: Path) -> None:
    lines = NYC.read_text(encoding="utf-8").splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    big = tmp / "nyc_big.csv"
    with open(big, "w", encoding="utf-8") as fh:
        fh.write(header)
        for i in range(rows):  # unique keys, so the duplicate check does not reject repeats
            line = body[i % len(body)]
            fh.write(f"{i}{line[line.index(','):]}")
    with Timer() as base:
        with open(big, newline="", encoding="utf-8") as fh:
            n = sum(1 for _ in csv.DictReader(fh))
    conn, publish = connector(conf, keys, "bench-csv", "tickets", "HotlineTicket")
    with Timer() as full:
        report = import_csv(big, Mapping.load("nyc311"), publish, progress=False)
        conn.flush(60)
    assert report.imported == n == rows, (report.imported, n, report.bad[:3])
    print(f"CSV      {rows:,} NYC 311 rows (41 columns)")
    print(f"  baseline csv.DictReader alone                {n / base.seconds:>10,.0f} rows/s")
    print(f"  import -> ProviderConnector -> broker        {rows / full.seconds:>10,.0f} rows/s  "
          f"ratio {base.seconds / full.seconds:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=100_000, help="MAVLink position updates")
    ap.add_argument("--posts", type=int, default=3_000)
    ap.add_argument("--csv-rows", type=int, default=50_000)
    ap.add_argument("--all-cores", action="store_true")
    args = ap.parse_args()
    with cluster() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        if not args.all_cores:  # after the embedded broker started, so it does not inherit the pin
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        print(f"machine: {machine()}; bench process on {'all cores' if args.all_cores else 'one core'}")
        conf = {"bootstrap.servers": bootstrap}
        keys = Path(tmp) / "keys"
        bench_mavlink(conf, keys, args.frames)
        bench_open311(conf, keys, args.posts)
        bench_csv(conf, keys, args.csv_rows, Path(tmp))


if __name__ == "__main__":
    main()
