"""The production backend: PostgreSQL through psycopg 3.

A transaction-scoped advisory lock serialises appenders (a second sink pointed at the same
database waits instead of forking the chain); scans use a server-side cursor so verifying
a ledger of millions of entries streams instead of loading it whole.
"""

from __future__ import annotations

from typing import Iterable, Iterator

try:
    import psycopg
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError('the PostgreSQL ledger needs psycopg 3: pip install "psycopg[binary]"') from exc

from .store import LedgerNotFound, LedgerStore, ddl

_LOCK_KEY = 0x6369_7479_6C65_6467  # "cityledg": the one advisory lock the ledger writers share


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


class PostgresStore(LedgerStore):
    def __init__(self, url: str, create: bool = True):
        self.url = url
        self._conn = psycopg.connect(url, autocommit=True)
        self._tx = None
        if create:
            with self._conn.transaction():
                self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                for stmt in ddl("BIGINT"):
                    self._conn.execute(stmt)
        elif self._conn.execute("SELECT to_regclass('ledger_entries')").fetchone()[0] is None:
            self._conn.close()
            raise LedgerNotFound("the database holds no ledger")

    def _begin_exclusive(self) -> None:
        self._tx = self._conn.transaction()
        self._tx.__enter__()
        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))

    def _commit(self) -> None:
        tx, self._tx = self._tx, None
        tx.__exit__(None, None, None)

    def _rollback(self) -> None:
        tx, self._tx = self._tx, None
        if tx is not None:
            tx.__exit__(RuntimeError, RuntimeError("rolled back"), None)

    def _execute(self, sql: str, params: Iterable = ()):
        return self._conn.execute(_pg(sql), tuple(params))

    def _executemany(self, sql: str, rows: list) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(_pg(sql), rows)

    def _scan(self, sql: str, params: Iterable = ()) -> Iterator[tuple]:
        with self._conn.transaction(), self._conn.cursor(name="ledger_scan") as cur:
            cur.itersize = 5000
            cur.execute(_pg(sql), tuple(params))
            yield from cur

    def close(self) -> None:
        self._conn.close()
