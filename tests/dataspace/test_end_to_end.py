"""A consumer's connector (this test, with its own callback endpoint) against the control plane
over HTTP, with a real runner: catalog, request, auto-accepted agreement, verification,
finalization, transfer start, records in the delivery topic read with a plain Kafka
consumer, suspend (nothing produced after it is delivered), resume, terminate. Every
message sent and received validates against the spec's JSON Schemas."""

from __future__ import annotations

import json
import signal
import time

from confluent_kafka import Consumer, TopicPartition

import schemas
from dataspace import messages
from dataspace.identity import sign_agreement, verify_agreement
from streams import keyring, topics
from streams.control import read_table
from streams.delivery import OK, DeliveryVerifier
from streams.simulators import FleetSimulator
from tests.dataspace.harness import dsp_get, dsp_post
from tests.mesh_fixtures import compliance_events, source_of
from tests.processors.test_runner_crash import spawn_runner, stop, wait_caught_up, wait_for_log


class Wire:
    """The consumer's side of the conversation: every message checked on the way out and in."""

    def __init__(self, mesh, name: str):
        self.mesh, self.ring = mesh, mesh.ring(name)
        self.provider = mesh.id("skyway")
        self.base = mesh.dsp_url("skyway")
        self.seen: list[str] = []

    def post(self, path: str, message: dict, expect: int, answer: str) -> dict:
        messages.check(message, message["@type"])
        r = dsp_post(self.ring, self.provider, self.base + path, message)
        assert r.status_code == expect, r.text
        self.seen.append(answer)
        return messages.check(r.json(), answer)

    def get(self, path: str, answer: str) -> dict:
        r = dsp_get(self.ring, self.provider, self.base + path)
        assert r.status_code == 200, r.text
        return messages.check(r.json(), answer)

    def state(self, pid: str, want: str, kind: str = "negotiations", timeout_s: float = 15) -> dict:
        answer = "ContractNegotiation" if kind == "negotiations" else "TransferProcess"
        deadline = time.monotonic() + timeout_s
        while True:
            ack = self.get(f"/{kind}/{pid}", answer)
            if ack["state"] == want or time.monotonic() > deadline:
                assert ack["state"] == want, ack
                return ack
            time.sleep(0.05)


def publish(city, fleet, n: int) -> None:
    with city.connector() as conn:
        sent = 0
        while sent < n:
            for r in fleet.tick(1.0):
                r["timestamp_ms"] = int(time.time() * 1000)
                conn.publish(city.product, r)
                sent += 1


def delivered(client: dict, topic: str, timeout_s: float = 2.0) -> list:
    c = Consumer({**client, "group.id": "e2e-reader", "enable.auto.commit": False})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        c.assign([TopicPartition(topic, p, 0) for p in md.partitions])
        out, quiet = [], time.monotonic()
        while time.monotonic() - quiet < timeout_s:
            batch = [m for m in c.consume(1000, 0.2) if not m.error()]
            if batch:
                out += batch
                quiet = time.monotonic()
        return out
    finally:
        c.close()


