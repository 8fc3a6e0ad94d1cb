"""Opening a manifest in PostgreSQL (``[manifest] url``): a connection that speaks the manifest's SQL and whose errors
name the manifest (its password hidden), and the one writer's lock as a session advisory lock.

The connection outlives its server's restarts. A statement that meets a lost connection (the server restarted,
failed over, or killed our session) is run again on a new connection, waited for with backoff for up to
``[manifest] reconnect_for`` seconds (one log line when the connection is lost, one when it is back; past the limit,
``ManifestUnavailable``, exit 1, and from then on each statement tries once and fails at once). What is run again:

- a read outside a transaction: simply again (every write of the manifest is inside a transaction);
- a transaction cut before its COMMIT (the server rolled it back): its statements again, in order, on the new
  connection, each checked to return what it returned the first time (the rows and the row count), so the
  transaction the caller built from those answers is exactly the one replayed; an answer that changed meanwhile
  (another worker wrote) ends it with a ManifestError instead (rolled back, nothing half-done);
- a COMMIT whose answer was lost: its outcome is asked, never guessed (each transaction notes its id,
  ``txid_current()``, in the round trip of its BEGIN; ``txid_status`` tells after reconnecting whether it
  committed): committed, done; aborted, replayed as above. Nothing is applied twice, idempotent or not (the URL
  rows add up ``attempts``; a queue claim raises its token).

The writer's advisory lock ends with its session: it is taken again on the new connection before anything else, and
if another session holds it by then (another run started meanwhile), the manifest is refused with a ManifestError.

Imported only when a PostgreSQL URL is configured: the embedded SQLite default never loads psycopg.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import random
import select
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from archiver.config import ManifestConfig
from archiver.errors import ConfigError, ManifestError, ManifestUnavailable
from archiver.manifest.dialect import GC_RUNNING_LOCK, POSTGRES, WRITER_LOCK, postgres_query
from archiver.manifest.rows import text_of_bytes
from archiver.redaction import redact, redact_text

try:
    import psycopg
except ImportError as exc:  # pragma: no cover - exercised by a test that hides the package
    psycopg = None  # type: ignore[assignment]
    _MISSING: ImportError | None = exc
else:
    _MISSING = None

log = logging.getLogger("archiver")

CONNECT_TIMEOUT = 10  # seconds
RECONNECT_FOR = ManifestConfig().reconnect_for
BACKOFF_FIRST, BACKOFF_MAX = 0.05, 2.0  # seconds between connection attempts: doubling, with jitter
# a session ended by the server (shutdown, crash recovery, pg_terminate_backend), or a server not accepting yet
_LOST_STATES = frozenset({"57P01", "57P02", "57P03"})
CLOSE_WAIT = 1.0  # seconds close() waits for the server to release the session's locks
LOCK_GRACE = 2.0  # seconds the writer's lock is tried again before a run is refused: an ending session's moment
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}


def shown(url: str) -> str:
    """The URL as messages show it: no password, no secret query value."""
    return redact(url)


def local_index_folder(where: str, database: str) -> Path | None:
    """This machine's folder for the on-disk indexes of the PostgreSQL manifest ``where`` (its URL as messages show
    it), whose database is ``database`` (``PgConnection.database``: host, port and name as the connection resolved
    them, so the user, the password and options, in the URL or in the environment, do not matter):
    ``$XDG_CACHE_HOME/archiver/pg-<16 hex digits of database>.index`` (``~/.cache`` when XDG_CACHE_HOME is unset or
    not absolute). Only the process holding the manifest's writer lock searches, so one
    process at a time writes it, whichever machine it runs on; an index another machine's searcher left stale (the
    manifest records which generation is current) is rebuilt, with a log line. None, with a warning, when no such
    folder can be made: the search then builds its index in memory."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    try:
        root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
        folder = root / "archiver" / f"pg-{hashlib.sha256(database.encode()).hexdigest()[:16]}.index"
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError, KeyError) as exc:
        if where not in _NO_INDEX_FOLDER:  # said once per process, not at every search
            _NO_INDEX_FOLDER.add(where)
            log.warning("%s: no local folder for its near-duplicate index (%s); searching with one built in memory",
                        where, exc)
        return None
    return folder


_NO_INDEX_FOLDER: set[str] = set()


