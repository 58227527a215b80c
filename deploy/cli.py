"""The `citymesh` command line.

  citymesh up [--topology FILE] [--engine tansu|kafka]
                                     start the embedded broker or Apache Kafka (unless CITYMESH_BOOTSTRAP),
                                     create keys, apply the topology, start the mesh's processes
  citymesh down                      stop everything `up` started
  citymesh status                    processes, broker, topics with record counts
  citymesh apply FILE [--emit strimzi DIR]
                                     validate a topology file and make the cluster match it (or write
                                     Strimzi KafkaTopic/KafkaUser resources and runner Deployments)
  citymesh catalog | contracts       what the control topics hold
  citymesh catalog --as ID           the DSP catalog a participant sees (datasets and their offers)
  citymesh negotiate PRODUCT OFFER --as ID [--param K=V] [--purpose P] [--policy FILE]
                                     ask the provider for an offer over DSP; waits for the agreement
  citymesh negotiations --as ID [--waiting]      a participant's negotiations (--waiting: its decisions)
  citymesh decide NEGOTIATION approve|reject --as ID [--reason TEXT]   the provider's or the operator's review
  citymesh agreements --as ID        finalized agreements the participant is party to
  citymesh transfer start AGREEMENT --as ID      start the stream: prints the data address
  citymesh transfer suspend|resume|terminate TRANSFER --as ID
  citymesh transfers --as ID         a participant's transfer processes
  citymesh publish PRODUCT --as ID [FILE|-]
                                     publish JSON-lines records as a provider (file or stdin)
  citymesh import PRODUCT FILE... --as ID --mapping nyc311|hotline12345|FILE
                                     import CSV exports; bad rows reported by line number, good rows imported
  citymesh tail TOPIC [-n N] [-f]    decode and print the last records of a topic
  citymesh keys [ID ...]             create keyrings (all participants of the topology by default), the CA
                                     and the broker certificate
  citymesh contract dry-run ID --sample FILE | --from-topic N
                                     what the contract's consumer would receive, and why not; writes nothing
  citymesh audit verify | export --since T --until T --format csv|json
                                     check the hash-chained compliance ledger and its signed checkpoints; the regulator's report
  citymesh provenance CONTRACT REF  where a delivery came from: its sealed cm.src (or traceparent) opened
                                     with the mesh's secret, and the ledger's batch event that counted it
  citymesh usage [--since T] [--until T] [--consumer ID] [--json]
                                     bills from cm.usage: records, bytes and amount per consumer and contract
  citymesh demo [--seconds N]        the whole mesh with simulated drones and hotline calls, live counts
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from streams.settings import Settings, get_settings

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "city.yaml"


def _client(settings: Settings, as_participant: str | None = None) -> dict:
    from .state import client_config
    return client_config(settings, as_participant)


def _print_table(rows: list[list], header: list[str]) -> None:
    rows = [[("" if c is None else str(c)) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def _load_topology(path: str):
    from topology.loader import TopologyFileError, load_topology
    try:
        return load_topology(path)
    except TopologyFileError as exc:
        raise SystemExit(f"error: {exc}") from None


def cmd_keys(args, settings: Settings) -> int:
    from streams import keyring, tls
    ids = args.ids or [p.id for p in _load_topology(args.topology).participants]
    for pid in ids:
        ring, created = keyring.create(settings.keyring_dir, pid, rotate=args.rotate)
        print(f"{'created' if created else 'exists '}  {keyring.keyring_path(settings.keyring_dir, pid)}  "
              f"key {ring.key_id}  ed25519 {ring.public_key_hex[:16]}…")
    files, created = tls.ensure(settings.keyring_dir, rotate=args.rotate and not args.ids)
    print(f"{'created' if created else 'exists '}  {files.ca_cert} (CA), {files.broker_keystore} (broker, Apache Kafka)")
    return 0


def cmd_apply(args, settings: Settings) -> int:
    from topology.apply import apply
    topo = _load_topology(args.file)
    if args.emit:
        from .strimzi import EmitError, emit
        kind, out_dir = args.emit
        if kind != "strimzi":
            raise SystemExit(f"error: --emit {kind}: only 'strimzi' is known")
        try:
            written = emit(topo, Path(out_dir), replicas=max(3, settings.replication_factor),
                           runner_groups=args.runner_groups)
        except EmitError as exc:
            raise SystemExit(f"error: {args.file}: {exc}") from None
        print("\n".join(f"{Path(out_dir) / name}: {n} resource(s)" for name, n in written.items()))
        return 0
    report = apply(topo, _client(settings), settings.replication_factor, settings.keyring_dir, settings.apply_acls)
    created = sorted(t for t, s in report.topics.items() if s != "exists")
    print(f"topics: {len(report.topics)} ({len(created)} created, grown or reconfigured)")
    for t in created:
        print(f"  {'!' if report.topics[t].startswith('cannot-') else '+'} {t} ({report.topics[t]})")
    for topic, keys in report.written.items():
        print(f"{topic}: {len(keys)} written, {report.unchanged[topic]} unchanged"
              + (f" ({', '.join(keys)})" if keys else ""))
    for line in report.retired_lines():
        print(line)
    if report.acls:
        print(f"acls: {report.acls} held ({report.acls_created} created, {report.acls_deleted} removed); "
              f"credentials set: {len(report.credentials)}, removed: {', '.join(report.credentials_deleted) or 'none'}")
    return 0


def cmd_catalog(args, settings: Settings) -> int:
    if args.as_participant:
        return _dsp_catalog(args, settings)
    from streams import topics
    from streams.control import read_table
    table = read_table(_client(settings), topics.CONTROL_CATALOG)
    _print_table([[p["product_id"], p["provider_id"], p["schema_name"], p["classification"], p["partitions"],
                   p["raw_topic"], p["name"]] for p in table.values()],
                 ["product", "provider", "schema", "class", "parts", "raw topic", "name"])
    return 0


def _connector(settings: Settings, participant: str):
    from dataspace.client import ApiError, ConnectorClient
    from streams.keyring import KeyringError
    try:
        return ConnectorClient(settings, participant)
    except (ApiError, KeyringError) as exc:
        raise SystemExit(f"error: {exc}") from None


def _api(fn):
    """Run a management-API call, turning its refusal into a one-line error."""
    from dataspace.client import ApiError
    try:
        return fn()
    except ApiError as exc:
        raise SystemExit(f"error: {exc}") from None


def _dsp_catalog(args, settings: Settings) -> int:
    conn = _connector(settings, args.as_participant)
    rows = []
    for catalog in _api(lambda: conn.call("GET", "/catalog")):
        for ds in catalog.get("dataset", []):
            for offer in ds["hasPolicy"]:
                rows.append([ds["@id"].rsplit(":", 1)[-1], catalog["participantId"], ds["cm:classification"],
                             offer["@id"].rsplit(":", 1)[-1], offer["cm:template"],
                             "auto" if offer["cm:autoAccept"] else "review", offer["cm:pricePer1000"]["@value"],
                             ds["dct:title"]])
    _print_table(rows, ["product", "provider", "class", "offer", "template", "accept", "CNY/1k", "name"])
    return 0


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def cmd_negotiate(args, settings: Settings) -> int:
    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --param {item!r}: write KEY=VALUE (VALUE as JSON, e.g. decimals=2)")
        params[key] = _value(value)
    policy = None
    if args.policy:
        try:
            policy = json.loads(Path(args.policy).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"error: {args.policy}: {exc}") from None
    conn = _connector(settings, args.as_participant)
    rec = _api(lambda: conn.call("POST", "/negotiations", {"product": args.product, "offer": args.offer,
                                                           "params": params, "purposes": args.purpose,
                                                           "policy": policy}))
    print(f"negotiation {rec['negotiation_id']} with {rec['provider_id']}: {rec['state']}")
    rec = _api(lambda: conn.wait("negotiations", rec["negotiation_id"], "FINALIZED,TERMINATED", args.wait))
    if rec["state"] == "FINALIZED":
        print(f"FINALIZED: agreement {rec['agreement_id']}")
        print(f"start the stream: citymesh transfer start {rec['agreement_id']} --as {args.as_participant}")
        return 0
    if rec["state"] == "TERMINATED":
        print(f"TERMINATED: {rec['reason']}")
        return 1
    print(f"still {rec['state']} after {args.wait:.0f} s (a request outside the offer's auto-accept ranges waits "
          f"for the provider, and on important data for the operator); see `citymesh negotiations --as "
          f"{args.as_participant}`")
    return 0


def cmd_negotiations(args, settings: Settings) -> int:
    conn = _connector(settings, args.as_participant)
    rows = _api(lambda: conn.call("GET", "/negotiations", waiting=str(args.waiting).lower()))
    _print_table([[n["negotiation_id"], n["side"].lower(), n["state"], n["product_id"], n["offer_id"].rsplit(":", 1)[-1],
                   n["consumer_id"], ",".join(n["needs"]) or "-", (n["reason"] or "")[:60]] for n in rows],
                 ["negotiation", "side", "state", "product", "offer", "consumer", "waits for", "why"])
    return 0


def cmd_decide(args, settings: Settings) -> int:
    conn = _connector(settings, args.as_participant)
    rec = _api(lambda: conn.call("POST", f"/negotiations/{args.negotiation}/decision",
                                 {"approve": args.decision == "approve", "reason": args.reason}))
    print(f"{rec['negotiation_id']}: {rec['state']}" + (f", still waits for {', '.join(rec['needs'])}"
                                                         if rec["needs"] else ""))
    return 0


def cmd_agreements(args, settings: Settings) -> int:
    conn = _connector(settings, args.as_participant)
    rows = _api(lambda: conn.call("GET", "/agreements"))
    day = lambda ms: time.strftime("%Y-%m-%d %H:%M", time.gmtime(ms / 1000))  # noqa: E731
    _print_table([[a["agreement_id"], a["product_id"], a["provider_id"], a["consumer_id"], a["contract_id"],
                   ",".join(a["purposes"]), day(a["timestamp_ms"])] for a in rows],
                 ["agreement", "product", "provider", "consumer", "contract", "purposes", "agreed (UTC)"])
    return 0


def cmd_transfers(args, settings: Settings) -> int:
    conn = _connector(settings, args.as_participant)
    rows = _api(lambda: conn.call("GET", "/transfers"))
    _print_table([[t["transfer_id"], t["side"].lower(), t["state"], t["agreement_id"], t["contract_id"],
                   (t["reason"] or "")[:50]] for t in rows],
                 ["transfer", "side", "state", "agreement", "contract", "reason"])
    return 0


def cmd_transfer(args, settings: Settings) -> int:
    conn = _connector(settings, args.as_participant)
    if args.action == "start":
        rec = _api(lambda: conn.call("POST", "/transfers", {"agreement": args.id}))
        rec = _api(lambda: conn.wait("transfers", rec["transfer_id"], "STARTED,TERMINATED", args.wait))
        print(f"transfer {rec['transfer_id']}: {rec['state']}" + (f" ({rec['reason']})" if rec["reason"] else ""))
        if rec["state"] != "STARTED":
            return 1
        address = rec["data_address"]
        props = {p["name"]: p["value"] for p in address["endpointProperties"]}
        print(f"bootstrap:  {address['endpoint']}\ntopic:      {props['topic']}\n"
              f"group:      {props['groupPrefix']}<any>   (security: {props['securityProtocol']}, auth: "
              f"{props['authType']})")
        if props.get("username"):
            print(f"login:      {props['saslMechanism']} as {props['username']}, the password in your keyring "
                  f"({props['passwordRef']})")
        if props.get("deliveryKeySealed"):
            print(f"verify:     your connector opened the delivery key (sealed to your key) into deliveries/"
                  f"{args.as_participant}.json of its keys directory; ConsumerConnector(..., keys_dir=...) checks "
                  "every record with it")
        if args.schema_out:
            Path(args.schema_out).write_text(props["schema"] + "\n", encoding="utf-8")
            print(f"schema:     {args.schema_out} (Avro single-object encoding; `citymesh tail {props['topic']}` "
                  "decodes it)")
        return 0
    action = {"suspend": "suspend", "resume": "resume", "terminate": "terminate", "complete": "complete"}[args.action]
    rec = _api(lambda: conn.call("POST", f"/transfers/{args.id}/{action}", {"reason": args.reason}))
    print(f"transfer {rec['transfer_id']}: {rec['state']}")
    return 0


def cmd_contracts(args, settings: Settings) -> int:
    from streams import topics
    from streams.control import read_table
    table = read_table(_client(settings), topics.CONTROL_CONTRACTS)

    def day(ms):
        return time.strftime("%Y-%m-%d", time.gmtime(ms / 1000)) if ms else "-"
    _print_table([[c["contract_id"], f"v{c['version']}", c["state"], c["product_id"], c["consumer_id"],
                   ",".join(c["purposes"]), f"{day(c['not_before_ms'])}..{day(c['not_after_ms'])}",
                   f"{c['price_per_1000_minor'] / 100:.2f} {c['currency']}/1k"] for c in table.values()],
                 ["contract", "ver", "state", "product", "consumer", "purposes", "valid", "price"])
    return 0


def cmd_publish(args, settings: Settings) -> int:
    import schemas
    from streams import keyring
    from streams.connectors import ProviderConnector
    ring = keyring.load(settings.keyring_dir, args.as_participant)
    src = sys.stdin if args.file in (None, "-") else open(args.file, encoding="utf-8")
    bad = 0
    with ProviderConnector(ring, _client(settings, args.as_participant)) as conn:
        conn.route(args.product)
        for lineno, line in enumerate(src, 1):
            if not line.strip():
                continue
            try:
                conn.publish(args.product, json.loads(line))
            except (json.JSONDecodeError, schemas.RecordInvalid) as exc:
                bad += 1
                print(f"{args.file or '<stdin>'}:{lineno}: {exc}", file=sys.stderr)
        sent = conn.sent
    print(f"published {sent} record(s) to {args.product}" + (f"; {bad} invalid line(s) skipped" if bad else ""))
    return 1 if bad else 0


def cmd_tail(args, settings: Settings) -> int:
    from .tail import tail
    return tail(_client(settings), args.topic, args.n, args.follow)


def cmd_dry_run(args, settings: Settings) -> int:
    from .dryrun import dry_run
    if (args.sample is None) == (args.from_topic is None):
        raise SystemExit("give exactly one of --sample FILE or --from-topic N")
    dry_run(_client(settings), settings.keyring_dir, args.contract, args.sample, args.from_topic)
    return 0


def cmd_import(args, settings: Settings) -> int:
    from streams.adapters import csv_import
    return csv_import.main(["--provider", args.as_participant, "--product", args.product, "--mapping", args.mapping,
                            *(["--progress"] if args.progress else []), *args.files])


def cmd_audit(args, settings: Settings) -> int:
    from processors.ledger import audit
    return audit.main(args.rest)


def cmd_provenance(args, settings: Settings) -> int:
    """Open a delivery's sealed source reference or traceparent (the operator's and the
    regulator's view; processors/provenance.py)."""
    from processors.provenance import Resolver, batch_entry
    from streams import keyring
    resolver = Resolver(keyring.mesh_secret(settings.keyring_dir))
    out: dict = {"contract_id": args.contract}
    if args.ref.count("-") == 3:  # a traceparent
        trace = resolver.trace(args.contract, args.ref)
        if trace is None:
            raise SystemExit(f"error: {args.ref!r} is not a traceparent of contract {args.contract}")
        out["provider_trace_id"] = trace
    else:
        pos = resolver.position(args.contract, args.ref)
        if pos is None:
            raise SystemExit(f"error: {args.ref!r} is not a source reference of contract {args.contract} "
                             "(another contract's, forged or garbled)")
        out.update(source_partition=pos[0], source_offset=pos[1])
        ledger = args.ledger or settings.ledger_url or f"sqlite:///{settings.state_dir / 'ledger.sqlite'}"
        if ledger.startswith("postgres") or Path(ledger.removeprefix("sqlite:///")).exists():
            out["ledger_batch"] = batch_entry(ledger, args.contract, *pos)
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0


