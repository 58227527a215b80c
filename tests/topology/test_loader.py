"""Topology files: the example loads; every kind of mistake names the file, line, entry and field."""

import re

import pytest

from topology.loader import TopologyFileError, load_topology
from tests.mesh_fixtures import EXAMPLES, city_yaml

GOOD = city_yaml("t1")


def _load(tmp_path, text):
    f = tmp_path / "city.yaml"
    f.write_text(text)
    return load_topology(f)


def _error(tmp_path, text) -> str:
    with pytest.raises(TopologyFileError) as err:
        _load(tmp_path, text)
    return str(err.value)


def test_the_example_city_loads():
    topo = load_topology(EXAMPLES / "city.yaml")
    roles = {r.value for p in topo.participants for r in p.roles}
    assert roles == {"operator", "provider", "consumer", "service", "regulator"}
    assert {p.id for p in topo.products} == {"uav-telemetry", "hotline-tickets"}
    assert len(topo.contracts) >= 6
    templated = next(c for c in topo.contracts if c.template == "insurance-pricing")
    assert templated.policy["permission"]["constraints"]  # the template filled the policy
    geofenced = next(c for c in topo.contracts if c.id == "logistics-routes")
    fence = next(x for x in geofenced.policy["permission"]["constraints"] if x["type"] == "geofence")
    assert fence["inside"]["type"] == "Feature"  # the geofence name was resolved to GeoJSON


@pytest.mark.parametrize("mutate,where,what", [
    (lambda t: t.replace("consumer: t1-logistics", "consumer: nobody", 1), r"contracts\[0\] \(t1-routes\)\.consumer",
     "unknown participant 'nobody'"),
    (lambda t: t.replace("provider: t1-skyway\n", "provider: t1-logistics\n", 1), r"products\[0\] \(t1-uav\)\.provider",
     "does not have the provider role"),
    (lambda t: t.replace("schema: UavTelemetry", "schema: Drone"), r"products\[0\] \(t1-uav\)\.schema", "no schema 'Drone'"),
    (lambda t: t.replace("retention: 1d", "retention: forever"), r"products\[0\] \(t1-uav\)\.retention", "duration"),
    (lambda t: t.replace("key_field: serial_number", "key_field: serial"), r"products\[0\] \(t1-uav\)\.key_field",
     "'serial' is not a field of UavTelemetry"),
    (lambda t: t.replace("{type: pseudonymise, field: serial_number}", "{type: encrypt, field: serial_number}"),
     r"contracts\[0\] \(t1-routes\)\.policy", "unknown duty 'encrypt'"),
    (lambda t: t.replace("{type: geofence, inside: urban}", "{type: teleport}"), r"contracts\[0\] \(t1-routes\)\.policy",
     "unknown constraint 'teleport'"),
    (lambda t: t.replace("field: height_agl_m, op", "field: altitude, op"), r"contracts\[0\] \(t1-routes\)\.policy",
     "altitude"),
    (lambda t: t.replace("inside: urban", "inside: atlantis"), r"contracts\[0\] \(t1-routes\)\.policy",
     "unknown geofence 'atlantis'"),
    (lambda t: t.replace("roles: [regulator]", "roles: [king]"), r"participants\[2\] \(t1-regulator\)\.roles",
     "Input should be"),
    (lambda t: t.replace("id: t1-routes", "id: t1-regulator"), r"contracts\[1\] \(t1-regulator\)\.id", "duplicate id"),
    (lambda t: t.replace("    purposes: [route-planning]\n", "    purposes: [route-planning]\n    colour: red\n"),
     r"contracts\[0\] \(t1-routes\)\.colour", "unknown field"),
])
def test_errors_name_file_line_entry_and_field(tmp_path, mutate, where, what):
    text = mutate(GOOD)
    assert text != GOOD
    msg = _error(tmp_path, text)
    m = re.match(r"^(.+city\.yaml):(\d+): (.*)$", msg, re.S)
    assert m, msg
    assert re.search(where, m.group(3)), msg
    assert what in msg, msg
    line = int(m.group(2))
    lines = text.splitlines()
    # the line named is inside the offending entry
    entry_id = re.search(r"\((t1-[a-z-]+)\)", m.group(3)).group(1)
    start = max(i for i, ln in enumerate(lines, 1) if f"id: {entry_id}" in ln and i <= line)
    assert start <= line <= start + 25, (line, start, msg)


def test_unreadable_and_non_yaml_files(tmp_path):
    with pytest.raises(TopologyFileError, match="cannot read"):
        load_topology(tmp_path / "missing.yaml")
    msg = _error(tmp_path, "participants: [\n  {id: x")
    assert "not valid YAML" in msg and "city.yaml" in msg
    assert "top level must be a mapping" in _error(tmp_path, "- a\n- b\n")


def test_template_parameters_are_checked(tmp_path):
    policy_block = GOOD[GOOD.index("    policy:\n      permission:\n        fields: [serial_number"):GOOD.index("  - id: t1-regulator")]
    templated = GOOD.replace(policy_block, "    template: logistics-route-planning\n    params: {geofence: urban, warp: 9}\n")
    msg = _error(tmp_path, templated)
    assert re.search(r"city\.yaml:\d+: contracts\[0\] \(t1-routes\)\.template", msg) and "warp" in msg, msg
    assert "unknown template" in _error(tmp_path, templated.replace("logistics-route-planning", "spy-on-everyone"))
    ok = _load(tmp_path, templated.replace(", warp: 9", ""))
    assert ok.contracts[0].policy["permission"]["constraints"]
    both = templated.replace(", warp: 9}", "}\n    policy: {permission: {}}")
    assert "exactly one of policy or template" in _error(tmp_path, both)
