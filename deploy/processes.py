"""The long-running processes of the mesh that `up` and `demo` start, by name.

Each entry is a command line; every process reads CITYMESH_BOOTSTRAP and CITYMESH_STATE_DIR
from its environment (the supervisor sets both).
"""

from __future__ import annotations

from topology.models import Topology

from .supervisor import python_module


def mesh_processes(topo: Topology, topology_path: str) -> dict[str, list[str]]:
    """name -> argv of every process the mesh needs for this topology."""
    procs = {}
    for p in topo.products:  # one enforcement runner per data product (scale out: more of the same)
        procs[f"runner-{p.id}"] = python_module("processors.runner", "--product", p.id)
    return procs