def cmd_usage(args, settings: Settings) -> int:
    """Bills from cm.usage (processors/compliance_app/billing.py): per consumer, per contract."""
    from processors.compliance_app import bills, format_bills
    from processors.ledger.audit import parse_time
    until = parse_time(args.until) if args.until else int(time.time() * 1000)
    since = parse_time(args.since) if args.since else until - 30 * 86_400_000
    found = [b for b in bills(_client(settings), since, until) if not args.consumer or b["consumer_id"] == args.consumer]
    print(json.dumps(found, ensure_ascii=False, indent=2) if args.json else format_bills(found))
    return 0


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n}: want 1 or more")
    return n


def cmd_up(args, settings: Settings) -> int:
    from .mesh import up
    return up(settings, args.topology, args.engine, args.runner_groups, args.runner_processes)


def cmd_down(args, settings: Settings) -> int:
    from .mesh import down
    return down(settings)


def cmd_status(args, settings: Settings) -> int:
    from .mesh import status
    return status(settings, args.json)


def cmd_demo(args, settings: Settings) -> int:
    from .demo import run_demo
    return run_demo(settings, args.topology, args.seconds, args.drones, args.tickets_per_s)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="citymesh", description="A streaming trusted data space on Kafka.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("up", help="start the mesh (embedded broker unless CITYMESH_BOOTSTRAP)")
    s.add_argument("--topology", default=str(EXAMPLE))
    s.add_argument("--engine", choices=("tansu", "kafka"), default="tansu",
                   help="tansu: the embedded broker, quick, no access control (default); kafka: Apache Kafka "
                        "(KRaft, fetched through Maven), SCRAM over TLS, ACLs from the topology, data kept across down/up")
    s.add_argument("--runner-groups", type=_positive, default=1, metavar="G",
                   help="runner groups per product, each enforcing its share of the contracts (default 1)")
    s.add_argument("--runner-processes", type=_positive, default=1, metavar="N",
                   help="runner processes per group, sharing the product's partitions (default 1)")
    s.set_defaults(fn=cmd_up)
    sub.add_parser("down", help="stop what `up` started").set_defaults(fn=cmd_down)
    s = sub.add_parser("status", help="processes, broker, topics and HTTP addresses")
    s.add_argument("--json", action="store_true", help="as JSON (keys: processes, dsp, api, dashboard, topics …)")
    s.set_defaults(fn=cmd_status)
    s = sub.add_parser("apply", help="validate a topology file and apply it")
    s.add_argument("file")
    s.add_argument("--emit", nargs=2, metavar=("strimzi", "DIR"),
                   help="write Strimzi KafkaTopic/KafkaUser resources (same ACLs as apply) and runner Deployments "
                        "to DIR instead of applying")
    s.add_argument("--runner-groups", type=_positive, default=1, metavar="G",
                   help="with --emit: a runner Deployment per product and group of G sharing its contracts")
    s.set_defaults(fn=cmd_apply)
    s = sub.add_parser("catalog", help="list data products (--as ID: the DSP catalog that participant sees)")
    s.add_argument("--as", dest="as_participant", help="ask the participant's connector over DSP")
    s.set_defaults(fn=cmd_catalog)
    s = sub.add_parser("negotiate", help="ask a provider for an offer over the Dataspace Protocol")
    s.add_argument("product")
    s.add_argument("offer", help="offer id (see `citymesh catalog --as ID`)")
    s.add_argument("--as", dest="as_participant", required=True, help="the consumer's participant id")
    s.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a template parameter (JSON value)")
    s.add_argument("--purpose", action="append", default=[], help="a declared purpose (default: the offer's)")
    s.add_argument("--policy", help="a JSON policy document instead of the offer's template (always reviewed)")
    s.add_argument("--wait", type=float, default=30, help="seconds to wait for the agreement (default 30)")
    s.set_defaults(fn=cmd_negotiate)
    s = sub.add_parser("negotiations", help="a participant's negotiations")
    s.add_argument("--as", dest="as_participant", required=True)
    s.add_argument("--waiting", action="store_true", help="only those waiting for this participant's decision")
    s.set_defaults(fn=cmd_negotiations)
    s = sub.add_parser("decide", help="approve or reject a request waiting for review (provider or operator)")
    s.add_argument("negotiation")
    s.add_argument("decision", choices=["approve", "reject"])
    s.add_argument("--as", dest="as_participant", required=True)
    s.add_argument("--reason")
    s.set_defaults(fn=cmd_decide)
    s = sub.add_parser("agreements", help="finalized agreements a participant is party to")
    s.add_argument("--as", dest="as_participant", required=True)
    s.set_defaults(fn=cmd_agreements)
    s = sub.add_parser("transfers", help="a participant's transfer processes")
    s.add_argument("--as", dest="as_participant", required=True)
    s.set_defaults(fn=cmd_transfers)
    s = sub.add_parser("transfer", help="start | suspend | resume | terminate a stream of an agreement")
    s.add_argument("action", choices=["start", "suspend", "resume", "terminate", "complete"])
    s.add_argument("id", help="agreement id (start) or transfer id")
    s.add_argument("--as", dest="as_participant", required=True)
    s.add_argument("--reason")
    s.add_argument("--wait", type=float, default=30)
    s.add_argument("--schema-out", help="start: write the delivery topic's Avro schema here")
    s.set_defaults(fn=cmd_transfer)
    sub.add_parser("contracts", help="list contracts").set_defaults(fn=cmd_contracts)
    s = sub.add_parser("publish", help="publish JSON-lines records as a provider")
    s.add_argument("product")
    s.add_argument("file", nargs="?", help="JSON-lines file; - or none for stdin")
    s.add_argument("--as", dest="as_participant", required=True, help="the provider's participant id")
    s.set_defaults(fn=cmd_publish, trailing="file")
    s = sub.add_parser("import", help="import CSV work-order exports through a column mapping")
    s.add_argument("product")
    s.add_argument("files", nargs="+")
    s.add_argument("--as", dest="as_participant", required=True, help="the provider's participant id")
    s.add_argument("--mapping", required=True, help="mapping file, or a shipped one: nyc311, hotline12345")
    s.add_argument("--progress", action="store_true", help="always show the progress bar")
    s.set_defaults(fn=cmd_import)
    s = sub.add_parser("tail", help="print the last records of a topic, decoded")
    s.add_argument("topic")
    s.add_argument("-n", type=int, default=10)
    s.add_argument("-f", "--follow", action="store_true")
    s.set_defaults(fn=cmd_tail)
    s = sub.add_parser("contract", help="contract tools")
    csub = s.add_subparsers(dest="contract_command", required=True)
    d = csub.add_parser("dry-run", help="what a contract would deliver on sample data; writes nothing")
    d.add_argument("contract")
    d.add_argument("--sample", help="JSON-lines file of product records (- for stdin)")
    d.add_argument("--from-topic", type=int, metavar="N", help="the last N records of the product's raw topic")
    d.set_defaults(fn=cmd_dry_run)
    s = sub.add_parser("audit", help="the compliance ledger: verify | export --since --until --format csv|json",
                       add_help=False)
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(fn=cmd_audit)
    s = sub.add_parser("provenance", help="where a delivery came from (its cm.src or traceparent, opened)")
    s.add_argument("contract")
    s.add_argument("ref", help="the delivery's cm.src header value, or its traceparent")
    s.add_argument("--ledger", help="ledger URL (default CITYMESH_LEDGER_URL, else <state>/ledger.sqlite)")
    s.set_defaults(fn=cmd_provenance)
    s = sub.add_parser("usage", help="bills from metered usage: records, bytes and amount per consumer and contract")
    s.add_argument("--since", help="ISO-8601 or epoch ms (default: 30 days before --until)")
    s.add_argument("--until", help="ISO-8601 or epoch ms (default: now)")
    s.add_argument("--consumer", help="only this consumer's bill")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_usage)
    s = sub.add_parser("keys", help="create participant keyrings")
    s.add_argument("ids", nargs="*")
    s.add_argument("--topology", default=str(EXAMPLE))
    s.add_argument("--rotate", action="store_true", help="replace existing keys")
    s.set_defaults(fn=cmd_keys)
    s = sub.add_parser("demo", help="run the mesh with simulated sources and show live counts")
    s.add_argument("--topology", default=str(EXAMPLE))
    s.add_argument("--seconds", type=float, default=30)
    s.add_argument("--drones", type=int, default=200)
    s.add_argument("--tickets-per-s", type=float, default=20)
    s.set_defaults(fn=cmd_demo)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """argparse, plus a trailing optional positional after an option (`publish P --as ID FILE`),
    which argparse alone does not take once its positionals were matched before the option."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    trailing = getattr(args, "trailing", None)
    if extra and trailing and getattr(args, trailing) is None and len(extra) == 1 and \
            (extra[0] == "-" or not extra[0].startswith("-")):
        setattr(args, trailing, extra.pop())
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return args.fn(args, get_settings()) or 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
