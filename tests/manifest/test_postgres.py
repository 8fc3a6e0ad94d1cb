"""The manifest in PostgreSQL: what only it has (its schema's home, the advisory lock, connection errors), and
`migrate-manifest` between the two backends. The shared behaviour is proven by the tests parametrised over both."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from archiver.cli import main
from archiver.errors import ManifestError
from archiver.manifest import postgres
from archiver.manifest.copy import digest
from archiver.manifest.dialect import WRITER_LOCK
from archiver.manifest.postgres import LOCK_GRACE
from archiver.manifest.schema import MIGRATIONS, TABLES
from archiver.manifest.sqlite import Manifest
from archiver.model import ArticleReplacement, Asset, ImageFormat, Rendition
from tests.support.paths import ROOT_DIR
from tests.support.postgres import PostgresServer

JPEG = ImageFormat("jpeg", "image/jpeg", "jpg")
WEBP = ImageFormat("webp", "image/webp", "webp")


def _fill(m: Manifest) -> None:
    """A row in every table, with NULLs, floats, non-ASCII text and a replaced span."""
    a, b = "a" * 64, "b" * 64
    for sha, size in ((a, 1234), (b, 99)):
        m.record_asset(Asset(sha, JPEG, size, 640, 480, "f" * 16, "0" * 16, 1,
                             (Rendition(320, 320, 240, WEBP, b"x" * 10),), phash_variants=("f" * 16,) * 8,
                             dhash_variants=("0" * 16,) * 8, grey="00" * 64, colours=0, chroma=1 / 3),
                       f"{sha}.jpg", [f"{sha}-320w.webp"])
    m.record_url("https://x/1.jpg", "archived", asset=a, attempts=1, etag='"e"', final_url="https://x/1.jpg")
    m.record_url("https://x/ü.jpg?token=hunter2", "archived", asset=b, attempts=2)
    m.record_url("https://x/gone.jpg", "dead", reason="404 Not Found", http_status=404, attempts=1)
    m.record_rejections([("ftp://x/y.jpg", "not http", "scheme", "s1")])
    m.record_article("/site/p.md", "c" * 64, "d" * 64, [ArticleReplacement(3, 9, "old", "new", "https://x/1.jpg")])
    m.record_pair_search([(a, b, 3, 9, "rot90", 4.5, 7)], [a, b], 8, 1)
    m.intend_rewrite("/site/q.md", "e" * 64, "f" * 64, [[ArticleReplacement(0, 1, "o", "n", "https://x/1.jpg")]],
                     "archive")
    from archiver.manifest.rows import LostObject

    m.mark_lost([LostObject(f"{b}-320w.webp", b, "missing", "404")])
    m.record_settled([("9" * 64, 3)], "fp")
    m.record_article(os.fsdecode(b"/site/caf\xe9.md"), "1" * 64, "2" * 64,
                     [ArticleReplacement(0, 4, "http", "/archive/x", "https://x/1.jpg")])
    m.enqueue(["https://x/queued.jpg"])


def _digests(target: Path | str) -> dict[str, object]:
    with Manifest.open(target, lock=False) as m:
        return {t: digest(m._db, t, sorted(d[0] for d in m._db.execute(f"SELECT * FROM {t} LIMIT 0").description))
                for t in TABLES}


def _dump(path: Path) -> dict[str, list[tuple]]:
    db = sqlite3.connect(path)
    out = {}
    for t in TABLES:
        cols = sorted(r[1] for r in db.execute(f"PRAGMA table_info({t})"))
        out[t] = sorted(db.execute(f"SELECT {', '.join(repr(c) for c in cols)} FROM {t}").fetchall(), key=repr)
    return out


def test_migrate_manifest_round_trip_sqlite_postgresql_sqlite_gives_equal_contents(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first, back = tmp_path / "first.sqlite3", tmp_path / "back.sqlite3"
    with Manifest.open(first) as m:
        _fill(m)
    assert main(["migrate-manifest", "--from", str(first), "--to", postgres_url]) == 0
    out = capsys.readouterr().out
    assert "verified: every table's row count and checksum are equal" in out and "urls 4" in out and "queue 1" in out
    assert _digests(postgres_url) == _digests(first)
    with Manifest.open_readonly(postgres_url) as pg, Manifest.open_readonly(first) as lite:
        assert pg.counts() == lite.counts()
        assert pg.article_generations("/site/p.md") == lite.article_generations("/site/p.md")
        assert pg.asset_rows() == lite.asset_rows() and pg.pending_rewrites() == lite.pending_rewrites()
        assert list(pg.exported_assets()) == list(lite.exported_assets())
        assert pg.rewritten_articles() == lite.rewritten_articles()  # a Latin-1 file name among them
        latin1 = os.fsdecode(b"/site/caf\xe9.md")
        assert pg.article_generations(latin1) == lite.article_generations(latin1) != []

    assert main(["migrate-manifest", "--from", postgres_url, "--to", str(back)]) == 0
    assert _dump(back) == _dump(first)
    with Manifest.open(back) as m:  # the copy goes on working: a new asset gets the next id
        m.record_asset(Asset("c" * 64, JPEG, 5, 8, 8, "f" * 16, "0" * 16, phash_variants=("f" * 16,) * 8,
                             dhash_variants=("0" * 16,) * 8), "c.jpg", [])
        assert [r.rowid for r in m.unsearched(8, 1)] == [3]


def test_migrate_manifest_refuses_a_source_live_workers_are_writing_to(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Workers record without the writer's lock the copy holds: their later results would be in the source only."""
    with Manifest.open(postgres_url) as m:
        _fill(m)
        m.heartbeat("db1:42:abc", "db1", 42, held=3, done=7)
    target = tmp_path / "copy.sqlite3"
    assert main(["migrate-manifest", "--from", postgres_url, "--to", str(target)]) == 2
    err = capsys.readouterr().err
    assert "1 `archiver worker` process(es) are working on it (db1 pid 42)" in err and "Traceback" not in err, err
    with Manifest.open(postgres_url) as m:
        m.remove_worker("db1:42:abc")  # stopped: the copy goes ahead
    assert main(["migrate-manifest", "--from", postgres_url, "--to", str(target)]) == 0