def test_negotiate_and_stream_over_dsp(mesh, callbacks, client_config, bootstrap, tmp_path):
    city = mesh.city
    log_path = tmp_path / "runner.log"
    log_path.touch()
    runner = spawn_runner(city, bootstrap, log_path)
    wire = Wire(mesh, "logistics")
    consumer_id = mesh.id("logistics")
    try:
        # the catalog, as this consumer may see it (an alliance member: the important product is listed)
        catalog = wire.post("/catalog/request", messages.envelope("CatalogRequestMessage", filter=[]), 200, "Catalog")
        dataset = next(d for d in catalog["dataset"] if d["@id"] == f"urn:citymesh:dataset:{city.product}")
        offer = next(o for o in dataset["hasPolicy"] if o["@id"].endswith(":logistics"))
        assert wire.get(f"/catalog/datasets/{dataset['@id']}", "Dataset")["hasPolicy"] == dataset["hasPolicy"]

        # request the offer as published: inside the auto-accept ranges, so the provider agrees at once
        cpid = "urn:uuid:e2e-consumer-negotiation"
        request = messages.envelope("ContractRequestMessage", consumerPid=cpid, callbackAddress=callbacks.url,
                                    offer={**{k: v for k, v in offer.items() if not k.startswith("cm:")},
                                           "target": dataset["@id"], "cm:params": offer["cm:params"]})
        ack = wire.post("/negotiations/request", request, 201, "ContractNegotiation")
        assert ack["state"] == "REQUESTED" and ack["consumerPid"] == cpid
        pid = ack["providerPid"]

        agreement_msg = callbacks.wait_for(f"negotiations/{cpid}/agreement")
        agreement = agreement_msg["agreement"]
        provider_key = read_table(client_config, topics.CONTROL_PARTICIPANTS)[wire.provider]["public_key"]
        assert verify_agreement(provider_key, agreement, agreement_msg["cm:signature"])
        assert agreement["assignee"] == consumer_id and agreement["target"] == dataset["@id"]
        wire.state(pid, "AGREED")

        verification = messages.envelope("ContractAgreementVerificationMessage", providerPid=pid, consumerPid=cpid)
        verification["cm:signature"] = sign_agreement(wire.ring, agreement)
        assert wire.post(f"/negotiations/{pid}/agreement/verification", verification, 200,
                         "ContractNegotiation")["state"] == "VERIFIED"
        assert callbacks.wait_for(f"negotiations/{cpid}/events")["eventType"] == "FINALIZED"
        wire.state(pid, "FINALIZED")

        stored = read_table(client_config, topics.CONTROL_AGREEMENTS)[agreement["@id"]]
        contract_id = stored["contract_id"]
        contract = read_table(client_config, topics.CONTROL_CONTRACTS)[contract_id]
        assert contract["state"] == "AGREED" and contract["consumer_id"] == consumer_id
        assert contract["purposes"] == ["route-planning"]
        event = next(e for e in compliance_events(client_config, city.product)
                     if e["rule"] == "agreement:finalized" and e["contract_id"] == contract_id)
        assert json.loads(event["details"]["consumer_signature"]) == verification["cm:signature"]
        assert json.loads(event["details"]["provider_signature"]) == agreement_msg["cm:signature"]

        # the transfer: a stream into the consumer's delivery topic
        tcpid = "urn:uuid:e2e-consumer-transfer"
        tack = wire.post("/transfers/request", messages.envelope(
            "TransferRequestMessage", consumerPid=tcpid, agreementId=agreement["@id"], format="Kafka-PULL",
            callbackAddress=callbacks.url), 201, "TransferProcess")
        tpid = tack["providerPid"]
        start = callbacks.wait_for(f"transfers/{tcpid}/start")
        address = {p["name"]: p["value"] for p in start["dataAddress"]["endpointProperties"]}
        assert address["topic"] == topics.delivery(contract_id) and start["dataAddress"]["endpoint"] == bootstrap
        wire.state(tpid, "STARTED", "transfers")
        out_schema = schemas.RecordSchema.from_definition(json.loads(address["schema"]))
        assert read_table(client_config, topics.CONTROL_CONTRACTS)[contract_id]["state"] == "ACTIVE"

        wait_for_log(log_path, "assigned partitions", 0, 40, runner)
        fleet = FleetSimulator(drones=40, seed=5, violators=0.0)
        publish(city, fleet, 400)
        wait_caught_up(client_config, f"citymesh-runner.{city.product}", city.raw, 60)
        before = delivered(client_config, address["topic"])
        assert len(before) > 100
        assert all(out_schema.decode(m.value())["serial_number"] for m in before)  # pseudonymised, decodable
        # the consumer verifies each record with the delivery key the address carries, sealed to its own key
        key = keyring.open_delivery_key(wire.ring, contract_id, address["deliveryKeySealed"])
        operators = dict(k.split(":") for k in address["sealKeys"].split(","))
        verifier = DeliveryVerifier(contract_id, key, lambda: operators)
        assert {verifier.check(m)[0] for m in before} == {OK}

        suspended = wire.post(f"/transfers/{tpid}/suspension", messages.envelope(
            "TransferSuspensionMessage", providerPid=tpid, consumerPid=tcpid, code="PAUSE", reason=["e2e pause"]),
            200, "TransferProcess")
        assert suspended["state"] == "SUSPENDED"
        t_suspended = int(time.time() * 1000)
        publish(city, fleet, 400)
        wait_caught_up(client_config, f"citymesh-runner.{city.product}", city.raw, 60)
        while_suspended = delivered(client_config, address["topic"])
        raw_ts = {(m.partition(), m.offset()): m.timestamp()[1] for m in delivered(client_config, city.raw, 1.0)}
        late = [m for m in while_suspended
                if raw_ts[source_of(m, city.keys)] > t_suspended]
        assert not late, f"{len(late)} records produced after the suspension were delivered"

        resumed = wire.post(f"/transfers/{tpid}/start", messages.envelope(
            "TransferStartMessage", providerPid=tpid, consumerPid=tcpid), 200, "TransferProcess")
        assert resumed["state"] == "STARTED"
        publish(city, fleet, 400)
        wait_caught_up(client_config, f"citymesh-runner.{city.product}", city.raw, 60)
        assert len(delivered(client_config, address["topic"])) > len(while_suspended) + 100

        terminated = wire.post(f"/transfers/{tpid}/termination", messages.envelope(
            "TransferTerminationMessage", providerPid=tpid, consumerPid=tcpid, code="DONE", reason=["e2e done"]),
            200, "TransferProcess")
        assert terminated["state"] == "TERMINATED"
        assert read_table(client_config, topics.CONTROL_CONTRACTS)[contract_id]["state"] == "REVOKED"
        runner.send_signal(signal.SIGTERM)
        runner.wait(15)
    finally:
        stop(runner)
    assert callbacks.problems == [], callbacks.problems
    assert [rest.rsplit("/", 1)[-1] for rest, _ in callbacks.received] == ["agreement", "events", "start"]
    assert wire.seen == ["Catalog", "ContractNegotiation", "ContractNegotiation", "TransferProcess",
                         "TransferProcess", "TransferProcess", "TransferProcess"]
