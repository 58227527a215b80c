"""Resolve what a consumer was given about a record's origin back to the source record.

A delivery's ``cm.src`` and ``traceparent`` are sealed under its contract's key
(policy_enforcer/provenance.py: two consumers cannot compare them); the mesh, holding the
master secret, opens them here: the source topic, partition and offset, the provider's
trace id, and the compliance batch event that counted the record. This is how the
operator answers a consumer's "where did this record come from?" and how the regulator
ties a delivery to the ledger, and what the tests use to check exactly-once delivery.

    citymesh provenance CONTRACT REF [--ledger URL]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from policy_enforcer import derive_contract_key
from policy_enforcer.provenance import SourceRefs, TraceIds
from schemas import headers as H


@dataclass(frozen=True)
class Origin:
    """Where one delivery came from."""

    contract_id: str
    partition: int
    offset: int
    trace_id: str | None = None


class Resolver:
    """Opens the provenance headers of any contract's deliveries (needs the mesh's secret)."""

    def __init__(self, master_secret: bytes):
        self._master = master_secret

    @lru_cache(maxsize=1024)
    def _keys(self, contract_id: str) -> tuple[SourceRefs, TraceIds]:
        key = derive_contract_key(self._master, contract_id)
        return SourceRefs(key), TraceIds(key)

    def position(self, contract_id: str, ref: bytes | str) -> tuple[int, int] | None:
        """(source partition, source offset) of a cm.src value of this contract, or None."""
        return self._keys(contract_id)[0].open(ref)

    def trace(self, contract_id: str, traceparent: bytes | str) -> str | None:
        """The provider's trace id behind a delivery's traceparent, or None."""
        return self._keys(contract_id)[1].open(traceparent)

    def origin(self, headers: dict) -> Origin | None:
        """The origin of a delivery from its headers (cm.contract names the contract)."""
        contract = headers.get(H.CONTRACT)
        ref = headers.get(H.SOURCE_REF)
        if not contract or not ref:
            return None
        cid, _ = H.parse_contract(contract)
        pos = self.position(cid, ref)
        if pos is None:
            return None
        tp = headers.get(H.TRACE)
        return Origin(cid, pos[0], pos[1], self.trace(cid, tp) if tp else None)


def batch_entry(ledger_url: str, contract_id: str, partition: int, offset: int) -> dict | None:
    """The compliance BATCH event in the ledger that counted this contract's delivery of
    the source record at (partition, offset), or None."""
    from .ledger.store import open_store
    with open_store(ledger_url, create=False) as store:
        for row in store.entries():
            if row.kind != "BATCH":
                continue
            ev = json.loads(row.event_json)
            if (ev.get("contract_id") == contract_id and ev.get("source_partition") == partition
                    and ev["first_offset"] <= offset <= ev["last_offset"]):
                return {"seq": row.seq, "entry_hash": row.entry_hash, **ev}
    return None
