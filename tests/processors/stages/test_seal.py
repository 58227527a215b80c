"""The seal stage on its own (no broker): what it writes is what a consumer verifies with
streams/delivery.py's DeliveryVerifier: every delivery's tag, and on the last of each
contract's slice the operator's seal over the tags since the previous one; what a fence
says was already sealed before a crash is not sealed again."""

from __future__ import annotations

from confluent_kafka import Message

from processors.fencing import PartitionFence
from processors.stages.seal import Seal
from schemas.headers import AUTH, SEAL
from streams.delivery import FORGED, OK, DeliveryVerifier, seal_digest
from streams.keyring import Keyring
from tests.processors.stages.samples import Provider, admitted_slice, contracts_stage, uav

OPERATOR = Keyring.generate("sz-data-bureau")
CONTRACTS = ["logistics-routes", "regulator-uav"]
OUTSIDE = {"lat": 22.0, "lon": 113.5}  # outside every geofence: logistics-routes drops it


def sealed(stage, provider: Provider, first: int, n: int, p: int = 2, fence=None, signer=OPERATOR, dropped=()):
    """Slice [first, first + n) through the contracts and seal stages: the slice, and per
    contract the records its delivery topic gets, as a consumer reads them."""
    s = admitted_slice(provider, [uav(o, **(OUTSIDE if o in dropped else {})) for o in range(first, first + n)], p=p,
                       first=first, fence=fence)
    stage.process(s)
    Seal((signer.participant_id, signer.signer()) if signer else None).process(s)
    return s, {ap.contract_id: read(ap, result, s, fence) for ap, result, _ in s.deliveries}


def read(ap, result, s, fence) -> list[Message]:
    """What the sinks stage writes to the contract's delivery topic (skipping what the fence
    says a previous owner wrote), with the batch's processing time as timestamp."""
    written_to = fence.outputs.get(ap.topic, -1) if fence is not None else -1
    return [Message(topic=ap.topic, partition=s.p % ap.partitions, offset=g.offset, key=key, value=payload,
                    headers=headers, timestamp=(1, s.now_ms))
            for payload, key, headers, g in zip(result.records, result.keys, result.headers, s.good)
            if payload is not None and g.offset > written_to]


def verifier(stage, cid: str, operators=None) -> DeliveryVerifier:
    key = stage.plans[cid].plan.delivery_key
    return DeliveryVerifier(cid, key, lambda: operators or {OPERATOR.participant_id: OPERATOR.public_key_hex})


def check(v: DeliveryVerifier, msgs: list[Message]) -> list:
    return [v.check(m) for m in msgs]


def seals(msgs: list[Message]) -> list:
    return [dict(m.headers()).get(SEAL) for m in msgs]


def test_every_delivery_is_tagged_and_the_last_of_each_contract_sealed_for_its_consumer():
    stage, provider = contracts_stage(CONTRACTS), Provider()
    s, out = sealed(stage, provider, 0, 5, dropped=(4,))
    assert [len(out[c]) for c in CONTRACTS] == [4, 5]
    for cid in CONTRACTS:
        msgs = out[cid]
        assert all(AUTH in dict(m.headers()) for m in msgs)
        assert [x is not None for x in seals(msgs)] == [False] * (len(msgs) - 1) + [True]
        count, digest, signer, _ = seals(msgs)[-1].split(b":")
        assert (int(count), signer) == (len(msgs), b"sz-data-bureau")
        assert digest == seal_digest([dict(m.headers())[AUTH] for m in msgs])
        [event] = [e for ap, _, e in s.deliveries if ap.contract_id == cid]
        assert event.digest == digest.decode()  # what the regulator can match with what was received
        v = verifier(stage, cid)
        assert check(v, msgs) == [(OK, None)] * len(msgs)
        # the next slice's seal covers exactly what followed, and is now checked in full
        assert check(v, sealed(stage, provider, 5, 3)[1][cid]) == [(OK, None)] * 3


