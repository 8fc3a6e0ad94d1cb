"""Opening the manifest's SQLite file: a connection whose errors name the manifest, and the one writer's lock."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from pathlib import Path

from archiver.cputime import stage
from archiver.errors import ManifestError
from archiver.manifest.dialect import SQLITE


class Connection(sqlite3.Connection):
    """A connection whose statements turn sqlite3 errors into a ManifestError naming the manifest: a corrupt or
    hand-edited database is one clear line (exit 2), wherever the query that meets it is."""

    where = "manifest"
    dialect = SQLITE

    def execute(self, sql: str, parameters: object = (), /) -> sqlite3.Cursor:
        try:
            with stage("manifest"):
                return super().execute(sql, parameters)  # type: ignore[arg-type]
        except sqlite3.Error as exc:
            raise ManifestError(f"{self.where}: {exc}") from exc

    def executemany(self, sql: str, parameters: object, /) -> sqlite3.Cursor:
        try:
            with stage("manifest"):
                return super().executemany(sql, parameters)  # type: ignore[arg-type]
        except sqlite3.Error as exc:
            raise ManifestError(f"{self.where}: {exc}") from exc


def connect(target: str | Path, path: Path | None, **kwargs: object) -> Connection:
    """``sqlite3.connect(target)`` with Connection; ``path``: how its errors name the manifest."""
    conn = sqlite3.connect(target, factory=Connection, check_same_thread=False, **kwargs)  # type: ignore[arg-type]
    conn.where = str(path) if path is not None else "manifest"
    return conn


GC_BATCH_WAIT = 120.0  # seconds a command waits for a gc batch to release the manifest (a batch takes ~1 s)


def take_lock(path: Path, *, wait: float | None = None) -> int:
    """The exclusive lock beside the manifest (``<name>.lock``): one writing command at a time. Returns its fd.

    Held by another run: ManifestError at once. Held by `archiver gc` (which takes it only for one short batch of
    deletions at a time, while it holds ``<name>.gc.lock``): wait for the batch to end, so a run started during a
    gc goes ahead (and wins: gc re-checks every candidate under this lock). ``wait``: seconds to wait whoever holds
    it (None: only for gc, up to GC_BATCH_WAIT; ``inf``: until it is free)."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ManifestError(
            f"{path}: cannot open the lock file {lock_path}: {exc.strerror or exc}{folder_hint(path)}"
        ) from None
    deadline = time.monotonic() + (GC_BATCH_WAIT if wait is None else wait)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, 0)  # an earlier holder's note (`run --watch`: lock_note) is not this holder's
            return fd
        except BlockingIOError:
            pass
        if time.monotonic() < deadline and (wait is not None or gc_running(path)):
            time.sleep(0.05)
            continue
        os.close(fd)
        raise ManifestError(
            f"{path}: another archiver run is using this manifest; wait for it to finish"
        ) from None


def lock_note(path: Path) -> str | None:
    """What the holder of the manifest's lock wrote in it (a `run --watch` names itself), while it holds it; None
    when nobody holds it (a note left by an earlier holder is not read) or the holder wrote nothing."""
    try:
        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or None
        except OSError:
            return None
        return None  # free (closing the descriptor gives the shared lock back)
    finally:
        os.close(fd)


def release_lock(fd: int) -> None:
    os.close(fd)  # closing the last descriptor releases the flock


def gc_lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".gc.lock")


def take_gc_lock(path: Path) -> int:
    """The lock `archiver gc` holds from start to end (one gc at a time; a run that finds the manifest's lock taken
    while this one is held knows it is a gc batch, and waits)."""
    lock_path = gc_lock_path(path)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ManifestError(f"{path}: cannot open the lock file {lock_path}: {exc.strerror or exc}"
                            f"{folder_hint(path)}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ManifestError(f"{path}: another archiver gc is using this manifest; wait for it to finish") from None
    return fd


def gc_running(path: Path) -> bool:
    """Whether an `archiver gc` holds the manifest's gc lock right now."""
    try:
        fd = os.open(gc_lock_path(path), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def read_only(path: Path) -> tuple[sqlite3.Connection, int]:
    """A read-only connection to the manifest and its schema version.

    In a folder we cannot write (read-only media, another user's folder) SQLite cannot create the shared-memory file
    a WAL database needs to be read: then the file is read as it is on disk (``immutable``), which is exact unless a
    writer's log is beside it (then the error says so)."""
    conn = None
    try:
        try:
            conn = connect(f"file:{_uri_path(path)}?mode=ro", path, uri=True)
            return conn, conn.execute("PRAGMA user_version").fetchone()[0]
        except (sqlite3.OperationalError, ManifestError):
            if conn is not None:
                conn.close()
                conn = None
            if os.access(path.parent, os.W_OK) or _wal_of(path).exists():
                raise
            conn = connect(f"file:{_uri_path(path)}?mode=ro&immutable=1", path, uri=True)
            return conn, conn.execute("PRAGMA user_version").fetchone()[0]
    except (sqlite3.Error, ManifestError) as exc:
        if conn is not None:
            conn.close()
        raise ManifestError(f"{path}: cannot read manifest: {exc.__cause__ or exc}{folder_hint(path)}") from exc


def make_folder(path: Path) -> None:
    """The manifest's folder, created if missing; ManifestError (one line) if it cannot be."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ManifestError(f"{path}: cannot create the manifest's folder: {folder} (or a folder above it) "
                            "is a file") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot create the manifest's folder {folder}: {exc.strerror or exc}") from None


def folder_hint(path: Path | None) -> str:
    """Why SQLite may have failed: it writes its log and lock files beside the manifest."""
    if path is None or not path.parent.is_dir() or os.access(path.parent, os.W_OK):
        return ""
    return f" (the folder {path.parent} is not writable: the manifest needs to write files beside itself)"


def _wal_of(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _uri_path(path: Path) -> str:
    """``path`` for a ``file:`` URI: characters SQLite's URI parser would read as syntax are percent-encoded,
    and a file name that is not UTF-8 keeps its bytes."""
    from urllib.parse import quote

    return quote(os.fsencode(path.absolute()), safe="/")
