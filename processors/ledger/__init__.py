"""The tamper-evident compliance ledger: a sink from cm.compliance and cm.alerts into an
append-only, hash-chained store, with checkpoints signed by the operator's Ed25519 key.

The broker keeps nothing durable (the embedded one loses everything when it stops), so the
mesh's evidence must live outside it, in a form a regulator can check offline without
trusting the operator: every entry commits to the one before it (hash chain), and the
operator signs the chain head every N entries and on shutdown (checkpoints).

Modules: `chain` (canonical JSON, entry hash, checkpoint message: the format a third party
re-implements), `store` + `sqlite_store` / `postgres_store` (one storage interface, two
backends), `ledger` (idempotent batch append), `sink` (the Kafka process), `audit`
(verify, export), `config` (ledger URL and operator key from the environment).
"""

from .chain import GENESIS, canonical_json, checkpoint_message, entry_hash
from .ledger import Incoming, Ledger
from .store import open_store

__all__ = ["GENESIS", "canonical_json", "checkpoint_message", "entry_hash", "Incoming", "Ledger", "open_store"]
