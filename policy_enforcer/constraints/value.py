"""The value constraint: a comparison on one field of the record."""

from __future__ import annotations

from typing import Literal, Union

from ..blocks import Compiling, PolicyCheck, StrictStr
from ..errors import PolicyError
from ..schema_fields import INTEGER, NUMERIC, FieldType
from . import CONSTRAINTS, CompiledConstraint, Constraint

ValueOp = Literal["==", "!=", "<", "<=", ">", ">=", "in", "not_in"]
Scalar = Union[bool, int, float, str]
_OPS = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "in": "in", "not_in": "not in"}
_SETS = ("in", "not_in")


@CONSTRAINTS.register
class ValueConstraint(Constraint):
    """A condition on one field of the record (ODRL constraint with a custom leftOperand).
    A null value fails every comparison, including ``!=`` and ``not_in``."""

    order = 40
    type: Literal["value"]
    field: StrictStr
    op: ValueOp
    value: Scalar | list[Scalar]

    def check(self, ctx: PolicyCheck, path: str) -> None:
        ft = ctx.type_of(self.field, f"{path}.field")
        if self.op in _SETS:
            if not isinstance(self.value, list) or not self.value:
                raise PolicyError(f"op {self.op!r} needs a non-empty list", f"{path}.value")
        elif isinstance(self.value, list):
            raise PolicyError(f"op {self.op!r} needs a single value, got a list", f"{path}.value")
        values = self.value if self.op in _SETS else [self.value]
        for i, v in enumerate(values):
            self._check_one(v, ft, path, f"{path}.value" + (f"[{i}]" if self.op in _SETS else ""))
        if ft.base in ("boolean", "enum") and self.op in ("<", "<=", ">", ">="):
            raise PolicyError(f"op {self.op!r} is not defined for {ft.label} field {ft.name!r}", f"{path}.op")

    def _check_one(self, v: Scalar, ft: FieldType, path: str, vpath: str) -> None:
        base = ft.base
        if base in NUMERIC:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            if ok and base in INTEGER and isinstance(v, float) and self.op in ("==", "!=", *_SETS) \
                    and not v.is_integer():
                ok = False
        elif base in ("string", "enum"):
            ok = isinstance(v, str)
        elif base == "boolean":
            ok = isinstance(v, bool)
        else:
            raise PolicyError(f"field {ft.name!r} is {ft.label}; value constraints work on numbers, "
                              "strings, enums and booleans", f"{path}.field")
        if not ok:
            raise PolicyError(f"{v!r} is not a valid value for field {ft.name!r} ({ft.label})", vpath)
        if base == "enum" and v not in ft.symbols:
            raise PolicyError(f"{v!r} is not a symbol of {ft.name!r} (symbols: {', '.join(ft.symbols)})", vpath)

    def compile(self, ctx: Compiling, path: str, prefix: str) -> CompiledConstraint:
        p = prefix
        rule = ctx.rule_id(f"constraint:value:{self.field}")
        value = frozenset(self.value) if self.op in _SETS else self.value
        code = [f"v = r[{self.field!r}]", f"if v is None or not (v {_OPS[self.op]} {p}v): return {p}r"]
        return CompiledConstraint(path, rule, f"{self.field} {self.op} {self.value!r} (null fails)", code,
                                  {f"{p}v": value, f"{p}r": rule},
                                  evidence={"field": self.field, "op": self.op, "value": self.value})
