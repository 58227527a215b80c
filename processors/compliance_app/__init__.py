"""The compliance app (faust): escalated incidents, lost links, hotline surges, metering and bills.

    python -m processors.compliance_app --help

`bills(client_config, since_ms, until_ms)` and `format_bills(...)` read cm.usage and need no
running app (they back `citymesh usage`).
"""

from .billing import bills, format_bills
from .config import AppConfig

__all__ = ["AppConfig", "bills", "format_bills"]
