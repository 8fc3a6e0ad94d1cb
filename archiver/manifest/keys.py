"""Object keys by value: which asset a key belongs to (a templated key is read back from here, never from its shape),
and `archiver rekey`'s moves, recorded before anything is copied so that a killed rekey is finished by the next."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, NamedTuple


class KeyRecord(NamedTuple):
    """Whose object a key is: the original's SHA-256, and for a thumbnail its configured width."""

    key: str
    sha256: str
    ext: str
    width: int | None = None


class KeyedAsset(NamedTuple):
    """What a key template draws on for one archived asset, and its current keys."""

    sha256: str
    ext: str
    key: str
    first_seen: float
    source: str | None  # the URL first archived from (None: not recorded, before schema 10, and no URL left)
    renditions: tuple[tuple[int, str, str, str], ...]  # (width, format, ext of the format, key)


class Move(NamedTuple):
    old_key: str
    new_key: str
    asset: str
    width: int | None  # None: the original
    format: str | None
    state: str  # planned | copied | repointed | recorded


class KeyRecords:
    """Part of ``Manifest`` (which provides ``_db``, ``_tx`` and ``_write_lock``)."""

    if TYPE_CHECKING:
        _db: sqlite3.Connection
        _write_lock: threading.RLock

        def _tx(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def key_record(self, key: str) -> KeyRecord | None:
        """The asset (and for a thumbnail, its width) that ``key`` belongs to, as recorded, or as a pending rekey
        move's old or new key; None: not a key of ours."""
        with self._write_lock:  # read from the rewrite threads too: one statement at a time on the connection
            try:
                row = self._db.execute("SELECT sha256, ext FROM assets WHERE key=?", (key,)).fetchone()
                if row:
                    return KeyRecord(key, row[0], row[1])
                row = self._db.execute("SELECT asset, width, key FROM renditions WHERE key=?", (key,)).fetchone()
                if row:
                    return KeyRecord(key, row[0], key.rsplit(".", 1)[-1], row[1])
                row = self._db.execute(
                    "SELECT asset, width FROM rekey_moves WHERE old_key=? OR new_key=?", (key, key)
                ).fetchone()
            except sqlite3.Error:  # a manifest read as it is, of an older schema (a dry run's snapshot)
                return None
        return KeyRecord(key, row[0], key.rsplit(".", 1)[-1], row[1]) if row else None

    def key_owner(self, key: str) -> str | None:
        """The SHA-256 of the asset whose original or thumbnail has ``key`` (or will have, by a pending rekey)."""
        parsed = self.key_record(key)
        return parsed.sha256 if parsed else None

    def keyed_assets(self) -> Iterable[KeyedAsset]:
        """Every asset with what its key is made of, oldest first (streamed)."""
        rows = self._db.execute(
            "SELECT a.sha256, a.ext, a.key, a.first_seen, COALESCE(a.source, (SELECT u.url FROM urls u WHERE "
            "u.asset = a.sha256 AND u.status = 'archived' ORDER BY u.first_seen, u.url LIMIT 1)) "
            "FROM assets a ORDER BY a.first_seen, a.sha256"
        ).fetchall()
        for sha, ext, key, first_seen, source in rows:
            reps = tuple(self._db.execute(
                "SELECT width, format, key FROM renditions WHERE asset=? ORDER BY format, width", (sha,)
            ).fetchall())
            yield KeyedAsset(sha, ext, key, first_seen, source,
                             tuple((w, f, k.rsplit(".", 1)[-1], k) for w, f, k in reps))

    # -- rekey ---------------------------------------------------------------------------------
    def moves(self) -> list[Move]:
        return [Move(*r) for r in self._db.execute(
            "SELECT old_key, new_key, asset, width, format, state FROM rekey_moves ORDER BY asset, old_key"
        )]

    def plan_moves(self, moves: Iterable[Move]) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT INTO rekey_moves (old_key, new_key, asset, width, format, state) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT (old_key) DO NOTHING", [tuple(m) for m in moves],
            )

    def move_state(self, old_keys: Iterable[str], state: str) -> None:
        with self._tx() as db:
            db.executemany("UPDATE rekey_moves SET state=? WHERE old_key=?", [(state, k) for k in old_keys])

    def record_moved(self, moves: Iterable[Move]) -> None:
        """The new keys of moved objects, in one transaction with their moves' state ("recorded") and the history
        restore and dedupe --undo read (``moved_keys``)."""
        now = time.time()
        with self._tx() as db:
            for m in moves:
                if m.width is None:
                    db.execute("UPDATE assets SET key=? WHERE sha256=? AND key=?", (m.new_key, m.asset, m.old_key))
                else:
                    db.execute("UPDATE renditions SET key=? WHERE asset=? AND key=?", (m.new_key, m.asset, m.old_key))
                db.execute("UPDATE lost_objects SET key=? WHERE key=?", (m.new_key, m.old_key))
                db.execute("UPDATE rekey_moves SET state='recorded' WHERE old_key=?", (m.old_key,))
                db.execute("INSERT INTO moved_keys (old_key, new_key, moved_at) VALUES (?, ?, ?) ON CONFLICT (old_key) "
                           "DO UPDATE SET new_key=excluded.new_key, moved_at=excluded.moved_at",
                           (m.old_key, m.new_key, now))
                db.execute("DELETE FROM moved_keys WHERE old_key=?", (m.new_key,))  # moved back: its own key again

    def moved_keys(self) -> dict[str, str]:
        """Old key -> the key rekey moved its object to (follow the chain: a key may have moved twice)."""
        try:
            return dict(self._db.execute("SELECT old_key, new_key FROM moved_keys"))
        except sqlite3.Error:  # a manifest read as it is, of an older schema: nothing was ever moved
            return {}

    def finish_moves(self, old_keys: Iterable[str]) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM rekey_moves WHERE old_key=?", [(k,) for k in old_keys])
