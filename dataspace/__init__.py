"""The dataspace control plane: the Eclipse Dataspace Protocol (2025-1) over the mesh.

Participants find data products in a DCAT catalog whose offers are contract templates in
ODRL (the citymesh ODRL profile, ``odrl``), negotiate (REQUESTED ... FINALIZED), and start,
suspend and terminate transfers; a finalized agreement becomes a contract record on
cm.control.contracts, which the enforcement runners already enforce on every record.

Modules: ``odrl`` (the profile, both ways), ``identity`` (EdDSA JWTs, signed agreements),
``messages`` (DSP JSON Schemas), ``state`` (negotiation and transfer state machines),
``store`` (the compacted control topics as tables), ``offers`` (catalog and decisions),
``connector`` (provider and consumer sides), ``api`` (the one ASGI app), ``client`` (what
the CLI speaks), ``server`` (``python -m dataspace``).
"""
