"""One storage interface for the ledger, two small backends (SQLite file, PostgreSQL).

Both are plain SQL over a DB-API connection, so the shared logic lives here and a backend
only says how to connect, how to take the single-writer lock and how to stream a scan.
Three tables:
- ledger_entries: the chain. UNIQUE (kind, event_id) is the second guard against a
  replayed event (the first is the offsets table); UNIQUE source coordinates keeps one
  Kafka record from ever becoming two entries.
- ledger_checkpoints: signed (seq, entry hash, time), with the signer's public key.
- ledger_offsets: the next Kafka offset per source partition, written in the same
  transaction as the entries it covers (the exactly-once sink pattern): after a crash the
  sink seeks there and neither repeats nor skips a record.
Values are read back raw (no casting) so `audit verify` sees exactly what is stored.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from typing import Any, Iterable, Iterator

from schemas.errors import CitymeshError

from .chain import GENESIS

ENTRY_COLUMNS = ("seq", "src_topic", "src_partition", "src_offset", "event_id", "kind", "time_ms", "event_json",
                 "prev_hash", "entry_hash")
CHECKPOINT_COLUMNS = ("seq", "entry_hash", "time_ms", "public_key", "signature")
_IN_CHUNK = 500  # bound on placeholders per query (old SQLite builds allow 999)


class LedgerNotFound(FileNotFoundError, CitymeshError):
    """Verify/export pointed at a ledger that does not exist (never create one by accident)."""


@dataclass(frozen=True)
class EntryRow:
    seq: Any
    topic: Any
    partition: Any
    offset: Any
    event_id: Any
    kind: Any
    time_ms: Any
    event_json: Any
    prev_hash: Any
    entry_hash: Any


@dataclass(frozen=True)
class CheckpointRow:
    seq: Any
    entry_hash: Any
    time_ms: Any
    public_key: Any
    signature: Any


def ddl(int_type: str) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS ledger_entries (
            seq {int_type} PRIMARY KEY, src_topic TEXT NOT NULL, src_partition {int_type} NOT NULL,
            src_offset {int_type} NOT NULL, event_id TEXT NOT NULL, kind TEXT NOT NULL, time_ms {int_type} NOT NULL,
            event_json TEXT NOT NULL, prev_hash TEXT NOT NULL, entry_hash TEXT NOT NULL,
            UNIQUE (kind, event_id), UNIQUE (src_topic, src_partition, src_offset))""",
        "CREATE INDEX IF NOT EXISTS ledger_entries_time ON ledger_entries (time_ms)",
        f"""CREATE TABLE IF NOT EXISTS ledger_checkpoints (
            seq {int_type} PRIMARY KEY, entry_hash TEXT NOT NULL, time_ms {int_type} NOT NULL,
            public_key TEXT NOT NULL, signature TEXT NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS ledger_offsets (
            src_topic TEXT NOT NULL, src_partition {int_type} NOT NULL, next_offset {int_type} NOT NULL,
            PRIMARY KEY (src_topic, src_partition))""",
    ]


class Writer:
    """What one append transaction may do; only obtained from `LedgerStore.writer()`."""

    def __init__(self, store: "LedgerStore"):
        self._s = store

    def head(self) -> tuple[int, str]:
        return self._s.head()

    def offsets(self) -> dict[tuple[str, int], int]:
        return self._s.offsets()

    def last_checkpoint_seq(self) -> int:
        row = self._s._query("SELECT MAX(seq) FROM ledger_checkpoints")[0]
        return row[0] or 0

    def existing_ids(self, kind: str, ids: Iterable[str]) -> set[str]:
        ids, found = list(ids), set()
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i:i + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            found |= {r[0] for r in self._s._query(
                f"SELECT event_id FROM ledger_entries WHERE kind = ? AND event_id IN ({marks})", [kind, *chunk])}
        return found

    def add_entries(self, rows: list[EntryRow]) -> None:
        if rows:
            self._s._executemany(f"INSERT INTO ledger_entries ({','.join(ENTRY_COLUMNS)}) VALUES "
                                 f"({','.join('?' * len(ENTRY_COLUMNS))})", [astuple(r) for r in rows])

    def add_checkpoint(self, cp: CheckpointRow) -> None:
        self._s._execute(f"INSERT INTO ledger_checkpoints ({','.join(CHECKPOINT_COLUMNS)}) VALUES (?,?,?,?,?)",
                         astuple(cp))

    def set_offsets(self, positions: dict[tuple[str, int], int]) -> None:
        if positions:
            self._s._executemany(
                "INSERT INTO ledger_offsets (src_topic, src_partition, next_offset) VALUES (?,?,?) "
                "ON CONFLICT (src_topic, src_partition) DO UPDATE SET next_offset = excluded.next_offset",
                [(t, p, o) for (t, p), o in positions.items()])


