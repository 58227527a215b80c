"""Alert hygiene: repeated hits of one rule on one subject become one episode, not a flood.

A drone inside a prohibited zone breaks the zone rule with every position it sends (once a
second); one alert per hit buries the operator. So hits are folded per (rule, subject):

- the first hit of an episode raises an alert (phase ``raised``);
- while it goes on, at most one ``reminder`` per ``remind_every``, carrying how many hits it
  folds (``count``) and their span (``first_seen_ms`` .. ``last_seen_ms``);
- when no hit came for ``clear_after``, a ``cleared`` alert ends the episode (carrying the
  hits since the last alert, possibly none).

Every alert's count covers the hits since the previous alert of the episode, so the counts of
an episode's alerts add up to its hits: the compliance app still knows how long and how often.

Deterministic, as exactly-once needs (processors/fencing.py): time is the hits' own time
(their record's event time) and the partition's clock is the latest such time seen, never
the wall clock; the state is per source partition and persisted with the offsets by the
runner (``snapshot``/``restore``), so a replayed batch folds exactly as the original did.
``remind_every=0`` turns folding off: every hit is an alert (phase ``raised``).
"""

from __future__ import annotations

from dataclasses import dataclass

RAISED, REMINDER, CLEARED = "raised", "reminder", "cleared"


@dataclass(frozen=True)
class FoldTerms:
    remind_every_ms: int = 60_000
    clear_after_ms: int = 30_000

    @classmethod
    def from_dict(cls, d: dict | None) -> "FoldTerms":
        """From the rules record's fold_json ({} or None: the defaults; {"off": true}: no folding)."""
        d = d or {}
        if d.get("off"):
            return cls(0, 0)
        return cls(int(d.get("remind_every_ms", cls.remind_every_ms)), int(d.get("clear_after_ms", cls.clear_after_ms)))

    @property
    def off(self) -> bool:
        return self.remind_every_ms == 0


@dataclass
class Folded:
    """An alert to raise: `phase`, the hit it is about (None for a clear: then `key` and
    `at` name the episode and the record whose time ended it), and the hits it covers."""

    phase: str
    key: tuple[str, str]  # (rule id, subject)
    hit: object | None  # policy_enforcer.rules.Hit
    at: int  # index of the record (in the evaluated batch) the alert is raised at
    time_ms: int
    count: int
    first_seen_ms: int
    last_seen_ms: int
    severity: str = ""


class AlertFold:
    """Episodes of one source partition: "<rule>\0<subject>" -> [first hit ms, last hit ms,
    last alert ms, hits since the last alert, first of those ms, severity]."""

    def __init__(self, terms: FoldTerms):
        self.terms = terms
        self.episodes: dict[str, list] = {}
        self.clock = 0  # the latest record time seen on the partition

    def fold(self, hits: list, times: list[int]) -> list[Folded]:
        """The alerts to raise for the hits of one batch; ``times[i]`` is record i's time
        (every record, hit or not: time moves on with the partition's records)."""
        if not hits and not self.episodes:  # the common batch: nothing to raise or clear, time moves on
            self.clock = max(self.clock, max(times, default=self.clock))
            return []
        out: list[Folded] = []
        t = self.terms
        by_index: dict[int, list] = {}
        for h in hits:
            by_index.setdefault(h.index, []).append(h)
        for i, now in enumerate(times):
            if now > self.clock:
                self.clock = now
                if not t.off:
                    self._clear(i, out)
            for h in by_index.get(i, ()):
                if t.off:
                    out.append(Folded(RAISED, (h.rule_id, h.subject), h, i, now, 1, now, now))
                    continue
                key = f"{h.rule_id}\x00{h.subject}"
                ep = self.episodes.get(key)
                if ep is None:
                    self.episodes[key] = [now, now, now, 0, now, h.severity]
                    out.append(Folded(RAISED, (h.rule_id, h.subject), h, i, now, 1, now, now))
                    continue
                ep[1] = max(ep[1], now)
                if ep[3] == 0:
                    ep[4] = now
                ep[3] += 1
                if now - ep[2] >= t.remind_every_ms:
                    out.append(Folded(REMINDER, (h.rule_id, h.subject), h, i, now, ep[3], ep[4], ep[1]))
                    ep[2], ep[3] = now, 0
        return out

    def _clear(self, i: int, out: list[Folded]) -> None:
        ended = [k for k, ep in self.episodes.items() if self.clock - ep[1] >= self.terms.clear_after_ms]
        for k in sorted(ended):
            ep = self.episodes.pop(k)
            rule, subject = k.split("\x00", 1)
            out.append(Folded(CLEARED, (rule, subject), None, i, self.clock, ep[3], ep[4] if ep[3] else ep[1], ep[1],
                              ep[5]))

    def snapshot(self) -> dict | None:
        if not self.episodes and not self.clock:
            return None
        return {"clock": self.clock, "episodes": {k: list(v) for k, v in self.episodes.items()}}

    def restore(self, state: dict) -> None:
        self.clock = state.get("clock", 0)
        self.episodes = {k: list(v) for k, v in state.get("episodes", {}).items()}
