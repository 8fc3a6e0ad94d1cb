"""Opening the manifest's SQLite file: a connection whose errors name the manifest, and the one writer's lock."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path

from archiver.errors import ManifestError


class Connection(sqlite3.Connection):
    """A connection whose statements turn sqlite3 errors into a ManifestError naming the manifest: a corrupt or
    hand-edited database is one clear line (exit 2), wherever the query that meets it is."""

    where = "manifest"

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
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ManifestError(
            f"{path}: another archiver run is using this manifest; wait for it to finish"
        ) from None
    return fd
