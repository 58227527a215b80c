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
  citymesh publish PRODUCT --as ID   publish JSON-lines records as a provider (file or stdin)
  citymesh import PRODUCT FILE... --as ID --mapping nyc311|hotline12345|FILE
                                     import CSV exports; bad rows reported by line number, good rows imported
  citymesh tail TOPIC [-n N] [-f]    decode and print the last records of a topic
  citymesh keys [ID ...]             create keyrings (all participants of the topology by default), the CA
                                     and the broker certificate
  citymesh contract dry-run ID --sample FILE | --from-topic N
                                     what the contract's consumer would receive, and why not; writes nothing
  citymesh audit verify | export --since T --until T --format csv|json
                                     check the hash-chained compliance ledger and its signed checkpoints; the regulator's report
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
            written = emit(topo, Path(out_dir), replicas=max(3, settings.replication_factor))
        except EmitError as exc:
            raise SystemExit(f"error: {args.file}: {exc}") from None
        print("\n".join(f"{Path(out_dir) / name}: {n} resource(s)" for name, n in written.items()))
        return 0
    report = apply(topo, _client(settings), settings.replication_factor, settings.keyring_dir, settings.apply_acls)
    created = sorted(t for t, s in report.topics.items() if s != "exists")
    print(f"topics: {len(report.topics)} ({len(created)} created or grown)")
    for t in created:
        print(f"  {'!' if report.topics[t] == 'cannot-grow' else '+'} {t} ({report.topics[t]})")
    for topic, keys in report.written.items():
        print(f"{topic}: {len(keys)} written, {report.unchanged[topic]} unchanged"
              + (f" ({', '.join(keys)})" if keys else ""))
    if report.acls:
        print(f"acls: {report.acls} held ({report.acls_created} created, {report.acls_deleted} removed); "
              f"credentials set: {len(report.credentials)}, removed: {', '.join(report.credentials_deleted) or 'none'}")
    return 0


def cmd_catalog(args, settings: Settings) -> int:
    from streams import topics
    from streams.control import read_table
    table = read_table(_client(settings), topics.CONTROL_CATALOG)
    _print_table([[p["product_id"], p["provider_id"], p["schema_name"], p["classification"], p["partitions"],
                   p["raw_topic"], p["name"]] for p in table.values()],
                 ["product", "provider", "schema", "class", "parts", "raw topic", "name"])
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


def cmd_usage(args, settings: Settings) -> int:
    """Bills from cm.usage (processors/compliance_app/billing.py): per consumer, per contract."""
    from processors.compliance_app import bills, format_bills
    from processors.ledger.audit import parse_time
    until = parse_time(args.until) if args.until else int(time.time() * 1000)
    since = parse_time(args.since) if args.since else until - 30 * 86_400_000
    found = [b for b in bills(_client(settings), since, until) if not args.consumer or b["consumer_id"] == args.consumer]
    print(json.dumps(found, ensure_ascii=False, indent=2) if args.json else format_bills(found))
    return 0


def cmd_up(args, settings: Settings) -> int:
    from .mesh import up
    return up(settings, args.topology, args.engine)


def cmd_down(args, settings: Settings) -> int:
    from .mesh import down
    return down(settings)


def cmd_status(args, settings: Settings) -> int:
    from .mesh import status
    return status(settings)


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
    s.set_defaults(fn=cmd_up)
    sub.add_parser("down", help="stop what `up` started").set_defaults(fn=cmd_down)
    sub.add_parser("status", help="processes, broker and topics").set_defaults(fn=cmd_status)
    s = sub.add_parser("apply", help="validate a topology file and apply it")
    s.add_argument("file")
    s.add_argument("--emit", nargs=2, metavar=("strimzi", "DIR"),
                   help="write Strimzi KafkaTopic/KafkaUser resources (same ACLs as apply) and runner Deployments "
                        "to DIR instead of applying")
    s.set_defaults(fn=cmd_apply)
    sub.add_parser("catalog", help="list data products").set_defaults(fn=cmd_catalog)
    sub.add_parser("contracts", help="list contracts").set_defaults(fn=cmd_contracts)
    s = sub.add_parser("publish", help="publish JSON-lines records as a provider")
    s.add_argument("product")
    s.add_argument("file", nargs="?")
    s.add_argument("--as", dest="as_participant", required=True, help="the provider's participant id")
    s.set_defaults(fn=cmd_publish)
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args, get_settings()) or 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
