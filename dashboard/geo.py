"""The map's layers, from the topology's own GeoJSON files (no internet tiles, ever).

Why read the topology file here rather than import `topology`: the dashboard depends on
`streams` and `schemas` only (README.md, Architecture); it needs nothing of a geofence but its
file, which the topology names relative to itself. Each feature gets a `layer` property
the page styles by: `zone` for ED-269 UAS zones (their `restriction` picks the colour:
PROHIBITED red, REQ_AUTHORISATION orange, CONDITIONAL yellow), `area` for the other
geofences (the city outline, service areas).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml


def load_layers(topology_path: str | Path | None) -> dict:
    """One FeatureCollection of every geofence of the topology, tagged with `layer` and `geofence`."""
    features: list[dict] = []
    if topology_path is None:
        return {"type": "FeatureCollection", "features": features}
    path = Path(topology_path)
    doc = yaml.safe_load(path.read_text()) or {}
    for name, spec in (doc.get("geofences") or {}).items():
        file = spec.get("file") if isinstance(spec, dict) else None
        if not file:
            continue
        gj = json.loads((path.parent / file).read_text())
        items = gj.get("features") if gj.get("type") == "FeatureCollection" else [gj]
        for f in items:
            props = dict(f.get("properties") or {})
            props["geofence"] = name
            props["layer"] = "zone" if "restriction" in props else "area"
            features.append({"type": "Feature", "geometry": f["geometry"], "properties": props})
    # areas first so zones are drawn on top of the city outline
    features.sort(key=lambda f: f["properties"]["layer"] == "zone")
    return {"type": "FeatureCollection", "features": features}
