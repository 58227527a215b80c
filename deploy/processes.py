"""The long-running processes of the mesh that `up` and `demo` start, by name.

Each entry is a command line; every process reads CITYMESH_BOOTSTRAP from its environment.
The enforcement runners, the compliance app and the ledger sink register here as they exist.
"""

from __future__ import annotations

from topology.models import Topology


def mesh_processes(topo: Topology, topology_path: str) -> dict[str, list[str]]:
    """name -> argv of every process the mesh needs for this topology."""
    return {}
