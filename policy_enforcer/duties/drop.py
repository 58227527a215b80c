"""The drop duty: fields not delivered."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..blocks import PolicyCheck, StrictStr
from ..errors import PolicyError
from . import DUTIES, Duty


@DUTIES.register
class DropDuty(Duty):
    """ODRL ``delete`` applied to fields: they are not delivered (and a field derived from
    an identifier may always be dropped)."""

    order = 10
    type: Literal["drop"]
    fields: list[StrictStr] = Field(min_length=1)

    def check(self, ctx: PolicyCheck, path: str) -> None:
        for j, name in enumerate(self.fields):
            ctx.type_of(name, f"{path}.fields[{j}]")
            if name in ctx.transformed:
                raise PolicyError(f"field {name!r} is also transformed by {ctx.transformed[name]}",
                                  f"{path}.fields[{j}]")
            ctx.dropped.add(name)

    def withholds(self) -> list[str]:
        return list(self.fields)

    def describe(self, path: str) -> list[dict]:
        return [{"rule": "duty:drop", "path": path, "fields": list(self.fields), "text": "not delivered"}]
