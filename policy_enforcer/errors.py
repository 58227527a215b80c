"""The one error the policy engine raises for a policy it cannot accept.

Why one type: the topology loader turns it into a TopologyError with the contract's path,
and the sandbox shows its message as is. The message always starts with the path inside
the policy document (``policy.duties[2].type: unknown duty 'encrypt'``) so an author can
find the offending line in a YAML file without reading a stack trace.
"""

from __future__ import annotations

from schemas.errors import PathError


class PolicyError(PathError, ValueError):
    """A policy, template or contract that cannot be compiled; the message names the path
    (``PolicyError(detail, path)``; ``.path`` and ``.detail`` hold the two parts)."""
