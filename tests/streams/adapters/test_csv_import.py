"""CSV import through mapping files, onto the raw topic; every row accounted for."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from streams.adapters.csv_import import Mapping, MappingError, import_csv

NYC = Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "nyc311" / "311_nyc_sample.csv"
if not NYC.exists():
    NYC = Path("/work/shared/fixtures/nyc311/311_nyc_sample.csv")


def _ms(text: str, fmt: str, tz: str) -> int:
    return int(datetime.strptime(text, fmt).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def test_nyc_311_sample_imports_completely(provider, read_topic):
    conn, publish, topic = provider("HotlineTicket")
    report = import_csv(NYC, Mapping.load("nyc311"), publish)
    conn.flush()
    with open(NYC, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    # the file is 1,000 lines: the header and 999 service requests
    assert sum(1 for _ in open(NYC, encoding="utf-8")) == 1000 and len(rows) == 999
    assert report.rows == 999 and report.imported + len(report.bad) == 999
    assert report.bad == [] and report.imported == 999
    got = read_topic(topic, 999, "HotlineTicket", settle_s=0.5)
    assert sorted(t["order_no"] for t in got) == sorted(r["Unique Key"] for r in rows)
    t = {x["order_no"]: x for x in got}["19937901"]
    assert t["call_time"] == _ms("03/01/2011 10:41:13 AM", "%m/%d/%Y %I:%M:%S %p", "America/New_York")
    assert t["call_time"] == 1298994073000  # 15:41:13 UTC: New York is UTC-5 in March before DST
    assert (t["category_code"], t["content"], t["district"], t["zipcode"], t["status"], t["channel"]) == (
        "Street Sign - Dangling", "Street Cleaning - ASP", "BROOKLYN", "11232", "CLOSED", "PHONE")
    assert (t["lat"], t["lon"], t["handling_unit"]) == (40.660811976282695, -73.99859430999363,
                                                       "Department of Transportation")
    assert t["completed_time"] == _ms("03/15/2011 04:14:19 PM", "%m/%d/%Y %I:%M:%S %p", "America/New_York")
    assert t["attributes"]["Community Board"] == "07 BROOKLYN"
    first = {x["order_no"]: x for x in got}["19937896"]
    assert first["lat"] is None and first["address"] is None  # empty cells are nulls, not errors
    statuses = {x["status"] for x in got}
    assert statuses == {"CLOSED", "DISPATCHED", "IN_PROGRESS"}


HEADER = "工单编号,来电时间,来电号码,来电人,诉求内容,诉求分类,区县,事发地址,承办单位,办理状态,办理时限,办结时间\n"
ROWS = [
    "SZ2024030500001,2024-03-05 09:12:33,13800138000,王伟,深南大道施工噪音扰民,噪音扰民,南山区,深南大道,南山区城管局,已办结,2024-03-08 09:12:33,2024-03-06 17:00:00",
    "SZ2024030500002,2024/03/05 10:01,13912345678,李娜,小区停水未通知,物业管理,福田区,彩田路,福田区住建局,办理中,2024/03/08 10:01,",
    "SZ2024030500003,2024年3月5日 11:30,,匿名,\"井盖缺失，\n已有行人差点跌落\",井盖缺失,宝安区,新安街道,宝安区水务局,已派单,,",
    "SZ2024030500004,05-03-2024 12:00,13700000000,张强,违停,违章停车,罗湖区,东门,罗湖区交警,已派单,,",   # bad date
    "SZ2024030500005,2024-03-05 13:00:00,13700000001,赵敏,噪音,噪音扰民,龙华区,民治,龙华区城管局,挂起,,",  # unknown status
    ",2024-03-05 14:00:00,13700000002,刘洋,无编号,噪音扰民,龙岗区,布吉,龙岗区城管局,已受理,,",             # no order no
    "SZ2024030500001,2024-03-05 15:00:00,13700000003,陈杰,重复,噪音扰民,南山区,科技园,南山区城管局,已受理,,",  # duplicate
    "SZ2024030500008,2024-03-05 16:00:00,13700000004,杨婷,多一列,噪音扰民,南山区,科技园,南山区城管局,已受理,,,extra",
    "SZ2024030500009,2024-03-05 17:00:00,13700000005,黄明,诉求为空,噪音扰民,南山区,科技园,南山区城管局,,,",  # status empty: default
]


def test_12345_export_imports_good_rows_and_reports_bad_ones_by_line(provider, read_topic, tmp_path):
    path = tmp_path / "12345_export.csv"
    path.write_text(HEADER + "\n".join(ROWS) + "\n", encoding="utf-8-sig")  # Excel writes a BOM
    conn, publish, topic = provider("HotlineTicket")
    report = import_csv(path, Mapping.load("hotline12345"), publish)
    conn.flush()
    assert report.rows == 9 and report.imported == 4 and report.imported + len(report.bad) == report.rows
    lines = dict(report.bad)
    # line numbers are those of the file: row 3 spans lines 4-5, so later rows are shifted by one
    assert sorted(lines) == [6, 7, 8, 9, 10]
    assert "matches none of" in lines[6] and "05-03-2024 12:00" in lines[6]
    assert "办理状态: unexpected value '挂起'" in lines[7]
    assert "工单编号: required value is empty" in lines[8]
    assert "duplicate order_no 'SZ2024030500001' (first at line 2)" in lines[9]
    assert "13 columns, header has 12" in lines[10]
    got = {t["order_no"]: t for t in read_topic(topic, 4, "HotlineTicket", settle_s=0.5)}
    assert sorted(got) == ["SZ2024030500001", "SZ2024030500002", "SZ2024030500003", "SZ2024030500009"]
    a = got["SZ2024030500001"]
    assert a["call_time"] == _ms("2024-03-05 09:12:33", "%Y-%m-%d %H:%M:%S", "Asia/Shanghai") == 1709601153000
    assert (a["status"], a["caller_phone"], a["caller_name"], a["district"], a["channel"], a["category_code"]) == (
        "COMPLETED", "13800138000", "王伟", "南山区", "PHONE", "噪音扰民")
    assert a["completed_time"] == _ms("2024-03-06 17:00:00", "%Y-%m-%d %H:%M:%S", "Asia/Shanghai")
    assert got["SZ2024030500002"]["status"] == "IN_PROGRESS" and got["SZ2024030500002"]["completed_time"] is None
    assert got["SZ2024030500003"]["content"] == "井盖缺失，\n已有行人差点跌落" and got["SZ2024030500003"]["caller_phone"] is None
    assert got["SZ2024030500003"]["call_time"] == _ms("2024-03-05 11:30", "%Y-%m-%d %H:%M", "Asia/Shanghai")
    assert got["SZ2024030500009"]["status"] == "RECEIVED"


@pytest.mark.parametrize("text, message", [
    ("schema: HotlineTicket\nfields:\n  order_nr: {column: 工单编号}\n", r"fields\.order_nr: HotlineTicket has no field 'order_nr'"),
    ("schema: HotlineTicket\nfields:\n  order_no: {colum: 工单编号}\n", r"fields\.order_no: unknown option\(s\) colum"),
    ("schema: HotlineTicket\nfields:\n  order_no: {column: a, value: b}\n", r"fields\.order_no: give exactly one of"),
    ("schema: HotlineTicket\nfields:\n  status: {value: DONE}\n", r"fields\.status: 'DONE' is not a status value"),
    ("schema: HotlineTicket\nfields:\n  order_no: 工单编号\n", r"fields\.call_time: required by HotlineTicket but not mapped"),
    ("schema: HotlineTicket\ntimezone: Mars/Olympus\nfields: {}\n", r"timezone: unknown time zone"),
    ("fields: [1, 2\n", r"not valid YAML"),
])
def test_a_malformed_mapping_names_the_file_and_the_field(tmp_path, text, message):
    path = tmp_path / "broken_mapping.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError, match=r"broken_mapping\.yaml: " + message):
        Mapping.load(path)


def test_a_mapping_naming_a_missing_column_is_refused_before_any_row(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("工单编号,来电时间\nA1,2024-03-05 09:12:33\n", encoding="utf-8")
    published = []
    with pytest.raises(MappingError, match=r"hotline12345\.yaml: fields\.category_code\.column: none of \['诉求分类编码', '诉求分类'\]"):
        import_csv(path, Mapping.load("hotline12345"), published.append)
    assert published == []
