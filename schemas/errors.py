"""The root of every error citymesh raises on purpose.

Why one root: a caller at a process boundary (the CLI, the runner's control loop, a test)
can tell "citymesh refused this input or could not do this" from a bug with one
``except CitymeshError``, whatever package raised it. Why here: ``schemas`` is the one
package every other package may import, so the root sits below all of them.

Each package keeps its own subclasses (``PolicyError``, ``TopologyError``, ``SchemaError``,
``KeyringError`` …) and their standard-library bases too (``PolicyError`` is still a
``ValueError``), so code that catches those keeps working::

    class PolicyError(ValueError, CitymeshError): ...
"""

from __future__ import annotations


class CitymeshError(Exception):
    """An error citymesh raises on purpose; subclassed once per package."""


class PathError(CitymeshError):
    """Input refused at a path inside it: the message is ``[source: ][path: ]detail``, e.g.
    ``policy.duties[2].type: unknown duty 'encrypt'`` or ``nyc311.yaml: fields.status.map:
    expected a mapping``, so an author finds the line without a stack trace. One style for
    every document citymesh reads (policies, operator rules, CSV mappings); ``source`` names
    the file when the error leaves it."""

    def __init__(self, detail: str, path: str | None = None, source: str | None = None):
        self.detail = detail
        self.path = path
        self.source = source
        super().__init__(": ".join(part for part in (source, path, detail) if part))
