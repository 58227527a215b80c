"""Run the compliance app as a process: `python -m processors.compliance_app [options]`.

The cluster comes from CITYMESH_BOOTSTRAP (or the mesh `citymesh up` started), via
streams.settings; SIGTERM/SIGINT stop the faust worker cleanly.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from .config import AppConfig


def parse(argv: list[str]) -> AppConfig:
    d = AppConfig()
    p = argparse.ArgumentParser(prog="python -m processors.compliance_app", description=__doc__)
    for f in dataclasses.fields(AppConfig):
        default = getattr(d, f.name)
        kind = type(default) if default is not None else str
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=default, help=f"default: {default}")
    ns = p.parse_args(argv)
    values = {k: (None if v in ("", "none") else v) for k, v in vars(ns).items()}
    return AppConfig(**values)


def main(argv: list[str] | None = None) -> int:
    cfg = parse(sys.argv[1:] if argv is None else argv)
    import faust

    from streams.control import read_table
    from streams.settings import get_settings

    from . import metrics
    from .app import Contracts, build_app
    from .lost_link import LostLink
    from .metering import Metering

    settings = get_settings()
    bootstrap = settings.mesh_bootstrap()
    if not bootstrap:
        print("no Kafka cluster: set CITYMESH_BOOTSTRAP or run `citymesh up`", file=sys.stderr)
        return 2
    client = settings.client_config(bootstrap)
    contracts = Contracts(read_table(client, cfg.contracts_topic))
    for name in (cfg.uav_contract, cfg.hotline_contract):
        if name and name not in contracts.by_id:
            print(f"warning: contract {name!r} not on {cfg.contracts_topic}; its records cannot be decoded "
                  "until it appears", file=sys.stderr)
    metering = Metering(cfg, client, contracts, settings.replication_factor)
    app = build_app(cfg, settings, client, contracts, metering)
    readers = [metering] + ([LostLink(cfg, client, contracts)] if cfg.uav_topic else [])
    port = metrics.serve(cfg.metrics_port or settings.metrics_port)
    print(f"compliance app {cfg.app_id}: metrics on :{port}", flush=True)
    for reader in readers:
        reader.start()
    try:
        faust.Worker(app, loglevel="INFO").execute_from_commandline()
    finally:
        for reader in readers:
            reader.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
