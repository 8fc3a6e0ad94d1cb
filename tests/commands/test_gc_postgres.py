"""`archiver gc` on a PostgreSQL manifest, against the real PostgreSQL the suite starts and the loopback origin: the
deletion and a later run archiving the image again, a gc killed mid-way and finished by the next, a real run and a
real `archiver worker` re-using an image at the moment gc planned to delete it (SIGSTOP, as in test_gc.py), a
recording transaction under way when a batch starts (the test holds the shared gc lock), a run started during a
batch, and `run --watch` (both backends). Each waits on conditions, never on sleeps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from archiver.cli import main
from archiver.manifest.connection import lock_note
from archiver.manifest.dialect import GC_BATCH_LOCK, GC_RUNNING_LOCK, WRITER_LOCK
from archiver.manifest.gc import WATCH
from archiver.manifest.sqlite import Manifest
from archiver.model import Outcome
from tests.commands.test_gc import Archive, _gc_process, _wait_stopped, gc, hexo, thumb
from tests.support.origin import Server
from tests.support.paths import ROOT_DIR
from tests.support.postgres import manifest_db
from tests.support.site import HEXO, sha
from tests.support.waiting import until

REUSED = "http://img.news.test/news/b.png?w=1&h=2"  # the URL hexo.md uses for b.png (archived by the first run)
FRESH = "http://img.news.test/news/b.png?from=new"  # the same bytes under a URL never recorded


@pytest.fixture
def pg(tmp_path: Path, origin: Server, site: dict[str, bytes], postgres_url: str,
       monkeypatch: pytest.MonkeyPatch) -> Archive:
    """The example site archived by `archiver run` into a local folder, the manifest in a fresh PostgreSQL
    database (ARCHIVER_MANIFEST_URL, inherited by the subprocesses too)."""
    monkeypatch.setenv("ARCHIVER_MANIFEST_URL", postgres_url)
    made = Archive(tmp_path, origin, None)
    made.url_of_manifest = postgres_url  # type: ignore[attr-defined]
    assert main(["run", "--config", str(made.config), "-q"]) == 0
    return made


def _count(url: str, sql: str) -> int:
    with manifest_db(url) as db:
        return int(db.execute(sql).fetchone()[0])  # type: ignore[attr-defined]


def test_gc_on_postgresql_deletes_an_unused_image_and_a_later_run_archives_it_again(
    tmp_path: Path, origin: Server, site: dict[str, bytes], pg: Archive, postgres_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    b = pg.key(site["/news/b.png"], "png")
    kept = [pg.key(site["/news/a.jpg"], "jpg"), pg.key(site["/assets/c.jpg"], "jpg")]
    hexo(tmp_path).unlink()
    capsys.readouterr()
    assert gc(pg, "--grace", "0", "--dry-run") == 0
    assert "would delete 2 objects of 1 image" in capsys.readouterr().out and pg.has(b)
    assert gc(pg, "--grace", "0") == 0
    out = capsys.readouterr().out
    assert "deleted 2 objects of 1 image" in out, out
    assert not pg.has(b) and not pg.has(thumb(b)) and all(pg.has(k) and pg.has(thumb(k)) for k in kept)
    assert _count(postgres_url, "SELECT COUNT(*) FROM urls WHERE url LIKE '%b.png%'") == 0
    assert _count(postgres_url, "SELECT COUNT(*) FROM gc_deletions") == 0
    assert _count(postgres_url, "SELECT value FROM counters WHERE name = 'gc'") == 1  # one batch counted
    assert main(["verify", "--config", str(pg.config), "-q"]) == 0
    assert gc(pg, "--grace", "0") == 0 and "nothing deleted" in capsys.readouterr().out

    hits = origin.hits("/news/b.png")
    hexo(tmp_path).write_bytes(HEXO.encode())
    assert main(["run", "--config", str(pg.config), "-q"]) == 0
    assert origin.hits("/news/b.png") == hits + 1  # fetched and stored again; the article points at it
    assert pg.has(b) and pg.has(thumb(b)) and pg.url(b).encode() in hexo(tmp_path).read_bytes()
    assert main(["verify", "--config", str(pg.config), "-q"]) == 0


def test_a_gc_killed_mid_way_on_postgresql_is_finished_by_the_next(
    tmp_path: Path, site: dict[str, bytes], pg: Archive, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    b = pg.key(site["/news/b.png"], "png")
    hexo(tmp_path).unlink()
    proc = _gc_process(pg.config, crash="gc-recorded:1")  # killed after the records went, before the store
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert pg.has(b) and _count(postgres_url, "SELECT COUNT(*) FROM gc_deletions") == 2
    assert main(["verify", "--config", str(pg.config), "-q"]) == 0  # no record of b: nothing lost
    capsys.readouterr()
    assert gc(pg, "--grace", "0") == 0  # its session (and locks) went with it: nothing to wait for
    assert "finished the deletion of 2 objects an interrupted gc left" in capsys.readouterr().out
    assert not pg.has(b) and not pg.has(thumb(b))

    # killed again; a run stores b again before the next gc, which must spare it
    hexo(tmp_path).write_bytes(HEXO.encode())
    assert main(["run", "--config", str(pg.config), "-q"]) == 0
    hexo(tmp_path).unlink()
    _gc_process(pg.config, crash="gc-recorded:1").communicate(timeout=120)
    hexo(tmp_path).write_bytes(HEXO.encode())
    assert main(["run", "--config", str(pg.config), "-q"]) == 0
    capsys.readouterr()
    assert gc(pg, "--grace", "0") == 0
    out = capsys.readouterr().out
    assert "finished the deletion" not in out and "nothing deleted" in out
    assert pg.has(b) and pg.has(thumb(b))
    assert _count(postgres_url, "SELECT COUNT(*) FROM gc_deletions") == 0
    assert main(["verify", "--config", str(pg.config), "-q"]) == 0


def test_a_gc_whose_connection_is_lost_mid_batch_deletes_nothing_more(
    tmp_path: Path, site: dict[str, bytes], pg: Archive, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its session's locks went with the connection: a worker could have proven b stored meanwhile, so the gc stops
    before the store deletes anything; the journal has the keys, and the next gc finishes them."""
    b = pg.key(site["/news/b.png"], "png")
    hexo(tmp_path).unlink()
    proc = _gc_process(pg.config, crash="gc-recorded:1:stop")  # records gone, objects not yet deleted
    try:
        _wait_stopped(proc)
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
                "CAST(classid AS BIGINT) = %s AND CAST(objid AS BIGINT) = %s",
                (GC_BATCH_LOCK >> 32, GC_BATCH_LOCK & 0xFFFF_FFFF)).fetchall()
            assert killed == [(True,)]
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, (out, err)
    assert "connection to PostgreSQL was lost during a batch" in out, out
    assert pg.has(b) and pg.has(thumb(b)) and _count(postgres_url, "SELECT COUNT(*) FROM gc_deletions") == 2
    assert main(["verify", "--config", str(pg.config), "-q"]) == 0
    capsys.readouterr()
    assert gc(pg, "--grace", "0") == 0
    assert "finished the deletion of 2 objects an interrupted gc left" in capsys.readouterr().out
    assert not pg.has(b) and not pg.has(thumb(b))