def test_migrate_manifest_refuses_a_target_holding_a_manifest_unless_replace(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first = tmp_path / "first.sqlite3"
    with Manifest.open(first) as m:
        _fill(m)
    with Manifest.open(postgres_url) as m:
        m.record_url("https://other/1.jpg", "dead")
    assert main(["migrate-manifest", "--from", str(first), "--to", postgres_url]) == 2
    err = capsys.readouterr().err
    assert "already holds a manifest (urls not empty); --replace" in err and "Traceback" not in err
    with Manifest.open_readonly(postgres_url) as m:
        assert m.counts()["dead"] == 1  # untouched
    assert main(["migrate-manifest", "--from", str(first), "--to", postgres_url, "--replace"]) == 0
    assert _digests(postgres_url) == _digests(first)


def test_an_unreachable_server_is_one_line_without_the_password(
    tmp_path: Path, postgres_server: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server not there is waited for ([manifest] reconnect_for, as a lost connection is), said once, then one line,
    exit 1 (a re-run may work); one that answers and refuses (no such database) is an error at once."""
    (tmp_path / "archiver.toml").write_text(
        '[manifest]\nurl = "postgresql://archiver:s3cret@127.0.0.1:1/nowhere"\nreconnect_for = 1\n', encoding="utf-8")
    assert main(["status", "--config", str(tmp_path / "archiver.toml")]) == 1
    err = capsys.readouterr().err
    assert "s3cret" not in err and "Traceback" not in err
    waiting, final = err.strip().splitlines()
    assert "PostgreSQL not reachable" in waiting and "waiting for up to 1 s" in waiting
    assert "PostgreSQL unavailable for 1 s" in final and "cannot open manifest" in final
    url = postgres_server.url("nosuchdb", password="s3cret")
    with pytest.raises(ManifestError) as caught:
        Manifest.open(url)
    assert "s3cret" not in caught.value.message and "nosuchdb" in caught.value.message


def test_the_environment_url_wins_and_a_bad_one_is_named(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with Manifest.open(postgres_url) as m:
        m.record_url("https://x/gone.jpg", "dead")
    monkeypatch.setenv("ARCHIVER_MANIFEST_URL", postgres_url)
    (tmp_path / "archiver.toml").write_text('[manifest]\nurl = "postgresql://elsewhere/x"\n', encoding="utf-8")
    assert main(["status", "--config", str(tmp_path / "archiver.toml")]) == 0
    assert "0 archived, 1 dead" in capsys.readouterr().out
    monkeypatch.setenv("ARCHIVER_MANIFEST_URL", "mysql://x/y")
    assert main(["status", "--config", str(tmp_path / "archiver.toml")]) == 2
    assert "ARCHIVER_MANIFEST_URL: 'mysql://x/y' is not a PostgreSQL URL" in capsys.readouterr().err
    monkeypatch.setenv("ARCHIVER_MANIFEST_URL", "host=db.internal user=archiver password=s3cr3t-pw")  # libpq's form
    assert main(["status", "--config", str(tmp_path / "archiver.toml")]) == 2
    err = capsys.readouterr().err
    assert "ARCHIVER_MANIFEST_URL: is not a PostgreSQL URL" in err and "s3cr3t" not in err, err
    monkeypatch.delenv("ARCHIVER_MANIFEST_URL")
    (tmp_path / "archiver.toml").write_text('[manifest]\nurl = "sqlite:///x"\n', encoding="utf-8")
    assert main(["status", "--config", str(tmp_path / "archiver.toml")]) == 2
    assert "[manifest] url: is not a PostgreSQL URL" in capsys.readouterr().err


def test_schema_version_newer_schema_and_a_foreign_database(postgres_server: PostgresServer) -> None:
    url = postgres_server.new_database()
    Manifest.open(url).close()
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM archiver_schema").fetchone()[0] == len(MIGRATIONS)
        tables = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
        assert tables == set(TABLES) | {"archiver_schema"}  # TABLES names every table
        conn.execute(f"UPDATE archiver_schema SET version = {len(MIGRATIONS) + 1}")
    with pytest.raises(ManifestError, match="newer than this archiver"):
        Manifest.open(url)
    other = postgres_server.new_database()
    with psycopg.connect(other, autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (id int)")
    with pytest.raises(ManifestError, match=r"not an archiver manifest .*\[manifest\] url"):
        Manifest.open(other)


def test_sqlite_tables_are_the_same_list(tmp_path: Path) -> None:
    with Manifest.open(tmp_path / "m.sqlite3") as m:
        assert m._db.dialect.tables(m._db) == set(TABLES)


def test_the_writer_lock_is_released_when_a_run_dies(postgres_url: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from archiver.manifest.sqlite import Manifest; "
         "m = Manifest.open(sys.argv[1]); print('open', flush=True); time.sleep(60)", postgres_url],
        cwd=ROOT_DIR, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(ManifestError, match="another archiver run"):
            Manifest.open(postgres_url)
        with Manifest.open_readonly(postgres_url) as m:  # readers never wait
            assert m.counts()["archived"] == 0
    finally:
        holder.kill()
        holder.wait()
    for _ in range(50):  # the server notices the closed session at once; give it a moment
        try:
            Manifest.open(postgres_url).close()
            break
        except ManifestError:
            time.sleep(0.1)
    else:
        pytest.fail("the lock of a killed run was not released")


def test_a_closed_manifest_has_released_the_writer_lock_when_close_returns(postgres_url: str) -> None:
    """`archiver gc && archiver verify --repair`: the second command must not meet the first one's lock, which the
    server would otherwise release only when the first one's session ends, a moment after it closed."""
    Manifest.open(postgres_url).close()  # the schema made
    with psycopg.connect(postgres_url, autocommit=True) as other:
        for _ in range(100):  # closing alone left the lock held after ~8 % of closes
            conn = postgres.connect(postgres_url)
            postgres.take_lock(conn)
            conn.close()
            assert other.execute("SELECT pg_try_advisory_lock(%s)", (WRITER_LOCK,)).fetchone()[0]
            other.execute("SELECT pg_advisory_unlock(%s)", (WRITER_LOCK,))


def test_the_locks_are_released_on_close_after_a_failed_transaction(postgres_url: str) -> None:
    """A failed transaction refuses every statement until it is rolled back: close() rolls it back first, else the
    lock would again be released only when the session ends."""
    Manifest.open(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as other:
        for _ in range(20):
            conn = postgres.connect(postgres_url)
            postgres.take_lock(conn)
            conn._raw.execute("BEGIN")
            with pytest.raises(psycopg.errors.DivisionByZero):
                conn._raw.execute("SELECT 1/0")
            conn.close()
            assert other.execute("SELECT pg_try_advisory_lock(%s)", (WRITER_LOCK,)).fetchone()[0]
            other.execute("SELECT pg_advisory_unlock(%s)", (WRITER_LOCK,))


def test_close_does_not_wait_for_a_server_that_stopped_answering(postgres_url: str) -> None:
    """A network cut or a frozen server after the work is done: close() waits CLOSE_WAIT for the locks' release at
    most, then closes (the session, and its locks, end on the server's side), instead of a statement waiting for TCP
    to give up (~15 min). A loopback proxy that stops forwarding, both sockets left open, stands for the cut."""
    silent = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    port = int(postgres_url.rsplit(":", 1)[1].split("/", 1)[0])

    def pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if not silent.is_set():
                    dst.sendall(data)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = listener.accept()
                server = socket.create_connection(("127.0.0.1", port))
                for a, b in ((client, server), (server, client)):
                    threading.Thread(target=pump, args=(a, b), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        conn = postgres.connect(postgres_url.replace(f":{port}/", f":{listener.getsockname()[1]}/"))
        postgres.take_lock(conn)
        silent.set()
        start = time.monotonic()
        conn.close()
        assert time.monotonic() - start < postgres.CLOSE_WAIT + 2
    finally:
        listener.close()


def test_a_run_waits_a_moment_for_a_lock_that_is_being_released(postgres_url: str) -> None:
    """A run that has just ended or been killed holds the writer lock until the server has ended its session: the
    next run tries again for a moment (LOCK_GRACE) before saying another run is using the manifest."""
    with psycopg.connect(postgres_url, autocommit=True) as holder:
        assert holder.execute("SELECT pg_try_advisory_lock(%s)", (WRITER_LOCK,)).fetchone()[0]
        timer = threading.Timer(0.5, holder.close)
        timer.start()
        try:
            Manifest.open(postgres_url).close()  # not refused
        finally:
            timer.join()
    with psycopg.connect(postgres_url, autocommit=True) as holder:
        assert holder.execute("SELECT pg_try_advisory_lock(%s)", (WRITER_LOCK,)).fetchone()[0]
        start = time.monotonic()
        with pytest.raises(ManifestError, match="another archiver run is using this manifest"):
            Manifest.open(postgres_url)
        assert LOCK_GRACE <= time.monotonic() - start < LOCK_GRACE + 5  # refused once the moment has passed


def test_a_missing_psycopg_is_one_line_saying_what_to_install(tmp_path: Path, postgres_url: str) -> None:
    code = ("import sys; sys.modules['psycopg'] = None; from archiver.cli import main; "
            "sys.exit(main(['status', '--config', sys.argv[1]]))")
    (tmp_path / "archiver.toml").write_text(f'[manifest]\nurl = "{postgres_url}"\n', encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "archiver.toml")], cwd=ROOT_DIR,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "pip install -e '.[postgres]' in the checkout" in done.stderr and "Traceback" not in done.stderr
