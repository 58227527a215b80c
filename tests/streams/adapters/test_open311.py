"""Open311 GeoReport v2: a real HTTP server on loopback, the spec's fixtures, the raw topic."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from urllib.parse import urlencode

import pytest

import schemas
from streams.adapters import open311
from streams.adapters.open311_http import Open311Endpoint, ServiceCatalog

FIXTURES = Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "open311"
if not FIXTURES.exists():
    FIXTURES = Path("/work/shared/fixtures/open311")


def call(endpoint: Open311Endpoint, method: str, path: str, form: dict | list | None = None,
         content_type: str = "application/x-www-form-urlencoded") -> tuple[int, str, bytes]:
    host, port = endpoint.address
    c = http.client.HTTPConnection(host, port, timeout=10)
    try:
        body = urlencode(form, doseq=True).encode() if form is not None else None
        c.request(method, endpoint.base_path + path, body, {"Content-Type": content_type} if body else {})
        r = c.getresponse()
        return r.status, r.getheader("Content-Type"), r.read()
    finally:
        c.close()


@pytest.fixture
def endpoint(provider):
    conn, publish, topic = provider("HotlineTicket")
    ep = Open311Endpoint(publish, "127.0.0.1", 0).start()
    try:
        yield ep, conn, topic
    finally:
        ep.stop()


def test_all_fixtures_parse_and_city_requests_map_to_hotline_tickets():
    s = schemas.load("HotlineTicket")
    reqs = open311.parse_service_requests((FIXTURES / "service_requests.xml").read_bytes())
    tickets = [open311.request_to_ticket(r) for r in reqs]
    for t in tickets:
        s.encode(t)
    assert [(t["order_no"], t["status"], t["category_code"], t["zipcode"]) for t in tickets] == [
        ("638344", "CLOSED", "006", "94122"), ("638349", "RECEIVED", "006", "94122")]
    t = tickets[0]
    assert t["call_time"] == 1271255858000  # 2010-04-14T06:37:38-08:00
    assert t["deadline"] - t["call_time"] == 86_400_000
    assert (t["lat"], t["lon"], t["status_notes"], t["address_id"]) == (37.762221815, -122.4651145,
                                                                       "Duplicate request.", "545483")
    assert t["media_url"] == "http://open311.city.gov.s3.amazonaws.com/requests/media/638344.rss"
    (one,) = open311.parse_service_requests((FIXTURES / "get_service_request.xml").read_bytes())
    assert open311.request_to_ticket(one) == tickets[0]
    (post,) = open311.parse_service_requests((FIXTURES / "post_service_request.xml").read_bytes())
    assert post["service_request_id"] == "293944" and post["service_notice"].startswith("The City will inspect")
    services = open311.parse_services((FIXTURES / "services.xml").read_bytes())
    assert len(services) == 36 and services[0]["service_code"] == "001" and services[0]["metadata"] is False
    definition = open311.parse_service_definition((FIXTURES / "service_definition.xml").read_bytes())
    assert definition["service_code"] == "DMV66"
    (attr,) = definition["attributes"]
    assert (attr["code"], attr["datatype"], attr["required"], attr["order"]) == ("WHISHETN", "singlevaluelist", True, 1)
    assert [v["key"] for v in attr["values"]] == ["123", "124"]


def test_posted_requests_become_tickets_on_the_raw_topic(endpoint, read_topic):
    ep, conn, topic = endpoint
    city = open311.parse_service_requests((FIXTURES / "service_requests.xml").read_bytes())
    posted = []
    for i, r in enumerate(city):  # the fixtures' requests, re-filed through our endpoint
        form = {"service_code": r["service_code"], "lat": r["lat"], "long": r["long"],
                "address_string": r["address"], "address_id": r["address_id"], "description": f"fixture {i}",
                "media_url": r["media_url"].strip(), "email": "x@example.org", "device_id": "dev-1",
                "account_id": "acct-9", "first_name": "Pat", "last_name": "Doe", "phone": "+14155550100"}
        fmt = ("json", "xml")[i % 2]
        status, ctype, body = call(ep, "POST", f"/requests.{fmt}", form)
        assert status == 200, body
        (answer,) = open311.parse_service_requests(body)
        assert answer["account_id"] == "acct-9" and answer["service_request_id"].startswith("OPEN311-")
        assert ctype.startswith("application/json" if fmt == "json" else "text/xml")
        posted.append(answer["service_request_id"])
    status, _, body = call(ep, "POST", "/requests.json", [("service_code", "0905"), ("lat", "22.54"), ("long", "113.93"),
                                                          ("first_name", "伟"), ("last_name", "王"),
                                                          ("description", "无人机在小区上空盘旋"),
                                                          ("attribute[UAV_HEIGHT]", "HIGH")])
    assert status == 200
    (answer,) = json.loads(body)
    assert answer["service_notice"].startswith("已受理")
    posted.append(answer["service_request_id"])

    got = read_topic(topic, 3, "HotlineTicket", settle_s=0.5)
    assert sorted(t["order_no"] for t in got) == sorted(posted)
    by_no = {t["order_no"]: t for t in got}
    t0 = by_no[posted[0]]
    # the service name comes from this endpoint's services config (SF's list says 006 is Damaged_Tree)
    assert (t0["channel"], t0["category_code"], t0["category_name"], t0["status"], t0["content"]) == (
        "OPEN311", "006", "Damaged_Tree", "RECEIVED", "fixture 0")
    assert (t0["lat"], t0["lon"], t0["address"], t0["caller_name"], t0["caller_email"], t0["device_id"]) == (
        37.762221815, -122.4651145, "8TH AVE and JUDAH ST", "Pat Doe", "x@example.org", "dev-1")
    cn = by_no[posted[2]]
    assert (cn["caller_name"], cn["category_name"], cn["handling_unit"], cn["attributes"]) == (
        "王伟", "无人机扰民", "公安局", {"UAV_HEIGHT": "HIGH"})
    assert cn["deadline"] - cn["call_time"] == 3 * 86_400_000

    status, _, body = call(ep, "GET", "/requests.xml")
    listed = open311.parse_service_requests(body)
    assert status == 200 and [r["service_request_id"] for r in listed] == posted[::-1]  # recent first
    assert listed[0]["requested_datetime"].endswith("+08:00")
    status, _, body = call(ep, "GET", f"/requests/{posted[1]}.json")
    (one,) = json.loads(body)
    assert status == 200 and one["status"] == "open" and one["service_code"] == "006"
    status, _, body = call(ep, "GET", "/requests.json?service_code=0905")
    assert [r["service_request_id"] for r in json.loads(body)] == [posted[2]]
    assert ep.stats == {"accepted": 3, "query": 3}


def test_services_and_definitions_follow_the_spec(endpoint):
    ep, _, _ = endpoint
    status, _, body = call(ep, "GET", "/services.xml")
    services = {s["service_code"]: s for s in open311.parse_services(body)}
    assert status == 200 and len(services) == 45
    assert services["0101"]["service_name"] == "噪音扰民" and services["001"]["service_name"] == "Cans_Left_Out_24x7"
    assert services["0401"]["metadata"] is True and services["0101"]["metadata"] is False
    _, _, body = call(ep, "GET", "/services.json")
    assert {s["service_code"] for s in json.loads(body)} == set(services)
    status, _, body = call(ep, "GET", "/services/0401.xml")
    d = open311.parse_service_definition(body)
    assert status == 200 and d["attributes"][0]["code"] == "PLATE" and d["attributes"][0]["required"] is True


@pytest.mark.parametrize("fmt", ["xml", "json"])
def test_refusals_use_the_spec_error_format(endpoint, read_topic, fmt):
    ep, conn, topic = endpoint
    cases = [
        ("POST", f"/requests.{fmt}", {"lat": "22.5", "long": "114.0"}, 400, "service_code was not provided"),
        ("POST", f"/requests.{fmt}", {"service_code": "0101"}, 400, "a location is required"),
        ("POST", f"/requests.{fmt}", {"service_code": "0101", "lat": "22.5"}, 400, "lat and long must be given together"),
        ("POST", f"/requests.{fmt}", {"service_code": "0101", "lat": "north", "long": "114"}, 400, "decimal degrees"),
        ("POST", f"/requests.{fmt}", {"service_code": "9999", "address_string": "x"}, 400, "not a valid service"),
        ("POST", f"/requests.{fmt}", {"service_code": "0401", "address_id": "A1"}, 400, "attribute[PLATE] is required"),
        ("POST", f"/requests.{fmt}", {"service_code": "0905", "address_id": "A1", "attribute[UAV_HEIGHT]": "SKY"}, 400,
         "'SKY' is not one of"),
        ("GET", f"/requests/nope.{fmt}", None, 404, "service request nope not found"),
        ("GET", f"/services/0101.{fmt}", None, 404, "has no service definition"),
        ("GET", f"/tokens/1.{fmt}", None, 404, "no such resource"),
    ]
    for method, path, form, code, text in cases:
        status, ctype, body = call(ep, method, path, form)
        assert status == code, (path, form, body)
        if fmt == "xml":
            assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?><errors><error><code>')
        else:
            assert ctype.startswith("application/json") and json.loads(body)[0]["code"] == code
        (err,) = open311.parse_errors(body)
        assert err["code"] == code and text in err["description"], err
    status, _, body = call(ep, "POST", f"/requests.{fmt}", {"service_code": "0101", "address_string": "x"},
                           content_type="application/json")
    assert status == 400 and "Content-Type" in open311.parse_errors(body)[0]["description"]
    assert ep.stats == {"bad_request": 8, "not_found": 3}
    conn.flush()
    assert read_topic(topic, 0, "HotlineTicket", timeout_s=0, settle_s=1.0) == []


def test_api_key_is_enforced_when_configured(provider):
    _, publish, _ = provider("HotlineTicket")
    ep = Open311Endpoint(publish, "127.0.0.1", 0, api_keys={"k-123"}).start()
    try:
        form = {"service_code": "0101", "address_string": "福田区彩田路"}
        status, _, body = call(ep, "POST", "/requests.xml", form)
        assert status == 403 and open311.parse_errors(body)[0]["code"] == 403
        status, _, _ = call(ep, "POST", "/requests.xml", {**form, "api_key": "k-123"})
        assert status == 200
    finally:
        ep.stop()


def test_a_malformed_services_config_names_the_file_and_field(tmp_path):
    bad = tmp_path / "services.yaml"
    bad.write_text("services:\n  - service_code: '01'\n    service_name: ok\n  - service_code: '02'\n")
    with pytest.raises(ValueError, match=r"services\.yaml: services\[1\]: field 'service_name' is required"):
        ServiceCatalog.load(bad)


def test_the_process_binds_loopback_by_default_and_wants_keys_elsewhere(tmp_path):
    import subprocess
    import sys
    from streams.adapters.open311_http import api_keys, main
    with pytest.raises(SystemExit, match="reachable from other hosts"):
        main(["--provider", "p", "--product", "t", "--listen", "0.0.0.0:0"])
    key_file = tmp_path / "keys.txt"
    key_file.write_text("k-1\n\nk-2\n")
    assert api_keys(["k-0"], str(key_file)) == {"k-0", "k-1", "k-2"}
    out = subprocess.run([sys.executable, "-m", "streams.adapters.open311_http", "--help"], capture_output=True,
                         text=True, timeout=60).stdout
    assert "default loopback" in out
