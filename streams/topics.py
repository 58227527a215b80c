"""Topic names of the mesh, in one place (the data flow is drawn in README.md, Architecture)."""

from __future__ import annotations

import re

COMPLIANCE = "cm.compliance"
ALERTS = "cm.alerts"
USAGE = "cm.usage"
CONTROL_PARTICIPANTS = "cm.control.participants"
CONTROL_CATALOG = "cm.control.catalog"
CONTROL_CONTRACTS = "cm.control.contracts"
CONTROL_RULES = "cm.control.rules"  # operator rules per product (schemas/OperatorRules.avsc)
# the dataspace control plane's state (dataspace/): one record per negotiation or transfer
# and side (key = that side's process id), one per agreement (key = agreement id)
CONTROL_NEGOTIATIONS = "cm.control.negotiations"  # schemas/Negotiation.avsc
CONTROL_TRANSFERS = "cm.control.transfers"        # schemas/Transfer.avsc
CONTROL_AGREEMENTS = "cm.control.agreements"      # schemas/Agreement.avsc
CONTROL_TOPICS = (CONTROL_PARTICIPANTS, CONTROL_CATALOG, CONTROL_CONTRACTS, CONTROL_RULES,
                  CONTROL_NEGOTIATIONS, CONTROL_TRANSFERS, CONTROL_AGREEMENTS)
SHARED_TOPICS = (COMPLIANCE, ALERTS, USAGE)

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def check_id(kind: str, value: str) -> str:
    """Ids become parts of topic names, so they are restricted to what Kafka allows and humans read."""
    if not _ID.match(value or ""):
        raise ValueError(f"{kind} id {value!r} must be 1-63 chars of a-z, 0-9, '-' or '_', starting with a letter or digit")
    return value


def raw(provider: str, product: str) -> str:
    """Where only the provider writes its product's records."""
    return f"cm.raw.{provider}.{product}"


def delivery(contract: str) -> str:
    """What one consumer may read under one contract."""
    return f"cm.dlv.{contract}"


def dead_letter(provider: str, product: str) -> str:
    """Rejected records of a provider's product, with the reason in headers."""
    return f"cm.dlq.{provider}.{product}"


def partition_state(provider: str, product: str) -> str:
    """Compacted: the runner's state per source partition (limits, quotas, breaker, replay
    check, alert folding), tied to its committed offset (processors/partition_state.py), so a
    restart neither resets a quota nor forgets what it has seen."""
    return f"cm.state.{provider}.{product}"
