"""The policy engine: compile a contract into a plan and enforce it on decoded records.

Free of Kafka on purpose (it imports only ``schemas``, the standard library and
pydantic), so every policy can be unit-tested and benchmarked on plain dicts and the same
code serves the sandbox (dry run of a contract on sample data) and the live runner.

    plan = compile_plan(terms, schemas.load("UavTelemetry"), derive_contract_key(master, terms.contract_id))
    result = plan.evaluate(records, now_ms)      # parallel lists: decisions, records, rules; counts
    payloads = [plan.output_schema.encode(r) for r in result.records if r is not None]
"""

from .duties.pseudonymise import derive_contract_key
from .errors import PolicyError
from .lineage import Identifier, ProductTerms
from .plan import (DELIVER, DROP, REJECT, RULE_NOT_AFTER, RULE_NOT_BEFORE, RULE_PURPOSE, BatchResult,
                   ContractTerms, Plan, SourceBatch, compile_plan, plan_for, shared_split_keys)
from .policy import CONSTRAINTS, DUTIES, PROHIBITIONS, PolicyDocument, validate_policy
from .templates import TEMPLATES, Template, render_template

__all__ = [
    "DELIVER", "DROP", "REJECT", "RULE_NOT_AFTER", "RULE_NOT_BEFORE", "RULE_PURPOSE",
    "BatchResult", "ContractTerms", "Plan", "PolicyError", "compile_plan", "derive_contract_key",
    "Identifier", "ProductTerms", "SourceBatch", "plan_for", "shared_split_keys",
    "validate_policy", "render_template", "TEMPLATES", "Template",
    "CONSTRAINTS", "DUTIES", "PROHIBITIONS", "PolicyDocument",
]
