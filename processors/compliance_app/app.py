"""The faust app: escalation and hotline surges over the mesh's topics.

faust is here (and not in the data plane) because this work is stateful and low-volume:
tables with changelogs survive a restart, windows bound the surge counts, timers notice
what did *not* happen (a silent drone, a quiet incident). Records on the wire are Avro
single-object bytes, so every topic is read with the raw serializer and decoded with
`schemas`; table values are JSON.

Tables (changelog topics are ``<app_id>-<table>-changelog``; each table has as many
partitions as the topic that writes it, which faust requires):

* ``incidents``      cm.alerts        key product|rule|subject -> open incident state
* ``surge_counts``   delivery (12345) tumbling window, key category|district -> tickets
* ``surge_seen``     delivery (12345) tumbling window, key order_no -> 1 (a ticket's updates count once)

Metering (cm.compliance -> cm.usage, `metering.py`) and lost link (the operator's UAV deliveries
-> cm.alerts, `lost_link.py`) read the app's busiest topics beside the worker, each on a thread of
its own, off faust's per-record path (`reader.py` says why).

Correct partitioning needs the producers' keys: the runner keys cm.alerts by the alert subject, so
all hits of one drone reach the same partition and so the same table partition.
"""

from __future__ import annotations

import logging
import ssl
import time
from pathlib import Path

import faust
from confluent_kafka.admin import AdminClient

import schemas
from schemas.headers import ORIGIN as H_ORIGIN
from streams.settings import Settings, group_session

from . import logic, metrics
from .config import AppConfig
from .metering import Metering

log = logging.getLogger("citymesh.compliance")


def _now_ms() -> int:
    return int(time.time() * 1000)


def partitions_of(client_config: dict, names: list[str], timeout_s: float = 10.0) -> dict[str, int]:
    """Partition counts of existing topics (faust tables must match their source topic)."""
    admin = AdminClient(client_config)
    md = admin.list_topics(timeout=timeout_s)
    out = {}
    for name in names:
        t = md.topics.get(name)
        if t is None or t.error is not None or not t.partitions:
            raise RuntimeError(f"topic {name} does not exist; run `citymesh apply` first")
        out[name] = len(t.partitions)
    return out


def faust_broker_kwargs(settings: Settings, bootstrap: str) -> dict:
    """faust's broker URL and credentials from the same CITYMESH_* settings librdkafka uses."""
    kw: dict = {"broker": [f"kafka://{s.strip()}" for s in bootstrap.split(",") if s.strip()]}
    proto = settings.security_protocol
    if proto != "PLAINTEXT":
        ctx = ssl.create_default_context(cafile=settings.ssl_ca_location) if "SSL" in proto else None
        if proto.startswith("SASL"):
            kw["broker_credentials"] = faust.SASLCredentials(
                username=settings.sasl_username, password=settings.sasl_password, ssl_context=ctx,
                mechanism=settings.sasl_mechanism or "PLAIN")
        else:
            kw["broker_credentials"] = faust.SSLCredentials(ctx)
    return kw


class Contracts:
    """The contracts as last seen on the control topic: prices for billing, delivery schemas to decode."""

    def __init__(self, initial: dict[str, dict]):
        self.by_id: dict[str, dict] = {}
        self.registry = schemas.Registry()
        for c in initial.values():
            self.update(c)

    def update(self, contract: dict) -> None:
        self.by_id[contract["contract_id"]] = contract
        if contract.get("delivery_schema_json"):
            import json
            self.registry.add(schemas.RecordSchema.from_definition(json.loads(contract["delivery_schema_json"])))

    def decode(self, payload: bytes, topic: str) -> dict | None:
        """A delivered record, or None (logged) when it does not decode: one bad record must not
        stop the reader of a whole delivery topic."""
        try:
            return self.registry.decode(payload)[1]
        except (schemas.UnknownSchema, ValueError, EOFError, TypeError) as exc:
            log.warning("undecodable record on %s: %s", topic, exc)
            return None


