"""Nothing forged: a consumer can tell every record the mesh did not write for its contract.

A small city with an operator (whose key seals batches) runs its runner over 300 records;
then 100 forged records go into the regulator's delivery topic: written by an anonymous
client, copies of real deliveries with one byte changed, and real deliveries of another
contract copied over. The regulator's ConsumerConnector passes every real record as "ok"
(its batch seals verified) and flags every forged one; "drop" leaves them out, "raise"
stops at the first. The check also works with nothing but confluent-kafka and the standard
library, as streams/delivery.py documents it.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import random

import pytest
from confluent_kafka import Producer

from processors.runner import Runner
from streams import keyring, topics
from streams.connectors import ConsumerConnector, ForgedDelivery
from streams.delivery import seal_message
from tests.mesh_fixtures import CONTRACTS, City, city_yaml, read_topic
from tests.processors.test_runner_crash import flights

OPERATOR = "  - {{id: {u}-bureau, name: Data bureau, roles: [operator]}}"


@pytest.fixture
def sealed(tmp_path, client_config, unique):
    """The city with its operator, 300 records enforced, and the 100 forged records written."""
    u = unique
    city = City(u, tmp_path / "city.yaml", tmp_path / "keys", client_config)
    city.apply(city_yaml(u, CONTRACTS, extra_participants=OPERATOR.format(u=u)))
    with city.connector() as conn:
        for r in itertools.islice(flights(drones=60, seed=9, violators=0.0), 300):
            conn.publish(city.product, r)
    runner = Runner(city.product, client_config, city.keys, batch_size=40)  # several batches, several seals
    try:
        runner.run(max_idle_s=2.0)
    finally:
        runner.close()
    regulator, routes = topics.delivery(f"{u}-regulator"), topics.delivery(f"{u}-routes")
    real = read_topic(client_config, regulator, 300)
    other = read_topic(client_config, routes)
    assert len(real) == 300 and len(other) >= 34
    rnd = random.Random(5)
    anonymous = Producer({"bootstrap.servers": client_config["bootstrap.servers"]})  # no credentials, no keys
    forged = 0
    for i in range(34):  # made up: plausible headers, any payload
        m = rnd.choice(real)
        anonymous.produce(regulator, rnd.randbytes(len(m.value())), m.key(), m.partition(), headers=m.headers())
        forged += 1
    for i in range(33):  # a real delivery with one byte changed
        m = rnd.choice(real)
        v = bytearray(m.value())
        v[rnd.randrange(10, len(v))] ^= 0x01
        anonymous.produce(regulator, bytes(v), m.key(), m.partition(), headers=m.headers())
        forged += 1
    for m in rnd.sample(other, 33):  # another contract's real delivery, copied over
        anonymous.produce(regulator, m.value(), m.key(), m.partition(), headers=m.headers())
        forged += 1
    assert anonymous.flush(30) == 0 and forged == 100
    return city, real


def _read_all(conn: ConsumerConnector, n: int) -> list:
    out = []
    for _ in range(60):
        out += conn.poll(500, 0.5)
        if len(out) >= n:
            break
    return out


def test_the_consumer_passes_every_real_record_and_flags_every_forged_one(sealed, client_config):
    city, real = sealed
    with ConsumerConnector(f"{city.u}-regulator", f"{city.u}-regulator", client_config, keys_dir=city.keys) as conn:
        got = _read_all(conn, 400)
    assert len(got) == 400
    real_positions = {(m.partition(), m.offset()) for m in real}
    verdicts = {(d.partition, d.offset): d.verdict for d in got}
    assert {verdicts[p] for p in real_positions} == {"ok"}, "a real delivery was not passed as ok"
    flagged = [p for p, v in verdicts.items() if p not in real_positions]
    assert len(flagged) == 100 and {verdicts[p] for p in flagged} == {"forged"}
    seals = [m for m in real if "cm.seal" in dict(m.headers())]
    assert len(seals) >= 6, "the runner's batches were not sealed"

    with ConsumerConnector(f"{city.u}-regulator", f"{city.u}-regulator", client_config, keys_dir=city.keys,
                           verify="drop", group_id=f"drop-{city.u}") as conn:
        kept = _read_all(conn, 300)
    assert {(d.partition, d.offset) for d in kept} == real_positions
    with ConsumerConnector(f"{city.u}-regulator", f"{city.u}-regulator", client_config, keys_dir=city.keys,
                           verify="raise", group_id=f"raise-{city.u}") as conn:
        with pytest.raises(ForgedDelivery):
            _read_all(conn, 400)


def test_a_plain_consumer_verifies_tags_and_seals_with_the_standard_library(sealed, client_config):
    """streams/delivery.py's recipe, with confluent-kafka, hmac, hashlib and an Ed25519 key only."""
    city, real = sealed
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    key = keyring.delivery_keys(city.keys, f"{city.u}-regulator")[f"{city.u}-regulator"]
    operator = Ed25519PublicKey.from_public_bytes(bytes.fromhex(keyring.load(city.keys, f"{city.u}-bureau")
                                                                .public_key_hex))
    real_positions = {(r.partition(), r.offset()) for r in real}
    since: dict[int, list[bytes]] = {}
    sealed_batches = 0
    for m in sorted(read_topic(client_config, topics.delivery(f"{city.u}-regulator"), 400),
                    key=lambda m: (m.partition(), m.offset())):
        h = dict(m.headers())
        msg = b"\0".join([h.get("cm.contract", b""), h.get("cm.src", b""), m.key() or b"", b"%d" % m.timestamp()[1],
                          h.get("traceparent", b""), m.value()])
        authentic = hmac.compare_digest(hmac.new(key, msg, "sha256").hexdigest()[:32].encode(), h.get("cm.auth", b""))
        assert authentic == ((m.partition(), m.offset()) in real_positions)
        if not authentic:
            continue
        since.setdefault(m.partition(), []).append(h["cm.auth"])
        if "cm.seal" in h:
            count, digest, signer, signature = h["cm.seal"].split(b":")
            assert signer == f"{city.u}-bureau".encode()
            tags = since.pop(m.partition())
            assert int(count) == len(tags) and digest == hashlib.sha256(b"".join(tags)).hexdigest().encode()
            operator.verify(bytes.fromhex(signature.decode()),
                            seal_message(h["cm.contract"], m.partition(), int(count), digest))
            sealed_batches += 1
    assert sealed_batches >= 6 and not any(since.values()), "records after the last seal"
