"""Open311 GeoReport v2: the documents, both ways, and their mapping to HotlineTicket.

GeoReport v2 is the open standard many city 311 systems speak (and the model the 12345
HotlineTicket schema was drawn from, field for field). This module holds what the HTTP
endpoint (`open311_http`) and any client of a city endpoint share:

- parsing of GeoReport v2 responses in XML or JSON: service lists, service definitions,
  service requests, POST answers;
- `request_to_ticket`: a service request as a real endpoint returns it -> HotlineTicket;
- `ticket_to_request` and the renderers: a HotlineTicket -> the spec's request document,
  and the spec's error format (`<errors><error><code>` / `[{"code":..,"description":..}]`).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from xml.sax.saxutils import escape

from schemas.errors import CitymeshError

# the fields of a service request document, in the spec's order
REQUEST_FIELDS = ("service_request_id", "status", "status_notes", "service_name", "service_code", "description",
                  "agency_responsible", "service_notice", "requested_datetime", "updated_datetime",
                  "expected_datetime", "address", "address_id", "zipcode", "lat", "long", "media_url")
SERVICE_FIELDS = ("service_code", "service_name", "description", "metadata", "type", "keywords", "group")
CLOSED_STATES = {"COMPLETED", "CLOSED"}


class Open311Error(ValueError, CitymeshError):
    """A GeoReport document that cannot be read, or a request the spec says to refuse."""

    def __init__(self, code: int, description: str):
        super().__init__(description)
        self.code = code
        self.description = description


# ---- dates ---------------------------------------------------------------------------------
def parse_datetime(text: str | None) -> int | None:
    """ISO 8601 with offset (the spec requires one) -> epoch ms; naive times are taken as UTC."""
    if text is None or not str(text).strip():
        return None
    s = str(text).strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise Open311Error(400, f"invalid date/time {text!r}: expected ISO 8601, e.g. 2010-04-14T06:37:38-08:00") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def format_datetime(ms: int | None, tz=timezone.utc) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz).isoformat(timespec="seconds")


# ---- parsing ---------------------------------------------------------------------------------
def _xml_root(data: bytes | str) -> ET.Element:
    try:
        return ET.fromstring(data.encode() if isinstance(data, str) else data)
    except ET.ParseError as exc:
        raise Open311Error(400, f"not a GeoReport XML document: {exc}") from None


def _element_dict(el: ET.Element) -> dict:
    """Children to a dict of stripped text; empty elements are None; repeated ones become lists."""
    out: dict = {}
    for child in el:
        if len(child):
            value = _element_dict(child)
        else:
            value = (child.text or "").strip() or None
        if child.tag in out:
            prev = out[child.tag]
            out[child.tag] = (prev if isinstance(prev, list) else [prev]) + [value]
        else:
            out[child.tag] = value
    return out


def _json_list(data: bytes | str) -> list:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise Open311Error(400, f"not a GeoReport JSON document: {exc}") from None
    if isinstance(doc, dict):  # some servers wrap the list: {"service_requests": [...]}
        doc = next((v for v in doc.values() if isinstance(v, list)), [doc])
    if not isinstance(doc, list) or not all(isinstance(d, dict) for d in doc):
        raise Open311Error(400, "GeoReport JSON must be a list of objects")
    return doc


def _is_json(data: bytes | str) -> bool:
    head = data.lstrip()[:1]
    return head in ("[", "{", b"[", b"{")


def parse_errors(data: bytes | str) -> list[dict]:
    """An `<errors>` document (or its JSON form) -> [{"code": int, "description": str}]."""
    if _is_json(data):
        return [{"code": int(e.get("code", 0)), "description": e.get("description")} for e in _json_list(data)]
    root = _xml_root(data)
    return [{"code": int(e.get("code") or 0), "description": e.get("description")}
            for e in (_element_dict(x) for x in root.iter("error"))]


def parse_service_requests(data: bytes | str) -> list[dict]:
    """`GET requests`, `GET requests/<id>` or a POST answer -> list of request dicts (spec field names)."""
    if _is_json(data):
        return _json_list(data)
    root = _xml_root(data)
    if root.tag == "errors":
        raise Open311Error(400, "the server answered with errors: " + "; ".join(
            f"{e['code']} {e['description']}" for e in parse_errors(data)))
    if root.tag != "service_requests":
        raise Open311Error(400, f"expected <service_requests>, got <{root.tag}>")
    return [_element_dict(r) for r in root.findall("request")]


def parse_services(data: bytes | str) -> list[dict]:
    """`GET services` -> list of service dicts; metadata is a bool, keywords a list."""
    items = _json_list(data) if _is_json(data) else [_element_dict(s) for s in _xml_root(data).findall("service")]
    for s in items:
        s["metadata"] = str(s.get("metadata")).lower() == "true"
        kw = s.get("keywords")
        s["keywords"] = [k.strip() for k in kw.split(",") if k.strip()] if isinstance(kw, str) else list(kw or [])
    return items


def parse_service_definition(data: bytes | str) -> dict:
    """`GET services/<code>` -> {"service_code", "attributes": [{code, datatype, required, values, ...}]}."""
    if _is_json(data):
        doc = json.loads(data)
        attrs = doc.get("attributes", [])
    else:
        root = _xml_root(data)
        if root.tag != "service_definition":
            raise Open311Error(400, f"expected <service_definition>, got <{root.tag}>")
        doc = {"service_code": (root.findtext("service_code") or "").strip()}
        attrs = []
        for a in root.findall("attribute"):
            d = _element_dict(a)
            values = a.find("values")
            d["values"] = [_element_dict(v) for v in values.findall("value")] if values is not None else []
            attrs.append(d)
    for a in attrs:
        for flag in ("variable", "required"):
            a[flag] = str(a.get(flag)).lower() == "true"
        if a.get("order") is not None:
            a["order"] = int(a["order"])
    return {"service_code": doc.get("service_code"), "attributes": sorted(attrs, key=lambda a: a.get("order") or 0)}


# ---- mapping to and from HotlineTicket ---------------------------------------------------------
def _num(value) -> float | None:
    if value is None or str(value).strip() == "":
        return None
    return float(value)


def request_to_ticket(req: dict, channel: str = "OPEN311") -> dict:
    """A service request (as a city endpoint returns it) -> HotlineTicket."""
    order_no = req.get("service_request_id")
    if not order_no:
        raise Open311Error(400, "service request without service_request_id")
    call_time = parse_datetime(req.get("requested_datetime"))
    if call_time is None:
        raise Open311Error(400, f"service request {order_no}: no requested_datetime")
    status = (req.get("status") or "open").strip().lower()
    if status not in ("open", "closed"):
        raise Open311Error(400, f"service request {order_no}: status {status!r} is neither open nor closed")
    media = (req.get("media_url") or "").strip() or None
    return {
        "order_no": str(order_no), "call_time": call_time, "channel": channel,
        "caller_name": None, "caller_phone": None, "caller_email": None,
        "category_code": str(req.get("service_code") or ""),
        "category_name": str(req.get("service_name") or req.get("service_code") or ""),
        "district": None, "address": req.get("address"), "address_id": _str(req.get("address_id")),
        "zipcode": _str(req.get("zipcode")), "lat": _num(req.get("lat")), "lon": _num(req.get("long")),
        "content": req.get("description") or "", "handling_unit": req.get("agency_responsible"),
        "status": "CLOSED" if status == "closed" else "RECEIVED", "status_notes": req.get("status_notes"),
        "deadline": parse_datetime(req.get("expected_datetime")), "completed_time": None,
        "updated_time": parse_datetime(req.get("updated_datetime")), "confidential": False,
        "media_url": media, "service_notice": req.get("service_notice"),
        "device_id": None, "account_id": _str(req.get("account_id")), "attributes": {}}


def _str(value) -> str | None:
    return None if value is None or str(value).strip() == "" else str(value).strip()


def ticket_to_request(t: dict) -> dict:
    """HotlineTicket -> the spec's service request document (what GET requests returns)."""
    return {
        "service_request_id": t["order_no"], "status": "closed" if t["status"] in CLOSED_STATES else "open",
        "status_notes": t.get("status_notes"), "service_name": t["category_name"], "service_code": t["category_code"],
        "description": t["content"], "agency_responsible": t.get("handling_unit"),
        "service_notice": t.get("service_notice"), "requested_datetime": format_datetime(t["call_time"]),
        "updated_datetime": format_datetime(t.get("updated_time") or t["call_time"]),
        "expected_datetime": format_datetime(t.get("deadline")), "address": t.get("address"),
        "address_id": t.get("address_id"), "zipcode": t.get("zipcode"), "lat": t.get("lat"), "long": t.get("lon"),
        "media_url": t.get("media_url")}


