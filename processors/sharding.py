"""Contract sharding: one product's contracts split over runner groups.

A runner's cost grows with every contract it enforces (issue 14: 3.5 µs per record per
contract), so one process cannot enforce fifty contracts of a busy product. Group k of G is
a consumer group of its own over the same raw topic (`citymesh-runner.<product>` for group
0, `citymesh-runner.<product>.<k>` for the others) that enforces only the contracts the
rule below gives it, with its own offsets, fences, partition state and transactional ids;
each group can run several instances that share the raw partitions as usual.

Which group enforces a contract: rendezvous (highest random weight) hashing of the contract
id over the group numbers, so every runner decides alone and alike, and going from G to G+1
groups moves only the contracts the new group wins (about 1/(G+1) of them).

What is about the product rather than a contract is written by group 0, the lead, alone:
dead letters and their REJECT events, what the provider's ingress limits and breaker did,
operator rules (alerts), quarantine events. Every group admits records, checks replays and
applies the provider's limits and breaker itself (nothing it has not admitted, nothing over
the provider's limit reaches its contracts; processors/limiting.py says where the groups'
decisions can differ), but only the lead writes about the records it kept back. The other
groups' compliance events carry the header `cm.runner.group`
so that each group's recovery finds its own batches only (processors/fencing.py).

Changing G: stop the product's runners, start them with the new G (`citymesh up
--runner-groups`). A group with no committed offsets yet starts, as any new consumer group
of the runner, at the raw topic's start: nothing retained is missed by its contracts, and a
contract that moved finds its deliveries in its topic (the delivery fence), so none is
written twice. What it costs: the new group reads the retained records once, and the
records a moved contract had refused are counted again in its new group's compliance
events. (Starting at the lead's offsets instead would lose records for a new group that
joins after the lead has committed, as when `citymesh up` starts both at once.)

Not yet handled, as a contract carries no position or state of its own, only its group's:
a contract moved into a group that stands ahead of the one it left misses the records in
between (removing a group moves its contracts to groups that may be ahead), so change G
only once every group has caught up to the raw topic's end with the provider paused; and a
moved contract's delivery quota starts afresh in its new group, where the retained records
it reads again take their share of it when they are read (a daily quota can be used up by
the replay). Positions and quota state per contract, carried over from the group that
enforced it, would close both.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from clandestined import RendezvousHash

from schemas.errors import CitymeshError


class RunnerGroupError(CitymeshError, ValueError):
    """A runner group number outside 0..count-1, or a count below 1."""


@dataclass(frozen=True)
class RunnerGroup:
    """Group `index` of `count` over one product's contracts."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise RunnerGroupError(f"runner group {self.index} of {self.count}: want 0 <= group < groups, groups >= 1")

    @property
    def lead(self) -> bool:
        """Whether this group writes what is about the product rather than a contract."""
        return self.index == 0

    def owns(self, contract_id: str) -> bool:
        return self.count == 1 or group_of(contract_id, self.count) == self.index

    def consumer_group(self, product_id: str) -> str:
        base = f"citymesh-runner.{product_id}"
        return base if self.lead else f"{base}.{self.index}"

    def state_key(self, product_id: str, p: int) -> bytes:
        """The key of partition p's state record (processors/partition_state.py): one per group."""
        return (f"{product_id}:{p}" if self.lead else f"{product_id}.{self.index}:{p}").encode()

    @property
    def marker(self) -> bytes | None:
        """The cm.runner.group header value on this group's compliance events (None: the lead's,
        which carry none, as every event from before sharding)."""
        return None if self.lead else str(self.index).encode()


@functools.lru_cache(maxsize=None)
def _rule(count: int) -> RendezvousHash:
    return RendezvousHash([str(k) for k in range(count)])


def group_of(contract_id: str, count: int) -> int:
    """The runner group (of `count`) that enforces a contract."""
    return int(_rule(count).find_node(contract_id))
