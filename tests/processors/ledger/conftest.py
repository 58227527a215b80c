"""Fixtures of the ledger tests: operator keys and a throwaway PostgreSQL server.

PostgreSQL: with CITYMESH_TEST_POSTGRES_URL set (postgresql://user@host:port/db, a role that
may CREATE DATABASE) the tests use that server; otherwise, when the server binaries are
installed (Debian/Ubuntu package `postgresql`), a private server is initdb'ed in a temp
dir, started on a free port and stopped at the end of the session. Without either, the
PostgreSQL tests are skipped and say why.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid

import pytest

from streams.keyring import Keyring


@pytest.fixture
def operator() -> Keyring:
    return Keyring.generate("operator")


@pytest.fixture
def attacker() -> Keyring:
    return Keyring.generate("mallory")


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """Base URL of a PostgreSQL server the tests may create databases on."""
    external = os.environ.get("CITYMESH_TEST_POSTGRES_URL")
    if external:
        yield external
        return
    pytest.importorskip("psycopg", reason='psycopg 3 not installed (pip install "psycopg[binary]")')
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql) and no CITYMESH_TEST_POSTGRES_URL")
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root; run the server as the postgres user
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run the server as")
        run_as = ["runuser", "-u", "postgres", "--"]
    tmp = tempfile.mkdtemp(prefix="citymesh-pg-")
    if run_as:
        shutil.chown(tmp, "postgres")
    data, port = os.path.join(tmp, "data"), _free_port()
    subprocess.run(run_as + [initdb, "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True, timeout=60)
    subprocess.run(run_as + [pg_ctl, "-D", data, "-l", os.path.join(tmp, "log"), "-w", "-t", "30", "-o",
                             f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                   check=True, capture_output=True, timeout=60)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(run_as + [pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"], capture_output=True,
                       timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


class PgDatabases:
    """Create (and finally drop) databases on the test server; `copy` clones one as a template."""

    def __init__(self, base_url: str):
        import psycopg
        self.base = base_url
        self.admin = psycopg.connect(base_url, autocommit=True)
        self.made: list[str] = []

    def url(self, name: str) -> str:
        return self.base.rsplit("/", 1)[0] + "/" + name

    def create(self, template: str | None = None) -> str:
        name = f"ledger_{uuid.uuid4().hex[:10]}"
        self.admin.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        self.made.append(name)
        return name

    def close(self) -> None:
        for name in self.made:
            self.admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.admin.close()


@pytest.fixture
def pg(postgres_server):
    dbs = PgDatabases(postgres_server)
    try:
        yield dbs
    finally:
        dbs.close()
