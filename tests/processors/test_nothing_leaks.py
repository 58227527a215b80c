"""The example city from outside, as a new consumer sees it: nothing leaks, nothing links.

The example city (examples/city.yaml, ids suffixed so the test owns its topics) is applied
to the session broker, the provider publishes simulated drones and 12345 work orders
through its connector (keyed by serial number and order number, as it does in
production), the product runners enforce, and each consumer reads its delivery topic
with a plain confluent-kafka consumer: key, every header, timestamp and payload bytes.

- No raw serial number, UIN or operator id anywhere in what a UAV consumer receives
  unless its contract grants that field in clear (stated here by hand per contract).
- No two consumers can join their records: across all their deliveries, no header value
  of one appears in the other's (per header name), and no key either unless both receive
  the serial number in clear.
- A hotline consumer whose contract masks or withholds the caller's phone finds it nowhere,
  not even inside the free text where the citizen repeated it.
"""

from __future__ import annotations

import copy
import itertools
import json

import pytest
import yaml

import schemas
from processors.runner import Runner
from streams import topics
from streams.control import read_table
from streams.simulators import FleetSimulator, HotlineSimulator
from tests.mesh_fixtures import EXAMPLES, City, read_topic

EXAMPLE = yaml.safe_load((EXAMPLES / "city.yaml").read_text(encoding="utf-8"))
UAV_IDS = ("serial_number", "uin", "operator_id")
# which identifiers each UAV contract of the example city delivers in clear (read off city.yaml)
CLEAR = {"logistics-routes": set(), "insurance-pricing": set(), "emergency-uav": set(UAV_IDS),
         "regulator-uav": set(UAV_IDS), "operator-uav": {"serial_number", "uin"}}


def example_city(u: str) -> str:
    """examples/city.yaml with every id suffixed by `u`, geofence files absolute, no sources."""
    city = copy.deepcopy(EXAMPLE)
    rename = lambda x: f"{x}-{u}"  # noqa: E731
    for p in city["participants"]:
        p["id"] = rename(p["id"])
    for p in city["products"]:
        p["id"], p["provider"] = rename(p["id"]), rename(p["provider"])
        if "participants" in p.get("access", {}):  # the catalog's access policy names participants too
            p["access"]["participants"] = [rename(x) for x in p["access"]["participants"]]
    for c in city["contracts"]:
        c["id"], c["product"], c["consumer"] = rename(c["id"]), rename(c["product"]), rename(c["consumer"])
    for r in city["operator_rules"]:
        r["product"] = rename(r["product"])
    for name, g in city["geofences"].items():
        g["file"] = str(EXAMPLES / g["file"])
    city.pop("sources")
    return yaml.safe_dump(city, allow_unicode=True, sort_keys=False)


@pytest.fixture(scope="module")
def city(tmp_path_factory, client_config):
    """The example city, applied, with drones and work orders published and enforced."""
    u = tmp_path_factory.mktemp("u").name[-6:].replace("_", "")
    tmp = tmp_path_factory.mktemp("city")
    c = City(u, tmp / "city.yaml", tmp / "keys", client_config)
    c.apply(example_city(u))
    fleet, drones = FleetSimulator(drones=40, seed=5, violators=0.3), []
    while len(drones) < 1200:
        drones += fleet.tick(1.0)
    tickets = HotlineSimulator(seed=3)
    work_orders = [tickets.ticket() for _ in range(200)]
    # the Open311 case from the issue: a number only in the text, in a US format
    work_orders[7].update(caller_phone=None, content="Streetlight out on 3rd St. Call me at 415-555-0199")
    for i in range(0, 200, 5):  # and callers repeating their own number in the text
        w = work_orders[i]
        w["content"] += f" 我的电话是{w['caller_phone']}，联系人{w['caller_name']}" if w["caller_phone"] else ""
    from streams import keyring
    from streams.connectors import ProviderConnector
    for provider, product, records in ((f"skyway-{u}", f"uav-telemetry-{u}", drones),
                                       (f"hotline-12345-{u}", f"hotline-tickets-{u}", work_orders)):
        with ProviderConnector(keyring.load(c.keys, provider), client_config) as conn:
            for r in records:
                conn.publish(product, r)
        runner = Runner(product, client_config, c.keys)
        try:
            runner.run(max_idle_s=2.0)
        finally:
            runner.close()
    return c, drones, work_orders


