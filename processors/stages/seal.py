"""The seal stage: deliveries a consumer can verify as written by the mesh for its contract.

After the contracts stage (and its quotas), every delivery gets its tag (``cm.auth``) and
the last delivery of each contract in the slice the batch's seal (``cm.seal``), as
streams/delivery.py defines them for the consumer: the tag is an HMAC under the contract's
delivery key (which the consumer holds), the seal the operator's Ed25519 signature over the
digest of the tags since the previous seal in that delivery partition. That digest is also
the BATCH compliance event's digest, so a regulator can match what a consumer received with
what the mesh recorded.

After a crash, deliveries a previous owner already wrote and sealed are not sealed again:
the fence says up to which source offset each delivery partition was sealed, and the first
seal after the restart covers exactly what was written since (processors/fencing.py).
A mesh without an operator key writes tags but no seals.
"""

from __future__ import annotations

from policy_enforcer.plan import SOURCE_REF_AT, TRACE_AT
from schemas.headers import AUTH, SEAL
from streams.delivery import seal_digest, seal_message, tag_deliveries

from .base import PartitionSlice, Stage


class Seal(Stage):
    name = "seal"

    def __init__(self, signer: tuple | None = None):
        # (the operator's participant id, its Ed25519PrivateKey), or None: tags without seals
        self.signer_id, self.signer = (signer[0].encode(), signer[1]) if signer else (None, None)

    def process(self, s: PartitionSlice) -> None:
        fence, ts = s.fence, s.now_ms
        for ap, result, event in s.deliveries:
            sealed_to = fence.sealed.get(ap.topic, -1) if fence is not None else -1
            contract = ap.plan.static_headers[0][1]
            all_tags = tag_deliveries(ap.tagger, contract, ts, result.records, result.keys, result.headers,
                                      SOURCE_REF_AT, TRACE_AT, AUTH)
            last = next((i for i in range(len(all_tags) - 1, -1, -1) if all_tags[i] is not None), None)
            if last is None or s.good[0].offset > sealed_to:  # (no crash behind: the seal covers them all)
                tags = [t for t in all_tags if t is not None]
            else:  # what a previous owner sealed is not sealed again
                tags = [t for t, g in zip(all_tags, s.good) if t is not None and g.offset > sealed_to]
                last = last if s.good[last].offset > sealed_to else None
            digest = seal_digest(tags)
            if event is not None:
                event.digest = digest.decode()
            if last is not None and fence is not None:
                fence.sealed[ap.topic] = s.good[last].offset
            if last is not None and self.signer is not None:
                signature = self.signer.sign(seal_message(contract, s.p % ap.partitions, len(tags), digest))
                result.headers[last].append((SEAL, b"%d:%b:%b:%b" % (len(tags), digest, self.signer_id,
                                                                     signature.hex().encode())))