def build_app(cfg: AppConfig, settings: Settings, client_config: dict, contracts: Contracts,
              metering: Metering) -> faust.App:
    """A faust app wired to the given topics; run it with `faust.Worker(app).execute_from_commandline()`.
    A contract it sees change is re-priced by `metering`."""
    watched = [t for t in (cfg.alerts_topic, cfg.hotline_topic) if t]
    nparts = partitions_of(client_config, watched)
    # faust makes its data directory even with memory tables, and only its last level: keep it
    # with the mesh's state instead of "<app id>-data" in whatever directory the app started in
    datadir = Path(settings.state_dir) / f"{cfg.app_id}-data"
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        cfg.app_id, **faust_broker_kwargs(settings, client_config["bootstrap.servers"]),
        store="memory://", key_serializer="raw", value_serializer="raw", web_enabled=False, autodiscover=False,
        topic_partitions=nparts[cfg.alerts_topic], topic_replication_factor=settings.replication_factor,
        table_standby_replicas=0, consumer_auto_offset_reset="earliest", producer_acks=-1,
        broker_session_timeout=settings.session_timeout_ms / 1000,
        broker_heartbeat_interval=group_session(settings.session_timeout_ms)["heartbeat.interval.ms"] / 1000,
        stream_wait_empty=False, datadir=str(datadir))
    alert_schema = schemas.load("Alert")
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    alerts_out = app.topic(cfg.alerts_topic, **raw)
    origin = [(H_ORIGIN, cfg.app_id.encode())]

    async def send_alert(alert: dict) -> None:
        await alerts_out.send(key=alert["subject"].encode(), value=alert_schema.encode(alert), headers=origin)

    json_schema = faust.Schema(key_serializer="json", value_serializer="json")

    def table(name: str, source: str, **kw):
        return app.Table(name, partitions=nparts[source], schema=json_schema, **kw)

    # -- escalation and de-duplication of incidents ------------------------------------------
    incidents = table("incidents", cfg.alerts_topic)
    closed: set[tuple[str, int]] = set()  # (incident_id, count) whose close update was sent
    escalate_ms, quiet_ms = int(cfg.escalate_after_s * 1000), int(cfg.quiet_s * 1000)

    @app.agent(app.topic(cfg.alerts_topic, **raw))
    async def on_alerts(stream):
        async for event in stream.events():
            try:
                alert = alert_schema.decode(event.value)
            except (schemas.UnknownSchema, ValueError, EOFError) as exc:
                log.warning("skipping a record on %s that is not an Alert: %s", cfg.alerts_topic, exc)
                continue
            metrics.ALERTS.labels(alert["rule_id"], alert["severity"]).inc()
            if alert["escalated"] or alert["rule_id"] in logic.APP_RULES:
                continue  # our own incident updates, surges and lost links: already what escalation makes
            key = logic.incident_key(alert)
            state, escalate = logic.step_incident(incidents.get(key), alert, _now_ms(), escalate_ms, quiet_ms)
            incidents[key] = state
            if escalate:
                await send_alert(logic.incident_alert(state, "open", _now_ms()))

    @app.timer(interval=1.0)
    async def close_quiet_incidents():
        now, still_open = _now_ms(), 0
        for _, state in list(incidents.items()):
            if not state["escalated"] or (state["incident_id"], state["count"]) in closed:
                continue
            if now - state["recv_ms"] > quiet_ms:
                await send_alert(logic.incident_alert(state, "closed", now))
                closed.add((state["incident_id"], state["count"]))
            else:
                still_open += 1
        metrics.INCIDENTS_OPEN.set(still_open)

    # -- hotline surges (tumbling windows over the ticket's call time) -------------------------
    if cfg.hotline_topic:
        call_time = [0.0]  # seconds; set per record before the windowed tables are touched
        window_s = cfg.surge_window_s
        surge_counts = table("surge_counts", cfg.hotline_topic, default=int).tumbling(
            window_s, expires=2 * window_s).relative_to(lambda event=None: call_time[0])
        surge_seen = table("surge_seen", cfg.hotline_topic, default=int).tumbling(
            window_s, expires=2 * window_s).relative_to(lambda event=None: call_time[0])
        hotline_product = (contracts.by_id.get(cfg.hotline_contract) or {}).get("product_id", "hotline-tickets")

        @app.agent(app.topic(cfg.hotline_topic, **raw))
        async def on_tickets(stream):
            async for event in stream.events():
                t = contracts.decode(event.value, cfg.hotline_topic)
                if t is None:
                    continue
                if t.get("call_time") is None or t.get("category_code") is None:
                    continue
                call_time[0] = t["call_time"] / 1000
                order = str(t.get("order_no"))
                if surge_seen[order].value():
                    continue  # an update of a ticket already counted in this window
                surge_seen[order] = 1
                key = f"{t['category_code']}|{t.get('district') or 'UNKNOWN'}"
                surge_counts[key] += 1
                n = surge_counts[key].value()
                if n == cfg.surge_max + 1:
                    start = int(t["call_time"] - t["call_time"] % int(window_s * 1000))
                    await send_alert(logic.surge_alert(
                        hotline_product, t["category_code"], t.get("category_name") or "", t.get("district") or
                        "UNKNOWN", n, cfg.surge_max, start, start + int(window_s * 1000), _now_ms()))

    @app.agent(app.topic(cfg.contracts_topic, **raw))
    async def on_contracts(stream):
        async for event in stream.events():
            if event.value is None:
                continue
            try:
                contract = schemas.load("Contract").decode(event.value)
            except (schemas.UnknownSchema, ValueError, EOFError) as exc:
                log.warning("undecodable contract: %s", exc)
                continue
            contracts.update(contract)
            metering.reprice(contract["contract_id"])  # a changed price re-prices its windows at the next flush

    return app