def _delivered(client: dict, contract: str) -> list:
    return read_topic(client, topics.delivery(contract))


def _observed(m) -> bytes:
    """Everything a consumer can see of one record, as bytes."""
    return b"\n".join([m.key() or b"", str(m.timestamp()[1]).encode(), m.value()]
                      + [k.encode() + b"=" + v for k, v in (m.headers() or [])])


def test_no_uav_consumer_sees_an_identifier_its_contract_does_not_grant_in_clear(city, client_config):
    c, drones, _ = city
    values = {f: {r[f] for r in drones if r[f]} for f in UAV_IDS}
    assert all(len(v) >= 10 for v in values.values())
    contracts = read_table(client_config, topics.CONTROL_CONTRACTS)
    for name, clear in CLEAR.items():
        cid = f"{name}-{c.u}"
        msgs = _delivered(client_config, cid)
        assert msgs, f"{cid} delivered nothing"
        schema = schemas.RecordSchema.from_definition(json.loads(contracts[cid]["delivery_schema_json"]))
        found = {f: 0 for f in UAV_IDS}
        for m in msgs:
            schema.decode(m.value())  # a well-formed delivery in the contract's schema
            seen = _observed(m)
            for f in UAV_IDS:
                found[f] += any(v.encode() in seen for v in values[f])
        for f in UAV_IDS:
            if f in clear:
                assert found[f], f"{cid}: grants {f} in clear but no record carries one"
            else:
                assert not found[f], f"{cid}: {found[f]} of {len(msgs)} records carry a raw {f}"
        print(f"{cid}: {len(msgs)} records; raw identifiers seen: {found}")


def test_no_two_consumers_can_join_their_records_by_any_header_or_key(city, client_config):
    c, _, _ = city
    delivered = {name: _delivered(client_config, f"{name}-{c.u}") for name in CLEAR}
    header_values = {name: {} for name in CLEAR}
    keys = {}
    for name, msgs in delivered.items():
        for m in msgs:
            for k, v in m.headers() or []:
                header_values[name].setdefault(k, set()).add(v)
        keys[name] = {m.key() for m in msgs}
    for a, b in itertools.combinations(CLEAR, 2):
        for header, vals in header_values[a].items():
            shared = vals & header_values[b].get(header, set())
            assert not shared, f"{a} and {b} share {header} values {list(shared)[:3]}"
        if "serial_number" not in CLEAR[a] & CLEAR[b]:
            assert not keys[a] & keys[b], f"{a} and {b} share keys {list(keys[a] & keys[b])[:3]}"


def test_a_masked_or_withheld_phone_is_nowhere_in_what_hotline_consumers_receive(city, client_config):
    c, _, work_orders = city
    phones = {w["caller_phone"] for w in work_orders if w["caller_phone"]} | {"415-555-0199"}
    in_text = sum(1 for w in work_orders if w["caller_phone"] and w["caller_phone"] in w["content"])
    assert in_text >= 40
    for name in ("emergency-hotline", "hotline-analytics"):  # mask the phone / do not grant it
        msgs = _delivered(client_config, f"{name}-{c.u}")
        assert msgs, f"{name} delivered nothing"
        leaked = [m.value() for m in msgs if any(p.encode() in _observed(m) for p in phones)]
        assert not leaked, f"{name}: {len(leaked)} of {len(msgs)} records carry a caller's phone: {leaked[:1]}"
        digits = [p.replace("-", "") for p in phones]
        assert not [m for m in msgs if any(d.encode() in _observed(m) for d in digits)]
