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