def test_a_gc_whose_connection_is_lost_while_the_store_deletes_marks_what_was_recorded_meanwhile(
    tmp_path: Path, site: dict[str, bytes], pg: Archive, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The session (and its locks) ends after gc checked it and before the store deleted: a run in that gap finds b's
    object still there, records it and points the article at it; gc then deletes it. gc must say so (exit 1) and
    mark the object missing, so `verify --repair` stores it again."""
    b = pg.key(site["/news/b.png"], "png")
    hexo(tmp_path).unlink()
    proc = _gc_process(pg.config, crash="gc-deleting:1:stop")  # records gone, intact() passed, nothing deleted yet
    try:
        _wait_stopped(proc)
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
                         "CAST(classid AS BIGINT) = %s AND CAST(objid AS BIGINT) = %s",
                         (GC_BATCH_LOCK >> 32, GC_BATCH_LOCK & 0xFFFF_FFFF))
        hexo(tmp_path).write_bytes(HEXO.encode())
        assert main(["run", "--config", str(pg.config), "-q"]) == 0  # b "already stored": its object is there
        assert pg.url(b).encode() in hexo(tmp_path).read_bytes()
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, (out, err)
    assert "2 deleted objects recorded again meanwhile are marked missing" in out, out
    assert not pg.has(b) and _count(postgres_url, "SELECT COUNT(*) FROM lost_objects") == 2
    # gc has exited, but the server ends its sessions (and their advisory locks) on its own time: on a loaded machine
    # verify could start first and be refused as "another archiver run is using this manifest" (twice in CI, with a
    # fuzzing job beside it); the writer lock must be free within a minute, or something still holds it
    def writer_lock_free() -> bool:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            got = conn.execute("SELECT pg_try_advisory_lock(%s)", (WRITER_LOCK,)).fetchone()
            if got and got[0]:
                conn.execute("SELECT pg_advisory_unlock(%s)", (WRITER_LOCK,))
                return True
            return False

    until(writer_lock_free, "the exited gc's sessions ended (the writer lock free)", timeout=60)
    assert main(["verify", "--config", str(pg.config), "-q", "--repair"]) == 0  # found missing and repaired
    assert pg.has(b) and pg.has(thumb(b))
    assert main(["verify", "--config", str(pg.config), "-q"]) == 0


def test_the_next_gc_marks_a_journalled_object_recorded_again_but_no_longer_stored(
    tmp_path: Path, site: dict[str, bytes], pg: Archive, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a gc that lost its locks while deleting, and could not say so (killed, or the server away for good),
    leaves: a journalled key a run recorded again, whose object is gone. The next gc marks it missing."""
    b = pg.key(site["/news/b.png"], "png")
    hexo(tmp_path).unlink()
    _gc_process(pg.config, crash="gc-recorded:1").communicate(timeout=120)  # journal written, nothing deleted
    hexo(tmp_path).write_bytes(HEXO.encode())
    assert main(["run", "--config", str(pg.config), "-q"]) == 0  # b recorded again: "already stored"
    for key in (b, thumb(b)):  # the late deletion of that gc
        (tmp_path / "archive" / key).unlink()
    capsys.readouterr()
    assert gc(pg, "--grace", "0") == 1
    assert "2 objects an interrupted gc deleted were recorded again meanwhile: marked missing" in \
        capsys.readouterr().out
    assert _count(postgres_url, "SELECT COUNT(*) FROM lost_objects") == 2
    assert _count(postgres_url, "SELECT COUNT(*) FROM gc_deletions") == 0
    assert main(["verify", "--config", str(pg.config), "-q", "--repair"]) == 0
    assert pg.has(b) and pg.has(thumb(b))
    assert main(["verify", "--config", str(pg.config), "-q"]) == 0


def test_a_run_that_reuses_an_image_gc_planned_to_delete_wins_on_postgresql(
    tmp_path: Path, origin: Server, site: dict[str, bytes], pg: Archive
) -> None:
    b = pg.key(site["/news/b.png"], "png")
    hexo(tmp_path).unlink()
    proc = _gc_process(pg.config, crash="gc-planned:1:stop")  # b planned for deletion; stopped there
    try:
        _wait_stopped(proc)
        new = tmp_path / "site" / "_posts" / "new.md"
        new.write_text(f"![b]({REUSED})\n", encoding="utf-8")
        hits = origin.hits("/news/b.png")
        assert main(["run", "--config", str(pg.config), "-q"]) == 0  # not refused: gc holds no lock yet
        assert pg.url(b) in new.read_text(encoding="utf-8") and origin.hits("/news/b.png") == hits
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "nothing deleted" in out and "1 image planned for deletion was found in use" in out, out
    assert pg.has(b) and pg.has(thumb(b))
    assert main(["verify", "--config", str(pg.config), "-q"]) == 0


def _worker(cfg: Path, crash: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "archiver", "worker", "--config", str(cfg), "--batch", "1"],
                            cwd=ROOT_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT_DIR), "ARCHIVER_CRASH_AT": crash})


