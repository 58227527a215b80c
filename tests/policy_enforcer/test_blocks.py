"""Building blocks registered by name: a constraint, a duty or an operator rule type is one
class, and registering it is all the engine needs to validate, compile, run and describe it.

The blocks here are defined in this file and registered for one test each, the way a module
of ``policy_enforcer/constraints/``, ``duties/`` or ``rules/`` registers itself on import.
"""

from __future__ import annotations

from typing import Literal

import pytest
from enforcer_samples import KEY, NOW_MS, UAV, uav

from policy_enforcer import DELIVER, DROP, REJECT, ContractTerms, PolicyError, compile_plan, validate_policy
from policy_enforcer.blocks import Compiling, PolicyCheck, StrictStr, discover
from policy_enforcer.constraints import CONSTRAINTS, CompiledConstraint, Constraint
from policy_enforcer.duties import DUTIES, FieldDuty, FieldOutput, FieldSlot
from policy_enforcer.rules import RULES, FieldName, OperatorRule, RuleContext, Scan, compile_rules
from policy_enforcer.schema_fields import FieldType


class RedactDuty(FieldDuty):
    """Replace a text by a fixed word (null stays null)."""

    type: Literal["redact"]
    field: StrictStr
    word: StrictStr = "[redacted]"

    def check_type(self, ft: FieldType, path: str) -> None:
        if ft.base != "string":
            raise PolicyError(f"field {self.field!r} is {ft.label}; redact needs a string field", path)

    def compile_field(self, slot: FieldSlot, ctx: Compiling) -> FieldOutput:
        return self.output(slot, slot.call(slot.const), f"replaced by {self.word!r}", self.word, as_string=True)


class PrefixConstraint(Constraint):
    """Deliver only records whose text field starts with ``prefix``."""

    type: Literal["prefix"]
    field: StrictStr
    prefix: StrictStr

    def check(self, ctx: PolicyCheck, path: str) -> None:
        if ctx.type_of(self.field, f"{path}.field").base != "string":
            raise PolicyError("prefix needs a string field", f"{path}.field")

    def compile(self, ctx: Compiling, path: str, prefix: str) -> CompiledConstraint:
        rule = ctx.rule_id(f"constraint:prefix:{self.field}")
        return CompiledConstraint(path, rule, f"{self.field} starts with {self.prefix!r}",
                                  [f"if not r[{self.field!r}].startswith({prefix}p): return {prefix}r"],
                                  {f"{prefix}p": self.prefix, f"{prefix}r": rule})


class MinRule(OperatorRule):
    """``field`` below ``min``."""

    type: Literal["min"]
    field: FieldName
    min: float

    def check(self, ctx: RuleContext, path: str) -> None:
        super().check(ctx, path)
        ctx.check_field(self.field, f"{path}.field", numeric=True)

    def compile(self, ctx: RuleContext) -> Scan:
        field, low = self.field, self.min
        make, keep = self.hit(f"{field} below {{min}}"), self.applies()

        def scan(records, now_ms, out):
            for i, r in enumerate(records):
                if r[field] < low and (keep is None or keep(r)):
                    out.append(make(i, r, {field: str(r[field]), "min": str(low)}))
        return scan


@pytest.fixture
def registered():
    """Register blocks for one test; the registries are as before afterwards."""
    saved = [(registry, dict(registry)) for registry in (CONSTRAINTS, DUTIES, RULES)]
    yield lambda registry, cls: registry.register(cls)
    for registry, items in saved:
        registry.clear()
        registry.update(items)


def plan(policy):
    return compile_plan(ContractTerms("extra", 1, "consumer-x", ["route-planning"], policy), UAV, KEY)


def test_a_duty_defined_in_one_class_is_validated_compiled_run_and_described(registered):
    policy = {"duties": [{"type": "redact", "field": "uin"}, {"type": "drop", "fields": ["operator_id"]}]}
    with pytest.raises(PolicyError, match=r"policy.duties\[0\].type: unknown duty 'redact' \(known: drop, mask"):
        validate_policy(policy, UAV)
    registered(DUTIES, RedactDuty)
    assert list(DUTIES)[-1] == "redact"
    p = plan(policy)
    records = [uav(), uav(uin=None)]
    result = p.evaluate(records, NOW_MS)
    assert result.decisions == [DELIVER, DELIVER]
    assert [r["uin"] for r in result.records] == ["[redacted]", None]
    assert "operator_id" not in result.records[0] and result.records[0]["lat"] == uav()["lat"]
    # the delivered bytes (one-pass encoder) decode to the same records
    encoded = p.evaluate_encoded(records, [UAV.encode(r) for r in records], NOW_MS)
    assert [p.output_schema.decode(b) for b in encoded.records] == result.records
    uin = next(f for f in p.output_schema.definition["fields"] if f["name"] == "uin")
    assert uin["type"] == ["null", "string"] and "[duty:redact:uin: replaced by '[redacted]']" in uin["doc"]
    described = p.describe()["duties"]
    assert {"rule": "duty:redact:uin", "path": "policy.duties[0]", "field": "uin",
            "text": "replaced by '[redacted]'"} in described
    assert p.describe()["dropped_fields"] == ["operator_id"]
    # its own check, and the checks every field duty shares, name the path
    with pytest.raises(PolicyError, match=r"^policy.duties\[0\].field: field 'lat' is double; redact needs"):
        validate_policy({"duties": [{"type": "redact", "field": "lat"}]}, UAV)
    with pytest.raises(PolicyError, match=r"^policy.duties\[1\].field: field 'uin' is already transformed"):
        validate_policy({"duties": [{"type": "mask", "field": "uin"}, {"type": "redact", "field": "uin"}]}, UAV)
    with pytest.raises(PolicyError, match=r"^policy.duties\[0\].words: unknown key 'words'"):
        validate_policy({"duties": [{"type": "redact", "field": "uin", "words": "x"}]}, UAV)


