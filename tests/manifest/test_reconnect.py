"""A PostgreSQL manifest outlives its server's restarts (manifest/postgres.py): reads and transactions are run again
on a new connection, a transaction is never applied twice (a lost COMMIT's outcome is asked), the writer's lock is
taken again, and a server that stays away is a clear ManifestUnavailable after reconnect_for. Each test restarts a
server of this module's own (the session's server stays up for the other tests)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import psycopg
import pytest

from archiver.errors import EXIT_FAILED, ManifestError, ManifestUnavailable
from archiver.manifest.sqlite import Manifest
from archiver.model import Outcome
from tests.support.cutter import Cutter
from tests.support.postgres import PostgresServer, own_postgres


@pytest.fixture(scope="module")
def own_server() -> Iterator[PostgresServer]:
    with own_postgres("archiver-pg-restart-") as server:
        yield server


@pytest.fixture
def server(own_server: PostgresServer) -> Iterator[PostgresServer]:
    yield own_server
    own_server.start_if_stopped()


def _restart(server: PostgresServer) -> None:
    server.stop("fast")  # ends every session, as a restart or a failover does
    server.start()


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_reads_and_writes_go_on_after_a_restart_and_the_writers_lock_is_taken_again(
        server: PostgresServer, caplog: pytest.LogCaptureFixture) -> None:
    url = server.new_database()
    caplog.set_level(logging.INFO)
    with Manifest.open(url, reconnect_for=30) as m:
        m.record_url("http://a.test/1.jpg", Outcome.DEAD, reason="404", attempts=1)
        _restart(server)
        assert m.url_states(["http://a.test/1.jpg"])["http://a.test/1.jpg"].status == Outcome.DEAD  # a read
        m.record_url("http://a.test/2.jpg", Outcome.DEAD, reason="410", attempts=1)  # a transaction
        with pytest.raises(ManifestError, match="another archiver run is using this manifest"):
            Manifest.open(url)  # the lock came back with the connection
    assert len(_lines(caplog, "PostgreSQL connection lost")) == 1
    assert len(_lines(caplog, "PostgreSQL connection back")) == 1
    with Manifest.open(url) as m:
        assert m.counts()["dead"] == 2


def test_a_transaction_cut_in_the_middle_is_replayed_once(server: PostgresServer) -> None:
    url = server.new_database()
    with Manifest.open(url, reconnect_for=30) as m:
        with m._tx() as db:
            m._upsert_url(db, "http://a.test/x.jpg", Outcome.FAILED, reason="first", attempts=1)
            _restart(server)  # the transaction so far is rolled back with its session
            m._upsert_url(db, "http://a.test/x.jpg", Outcome.FAILED, reason="second", attempts=1)
            m._upsert_url(db, "http://a.test/y.jpg", Outcome.FAILED, reason="other", attempts=1)
        rows = m._db.execute("SELECT url, reason, attempts FROM urls ORDER BY url").fetchall()
    assert rows == [("http://a.test/x.jpg", "second", 2), ("http://a.test/y.jpg", "other", 1)]


def test_a_transaction_whose_reads_changed_meanwhile_is_not_replayed(server: PostgresServer) -> None:
    url = server.new_database()
    with Manifest.open(url, reconnect_for=30) as m:
        with pytest.raises(ManifestError, match="could not be replayed"), m._tx() as db:
            assert db.execute("SELECT COUNT(*) FROM urls").fetchone()[0] == 0
            m._upsert_url(db, "http://a.test/mine.jpg", Outcome.DEAD, reason="404", attempts=1)
            with psycopg.connect(url, autocommit=True) as other:  # another worker writes meanwhile
                other.execute("INSERT INTO urls (url, status, attempts, first_seen, last_tried) "
                              "VALUES ('http://a.test/theirs.jpg', 'dead', 1, 0, 0)")
            _restart(server)
            m._upsert_url(db, "http://a.test/mine2.jpg", Outcome.DEAD, reason="404", attempts=1)
        assert [u for (u,) in m._db.execute("SELECT url FROM urls ORDER BY url")] == ["http://a.test/theirs.jpg"]


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_commit_whose_answer_was_lost_is_applied_exactly_once(
        server: PostgresServer, where: str, caplog: pytest.LogCaptureFixture) -> None:
    url = server.new_database()
    cutter = Cutter(server.port)
    caplog.set_level(logging.INFO)
    try:
        via = url.replace(f":{server.port}/", f":{cutter.port}/")
        with Manifest.open(via, lock=False, reconnect_for=30) as m:
            cutter.cut(where)  # the record's COMMIT: never reaches the server, or its answer never comes back
            m.record_url("http://a.test/once.jpg", Outcome.FAILED, reason="500", attempts=1)
            assert cutter.cuts == 1
            row = m._db.execute("SELECT attempts FROM urls WHERE url = 'http://a.test/once.jpg'").fetchall()
        assert row == [(1,)]  # recorded, and only once (attempts add up: a replay of a commit would make it 2)
        committed = _lines(caplog, "had committed")
        assert len(committed) == (1 if where == "after" else 0)
    finally:
        cutter.close()


def test_a_server_that_stays_away_is_a_clear_error_after_reconnect_for(server: PostgresServer) -> None:
    url = server.new_database()
    with Manifest.open(url, reconnect_for=1.5) as m:
        server.stop("fast")
        started = time.monotonic()
        with pytest.raises(ManifestUnavailable) as info:
            m.record_url("http://a.test/1.jpg", Outcome.DEAD, reason="404", attempts=1)
        waited = time.monotonic() - started
        assert info.value.message.startswith("PostgreSQL unavailable for 1.5 s: ")
        assert info.value.exit_code == EXIT_FAILED
        assert f"127.0.0.1:{server.port}" in info.value.message  # which manifest (no password)
        with pytest.raises(ManifestUnavailable):  # from then on: at once, not another wait
            m.url_states(["http://a.test/1.jpg"])
        assert time.monotonic() - started - waited < 1.5
