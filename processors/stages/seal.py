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
from streams.delivery import TAG_MIDDLE, seal_digest, seal_message

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
            tag_hex = ap.tagger.tag_hex
            contract = ap.plan.static_headers[0][1]
            # every delivery's tag in one pass: tag_parts (streams/delivery.py) written out, the hot path
            all_tags = [None if payload is None else tag_hex(
                contract, hs[SOURCE_REF_AT][1], TAG_MIDDLE % (key or b"", ts, hs[TRACE_AT][1]), payload).encode()
                for payload, key, hs in zip(result.records, result.keys, result.headers)]
            tags, last = [], None
            for i, (tag, hs, g) in enumerate(zip(all_tags, result.headers, s.good)):
                if tag is not None:
                    hs.append((AUTH, tag))
                    if g.offset > sealed_to:
                        tags.append(tag)
                        last = i
            digest = seal_digest(tags)
            if event is not None:
                event["digest"] = digest.decode()
            if last is not None and fence is not None:
                fence.sealed[ap.topic] = s.good[last].offset
            if last is not None and self.signer is not None:
                signature = self.signer.sign(seal_message(contract, s.p % ap.partitions, len(tags), digest))
                result.headers[last].append((SEAL, b"%d:%b:%b:%b" % (len(tags), digest, self.signer_id,
                                                                     signature.hex().encode())))
