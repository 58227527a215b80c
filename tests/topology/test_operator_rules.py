"""Operator rules in a topology file: the example's load and go on the wire resolved; every
mistake names the file, the line, the entry and the field."""

import json
import re

import pytest

from tests.mesh_fixtures import EXAMPLES, city_yaml
from topology.loader import TopologyFileError, load_topology
from topology.rules import rules_records

ZONES = EXAMPLES / "geo" / "shenzhen-uas-zones.geojson"

RULES = f"""
geofences:
  zones: {{file: {ZONES}}}
operator_rules:
  - product: t1-uav
    authorisations:
      SZ-CIVIC-R1: [OP-OK]
    rules:
      - {{id: height, type: max, severity: HIGH, field: height_agl_m, max: 120, when: {{uav_class: [LIGHT]}}}}
      - {{id: civic, type: zone, zones: zones, restrictions: [REQ_AUTHORISATION]}}
"""


def _text(rules: str = RULES) -> str:
    # the base city has a `geofences:` section: merge ours into it
    base = city_yaml("t1")
    extra = rules.replace("geofences:\n", "")
    zones_line = extra.splitlines()[1]
    base = base.replace("geofences:\n", "geofences:\n" + zones_line + "\n", 1)
    return base + "\n".join(extra.splitlines()[2:]) + "\n"


def _load(tmp_path, text):
    f = tmp_path / "city.yaml"
    f.write_text(text)
    return load_topology(f)


def test_example_city_rules_are_resolved_for_the_wire():
    topo = load_topology(EXAMPLES / "city.yaml")
    recs = rules_records(topo)
    assert set(recs) == {"uav-telemetry", "hotline-tickets"}
    uav = recs["uav-telemetry"]
    ids = [r["id"] for r in json.loads(uav["rules_json"])]
    assert ids[:2] == ["uav-height-120", "uav-micro-height-50"] and "uav-unregistered" in ids
    zones = json.loads(uav["zones_json"])
    assert list(zones) == ["uas-zones"] and zones["uas-zones"]["type"] == "FeatureCollection"  # GeoJSON, not a path
    assert json.loads(uav["authorisations_json"])["CHN-OP-000001"] == ["SZ-CIVIC-R1"]
    assert json.loads(recs["hotline-tickets"]["zones_json"]) == {}


def test_rules_load(tmp_path):
    topo = _load(tmp_path, _text())
    assert topo.operator_rules[0].authorisations == {"SZ-CIVIC-R1": ["OP-OK"]}


@pytest.mark.parametrize("mutate,where,what,token", [
    (lambda t: t.replace("product: t1-uav\n    auth", "product: ghost\n    auth"),
     r"operator_rules\[0\]\.product", "unknown product 'ghost'", "product: ghost"),
    (lambda t: t.replace("field: height_agl_m, max", "field: altitude, max"),
     r"operator_rules\[0\]\.rules\[0\] \(height\)\.field", "unknown field 'altitude'", "id: height"),
    (lambda t: t.replace("severity: HIGH, field: height", "severity: URGENT, field: height"),
     r"operator_rules\[0\]\.rules\[0\] \(height\)\.severity", "severity 'URGENT'", "id: height"),
    (lambda t: t.replace("type: max", "type: maximum"),
     r"operator_rules\[0\]\.rules\[0\] \(height\)\.type", "unknown rule type 'maximum'", "id: height"),
    (lambda t: t.replace("uav_class: [LIGHT]}}", "uav_class: [HEAVY]}}"),
     r"operator_rules\[0\]\.rules\[0\] \(height\)\.when\.uav_class", "not among uav_class", "id: height"),
    (lambda t: t.replace("zones: zones,", "zones: nowhere,"),
     r"operator_rules\[0\]\.rules\[1\] \(civic\)\.zones", "unknown geofence 'nowhere'", "id: civic"),
    (lambda t: t.replace("SZ-CIVIC-R1: [OP-OK]", "SZ-NOPE: [OP-OK]"),
     r"operator_rules\[0\]\.authorisations\.SZ-NOPE", "zone 'SZ-NOPE' is not in any zone set", "SZ-NOPE"),
    (lambda t: t.replace("      - {id: civic", "      - {id: height, type: required, field: uin}\n      - {id: civic"),
     r"operator_rules\[0\]\.rules\[1\] \(height\)\.id", "duplicate rule id 'height'", "type: required"),
])
def test_errors_name_file_line_entry_and_field(tmp_path, mutate, where, what, token):
    text = mutate(_text())
    assert text != _text()
    with pytest.raises(TopologyFileError) as err:
        _load(tmp_path, text)
    msg = str(err.value)
    assert re.search(r"city\.yaml:\d+: " + where, msg), msg
    assert what in msg, msg
    line = int(re.search(r"city\.yaml:(\d+):", msg).group(1))
    assert token in text.splitlines()[line - 1], (line, msg)


def test_a_zone_set_without_ed269_attributes_is_refused(tmp_path):
    plain = tmp_path / "plain.geojson"
    plain.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "no identifier"},
         "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}]}))
    text = _text().replace(str(ZONES), str(plain)).replace("      SZ-CIVIC-R1: [OP-OK]\n", "").replace(
        "    authorisations:\n", "")
    with pytest.raises(TopologyFileError) as err:
        _load(tmp_path, text)
    assert re.search(r"operator_rules\[0\]\.rules\[1\] \(civic\).*identifier", str(err.value)), str(err.value)
