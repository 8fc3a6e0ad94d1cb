"""Opening the manifest's SQLite file: a connection whose errors name the manifest, and the one writer's lock."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path

from archiver.errors import ManifestError
from archiver.manifest.dialect import SQLITE


class Connection(sqlite3.Connection):
    """A connection whose statements turn sqlite3 errors into a ManifestError naming the manifest: a corrupt or
    hand-edited database is one clear line (exit 2), wherever the query that meets it is."""

    where = "manifest"
    dialect = SQLITE

    def execute(self, sql: str, parameters: object = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)  # type: ignore[arg-type]
        except sqlite3.Error as exc:
            raise ManifestError(f"{self.where}: {exc}") from exc

    def executemany(self, sql: str, parameters: object, /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)  # type: ignore[arg-type]
        except sqlite3.Error as exc:
            raise ManifestError(f"{self.where}: {exc}") from exc


def connect(target: str | Path, path: Path | None, **kwargs: object) -> Connection:
    """``sqlite3.connect(target)`` with Connection; ``path``: how its errors name the manifest."""
    conn = sqlite3.connect(target, factory=Connection, check_same_thread=False, **kwargs)  # type: ignore[arg-type]
    conn.where = str(path) if path is not None else "manifest"
    return conn


def take_lock(path: Path) -> int:
    """The exclusive lock beside the manifest (``<name>.lock``): one writing run at a time. Returns its fd."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ManifestError(
            f"{path}: cannot open the lock file {lock_path}: {exc.strerror or exc}{folder_hint(path)}"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ManifestError(
            f"{path}: another archiver run is using this manifest; wait for it to finish"
        ) from None
    return fd


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
