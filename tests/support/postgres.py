"""A real PostgreSQL server for the tests: Debian's binaries (``initdb`` + ``pg_ctl``), one per session on a free port
of 127.0.0.1, and a fresh database per test. A missing PostgreSQL fails the tests that need it (never a skip).

initdb refuses to run as root: as root (here and in CI) the server runs as the ``postgres`` user Debian's package
creates, from a data folder that user owns.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

USER = "archiver"  # the database superuser initdb creates (trust authentication on 127.0.0.1 only)


def _binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    pytest.fail("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): apt-get install -y postgresql "
                "(.ci/run does)", pytrace=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, base: Path) -> None:
        self.bin = _binaries()
        self.base = base
        self.data = base / "data"
        self.port = _free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root and there is no `postgres` user to run PostgreSQL as", pytrace=False)
            os.chown(base, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._names = itertools.count(1)

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=120, cwd=self.base)
        if done.returncode:
            log = self.base / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            pytest.fail(f"{args[0]} failed ({done.returncode}): {done.stderr.strip()}\n{tail}", pytrace=False)

    def start(self) -> None:
        if not self.data.exists():
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", USER, "--no-sync",
                      "-E", "UTF8", "--locale=C")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.base} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.base / "log"), "-w", "-t", "60",
                  "-o", options, "start")

    def start_if_stopped(self) -> None:
        """Up again after a test that stopped it for good, for the tests that follow."""
        if not (self.data / "postmaster.pid").exists():
            self.start()

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        auth = USER if password is None else f"{USER}:{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database of its own; its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


@contextlib.contextmanager
def own_postgres(prefix: str) -> Iterator[PostgresServer]:
    """A server of its own in a temp folder, for tests that stop and restart it; stopped and removed afterwards
    (already stopped by a test: fine)."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    server = PostgresServer(base)
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(BaseException):  # a test may have stopped it already
            server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    base = Path(tempfile.mkdtemp(prefix="archiver-pg-"))
    server = PostgresServer(base)
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop("immediate")
        finally:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh PostgreSQL database for one test."""
    return postgres_server.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def manifest_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def manifest_target(manifest_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Path | str:
    """Where a test's manifest lives, on each backend: a SQLite file, or a fresh PostgreSQL database's URL."""
    if manifest_backend == "sqlite":
        return tmp_path / "manifest.sqlite3"
    return request.getfixturevalue("postgres_server").new_database()


@pytest.fixture
def manifest_env(manifest_backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """For CLI tests on each backend: with PostgreSQL, ARCHIVER_MANIFEST_URL names a fresh database (so the config's
    [manifest] path is used for the scratch folder only); returns that URL, or None for SQLite."""
    if manifest_backend == "sqlite":
        return None
    url = request.getfixturevalue("postgres_server").new_database()
    monkeypatch.setenv("ARCHIVER_MANIFEST_URL", url)
    return url



class manifest_db:  # noqa: N801 - used like sqlite3.connect
    """A manifest's connection for a test's own SQL, on either backend (``execute`` takes the same SQL; a write
    commits at once); usable with ``with`` (closed at its end) as sqlite3's is."""

    def __init__(self, target: Path | str) -> None:
        from archiver.manifest.sqlite import Manifest

        self._manifest = Manifest.open(target, lock=False)

    def execute(self, sql: str, parameters: tuple = ()) -> object:
        return self._manifest._db.execute(sql, parameters)

    def close(self) -> None:
        self._manifest.close()

    def __enter__(self) -> manifest_db:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def manifest_contents(target: Path | str) -> object:
    """What a manifest holds: the SQLite file's bytes, or each PostgreSQL table's row count and digest."""
    if not isinstance(target, str):
        return Path(target).read_bytes()
    from archiver.manifest.copy import digest
    from archiver.manifest.schema import TABLES

    with manifest_db(target) as db:
        conn = db._manifest._db
        return {t: digest(conn, t, [d[0] for d in conn.execute(f"SELECT * FROM {t} LIMIT 0").description])
                for t in TABLES}