def test_a_changed_byte_and_a_record_left_out_do_not_verify():
    stage, provider = contracts_stage(CONTRACTS), Provider()
    _, first = sealed(stage, provider, 0, 3)
    _, second = sealed(stage, provider, 3, 3)
    msgs = second["regulator-uav"]
    v = verifier(stage, "regulator-uav")
    check(v, first["regulator-uav"])
    changed = bytearray(msgs[1].value())
    changed[-1] ^= 1
    msgs[1].set_value(bytes(changed))
    assert check(v, msgs)[1] == (FORGED, "the delivery tag does not match the record")
    v = verifier(stage, "regulator-uav")
    check(v, first["regulator-uav"])
    verdicts = check(v, [msgs[0], msgs[2]])  # a record of the sealed batch withheld
    assert verdicts[0] == (OK, None) and verdicts[1][0] == FORGED and "another digest" in verdicts[1][1]


def test_a_seal_by_someone_who_is_not_the_operator_does_not_verify():
    stage, provider = contracts_stage(CONTRACTS), Provider()
    impostor = Keyring.generate("sz-data-bureau")  # the operator's name, another key
    _, first = sealed(stage, provider, 0, 2)
    _, second = sealed(stage, provider, 2, 2, signer=impostor)
    v = verifier(stage, "regulator-uav")
    assert check(v, first["regulator-uav"]) == [(OK, None)] * 2
    assert check(v, second["regulator-uav"])[-1] == (FORGED, "the seal's signature is not the operator's")


def test_without_an_operator_key_deliveries_are_tagged_but_not_sealed():
    stage, provider = contracts_stage(CONTRACTS), Provider()
    _, out = sealed(stage, provider, 0, 3, signer=None)
    msgs = out["regulator-uav"]
    assert seals(msgs) == [None] * 3 and check(verifier(stage, "regulator-uav"), msgs) == [(OK, None)] * 3


def test_what_a_crashed_owner_already_sealed_is_not_sealed_again():
    """The old owner wrote and sealed the deliveries of offsets 0..1 of partition 2, then
    crashed; the new owner replays 0..3. Its seal covers 2..3 only, so a consumer that read
    the old owner's records and then the new ones verifies every record and both seals."""
    stage, provider = contracts_stage(["regulator-uav"]), Provider()
    _, old = sealed(stage, provider, 0, 2)
    topic = stage.plans["regulator-uav"].topic
    fence = PartitionFence(0, outputs={topic: 1}, sealed={topic: 1})
    provider.route.sequences[2] = 0  # the same records again (the replay stage is not in this chain)
    s, new = sealed(stage, provider, 0, 4, fence=fence)
    v = verifier(stage, "regulator-uav")
    assert check(v, old["regulator-uav"]) == [(OK, None)] * 2
    msgs = new["regulator-uav"]
    assert [m.offset() for m in msgs] == [2, 3] and int(seals(msgs)[-1].split(b":")[0]) == 2
    assert check(v, msgs) == [(OK, None)] * 2
    assert fence.sealed[topic] == 3
    [(_, result, event)] = s.deliveries
    assert all(AUTH in dict(h) for h in result.headers)  # the skipped ones are tagged all the same
    assert event.digest == seal_digest([dict(m.headers())[AUTH] for m in msgs]).decode()


def test_a_slice_the_fence_says_was_sealed_entirely_gets_no_new_seal():
    stage, provider = contracts_stage(["regulator-uav"]), Provider()
    topic = stage.plans["regulator-uav"].topic
    fence = PartitionFence(0, outputs={topic: 5}, sealed={topic: 5})
    s, _ = sealed(stage, provider, 2, 3, fence=fence)
    [(_, result, _)] = s.deliveries
    assert all(SEAL not in dict(h) for h in result.headers) and fence.sealed[topic] == 5
