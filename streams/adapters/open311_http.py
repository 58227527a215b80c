"""An Open311 GeoReport v2 endpoint for the 12345 centre: service requests in, HotlineTickets out.

Apps, web forms and partner systems that already speak GeoReport v2 can file 12345 work
orders without a citymesh client. Routes (XML is the spec's required format, JSON the
common one; the extension picks):

    GET  /open311/v2/services.{xml,json}              service list (services config)
    GET  /open311/v2/services/<code>.{xml,json}       service definition (attributes)
    POST /open311/v2/requests.{xml,json}              create; form-encoded per the spec
    GET  /open311/v2/requests.{xml,json}              requests accepted here (recent first)
    GET  /open311/v2/requests/<id>.{xml,json}         one request

An accepted POST becomes a HotlineTicket (channel OPEN311, generated order_no, call_time
now, deadline from the service's deadline_days) handed to the sink *before* the answer is
sent, so a 200 means the record is on its way to the raw topic. Refusals use the spec's
error document with the HTTP status as code: 400 missing/invalid fields, 403 bad api_key
(when keys are configured), 404 unknown request or service, 413 body too large, 503 sink
unavailable.

Served like every HTTP endpoint of the project (streams/http_server.py: FastAPI, uvicorn).
The process binds loopback by default; POSTs carry the spec's `api_key` (--api-key,
--api-key-file or CITYMESH_OPEN311_API_KEYS), and an address other hosts can reach is
refused without one.

    python -m streams.adapters.open311_http --provider P --product tickets --api-key-file keys.txt
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import yaml
from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from ..http_server import Background, bind, is_loopback
from . import open311
from .base import Intake, Publish, common_parser, host_port, main_loop
from .open311 import Open311Error

log = logging.getLogger("citymesh.adapters.open311")

DEFAULT_SERVICES = Path(__file__).resolve().parent / "mappings" / "open311_services.yaml"
ROUTE = re.compile(r"^/(requests|services)(?:/([^/]+?))?\.(json|xml)$")
MAX_BODY = 1 << 20
MAX_DESCRIPTION = 4000  # the spec's limit
PERSON_FIELDS = ("email", "device_id", "account_id", "first_name", "last_name", "phone", "media_url")
CJK = re.compile(r"[\u3400-\u9fff]")


class ServiceCatalog:
    """The services config: the spec's service fields plus handling unit, notice, deadline, attributes."""

    def __init__(self, services: list[dict], source: str = "<list>"):
        self.by_code: dict[str, dict] = {}
        for i, s in enumerate(services):
            if not isinstance(s, dict):
                raise ValueError(f"{source}: services[{i}] must be a mapping")
            for field in ("service_code", "service_name"):
                if not str(s.get(field) or "").strip():
                    raise ValueError(f"{source}: services[{i}]: field {field!r} is required")
            code = str(s["service_code"])
            for j, a in enumerate(s.get("attributes") or []):
                if not str(a.get("code") or "").strip():
                    raise ValueError(f"{source}: service {code}: attributes[{j}]: field 'code' is required")
            self.by_code[code] = {**s, "service_code": code}

    @classmethod
    def load(cls, path: str | Path = DEFAULT_SERVICES) -> "ServiceCatalog":
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh) or {}
        services = doc.get("services") if isinstance(doc, dict) else None
        if not isinstance(services, list):
            raise ValueError(f"{path}: field 'services' must be a list of services")
        return cls(services, str(path))

    def rows(self) -> list[dict]:
        return [{"service_code": s["service_code"], "service_name": s["service_name"],
                 "description": s.get("description"), "metadata": bool(s.get("attributes")),
                 "type": s.get("type", "realtime"), "keywords": s.get("keywords") or [], "group": s.get("group")}
                for s in self.by_code.values()]


