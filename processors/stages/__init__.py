"""The enforcement runner's chain of stages: the path of one partition's slice of a batch.

    admission → replay → ingress → rules → contracts → seal → sinks

Read the files in this order to follow a record:

- admission.py   is the record what its provider wrote, in the product's schema?
                 (size, schema fingerprint, provider, product, HMAC tag, full decode)
- replay.py      each provider record once: a sequence already seen, a copy moved to another
                 partition, an event time outside the product's window are refused
- ingress.py     the provider's rate limit and circuit breaker: the over-limit suffix and,
                 while the breaker is open, the slice go to the dead-letter topic instead
- rules.py       operator rules on the admitted records: hits become Alerts
- contracts.py   every ACTIVE contract's compiled plan, then its quota: whole delivery
                 records, and one BATCH compliance event per contract
- seal.py        each delivery's tag, and on the last of each contract's batch the
                 operator's signed seal: what a consumer verifies (streams/delivery.py)
- sinks.py       writes what the stages decided: dead letters, deliveries, alerts, and the
                 REJECT events; skips what a crashed runner already wrote (the fence)

Each stage is one object with one small interface (``Stage``): ``process`` a slice,
``assign``/``revoke`` a partition (recovery), and ``snapshot``/``restore`` its per-partition
state, which the runner writes with the offsets it commits (processors/partition_state.py)
so a restart resumes every stage from the state that matches the committed offset. The
runner (processors/runner.py) owns what is not about one slice: consuming, contract changes
at batch boundaries, replaying a crashed batch exactly, back-pressure, flush and commit.
"""

from .base import DeadLetter, PartitionSlice, Stage

__all__ = ["DeadLetter", "PartitionSlice", "Stage"]
