"""The ingress stage: the provider's rate limit and its circuit breaker (processors/limiting.py).

On one partition's slice, after admission: records over the partition's share of the
provider's limit when they entered the broker (`on_excess: dlq`; processors/limiting.py,
`entry_times`) and, while the provider's breaker is open, the records it does not let
through as probes, go to the dead-letter topic with the limit's or the breaker's rule
instead of whatever admission said about them (a limit is about what the provider sent,
not about whether it was well-formed); what remains is counted by the breaker (accepted
against rejected). `on_excess: hold` is back-pressure, decided before a
batch is even taken apart (the runner pauses the partition); it does not pass through here.
Every runner group of a sharded product runs this stage for its own contracts; only the
lead's dead letters and events are written (`Limiting.reports`, stages/sinks.py).
"""

from __future__ import annotations

from ..limiting import Limiting
from .base import DeadLetter, PartitionSlice, Stage


class Ingress(Stage):
    name = "ingress"

    def __init__(self, limiting: Limiting):
        self.limiting = limiting

    def process(self, s: PartitionSlice) -> None:
        lim = self.limiting
        part = lim.parts.get(s.p) if lim.active else None
        if part is None:
            return
        events: list = []
        screened = lim.screen(s.p, part, s.msgs, s.now_ms, s.first, s.last, events)
        if screened:  # these go to the dead-letter topic with the limit's or the breaker's rule
            out = {m.offset() for m, _, _ in screened}
            s.good = [g for g in s.good if g.offset not in out]
            s.rejected = [r for r in s.rejected if r.offset not in out]
            s.dead += [DeadLetter(m, m.offset(), rule, reason) for m, rule, reason in screened]
        lim.after_admission(s.p, part, s.now_ms, len(s.good), len(s.rejected), s.first, s.last, events)
        s.events += events