def _one(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    value = values[0].strip() if values else ""
    return value or None


def _caller_name(first: str | None, last: str | None) -> str | None:
    """Chinese names are written family name first: 王 + 伟 -> 王伟; others as first last."""
    if not first and not last:
        return None
    if CJK.search((first or "") + (last or "")):
        return (last or "") + (first or "")
    return " ".join(p for p in (first, last) if p)


class Open311Endpoint:
    """The HTTP server, its recent-requests memory and the request -> ticket logic."""

    name = "open311_http"

    def __init__(self, publish: Publish, host: str = "127.0.0.1", port: int = 8311,
                 services: ServiceCatalog | None = None, api_keys: set[str] | None = None,
                 base_path: str = "/open311/v2", keep: int = 1000, tz: str = "Asia/Shanghai"):
        self.intake = Intake(self.name, publish)
        self.services = services or ServiceCatalog.load()
        self.api_keys = set(api_keys or ())
        self.base_path = base_path.rstrip("/")
        self.tz = ZoneInfo(tz)
        self._keep = keep
        self._recent: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()
        self._host, self._port = host, port
        self._server: Background | None = None

    @property
    def stats(self) -> dict[str, int]:
        return self.intake.stats

    @property
    def address(self) -> tuple[str, int]:
        return self._server.address

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}{self.base_path}"

    # ---- the GeoReport operations, free of HTTP -------------------------------------------
    def submit(self, form: dict[str, list[str]]) -> dict:
        """Validate a POST's fields, publish the ticket, return it; Open311Error if refused."""
        if self.api_keys and _one(form, "api_key") not in self.api_keys:
            raise Open311Error(403, "api_key was not provided or is invalid")
        code = _one(form, "service_code")
        if code is None:
            raise Open311Error(400, "service_code was not provided")
        service = self.services.by_code.get(code)
        if service is None:
            raise Open311Error(400, f"service_code {code} is not a valid service")
        lat, lon = _one(form, "lat"), _one(form, "long")
        address, address_id = _one(form, "address_string"), _one(form, "address_id")
        if (lat is None) != (lon is None):
            raise Open311Error(400, "lat and long must be given together")
        if lat is None and address is None and address_id is None:
            raise Open311Error(400, "a location is required: lat and long, address_string or address_id")
        if lat is not None:
            try:
                lat_f, lon_f = float(lat), float(lon)
            except ValueError:
                raise Open311Error(400, f"lat/long must be decimal degrees, got {lat!r}, {lon!r}") from None
            if not (-90 <= lat_f <= 90 and -180 <= lon_f <= 180):
                raise Open311Error(400, f"lat/long out of range: {lat_f}, {lon_f}")
        else:
            lat_f = lon_f = None
        description = _one(form, "description") or ""
        if len(description) > MAX_DESCRIPTION:
            raise Open311Error(400, f"description is longer than {MAX_DESCRIPTION} characters")
        attributes = self._attributes(form, service)
        now = int(time.time() * 1000)
        f = {k: _one(form, k) for k in PERSON_FIELDS}
        day = datetime.fromtimestamp(now / 1000, self.tz).strftime("%Y%m%d")
        ticket = {
            "order_no": f"OPEN311-{day}-{uuid.uuid4().hex[:10].upper()}", "call_time": now, "channel": "OPEN311",
            "caller_name": _caller_name(f["first_name"], f["last_name"]), "caller_phone": f["phone"],
            "caller_email": f["email"], "category_code": code, "category_name": str(service["service_name"]),
            "district": None, "address": address, "address_id": address_id, "zipcode": None,
            "lat": lat_f, "lon": lon_f, "content": description, "handling_unit": service.get("agency_responsible"),
            "status": "RECEIVED", "status_notes": None,
            "deadline": now + int(float(service.get("deadline_days", 3)) * 86_400_000),
            "completed_time": None, "updated_time": None, "confidential": False, "media_url": f["media_url"],
            "service_notice": service.get("service_notice"), "device_id": f["device_id"],
            "account_id": f["account_id"], "attributes": attributes}
        if not self.intake.emit(ticket):
            raise Open311Error(400, f"request rejected: {self.intake.last_error}")
        with self._lock:
            self._recent[ticket["order_no"]] = ticket
            while len(self._recent) > self._keep:
                self._recent.popitem(last=False)
        return ticket

    @staticmethod
    def _attributes(form: dict[str, list[str]], service: dict) -> dict[str, str]:
        """attribute[CODE] (or attribute[CODE][] for multi-value lists) checked against the definition."""
        given: dict[str, list[str]] = {}
        for key, values in form.items():
            m = re.fullmatch(r"attribute\[([^\]]+)\](?:\[\])?", key)
            if m:
                given.setdefault(m.group(1), []).extend(v.strip() for v in values if v.strip())
        defs = {a["code"]: a for a in service.get("attributes") or []}
        out = {}
        for code, values in given.items():
            a = defs.get(code)
            if a is not None and a.get("datatype") in ("singlevaluelist", "multivaluelist"):
                keys = {str(v["key"]) for v in a.get("values") or []}
                bad = [v for v in values if v not in keys]
                if bad:
                    raise Open311Error(400, f"attribute[{code}]: {bad[0]!r} is not one of {', '.join(sorted(keys))}")
            if values:
                out[code] = ",".join(values)
        for code, a in defs.items():
            if a.get("required") and code not in out:
                raise Open311Error(400, f"attribute[{code}] is required for service {service['service_code']}")
        return out

    def find(self, query: dict[str, list[str]]) -> list[dict]:
        """GET requests: filters service_request_id, service_code, status, start_date, end_date."""
        with self._lock:
            tickets = list(reversed(self._recent.values()))
        ids = _one(query, "service_request_id")
        if ids:
            wanted = {i.strip() for i in ids.split(",")}
            tickets = [t for t in tickets if t["order_no"] in wanted]
        codes = _one(query, "service_code")
        if codes:
            wanted = {c.strip() for c in codes.split(",")}
            tickets = [t for t in tickets if t["category_code"] in wanted]
        status = _one(query, "status")
        if status:
            wanted = {s.strip().lower() for s in status.split(",")}
            tickets = [t for t in tickets if ("closed" if t["status"] in open311.CLOSED_STATES else "open") in wanted]
        start, end = open311.parse_datetime(_one(query, "start_date")), open311.parse_datetime(_one(query, "end_date"))
        if start is not None:
            tickets = [t for t in tickets if t["call_time"] >= start]
        if end is not None:
            tickets = [t for t in tickets if t["call_time"] <= end]
        return [self.as_request(t) for t in tickets]

    def get(self, request_id: str) -> dict:
        with self._lock:
            t = self._recent.get(request_id)
        if t is None:
            raise Open311Error(404, f"service request {request_id} not found")
        return self.as_request(t)

    def as_request(self, ticket: dict) -> dict:
        doc = open311.ticket_to_request(ticket)
        for k in ("requested_datetime", "updated_datetime", "expected_datetime"):
            if doc[k] is not None:  # local time with its offset, as the spec allows
                doc[k] = datetime.fromisoformat(doc[k]).astimezone(self.tz).isoformat(timespec="seconds")
        return doc

    def definition(self, code: str) -> dict:
        s = self.services.by_code.get(code)
        if s is None or not s.get("attributes"):
            raise Open311Error(404, f"service_code {code} has no service definition")
        return s

    # ---- life cycle ------------------------------------------------------------------------
    def start(self) -> "Open311Endpoint":
        self._server = Background(_app(self), bind(self._host, self._port, fallback=False), "open311-http").start()
        log.info("Open311 GeoReport v2 endpoint on %s", self.url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()


def _app(endpoint: Open311Endpoint) -> FastAPI:
    """The GeoReport v2 routes; the format is the path's extension, errors the spec's document."""
    app = FastAPI(title="citymesh Open311 GeoReport v2", docs_url=None, redoc_url=None)
    prefix = endpoint.base_path + "/"

    def send(status: int, body: bytes, fmt: str) -> Response:
        return Response(body, status, media_type=("application/json" if fmt == "json" else "text/xml")
                        + "; charset=utf-8")

    def error(exc: Open311Error, fmt: str) -> Response:
        endpoint.intake.count({400: "bad_request", 403: "forbidden", 404: "not_found", 413: "too_large"}
                              .get(exc.code, "unavailable"))
        return send(exc.code, open311.render("errors", [{"code": exc.code, "description": exc.description}], fmt), fmt)

    def route(path: str) -> tuple[str | None, str | None, str]:
        """(resource, id, format) of a GeoReport path; resource None when it names none."""
        if not path.startswith(prefix):
            return None, None, "xml"
        m = ROUTE.match(path[len(endpoint.base_path):])
        if not m:
            return None, None, "json" if path.endswith(".json") else "xml"
        return m.group(1), m.group(2), m.group(3)

    def query(resource: str | None, ident: str | None, fmt: str, path: str, qs: str) -> Response:
        try:
            if resource is None:
                raise Open311Error(404, f"no such resource: {path}")
            q = parse_qs(qs, keep_blank_values=True)
            if resource == "services" and ident is None:
                body = open311.render("services", endpoint.services.rows(), fmt)
            elif resource == "services":
                s = endpoint.definition(ident)
                body = open311.render_definition(s["service_code"], s["attributes"], fmt)
            elif ident is None:
                body = open311.render("requests", endpoint.find(q), fmt)
            else:
                body = open311.render("requests", [endpoint.get(ident)], fmt)
        except Open311Error as exc:
            return error(exc, fmt)
        endpoint.intake.count("query")
        return send(200, body, fmt)

    def create(body: bytes, ctype: str, fmt: str) -> Response:
        try:
            if ctype != "application/x-www-form-urlencoded":
                raise Open311Error(400, f"Content-Type {ctype} not supported: send application/x-www-form-urlencoded")
            try:
                form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
            except UnicodeDecodeError:
                raise Open311Error(400, "request body is not UTF-8") from None
            try:
                ticket = endpoint.submit(form)
            except Open311Error:
                raise
            except Exception as exc:  # the sink could not take it (broker down, ...)
                log.exception("could not publish the service request")
                raise Open311Error(503, f"the request could not be recorded, try again later "
                                        f"({exc.__class__.__name__})") from None
        except Open311Error as exc:
            return error(exc, fmt)
        endpoint.intake.count("accepted")
        return send(200, open311.render("post", [{"service_request_id": ticket["order_no"],
                                                  "service_notice": ticket["service_notice"],
                                                  "account_id": ticket["account_id"]}], fmt), fmt)

    @app.get("/{path:path}", include_in_schema=False)
    async def get(request: Request) -> Response:  # in-memory work: answered on the loop, no thread hop
        resource, ident, fmt = route(request.url.path)
        return query(resource, ident, fmt, request.url.path, request.url.query)

    @app.post("/{path:path}", include_in_schema=False)
    async def post(request: Request) -> Response:
        resource, ident, fmt = route(request.url.path)
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            return error(Open311Error(413, f"request body larger than {MAX_BODY} bytes"), fmt)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return error(Open311Error(413, f"request body larger than {MAX_BODY} bytes"), fmt)
        if resource != "requests" or ident is not None:
            return error(Open311Error(404, f"cannot POST to {request.url.path}; use "
                                           f"{endpoint.base_path}/requests.{fmt}"), fmt)
        ctype = (request.headers.get("content-type") or "application/x-www-form-urlencoded").split(";")[0].strip()
        # in the thread pool: a publish waits while librdkafka's queue is full (broker away), the loop must not
        return await run_in_threadpool(create, body, ctype, fmt)

    return app


def api_keys(given: list[str], key_file: str | None) -> set[str]:
    """--api-key values, the lines of --api-key-file and CITYMESH_OPEN311_API_KEYS (comma-separated)."""
    keys = {k.strip() for k in given if k.strip()}
    if key_file:
        try:
            keys |= {line.strip() for line in Path(key_file).read_text(encoding="utf-8").splitlines() if line.strip()}
        except OSError as exc:
            raise SystemExit(f"error: --api-key-file {key_file}: {exc.strerror}") from None
    keys |= {k.strip() for k in os.environ.get("CITYMESH_OPEN311_API_KEYS", "").split(",") if k.strip()}
    return keys


def main(argv: list[str] | None = None) -> int:
    p = common_parser("Open311 GeoReport v2 endpoint publishing HotlineTickets")
    p.add_argument("--listen", type=host_port, default=("127.0.0.1", 8311),
                   help="HOST:PORT to bind (default loopback; another address needs an api_key)")
    p.add_argument("--services", default=str(DEFAULT_SERVICES), help="services config (YAML)")
    p.add_argument("--api-key", action="append", default=[], help="an api_key accepted on POST (repeatable)")
    p.add_argument("--api-key-file", help="accepted api_keys, one per line")
    p.add_argument("--base-path", default="/open311/v2")
    p.add_argument("--tz", default="Asia/Shanghai", help="time zone of the dates the endpoint returns")
    args = p.parse_args(argv)
    keys = api_keys(args.api_key, args.api_key_file)
    if not keys and not is_loopback(args.listen[0]):
        raise SystemExit(f"error: --listen {args.listen[0]}:{args.listen[1]} is reachable from other hosts: give the "
                         "api_keys POSTs must carry (--api-key, --api-key-file or CITYMESH_OPEN311_API_KEYS)")
    services = ServiceCatalog.load(args.services)
    return main_loop(args, lambda publish: Open311Endpoint(publish, *args.listen, services=services,
                                                           api_keys=keys, base_path=args.base_path, tz=args.tz))


if __name__ == "__main__":
    raise SystemExit(main())