class LedgerStore(ABC):
    """Shared SQL; SQL text is written with `?` and a backend rewrites it if its driver differs."""

    url: str

    # -- what a backend provides
    @abstractmethod
    def _begin_exclusive(self) -> None:
        """Start a transaction that no other writer can interleave with."""

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    @abstractmethod
    def _execute(self, sql: str, params: Iterable = ()) -> Any: ...

    @abstractmethod
    def _executemany(self, sql: str, rows: list) -> None: ...

    @abstractmethod
    def _scan(self, sql: str, params: Iterable = ()) -> Iterator[tuple]:
        """Stream rows without holding the whole ledger in memory."""

    @abstractmethod
    def close(self) -> None: ...

    def _query(self, sql: str, params: Iterable = ()) -> list[tuple]:
        return list(self._execute(sql, params).fetchall())

    # -- writing
    @contextmanager
    def writer(self) -> Iterator[Writer]:
        """One transaction: everything in it lands together or not at all."""
        self._begin_exclusive()
        try:
            yield Writer(self)
        except BaseException:
            self._rollback()
            raise
        self._commit()

    # -- reading
    def head(self) -> tuple[int, str]:
        """(seq, entry hash) of the last entry; (0, GENESIS) for an empty ledger."""
        rows = self._query("SELECT seq, entry_hash FROM ledger_entries ORDER BY seq DESC LIMIT 1")
        return (rows[0][0], rows[0][1]) if rows else (0, GENESIS)

    def offsets(self) -> dict[tuple[str, int], int]:
        return {(t, p): o for t, p, o in self._query("SELECT src_topic, src_partition, next_offset FROM ledger_offsets")}

    def entries(self, since_ms: int | None = None, until_ms: int | None = None) -> Iterator[EntryRow]:
        """Entries in seq order, optionally those with since_ms <= time_ms < until_ms."""
        where, params = [], []
        if since_ms is not None:
            where.append("time_ms >= ?")
            params.append(since_ms)
        if until_ms is not None:
            where.append("time_ms < ?")
            params.append(until_ms)
        sql = f"SELECT {','.join(ENTRY_COLUMNS)} FROM ledger_entries"
        if where:
            sql += " WHERE " + " AND ".join(where)
        for row in self._scan(sql + " ORDER BY seq", params):
            yield EntryRow(*row)

    def checkpoints(self) -> list[CheckpointRow]:
        return [CheckpointRow(*r) for r in
                self._query(f"SELECT {','.join(CHECKPOINT_COLUMNS)} FROM ledger_checkpoints ORDER BY seq")]

    def __enter__(self) -> "LedgerStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def open_store(url: str, create: bool = True) -> LedgerStore:
    """`postgresql://…` opens PostgreSQL; anything else (`sqlite:///path` or a plain path) a SQLite file.

    create=False is for readers (verify, export): a missing ledger is an error, not a new empty one."""
    if is_postgres(url):
        from .postgres_store import PostgresStore
        return PostgresStore(url, create)
    from .sqlite_store import SqliteStore
    return SqliteStore(url, create)


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url
