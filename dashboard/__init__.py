"""The city operations dashboard: one web page over what the mesh emits, under the operator's own contracts.

`python -m dashboard` (started by `citymesh up`) serves the page, a server-sent-event live
feed and /metrics. Layout: model.py (what the page shows and when a drone is red),
feeds.py (Kafka readers, each surviving broker restarts), server.py (HTTP, SSE, flusher),
geo.py (map layers from the topology's GeoJSON), evidence.py (ledger entries behind an
alert), static/ (the page itself: plain JS, canvas map, no external assets).
"""