def _message(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return redact_text(text[0] if text else type(exc).__name__)


def _params(parameters: Sequence[object]) -> tuple[object, ...]:
    """Bytes (an article path that is not UTF-8: rows.stored_path) as the text PostgreSQL's TEXT columns can hold."""
    return tuple(text_of_bytes(p) if isinstance(p, bytes) else p for p in parameters)


class _Step(NamedTuple):
    """One statement of the open transaction, with what it answered (to replay it, and check the replay)."""

    kind: str  # execute | executemany | script
    sql: str
    params: Any
    answer: tuple[int, list[Any] | None]  # row count, rows (None: the statement returns no rows)


class _Replay(Exception):
    """The connection was lost in a transaction and the transaction was replayed on a new one: run the statement
    that failed again."""


def _answer(cur: Any) -> tuple[int, list[Any] | None]:
    if cur is None or cur.description is None:
        return (cur.rowcount if cur is not None else -1), None
    rows = cur.fetchall()
    if rows:
        cur.scroll(0, "absolute")  # the caller reads them as if we had not
    return cur.rowcount, rows


class PgConnection:
    """The calls the manifest makes on a sqlite3 connection (``execute``, ``executemany``, ``executescript``), on one
    psycopg connection in autocommit mode (the manifest begins and ends its own transactions, which this class
    sees: ``BEGIN``, ``COMMIT`` and ``ROLLBACK`` go through ``execute``), reconnecting as the module says."""

    dialect = POSTGRES

    def __init__(self, raw: Any, where: str, url: str = "", reconnect_for: float | None = None) -> None:
        self._raw = raw
        info = getattr(raw, "info", None)  # the database as the connection resolved it (URL, environment, defaults)
        self.database = f"{info.host}:{info.port}/{info.dbname}" if info is not None else where
        self.where = where
        self.url = url
        self.reconnect_for = RECONNECT_FOR if reconnect_for is None else reconnect_for
        self._lock = threading.RLock()
        self._journal: list[_Step] | None = None  # in a transaction: its statements so far
        self._xid: int | None = None
        self._owner: int | None = None  # the thread whose transaction it is (others' reads are not part of it)
        self._writer = False  # holds the writer's advisory lock
        self._gave_up = False
        self.application_name = "archiver"  # as pg_stat_activity shows the session (`run --watch` says so: gc reads it)
        self.reconnects = 0  # new connections so far: a session lock taken before a change of this is gone

    # -- the sqlite3-like calls ------------------------------------------------------------------
    def execute(self, sql: str, parameters: Sequence[object] = (), /) -> Any:
        with self._lock:
            head = sql.lstrip()[:8].upper()
            if head.startswith("BEGIN"):
                return self._begin()
            if head.startswith("COMMIT"):
                self._commit()
                return None
            if head.startswith("ROLLBACK"):
                self._rollback()
                return None
            if self._journal is None and not head.startswith("SELECT"):  # a write alone: its own transaction
                self._begin()
                try:
                    cur = self._statement("execute", sql, _params(parameters))
                except BaseException:
                    self._rollback()
                    raise
                self._commit()
                return cur
            return self._statement("execute", sql, _params(parameters))

    def executemany(self, sql: str, parameters: Iterable[Sequence[object]], /) -> Any:
        rows = [_params(p) for p in parameters]
        with self._lock:
            if self._journal is None:
                self._begin()
                try:
                    cur = self._statement("executemany", sql, rows)
                except BaseException:
                    self._rollback()
                    raise
                self._commit()
                return cur
            return self._statement("executemany", sql, rows)

    def executescript(self, script: str) -> None:
        with self._lock:
            self._statement("script", script, None)

    def close(self) -> None:
        """The session's advisory locks released in a statement the server answers (``_release_locks``), then the
        connection closed. Closing alone lets the server release them when the session's backend exits, a moment
        later: the next command, started at once (`archiver gc && archiver verify`), could still find the writer's
        lock held."""
        with self._lock:
            try:
                if not self._gave_up and not self._raw.closed and not self._raw.broken:
                    _release_locks(self._raw.pgconn, CLOSE_WAIT)
            except (psycopg.Error, OSError, ValueError):
                pass  # a session already gone holds nothing
            finally:
                self._raw.close()

    def take_writer_lock(self) -> bool:
        """The session advisory lock of the one writing run (taken again after a reconnect)."""
        with self._lock:
            got = bool(self._statement("execute", "SELECT pg_try_advisory_lock(?)", (WRITER_LOCK,)).fetchone()[0])
            self._writer = got
            return got

    def name_session(self, name: str) -> None:
        """The session's ``application_name`` (kept across reconnects): how another process sees who holds a lock."""
        with self._lock:
            self.application_name = name
            self._statement("execute", "SELECT set_config('application_name', ?, false)", (name,))

    # -- statements and transactions ---------------------------------------------------------------
    def _run(self, kind: str, sql: str, params: Any) -> Any:
        if kind == "script":
            return self._raw.execute(sql)
        cur = self._raw.cursor()
        if kind == "executemany":
            if params:
                cur.executemany(postgres_query(sql), params)
        else:
            cur.execute(postgres_query(sql), params)
        return cur

    def _statement(self, kind: str, sql: str, params: Any) -> Any:
        while True:
            try:
                cur = self._run(kind, sql, params)
            except psycopg.Error as exc:
                if not self._is_lost(exc):
                    raise ManifestError(f"{self.where}: {_message(exc)}") from exc
                self._recover(exc)
                continue
            if self._journal is not None and self._owner == threading.get_ident():
                self._journal.append(_Step(kind, sql, params, _answer(cur)))
            return cur

    def _begin(self) -> Any:
        if self._journal is not None:
            raise ManifestError(f"{self.where}: a transaction is already open")
        while True:
            try:
                cur = self._raw.execute("BEGIN; SELECT txid_current()")
                cur.nextset()
                self._xid = int(cur.fetchone()[0])
                break
            except psycopg.Error as exc:
                if not self._is_lost(exc):
                    raise ManifestError(f"{self.where}: {_message(exc)}") from exc
                self._reconnect(exc)
        self._journal = []
        self._owner = threading.get_ident()
        return cur

    def _end(self) -> None:
        self._journal = self._xid = self._owner = None

    def _rollback(self) -> None:
        if self._journal is None:
            return
        try:
            self._raw.execute("ROLLBACK")
        except psycopg.Error as exc:
            if not self._is_lost(exc):
                raise ManifestError(f"{self.where}: {_message(exc)}") from exc
            # the server rolled it back with the session; the next statement reconnects
        finally:
            self._end()

    def _commit(self) -> None:
        if self._journal is None:
            return
        while True:
            try:
                self._raw.execute("COMMIT", prepare=False)  # its text on the wire (tests cut it there)
                self._end()
                return
            except psycopg.Error as exc:
                if not self._is_lost(exc):
                    self._end()  # the server ended it (rolled back)
                    raise ManifestError(f"{self.where}: {_message(exc)}") from exc
                error = exc
            # the answer to COMMIT was lost: ask what became of the transaction
            xid, journal, owner = self._xid, self._journal, self._owner
            self._end()
            status = self._outcome(error, xid)
            if status == "committed":
                log.info("%s: the transaction interrupted at its COMMIT had committed", self.where)
                return
            assert owner is not None
            self._replay(journal, owner)  # it never committed: again, from its first statement

    def _outcome(self, error: BaseException, xid: int | None) -> str | None:
        """What became of transaction ``xid`` whose COMMIT met a lost connection: committed, aborted or None."""
        deadline = time.monotonic() + self.reconnect_for
        while True:
            self._reconnect(error)
            try:
                status = self._raw.execute("SELECT txid_status(%s)", (xid,)).fetchone()[0]
            except psycopg.Error as exc:
                if not self._is_lost(exc):
                    raise ManifestError(f"{self.where}: {_message(exc)}") from exc
                error = exc
                continue
            if status != "in progress":
                return status  # type: ignore[no-any-return]
            if time.monotonic() > deadline:  # our old session lives on, cut off from us: the server ends it later
                raise ManifestUnavailable(f"PostgreSQL unavailable for {self.reconnect_for:g} s: {self.where}: the "
                                          "outcome of an interrupted transaction is still unknown")
            time.sleep(0.1)

    def _recover(self, exc: BaseException) -> None:
        """After a statement met a lost connection: a new connection and, in a transaction, the transaction so far
        replayed on it."""
        journal, owner = self._journal, self._owner  # (another thread's read may be what met the loss)
        self._end()
        self._reconnect(exc)
        if journal is not None and owner is not None:
            self._replay(journal, owner)

    def _replay(self, journal: list[_Step], owner: int) -> None:
        """Open a transaction of thread ``owner`` on the (new) connection and run ``journal`` in it, each answer
        checked."""
        self._begin()
        self._owner = owner
        for step in journal:
            try:
                cur = self._run(step.kind, step.sql, step.params)
            except psycopg.Error as exc:
                if self._is_lost(exc):  # lost again: start over on the next connection
                    self._end()
                    self._reconnect(exc)
                    self._replay(journal, owner)
                    return
                self._rollback()
                raise ManifestError(f"{self.where}: {_message(exc)} (replaying a transaction the lost connection "
                                    "interrupted)") from exc
            if _answer(cur) != step.answer:
                self._rollback()
                raise ManifestError(f"{self.where}: a transaction the lost connection interrupted could not be "
                                    "replayed: what it read had changed meanwhile (nothing of it was recorded)")
            assert self._journal is not None
            self._journal.append(step)

    # -- the connection ------------------------------------------------------------------------------
    def _is_lost(self, exc: BaseException) -> bool:
        raw = self._raw
        if getattr(raw, "closed", False) or getattr(raw, "broken", False):
            return True
        state = getattr(exc, "sqlstate", None) or ""
        return state.startswith("08") or state in _LOST_STATES

    def _reconnect(self, exc: BaseException) -> None:
        """A new connection (the writer's lock taken again), waiting for the server up to ``reconnect_for``."""
        start = time.monotonic()
        if not self._gave_up:
            log.warning("%s: PostgreSQL connection lost (%s); reconnecting for up to %g s", self.where,
                        _message(exc), self.reconnect_for)
        delay, last = BACKOFF_FIRST, exc
        while True:
            left = self.reconnect_for - (time.monotonic() - start)
            try:
                raw = psycopg.connect(self.url, autocommit=True, application_name=self.application_name,
                                      connect_timeout=max(2, min(CONNECT_TIMEOUT, math.ceil(left))), **_KEEPALIVES)
            except psycopg.Error as again:
                last = again
            else:
                if not self._writer or self._retake_lock(raw, start):
                    break
                raw.close()
                raise ManifestError(f"{self.where}: another archiver run took this manifest while the connection "
                                    "to PostgreSQL was lost; this one stops")
            if self._gave_up or time.monotonic() - start >= self.reconnect_for:
                self._gave_up = True
                raise ManifestUnavailable(f"PostgreSQL unavailable for {self.reconnect_for:g} s: {self.where}: "
                                          f"{_message(last)}") from None
            time.sleep(max(0.0, min(delay * random.uniform(0.5, 1.0), self.reconnect_for - (time.monotonic() - start))))
            delay = min(BACKOFF_MAX, delay * 2)
        with contextlib.suppress(Exception):  # it is gone either way
            self._raw.close()
        self._raw = raw
        self._gave_up = False
        self.reconnects += 1
        log.warning("%s: PostgreSQL connection back after %.1f s", self.where, time.monotonic() - start)

    def _retake_lock(self, raw: Any, start: float) -> bool:
        """The writer's lock on the new connection; our old session may still hold it for a moment (a connection
        cut without the server noticing yet): tried again until ``reconnect_for`` has passed."""
        return taken_within(lambda: bool(raw.execute("SELECT pg_try_advisory_lock(%s)", (WRITER_LOCK,)).fetchone()[0]),
                            start + self.reconnect_for, pause=0.2)


def taken_within(take: Callable[[], bool], deadline: float, pause: float = 0.05) -> bool:
    """``take()`` (a try for a session lock) tried until it succeeds, every ``pause`` seconds, and at least once;
    False once ``time.monotonic()`` has reached ``deadline``: a lock an ending session still holds is given the
    moment it takes the server to end it."""
    while not take():
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
    return True


_NOT_READY = ("the database system is starting up", "the database system is shutting down",
              "the database system is in recovery mode", "the database system is not yet accepting connections",
              "too many clients already", "remaining connection slots are reserved")


def _not_there(exc: BaseException) -> bool:
    """Whether a failed connection met no server (refused, timed out, no route, a name not resolved) or one not ready
    (starting, stopping, full) rather than a server that answered and refused (a password, a database that does not
    exist: its message carries the server's FATAL). libpq gives no SQLSTATE for these, so the message decides."""
    text = str(exc)
    return "FATAL:" not in text or any(phrase in text for phrase in _NOT_READY)


def connect(url: str, *, reconnect_for: float | None = None) -> PgConnection:
    """A connection to the manifest's database; ConfigError (exit 2) without psycopg, ManifestError when the server
    cannot be reached or refuses us."""
    where = shown(url)
    if psycopg is None:
        raise ConfigError(
            f"{where}: a PostgreSQL manifest needs psycopg, which is not installed: pip install -e '.[postgres]' in "
            "the checkout (or pip install 'psycopg[binary]' psycopg_pool)"
        ) from _MISSING
    wait = RECONNECT_FOR if reconnect_for is None else reconnect_for
    start, delay, said = time.monotonic(), BACKOFF_FIRST, False
    while True:
        left = wait - (time.monotonic() - start)
        try:
            raw = psycopg.connect(url, autocommit=True, connect_timeout=max(2, min(CONNECT_TIMEOUT, math.ceil(left))),
                                  application_name="archiver", **_KEEPALIVES)
            break
        except psycopg.Error as exc:
            # a server that is not there (yet: restarting, failing over) is waited for, as a lost connection is;
            # one that answers and refuses (a password, a database that does not exist) is an error at once
            if not _not_there(exc):
                raise ManifestError(f"{where}: cannot open manifest: {_message(exc)}") from None
            if time.monotonic() - start >= wait:
                raise ManifestUnavailable(f"PostgreSQL unavailable for {wait:g} s: {where}: cannot open manifest: "
                                          f"{_message(exc)}") from None
            if not said:
                said = True
                log.warning("%s: PostgreSQL not reachable (%s); waiting for up to %g s", where, _message(exc), wait)
        except Exception as exc:  # a URL libpq cannot parse
            raise ConfigError(f"[manifest] url: {where}: {_message(exc)}") from None
        time.sleep(max(0.0, min(delay * random.uniform(0.5, 1.0), wait - (time.monotonic() - start))))
        delay = min(BACKOFF_MAX, delay * 2)
    if said:
        log.warning("%s: PostgreSQL reachable after %.1f s", where, time.monotonic() - start)
    return PgConnection(raw, where, url, reconnect_for)


def _release_locks(pgconn: Any, wait: float) -> None:
    """The session's advisory locks released (after a rollback: a failed transaction refuses every statement), the
    answer waited for ``wait`` seconds at most: a server that stopped answering (a network cut, a frozen host) must
    not hold a finished command at its exit, where a blocking statement would wait for TCP to give up (~15 min).
    Sent on the connection's own socket, without psycopg's blocking wait; the connection is closed next."""
    deadline = time.monotonic() + wait
    pgconn.nonblocking = 1
    pgconn.send_query(b"ROLLBACK; SELECT pg_advisory_unlock_all()")
    while pgconn.flush():  # the rest of the query still to send (the socket's buffer full)
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([], [pgconn.socket], [], left)[1]:
            return
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            break
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([pgconn.socket], [], [], left)[0]:
            return  # no answer in time: closing ends the session all the same, a moment later
    while pgconn.get_result() is not None:
        pass


def take_lock(conn: PgConnection) -> None:
    """The one writing run: a session advisory lock, released when the connection closes (a killed run's session
    ends with its connection, so a crash never leaves the manifest locked). Held by `archiver gc` (which takes it
    for one short batch of deletions at a time, while it holds GC_RUNNING_LOCK): waited for, up to GC_BATCH_WAIT
    seconds, as with a SQLite manifest; held by another run: ManifestError after LOCK_GRACE seconds (a run that
    has just ended or been killed holds it until the server has ended its session, a moment after its exit)."""
    from archiver.manifest.connection import GC_BATCH_WAIT

    start = time.monotonic()
    while not conn.take_writer_lock():
        waited = time.monotonic() - start
        if waited > GC_BATCH_WAIT or (waited > LOCK_GRACE and not gc_running(conn)):
            raise ManifestError(f"{conn.where}: another archiver run is using this manifest; wait for it to finish")
        time.sleep(0.05)


def _held(conn: PgConnection, key: int) -> list[tuple[str, int]]:
    """(application_name, pid) of the sessions holding advisory lock ``key`` in this database (a 64-bit key is
    shown in pg_locks as classid: its high half, objid: its low half, objsubid 1)."""
    return [(str(name or ""), int(pid)) for name, pid in conn.execute(
        "SELECT a.application_name, a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND CAST(l.classid AS BIGINT) = ? "
        "AND CAST(l.objid AS BIGINT) = ? AND l.database = (SELECT oid FROM pg_database WHERE datname = "
        "current_database())", (key >> 32, key & 0xFFFF_FFFF)).fetchall()]


def gc_running(conn: PgConnection) -> bool:
    """Whether an `archiver gc` is at work on this manifest (it holds GC_RUNNING_LOCK from start to end)."""
    return bool(_held(conn, GC_RUNNING_LOCK))


def writer(conn: PgConnection) -> tuple[str, int] | None:
    """(application_name, server pid) of the session holding the writer's lock, if any."""
    held = _held(conn, WRITER_LOCK)
    return held[0] if held else None
