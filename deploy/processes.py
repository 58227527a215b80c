"""The long-running processes of the mesh that `up` and `demo` start, by name.

Each entry is a command line; every process reads CITYMESH_BOOTSTRAP and CITYMESH_STATE_DIR
from its environment (the supervisor sets both).
"""

from __future__ import annotations

from topology.models import Topology

from .supervisor import python_module


def runner_name(product: str, group: int, instance: int, groups: int, processes: int) -> str:
    """`runner-<product>` when a product has one runner, else `runner-<product>.g<group>.<instance>`."""
    return f"runner-{product}" if groups == processes == 1 else f"runner-{product}.g{group}.{instance}"


def mesh_processes(topo: Topology, topology_path: str, runner_groups: int = 1,
                   runner_processes: int = 1) -> dict[str, list[str]]:
    """name -> argv of every process the mesh needs for this topology. Each product gets
    `runner_groups` groups of runners that split its contracts between them
    (processors/sharding.py), each of `runner_processes` instances that split its partitions."""
    procs = {}
    for p in topo.products:
        for g in range(runner_groups):
            for i in range(runner_processes):
                name = runner_name(p.id, g, i, runner_groups, runner_processes)
                # the instance name is kept when the supervisor restarts it, so the restart aborts
                # the transaction it left open at once (processors/transactions.py)
                procs[name] = python_module("processors.runner", "--product", p.id, "--group", str(g),
                                            "--groups", str(runner_groups), "--instance", str(i), "--name", name)
    procs["ledger-sink"] = python_module("processors.ledger.sink")  # cm.compliance + cm.alerts -> hash chain
    # escalation, lost link, surges, metering: over cm.alerts, cm.compliance and the operator's own deliveries
    procs["compliance-app"] = python_module("processors.compliance_app", *_operator_contracts(topo))
    # the operations page, under the operator's own contracts (address: CITYMESH_DASHBOARD_LISTEN)
    procs["dashboard"] = python_module("dashboard", "--topology", str(topology_path))
    # the Dataspace Protocol control plane: every participant's connector context and the management API
    procs["dataspace"] = python_module("dataspace")
    for c in topo.contracts:  # HTTP push delivery for consumers that asked for it
        if c.push is not None:
            procs[f"webhook-{c.id}"] = python_module("processors.webhook", "--contract", c.id)
    for src in topo.sources:  # ingestion adapters, publishing as the product's provider
        provider = topo.product(src.product).provider
        base = ["--provider", provider, "--product", src.product]
        if src.type == "mavlink-udp":
            procs[f"source-{src.id}"] = python_module("streams.adapters.mavlink_udp", *base,
                                                      *(["--listen", src.listen] if src.listen else []))
        elif src.type == "open311-http":
            procs[f"source-{src.id}"] = python_module("streams.adapters.open311_http", *base,
                                                      *(["--listen", src.listen] if src.listen else []))
        elif src.type == "dji-mqtt":
            procs[f"source-{src.id}"] = python_module("streams.adapters.dji_mqtt", *base,
                                                      *(["--mqtt", src.mqtt] if src.mqtt else []))
    return procs


def service_of(name: str, argv: list[str]) -> str:
    """The service a process runs as (topology/access.py): one for all runners of a product."""
    return f"runner-{argv[argv.index('--product') + 1]}" if name.startswith("runner-") else name


def _operator_contracts(topo: Topology) -> list[str]:
    """--uav-contract / --hotline-contract: the operator's own delivery contract of each kind ("none" if absent),
    so the compliance app reads only what the operator may read (and its ACLs grant: topology/access.py)."""
    from topology.access import operator_contracts
    found = operator_contracts(topo)
    return ["--uav-contract", found["UavTelemetry"] or "none", "--hotline-contract", found["HotlineTicket"] or "none"]
