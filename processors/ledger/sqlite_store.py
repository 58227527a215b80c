"""The embedded backend: one SQLite file in WAL mode.

WAL lets `audit verify` and `export` read while the sink writes; BEGIN IMMEDIATE takes the
write lock at the start of an append, so two writers can never both extend the same head;
synchronous=FULL because a signed checkpoint that vanishes after a power cut would be
worse than the fsync per batch it costs.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterable, Iterator

from .store import LedgerNotFound, LedgerStore, ddl


def path_of(url: str) -> Path:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite://"):])
    if url.startswith("sqlite:"):
        return Path(url[len("sqlite:"):])
    return Path(url)


class SqliteStore(LedgerStore):
    def __init__(self, url: str, create: bool = True):
        self.url = url
        self.path = path_of(url)
        if not create and not self.path.is_file():
            raise LedgerNotFound(f"no ledger at {self.path}")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit mode: transactions are exactly the BEGIN/COMMIT issued below
        self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA busy_timeout = 30000")
        if create:
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            for stmt in ddl("INTEGER"):
                self._conn.execute(stmt)
        elif not self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ledger_entries'").fetchone():
            self._conn.close()
            raise LedgerNotFound(f"{self.path} holds no ledger")

    def _begin_exclusive(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._conn.execute("COMMIT")

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def _execute(self, sql: str, params: Iterable = ()):
        return self._conn.execute(sql, tuple(params))

    def _executemany(self, sql: str, rows: list) -> None:
        self._conn.executemany(sql, rows)

    def _scan(self, sql: str, params: Iterable = ()) -> Iterator[tuple]:
        yield from self._conn.execute(sql, tuple(params))

    def close(self) -> None:
        self._conn.close()
