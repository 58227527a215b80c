"""The prepared polygon index agrees with a plain ray cast, honours holes and unions."""

import math
import random

import pytest
from enforcer_samples import AIRPORT_ZONES, DISTRICT

from policy_enforcer import PolicyError
from policy_enforcer.geo import PolygonIndex, parse_geojson


def _index(obj, grid=None):
    return PolygonIndex(parse_geojson(obj, "g"), grid=grid)


def test_district_inside_and_outside_points():
    idx = _index(DISTRICT)
    assert idx.contains(114.34, 30.58)          # middle of the district
    assert not idx.contains(114.25, 30.58)      # west of it
    assert not idx.contains(114.41, 30.64)      # in the bbox, outside the concave corner
    assert not idx.contains(0.0, 0.0)


@pytest.mark.parametrize("grid", [None, 3, 17])
def test_grid_matches_exact_ray_cast_on_random_points(grid):
    rnd = random.Random(42)
    poly = {"type": "Polygon", "coordinates": [[[114.3 + 0.1 * math.cos(a) * (1 + 0.4 * (i % 3)),
                                                 30.6 + 0.08 * math.sin(a) * (1 + 0.4 * (i % 3))]
                                                for i, a in enumerate(2 * math.pi * k / 37 for k in range(37))]]}
    idx = _index(poly, grid)
    checked = 0
    for _ in range(20_000):
        x, y = rnd.uniform(114.1, 114.5), rnd.uniform(30.4, 30.8)
        assert idx.contains(x, y) == idx.contains_exact(x, y), (x, y)
        checked += idx.contains(x, y)
    assert 1000 < checked < 19_000  # both answers occurred


def test_hole_is_outside():
    ring = [[114.2, 30.5], [114.4, 30.5], [114.4, 30.7], [114.2, 30.7], [114.2, 30.5]]
    hole = [[114.28, 30.58], [114.32, 30.58], [114.32, 30.62], [114.28, 30.62], [114.28, 30.58]]
    idx = _index({"type": "Polygon", "coordinates": [ring, hole]})
    assert idx.contains(114.25, 30.55)
    assert not idx.contains(114.30, 30.60)


def test_feature_collection_is_a_union_even_where_polygons_overlap():
    a = [[114.2, 30.5], [114.4, 30.5], [114.4, 30.7], [114.2, 30.7], [114.2, 30.5]]
    b = [[114.3, 30.6], [114.5, 30.6], [114.5, 30.8], [114.3, 30.8], [114.3, 30.6]]
    idx = _index({"type": "MultiPolygon", "coordinates": [[a], [b]]})
    assert idx.contains(114.35, 30.65)   # in both: still inside (no even-odd across polygons)
    assert idx.contains(114.25, 30.55) and idx.contains(114.45, 30.75)
    assert not idx.contains(114.45, 30.55)
    zones = _index(AIRPORT_ZONES)
    assert len(zones.polygons) == 3
    assert zones.contains(114.21, 30.77) and zones.contains(114.405, 30.525)
    assert not zones.contains(114.35, 30.6)


def test_non_numeric_and_nan_raise_so_the_plan_can_reject():
    idx = _index(DISTRICT)
    with pytest.raises(TypeError):
        idx.contains("114.3", 30.6)
    with pytest.raises(ValueError):
        idx.contains(float("nan"), float("nan"))


@pytest.mark.parametrize("obj, message", [
    ({"type": "Point", "coordinates": [114.3, 30.6]}, "g.type: unsupported GeoJSON type 'Point'"),
    ({"type": "Polygon", "coordinates": [[[114.3, 30.6], [114.4, 30.6]]]}, "g.coordinates[0]: a linear ring needs"),
    ({"type": "Polygon", "coordinates": [[[114.3, 30.6], ["x", 30.6], [114.4, 30.7], [114.3, 30.6]]]},
     "g.coordinates[0][1]: a position must be [lon, lat] numbers"),
    ({"type": "Polygon", "coordinates": [[[30.6, 114.3], [30.7, 114.3], [30.7, 114.4], [30.6, 114.3]]]},
     "g.coordinates[0][0]: position [30.6, 114.3] is not a WGS-84 [lon, lat]"),
    ({"type": "FeatureCollection", "features": []}, "g.features: a FeatureCollection needs at least one member"),
    ("shenzhen-urban", "g: expected a GeoJSON object, got str"),
])
def test_bad_geojson_is_an_error_naming_the_path(obj, message):
    with pytest.raises(PolicyError) as e:
        parse_geojson(obj, "g")
    assert str(e.value).startswith(message)


def test_unclosed_ring_is_closed():
    polys = parse_geojson({"type": "Polygon", "coordinates": [[[114.2, 30.5], [114.4, 30.5], [114.4, 30.7]]]}, "g")
    assert polys[0][0][0] == polys[0][0][-1]
