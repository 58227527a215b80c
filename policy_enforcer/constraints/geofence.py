"""The geofence constraint: the record's position inside (or outside) polygons."""

from __future__ import annotations

from typing import Literal

from pydantic import PrivateAttr, model_validator

from ..blocks import Compiling, PolicyCheck, StrictStr
from ..geo import Polygon, PolygonIndex, parse_geojson
from ..errors import PolicyError
from . import CONSTRAINTS, CompiledConstraint, Constraint


@CONSTRAINTS.register
class GeofenceConstraint(Constraint):
    """ODRL ``spatial`` / IDS ``USAGE_LOCATION``: the record's position inside (or outside)
    polygons given as GeoJSON. A record without a position fails."""

    order = 30
    type: Literal["geofence"]
    inside: dict | None = None
    outside: dict | None = None
    lat_field: StrictStr = "lat"
    lon_field: StrictStr = "lon"
    _polygons: list[Polygon] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _one(self):
        if (self.inside is None) == (self.outside is None):
            raise ValueError("give exactly one of inside or outside")
        return self

    @property
    def mode(self) -> str:
        return "inside" if self.inside is not None else "outside"

    def check(self, ctx: PolicyCheck, path: str) -> None:
        for attr in ("lat_field", "lon_field"):
            ft = ctx.type_of(getattr(self, attr), f"{path}.{attr}")
            if ft.base not in ("float", "double"):
                raise PolicyError(f"field {ft.name!r} is {ft.label}, a coordinate must be float or double",
                                  f"{path}.{attr}")
        self._polygons = parse_geojson(getattr(self, self.mode), f"{path}.{self.mode}")

    def compile(self, ctx: Compiling, path: str, prefix: str) -> CompiledConstraint:
        p, mode = prefix, self.mode
        index = PolygonIndex(self._polygons)
        rule = ctx.rule_id("constraint:geofence")
        test = f"not {p}g(b, a)" if mode == "inside" else f"{p}g(b, a)"
        code = [f"a = r[{self.lat_field!r}]", f"b = r[{self.lon_field!r}]",
                f"if a is None or b is None or {test}: return {p}r"]
        return CompiledConstraint(
            path, rule, f"position ({self.lat_field}, {self.lon_field}) {mode} {len(index.polygons)} polygon(s), "
                        f"bbox {tuple(round(v, 6) for v in index.bbox)}",
            code, {f"{p}g": index.contains, f"{p}r": rule},
            evidence={"mode": mode, "polygons": len(index.polygons), "bbox": list(index.bbox),
                      "grid": index.grid, "lat_field": self.lat_field, "lon_field": self.lon_field})
