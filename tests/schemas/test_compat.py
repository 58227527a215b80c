import copy

import schemas


def _uav():
    return copy.deepcopy(schemas.load("UavTelemetry").definition)


def test_identical_and_additive_changes_are_backward_compatible():
    old = _uav()
    new = _uav()
    new["fields"].append({"name": "rssi_dbm", "type": ["null", "int"], "default": None})
    new["fields"][0]["doc"] = "changed doc"
    assert schemas.backward_problems(old, old) == []
    assert schemas.is_backward_compatible(new, old)


def test_type_promotion_is_compatible_and_narrowing_is_not():
    old = {"type": "record", "name": "R", "fields": [{"name": "n", "type": "int"}]}
    wide = {"type": "record", "name": "R", "fields": [{"name": "n", "type": "long"}]}
    assert schemas.is_backward_compatible(wide, old)
    problems = schemas.backward_problems(old, wide)
    assert problems and "n" in problems[0] and "long" in problems[0]


def test_breaking_changes_fail_and_say_why():
    old = _uav()
    added = _uav()
    added["fields"].append({"name": "pilot_licence", "type": "string"})  # no default
    assert any("pilot_licence" in p and "no default" in p for p in schemas.backward_problems(added, old))

    retyped = _uav()
    next(f for f in retyped["fields"] if f["name"] == "lat")["type"] = "string"
    assert any(".lat" in p for p in schemas.backward_problems(retyped, old))

    fewer_symbols = _uav()
    source = next(f for f in fewer_symbols["fields"] if f["name"] == "source")
    source["type"]["symbols"] = ["MAVLINK", "DJI_OSD"]
    assert any("REMOTE_ID" in p for p in schemas.backward_problems(fewer_symbols, old))

    renamed = _uav()
    renamed["name"] = "DroneTelemetry"
    assert not schemas.is_backward_compatible(renamed, old)


def test_optional_field_made_required_breaks_but_union_widening_does_not():
    old = _uav()
    required = _uav()
    uin = next(f for f in required["fields"] if f["name"] == "uin")
    uin["type"], uin["default"] = "string", ""
    assert not schemas.is_backward_compatible(required, old)  # old nulls cannot be read as string
    widened = _uav()
    battery = next(f for f in widened["fields"] if f["name"] == "battery_pct")
    battery["type"] = ["null", "double", "string"]
    assert schemas.is_backward_compatible(widened, old)