def test_a_worker_that_found_an_image_stored_while_gc_deletes_it_stores_it_again(
    tmp_path: Path, origin: Server, site: dict[str, bytes], pg: Archive, postgres_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The worker decides "these bytes are already stored" (b is recorded), then is stopped; gc deletes b; the
    worker resumes: its record is refused under the shared lock (b is no longer recorded), and it fetches and
    stores b again before recording the URL. No URL record ever points at a deleted object."""
    b = pg.key(site["/news/b.png"], "png")
    hexo(tmp_path).unlink()  # nothing uses b
    worker = _worker(pg.config, "reused:1:stop")
    try:
        with Manifest.open(postgres_url, lock=False) as m:
            m.enqueue([REUSED])
        _wait_stopped(worker)  # fetched REUSED, found b recorded and complete: "already stored"
        hits = origin.hits("/news/b.png")
        capsys.readouterr()
        assert gc(pg, "--grace", "0") == 0  # the worker holds no lock: its URL is not recorded, nothing uses b
        assert "deleted 2 objects of 1 image" in capsys.readouterr().out
        assert not pg.has(b)
        os.kill(worker.pid, signal.SIGCONT)
        with Manifest.open(postgres_url, lock=False) as m:
            until(lambda: not list(m.queued()), "the worker completed the URL")
            state = m.url_states([REUSED])[REUSED]
            assert state.status == Outcome.ARCHIVED and state.asset == sha(site["/news/b.png"])
            assert m.asset(state.asset) is not None
    finally:
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGCONT)
            worker.send_signal(signal.SIGTERM)
        _out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert origin.hits("/news/b.png") == hits + 1  # fetched again: the bytes gc deleted are stored again
    assert pg.has(b) and pg.has(thumb(b))
    assert main(["verify", "--config", str(pg.config), "-q"]) == 0  # the URL's record has its objects


def _waiting_for(url: str, key: int) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND "
                            "CAST(classid AS BIGINT) = %s AND CAST(objid AS BIGINT) = %s",
                            (key >> 32, key & 0xFFFF_FFFF)).fetchone()[0] > 0


def test_a_worker_held_by_a_gc_batch_says_so(
    pg: Archive, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A gc suspended mid-batch (Ctrl-Z) holds every worker at its barrier: each says why it waits, not silence."""
    got: list[int | None] = []
    with Manifest.open(postgres_url, lock=False) as m, psycopg.connect(postgres_url, autocommit=True) as gc_conn:
        gc_conn.execute("SELECT pg_advisory_lock(%s)", (GC_BATCH_LOCK,))  # a batch under way
        barrier = threading.Thread(target=lambda: got.append(m.gc_barrier()))
        with caplog.at_level("WARNING", logger="archiver"):
            barrier.start()
            until(lambda: _waiting_for(postgres_url, GC_BATCH_LOCK), "the barrier waiting for the batch")
            gc_conn.execute("SELECT pg_advisory_unlock(%s)", (GC_BATCH_LOCK,))
            barrier.join(60)
    assert got and got[0] is not None
    assert "waiting for an archiver gc batch on this manifest to finish" in caplog.text


def test_a_gc_batch_waits_for_a_recording_under_way_and_then_sees_it(
    tmp_path: Path, site: dict[str, bytes], pg: Archive, postgres_url: str
) -> None:
    """A worker's recording transaction holds the gc lock shared (here the test's own, through the manifest's
    calls): the batch waits for its COMMIT, then re-checks and keeps what it recorded."""
    b = pg.key(site["/news/b.png"], "png")
    hexo(tmp_path).unlink()
    new = tmp_path / "site" / "_posts" / "new.md"
    new.write_text(f"![b]({FRESH})\n", encoding="utf-8")  # its URL not archived yet: b looks unused
    with Manifest.open(postgres_url, lock=False) as m:
        with m._tx() as db:  # as complete() does for a worker that found b stored
            m._gc_asset_holds(db, sha(site["/news/b.png"]))
            m._upsert_url(db, FRESH, Outcome.ARCHIVED, asset=sha(site["/news/b.png"]), attempts=1)
            proc = _gc_process(pg.config, crash="")
            until(lambda: _waiting_for(postgres_url, GC_BATCH_LOCK), "the gc batch waiting for the shared hold")
        out, err = proc.communicate(timeout=120)  # committed: the batch goes on
    assert proc.returncode == 0, err
    assert "nothing deleted" in out and "1 image planned for deletion was found in use" in out, out
    assert pg.has(b) and pg.has(thumb(b))
    assert main(["run", "--config", str(pg.config), "-q"]) == 0
    assert pg.url(b) in new.read_text(encoding="utf-8")
    assert main(["verify", "--config", str(pg.config), "-q"]) == 0


def test_a_run_started_during_a_gc_batch_on_postgresql_waits_for_it(pg: Archive, postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as gc_conn:
        gc_conn.execute("SELECT pg_advisory_lock(%s)", (GC_RUNNING_LOCK,))
        gc_conn.execute("SELECT pg_advisory_lock(%s)", (WRITER_LOCK,))  # as a gc batch holds it
        threading.Timer(1.0, gc_conn.execute, ("SELECT pg_advisory_unlock(%s)", (WRITER_LOCK,))).start()
        started = time.monotonic()
        assert main(["run", "--config", str(pg.config), "-q"]) == 0  # waited, then ran
        assert time.monotonic() - started >= 0.9
    with psycopg.connect(postgres_url, autocommit=True) as run_conn:
        run_conn.execute("SELECT pg_advisory_lock(%s)", (WRITER_LOCK,))  # another run, no gc: refused at once
        assert main(["run", "--config", str(pg.config), "-q"]) == 2


def test_gc_refuses_at_once_beside_a_watching_run(
    tmp_path: Path, origin: Server, site: dict[str, bytes], manifest_env: str | None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    made = Archive(tmp_path, origin, None)
    watch = subprocess.Popen([sys.executable, "-m", "archiver", "run", "--config", str(made.config), "--watch"],
                             cwd=ROOT_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT_DIR)})
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(watch.stdout), daemon=True).start()  # type: ignore[arg-type]
    try:
        path = tmp_path / ".archiver" / "manifest.sqlite3"

        def watching() -> bool:
            if manifest_env is None:
                return (lock_note(path) or "").startswith(WATCH)
            with psycopg.connect(manifest_env, autocommit=True) as conn:
                return conn.execute("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name LIKE %s",
                                    (WATCH + "%",)).fetchone()[0] > 0

        until(watching, "the watching run announced itself")
        until(lambda: any(line.startswith("watching ") for line in lines), "the first run done, watching")
        capsys.readouterr()
        assert gc(made, "--grace", "0") == 2
        err = capsys.readouterr().err
        assert "archiver run --watch" in err and "does not end" in err and "nothing deleted" in err, err
        assert gc(made, "--grace", "0", "--dry-run") == 0  # a dry run takes no lock
    finally:
        watch.send_signal(signal.SIGTERM)
        watch.wait(timeout=60)
    assert watch.returncode == 0
    assert gc(made, "--grace", "0") == 0  # the watch gone: gc goes on (a later run's note is not read)


def test_a_gc_started_as_another_ends_waits_a_moment_then_one_still_running_refuses_it(
    pg: Archive, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lock a gc holds from start to end is a session lock too: a killed gc's session ends a moment after its
    exit, so the next gc tries for LOCK_GRACE before saying another gc is using the manifest."""
    from archiver.manifest.postgres import LOCK_GRACE

    with psycopg.connect(postgres_url, autocommit=True) as holder:  # a gc ending
        assert holder.execute("SELECT pg_try_advisory_lock(%s)", (GC_RUNNING_LOCK,)).fetchone()[0]
        timer = threading.Timer(0.5, holder.close)
        timer.start()
        try:
            assert gc(pg, "--grace", "0") == 0
        finally:
            timer.join()
    capsys.readouterr()
    with psycopg.connect(postgres_url, autocommit=True) as holder:  # a gc at work
        assert holder.execute("SELECT pg_try_advisory_lock(%s)", (GC_RUNNING_LOCK,)).fetchone()[0]
        start = time.monotonic()
        assert gc(pg, "--grace", "0") != 0
        assert time.monotonic() - start >= LOCK_GRACE
    assert "another archiver gc is using this manifest" in capsys.readouterr().err
