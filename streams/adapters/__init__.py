"""Source adapters: turn an external protocol into citymesh records and hand them to a sink.

Every adapter here has the same shape so that the mesh treats all intake paths alike:

- a pure *decoder* that maps the protocol's units and fields onto a `UavTelemetry` or
  `HotlineTicket` dict (testable and benchmarkable without sockets or Kafka);
- a *server/loop* that owns the socket, MQTT session or file and feeds the decoder;
- a sink `publish(record: dict) -> None`, in production
  `functools.partial(ProviderConnector.publish, product_id)`, which validates, signs and
  produces to `cm.raw.<provider>.<product>`.

Bad input is counted (per-adapter `stats` dict and the Prometheus counters in `base`) and
skipped: one malformed datagram, message, request or row must never stop intake of the rest.
"""
