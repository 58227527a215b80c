"""Bills from cm.usage: what each consumer owes per contract over a time range.

cm.usage holds one UsageRecord per contract per hour, re-published with growing totals
under the same key (usage_id) while the hour fills; the latest record per key is the
truth, so a bill reads the topic as a table (streams.control.read_table) and sums the
windows that start inside [since_ms, until_ms). Amounts are summed from the priced windows,
so a bill equals the sum of what was published.
"""

from __future__ import annotations

from streams import topics
from streams.control import read_table


def bills(client_config: dict, since_ms: int, until_ms: int, topic: str = topics.USAGE,
          timeout_s: float = 15.0) -> list[dict]:
    """One bill per consumer: totals and one line per contract (and currency), sorted by consumer."""
    lines: dict[tuple, dict] = {}
    for rec in read_table(client_config, topic, timeout_s).values():
        if not since_ms <= rec["window_start_ms"] < until_ms:
            continue
        key = (rec["consumer_id"], rec["contract_id"], rec["currency"])
        line = lines.setdefault(key, {"contract_id": rec["contract_id"], "product_id": rec["product_id"],
                                      "provider_id": rec["provider_id"], "currency": rec["currency"],
                                      "price_per_1000_minor": rec["price_per_1000_minor"], "windows": 0,
                                      "records": 0, "bytes": 0, "amount_minor": 0})
        line["windows"] += 1
        line["records"] += rec["records"]
        line["bytes"] += rec["bytes"]
        line["amount_minor"] += rec["amount_minor"]
        line["price_per_1000_minor"] = rec["price_per_1000_minor"]
    out: dict[str, dict] = {}
    for (consumer, _, _), line in sorted(lines.items()):
        bill = out.setdefault(consumer, {"consumer_id": consumer, "since_ms": since_ms, "until_ms": until_ms,
                                         "records": 0, "bytes": 0, "totals_minor": {}, "lines": []})
        bill["lines"].append(line)
        bill["records"] += line["records"]
        bill["bytes"] += line["bytes"]
        bill["totals_minor"][line["currency"]] = bill["totals_minor"].get(line["currency"], 0) + line["amount_minor"]
    return list(out.values())


def _money(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def format_bills(bill_list: list[dict]) -> str:
    """A printable table (what `citymesh usage` shows): one row per contract, a total per consumer."""
    head = ("consumer", "contract", "product", "records", "bytes", "price/1000", "amount")
    rows = [head]
    for b in bill_list:
        for ln in b["lines"]:
            rows.append((b["consumer_id"], ln["contract_id"], ln["product_id"], f"{ln['records']:,}",
                         f"{ln['bytes']:,}", f"{_money(ln['price_per_1000_minor'])} {ln['currency']}",
                         f"{_money(ln['amount_minor'])} {ln['currency']}"))
        for cur, total in sorted(b["totals_minor"].items()):
            rows.append((b["consumer_id"], "TOTAL", "", f"{b['records']:,}", f"{b['bytes']:,}", "",
                         f"{_money(total)} {cur}"))
    if len(rows) == 1:
        return "no metered usage in this period"
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    right = {3, 4, 5, 6}
    return "\n".join("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     .rstrip() for r in rows)