def test_a_constraint_defined_in_one_class_drops_rejects_and_is_described(registered):
    registered(CONSTRAINTS, PrefixConstraint)
    p = plan({"permission": {"constraints": [{"type": "purpose", "in": ["route-planning"]},
                                             {"type": "prefix", "field": "flight_id", "prefix": "F2026"},
                                             {"type": "prefix", "field": "serial_number", "prefix": "1581"}]}})
    result = p.evaluate([uav(), uav(flight_id="F2025-1"), uav(serial_number="X1"), uav(flight_id=None)], NOW_MS)
    assert result.decisions == [DELIVER, DROP, DROP, REJECT]
    assert result.rules == [None, "constraint:prefix:flight_id", "constraint:prefix:serial_number",
                            "constraint:prefix:flight_id"]
    assert result.counts == {DELIVER: 1, "drop:constraint:prefix:flight_id": 1,
                             "drop:constraint:prefix:serial_number": 1, "reject:constraint:prefix:flight_id": 1}
    assert [c["text"] for c in p.describe()["constraints"]] == ["flight_id starts with 'F2026'",
                                                                "serial_number starts with '1581'"]
    with pytest.raises(PolicyError, match=r"^policy.permission.constraints\[0\].field: prefix needs a string"):
        validate_policy({"permission": {"constraints": [{"type": "prefix", "field": "lat", "prefix": "3"}]}}, UAV)


def test_an_operator_rule_type_defined_in_one_class_fires_and_is_checked(registered):
    registered(RULES, MinRule)
    rules = compile_rules([{"id": "low-battery", "type": "min", "severity": "HIGH", "field": "battery_pct",
                            "min": 20, "when": {"uav_class": ["LIGHT"]}}], UAV)
    hits = rules.evaluate([uav(), uav(battery_pct=12.5), uav(battery_pct=12.5, uav_class="SMALL")], NOW_MS)
    assert [(h.index, h.rule_id, h.severity, h.message) for h in hits] == [
        (1, "low-battery", "HIGH", "battery_pct below 20.0")]
    assert hits[0].evidence == {"battery_pct": "12.5", "min": "20.0", "uav_class": "LIGHT"}
    with pytest.raises(PolicyError, match=r"^rules\[0\] \(x\): unknown field\(s\) max for a min rule \(allowed: "
                                          r"field, id, message, min, severity, subject, type, when\)"):
        compile_rules([{"id": "x", "type": "min", "field": "battery_pct", "max": 3}], UAV)
    with pytest.raises(PolicyError, match=r"^rules\[0\] \(x\).field: field 'uin' is nullable string, not a number"):
        compile_rules([{"id": "x", "type": "min", "field": "uin", "min": 3}], UAV)


def test_a_module_in_a_block_package_is_all_it_takes(registered, tmp_path, monkeypatch):
    """What each block package's __init__ does with its folder: every module in it is imported
    and registers itself, so a new type is one new file."""
    package = tmp_path / "more_duties"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "upper.py").write_text(
        "from typing import Literal\n"
        "from policy_enforcer.blocks import StrictStr\n"
        "from policy_enforcer.duties import DUTIES, FieldDuty\n\n"
        "@DUTIES.register\n"
        "class UpperDuty(FieldDuty):\n"
        "    \"\"\"Upper-case a text.\"\"\"\n"
        "    type: Literal['upper']\n"
        "    field: StrictStr\n\n"
        "    def compile_field(self, slot, ctx):\n"
        "        return self.output(slot, slot.call('{v}.upper()'), 'upper-cased', None)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    discover("more_duties", [str(package)])
    out = plan({"duties": [{"type": "upper", "field": "flight_id"}]}).evaluate([uav(flight_id="f1-a")], NOW_MS)
    assert out.records[0]["flight_id"] == "F1-A"


def test_the_registries_list_the_built_in_types_in_their_documented_order():
    assert list(CONSTRAINTS) == ["purpose", "validity", "geofence", "value", "event_time"]
    assert list(DUTIES) == ["drop", "mask", "pseudonymise", "generalise", "scrub_pii"]
    assert list(RULES) == ["max", "required", "zone", "pii", "overdue"]
    for registry in (CONSTRAINTS, DUTIES, RULES):
        for name, cls in registry.items():
            assert cls.type_name() == name and (cls.__doc__ or "").strip(), name