# ---- rendering ---------------------------------------------------------------------------------
def _xml_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return escape(",".join(str(v) for v in value))
    return escape(str(value))


def _xml_items(root: str, item: str, rows: list[dict], fields: tuple[str, ...] | None = None) -> bytes:
    parts = ['<?xml version="1.0" encoding="UTF-8"?>', f"<{root}>"]
    for row in rows:
        parts.append(f"<{item}>")
        for k in fields or tuple(row):
            v = row.get(k)
            parts.append(f"<{k}/>" if v is None else f"<{k}>{_xml_value(v)}</{k}>")
        parts.append(f"</{item}>")
    parts.append(f"</{root}>")
    return "".join(parts).encode("utf-8")


def render(kind: str, rows: list[dict], fmt: str) -> bytes:
    """kind: requests | post | services | errors; fmt: json | xml."""
    if fmt == "json":
        return json.dumps(rows, ensure_ascii=False).encode("utf-8")
    if kind == "requests":
        return _xml_items("service_requests", "request", rows, REQUEST_FIELDS)
    if kind == "post":
        return _xml_items("service_requests", "request", rows, ("service_request_id", "service_notice", "account_id"))
    if kind == "services":
        return _xml_items("services", "service", rows, SERVICE_FIELDS)
    if kind == "errors":
        return _xml_items("errors", "error", rows, ("code", "description"))
    raise ValueError(f"unknown GeoReport document kind {kind!r}")


def render_definition(service_code: str, attributes: list[dict], fmt: str) -> bytes:
    doc = {"service_code": service_code, "attributes": attributes}
    if fmt == "json":
        return json.dumps(doc, ensure_ascii=False).encode("utf-8")
    parts = ['<?xml version="1.0" encoding="UTF-8"?>', "<service_definition>",
             f"<service_code>{escape(service_code)}</service_code>"]
    for a in attributes:
        parts.append("<attribute>")
        for k in ("variable", "code", "datatype", "required", "datatype_description", "order", "description"):
            parts.append(f"<{k}>{_xml_value(a.get(k))}</{k}>")
        parts.append("<values>" + "".join(f"<value><key>{_xml_value(v.get('key'))}</key><name>{_xml_value(v.get('name'))}</name></value>"
                                          for v in a.get("values") or []) + "</values>")
        parts.append("</attribute>")
    parts.append("</service_definition>")
    return "".join(parts).encode("utf-8")
