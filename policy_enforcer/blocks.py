"""What every policy building block shares: a strict pydantic model, a registry by ``type``,
and one way to turn a validation failure into a PolicyError that names its path.

Why a registry: a contract's constraints and duties and an operator's rules are lists of
objects with a ``type``, and each type is one class that knows everything about itself
(its model, its check against the product schema, its compiled form, its description).
The engine looks a type up by name, as Eclipse EDC binds policy functions to a left
operand, so it never names a building block itself. Three registries use this module:
``constraints/``, ``duties/`` and ``rules/``, each a package with one module per type
that its ``__init__`` imports by listing the package (``discover``): adding a type is
adding one file.
"""

from __future__ import annotations

import importlib
import pkgutil
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, ClassVar, Iterable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas import RecordSchema

from .errors import PolicyError
from .schema_fields import FieldType

StrictStr = Annotated[str, Field(strict=True)]


class StrictModel(BaseModel):
    """A policy object: unknown keys are errors, ``"3"`` is not an integer."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class Block(StrictModel):
    """One building block type; subclasses declare ``type: Literal["<name>"]``.

    ``order`` places the type in the registry (and so in ``known: ...`` lists and docs);
    a new block may leave it and is listed after the built-in ones."""

    order: ClassVar[int] = 100

    @classmethod
    def type_name(cls) -> str:
        (name,) = typing.get_args(cls.model_fields["type"].annotation)
        return name


class Registry(dict):
    """type name -> block class, in ``order``; a dict to every reader (``in``, iteration,
    ``registry[name]``), as ``policy.CONSTRAINTS`` and ``policy.DUTIES`` always were."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind  # how messages call one: "constraint", "duty", "rule type"

    def register(self, cls: type[Block]) -> type[Block]:
        """Class decorator: make ``cls`` the block of its ``type``."""
        items = sorted([*((k, v) for k, v in self.items() if k != cls.type_name()), (cls.type_name(), cls)],
                       key=lambda kv: kv[1].order)
        self.clear()
        self.update(items)
        return cls

    def lookup(self, name: Any, path: str) -> type[Block]:
        """The block class of ``name``; PolicyError at ``path`` listing the known ones."""
        if not isinstance(name, str) or name not in self:
            raise PolicyError(f"unknown {self.kind} {name!r} (known: {', '.join(self)})", path)
        return self[name]

    def parse(self, data: Any, path: str) -> Block:
        """A block from a policy document's object at ``path`` (a dict with a ``type``)."""
        if not isinstance(data, dict):
            raise PolicyError(f"expected an object, got {type(data).__name__}", path)
        if data.get("type") is None:
            raise PolicyError(f"missing {self.kind} type (known: {', '.join(self)})", f"{path}.type")
        return parse_model(self.lookup(data["type"], f"{path}.type"), data, path)


def discover(package: str, path: Iterable[str]) -> None:
    """Import every module of a block package, so each registers its block."""
    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")


def _loc(loc: tuple) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


def parse_model(cls: type[BaseModel], data: Any, path: str) -> Any:
    """``cls`` validated from ``data``; the first problem as a PolicyError whose path is
    ``path`` plus the offending key (``policy.duties[1].decimals: Input should be ...``)."""
    if not isinstance(data, dict):
        raise PolicyError(f"expected an object, got {type(data).__name__}", path)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal"))))
        if err["type"] == "extra_forbidden":
            raise PolicyError(f"unknown key {loc[-1]!r}", path + _loc(loc)) from None
        msg = "required" if err["type"] == "missing" else err["msg"].removeprefix("Value error, ")
        raise PolicyError(msg, path + _loc(loc)) from None


# ---- what the blocks of one policy share while it is checked and compiled -------------------

@dataclass
class PolicyCheck:
    """One policy being checked against a product schema: the schema's fields, what the
    permission delivers, and what earlier duties already withhold or transform (a field is
    touched by one duty at most)."""

    schema: RecordSchema
    fields: dict[str, FieldType]
    allowed: list[str]                                        # delivered fields, before duties
    dropped: set[str] = field(default_factory=set)
    transformed: dict[str, str] = field(default_factory=dict)  # field -> path of its duty

    def type_of(self, name: str, path: str) -> FieldType:
        """The schema type of field ``name``, named at ``path`` by the policy."""
        ft = self.fields.get(name)
        if ft is None:
            raise PolicyError(f"unknown field {name!r} in {self.schema.full_name} "
                              f"(fields: {', '.join(self.fields)})", path)
        return ft


class Compiling:
    """One contract being compiled: what its blocks may need besides themselves.

    Reading ``pseudonym_key`` marks the plan ``keyed``: its outputs are then the contract's
    own. A plan no block keyed delivers what any contract with the same policy, purposes and
    product delivers, and the contracts stage computes those outputs once (``Plan.output_key``)."""

    def __init__(self, purposes: list[str], pseudonym_key: bytes, scrubber: Callable[[str], str] | None):
        self.purposes = purposes          # the consumer's declared purposes
        self._pseudonym_key = pseudonym_key
        self.scrubber = scrubber          # text -> text for scrub_pii; None: policy_enforcer.pii
        self.keyed = False
        self._seen: dict[str, int] = {}

    @property
    def pseudonym_key(self) -> bytes:
        """The contract's key (derive_contract_key)."""
        self.keyed = True
        return self._pseudonym_key

    def rule_id(self, rule: str) -> str:
        """``rule``, or ``rule#2``, ``rule#3`` ... when an earlier block took it."""
        self._seen[rule] = self._seen.get(rule, 0) + 1
        return rule if self._seen[rule] == 1 else f"{rule}#{self._seen[rule]}"
