"""GeoJSON polygons and a point-in-polygon index prepared once per contract.

Why not shapely: a geofence is tested for every delivered record, and a call into a
general geometry library costs more than the whole budget of a record. The index here is
a uniform grid over the union bounding box. Every cell is classified once, at compile
time, as wholly inside a polygon, wholly outside all of them, or crossed by a boundary;
only points in boundary cells run an even-odd ray cast, and then only against the edges
that overlap that cell's row. A point is therefore answered with one bounding-box test,
two multiplications and one list index in the common case.

Coordinates are GeoJSON order, ``[lon, lat]``, WGS-84 degrees, planar (no geodesic edges;
fine for city-sized fences). Holes are honoured (even-odd within a polygon); several
polygons are a union. Points exactly on an edge may fall either way.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from .errors import PolicyError

Ring = list[tuple[float, float]]
Polygon = list[Ring]  # exterior ring first, then holes

_MARGIN = 1e-6  # fraction of a cell: covers float rounding when a point is mapped to a cell


def _number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _ring(coords: Any, path: str) -> Ring:
    if not isinstance(coords, list) or len(coords) < 3:
        raise PolicyError("a linear ring needs at least 4 positions", path)
    ring: Ring = []
    for i, pos in enumerate(coords):
        if not isinstance(pos, (list, tuple)) or len(pos) < 2 or not _number(pos[0]) or not _number(pos[1]):
            raise PolicyError("a position must be [lon, lat] numbers", f"{path}[{i}]")
        lon, lat = float(pos[0]), float(pos[1])
        if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
            raise PolicyError(f"position [{lon}, {lat}] is not a WGS-84 [lon, lat]", f"{path}[{i}]")
        ring.append((lon, lat))
    if ring[0] != ring[-1]:
        ring.append(ring[0])  # GeoJSON rings are closed; accept an unclosed one by closing it
    if len(ring) < 4:
        raise PolicyError("a linear ring needs at least 4 positions", path)
    return ring


def _polygon(coords: Any, path: str) -> Polygon:
    if not isinstance(coords, list) or not coords:
        raise PolicyError("a Polygon needs at least one ring", path)
    return [_ring(r, f"{path}[{i}]") for i, r in enumerate(coords)]


def parse_geojson(obj: Any, path: str) -> list[Polygon]:
    """Polygons of a GeoJSON Polygon, MultiPolygon, Feature, FeatureCollection or GeometryCollection."""
    if not isinstance(obj, dict):
        raise PolicyError(f"expected a GeoJSON object, got {type(obj).__name__}", path)
    kind = obj.get("type")
    if kind == "Polygon":
        return [_polygon(obj.get("coordinates"), f"{path}.coordinates")]
    if kind == "MultiPolygon":
        coords = obj.get("coordinates")
        if not isinstance(coords, list) or not coords:
            raise PolicyError("a MultiPolygon needs at least one polygon", f"{path}.coordinates")
        return [_polygon(p, f"{path}.coordinates[{i}]") for i, p in enumerate(coords)]
    if kind == "Feature":
        return parse_geojson(obj.get("geometry"), f"{path}.geometry")
    if kind in ("FeatureCollection", "GeometryCollection"):
        key = "features" if kind == "FeatureCollection" else "geometries"
        items = obj.get(key)
        if not isinstance(items, list) or not items:
            raise PolicyError(f"a {kind} needs at least one member", f"{path}.{key}")
        out: list[Polygon] = []
        for i, item in enumerate(items):
            out.extend(parse_geojson(item, f"{path}.{key}[{i}]"))
        return out
    raise PolicyError(f"unsupported GeoJSON type {kind!r} (use Polygon, MultiPolygon, Feature, "
                      "FeatureCollection or GeometryCollection of polygons)", f"{path}.type")


def _edges(poly: Polygon) -> list[tuple[float, float, float, float]]:
    """Non-horizontal edges as (x1, y1, x2, y2)."""
    out = []
    for ring in poly:
        for (x1, y1), (x2, y2) in zip(ring, ring[1:]):
            if y1 != y2:
                out.append((x1, y1, x2, y2))
    return out


def _ray_form(e: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """(y1, y2, x1, dx/dy): a horizontal ray from (x, y) to +inf crosses the edge when
    (y1 > y) != (y2 > y) and x < x1 + (y - y1) * dx/dy."""
    x1, y1, x2, y2 = e
    return (y1, y2, x1, (x2 - x1) / (y2 - y1))


def _crosses_odd(edges, x: float, y: float) -> bool:
    inside = False
    for y1, y2, x1, k in edges:
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * k:
            inside = not inside
    return inside


def _segment_hits_box(e, bx0, by0, bx1, by1) -> bool:
    """Liang-Barsky: does segment e touch the closed box?"""
    x1, y1, x2, y2 = e
    dx, dy = x2 - x1, y2 - y1
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, x1 - bx0), (dx, bx1 - x1), (-dy, y1 - by0), (dy, by1 - y1)):
        if p == 0:
            if q < 0:
                return False
        else:
            t = q / p
            if p < 0:
                if t > t1:
                    return False
                t0 = max(t0, t)
            else:
                if t < t0:
                    return False
                t1 = min(t1, t)
    return True


class PolygonIndex:
    """A union of polygons, prepared for fast point-in-polygon tests.

    ``contains(lon, lat)`` is the hot-path function; it is a closure over local constants
    (no attribute look-ups per call). Non-numeric input raises TypeError, NaN raises
    ValueError, so a caller can reject such a record rather than silently drop it.
    """

    def __init__(self, polygons: list[Polygon], grid: int | None = None):
        if not polygons:
            raise PolicyError("no polygons")
        self.polygons = polygons
        xs = [x for poly in polygons for x, _ in poly[0]]
        ys = [y for poly in polygons for _, y in poly[0]]
        self.bbox = (min(xs), min(ys), max(xs), max(ys))
        n_edges = sum(len(r) - 1 for poly in polygons for r in poly)
        self.grid = grid or max(64, min(256, int(8 * math.sqrt(n_edges))))
        self.contains = self._build()

    def _build(self) -> Callable[[float, float], bool]:
        minx, miny, maxx, maxy = self.bbox
        g = self.grid
        w = (maxx - minx) / g or 1e-12
        h = (maxy - miny) / g or 1e-12
        mx, my = w * _MARGIN, h * _MARGIN
        # per polygon: edges and, per grid row, the edges overlapping that row (ray-cast form)
        state: list[list[int]] = []  # per polygon, per cell: 0 out, 1 in, 2 boundary
        rows_by_poly: list[list[tuple]] = []
        for poly in self.polygons:
            edges = _edges(poly)
            rows: list[list] = [[] for _ in range(g)]
            cells = [0] * (g * g)
            for e in edges:
                x1, y1, x2, y2 = e
                r0 = max(0, int((min(y1, y2) - miny - my) / h))
                r1 = min(g - 1, int((max(y1, y2) - miny + my) / h))
                c0 = max(0, int((min(x1, x2) - minx - mx) / w))
                c1 = min(g - 1, int((max(x1, x2) - minx + mx) / w))
                rf = _ray_form(e)
                for r in range(r0, r1 + 1):
                    by0, by1 = miny + r * h - my, miny + (r + 1) * h + my
                    if max(y1, y2) < by0 or min(y1, y2) > by1:
                        continue
                    rows[r].append(rf)
                    for c in range(c0, c1 + 1):
                        if cells[r * g + c] != 2 and _segment_hits_box(
                                e, minx + c * w - mx, by0, minx + (c + 1) * w + mx, by1):
                            cells[r * g + c] = 2
            # horizontal edges never cross a ray but do make a cell a boundary cell
            for ring in poly:
                for (x1, y1), (x2, y2) in zip(ring, ring[1:]):
                    if y1 == y2:
                        for r in range(max(0, int((y1 - miny - my) / h)), min(g - 1, int((y1 - miny + my) / h)) + 1):
                            for c in range(max(0, int((min(x1, x2) - minx - mx) / w)),
                                           min(g - 1, int((max(x1, x2) - minx + mx) / w)) + 1):
                                cells[r * g + c] = 2
            # pure cells: one exact test per run of pure cells in a row (the state cannot change
            # between two cells that no edge separates)
            for r in range(g):
                cy = miny + (r + 0.5) * h
                row_edges = rows[r]
                prev = None
                for c in range(g):
                    i = r * g + c
                    if cells[i] == 2:
                        prev = None
                        continue
                    if prev is None:
                        prev = 1 if _crosses_odd(row_edges, minx + (c + 0.5) * w, cy) else 0
                    cells[i] = prev
            state.append(cells)
            rows_by_poly.append([tuple(r) for r in rows])
        table: list = []
        for i in range(g * g):
            r = i // g
            states = [s[i] for s in state]
            if 1 in states:
                table.append(True)
            elif 2 not in states:
                table.append(False)
            else:
                table.append(tuple(rows_by_poly[p][r] for p, s in enumerate(states) if s == 2))
        self.boundary_cells = sum(1 for t in table if t.__class__ is tuple)
        sx, sy, last = 1.0 / w, 1.0 / h, g - 1
        cells_t = tuple(table)

        def contains(x: float, y: float) -> bool:
            if x < minx or x > maxx or y < miny or y > maxy:
                return False
            try:  # (free in Python 3.11 unless it raises)
                r = int((y - miny) * sy)
                c = int((x - minx) * sx)
            except ValueError:  # NaN passes every comparison above; a contract rejects it, saying so
                raise ValueError(f"position (lon {x}, lat {y}) is not a number (NaN)") from None
            if r > last:
                r = last
            if c > last:
                c = last
            cell = cells_t[r * g + c]
            if cell is True or cell is False:
                return cell
            for edges in cell:
                inside = False
                for y1, y2, x1, k in edges:
                    if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * k:
                        inside = not inside
                if inside:
                    return True
            return False

        return contains

    def contains_exact(self, x: float, y: float) -> bool:
        """Reference answer without the grid (used by tests to check the index)."""
        return any(_crosses_odd([_ray_form(e) for e in _edges(p)], x, y) for p in self.polygons)
