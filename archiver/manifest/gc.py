"""What `archiver gc` reads from and writes to the manifest: the recorded objects with the time each was last
archived, who still points at them, their removal, and the journal of deletions in progress.

The journal (``gc_deletions``) is written in the same transaction that removes an asset's records and emptied only
once the store has deleted its objects: a gc killed in between finishes the job on its next run, and never deletes a
key that a run has recorded again since. The SQL is portable (SQLite and PostgreSQL).

A gc batch holds the writer's lock (a run, `dedupe`, `restore` hold it for their whole length, so none of them is
ever in the middle of its work during a batch: as with SQLite's lock file). With PostgreSQL, ``archiver worker``
processes on other machines record without that lock, so a batch also holds ``GC_BATCH_LOCK`` exclusively (a
session advisory lock, taken before the batch's re-check reads anything and held until its objects are deleted),
and every transaction that records something a gc could be deleting the bytes of takes the same lock *shared*
(``pg_advisory_xact_lock_shared``, held to its COMMIT) as its first statement:

- ``gc_barrier()`` before a worker decides "these bytes are already stored" (the asset is recorded, or the store
  proves it holds the object): it waits for a batch under way and returns the number of batches so far (the
  ``gc`` counter, raised in the very transaction that removes a batch's records);
- ``record_asset(…, gc_epoch=that number)``: if a batch ran since (the counter moved), the objects it proved
  stored may be gone: ``AssetGone``, nothing recorded, and the worker archives the bytes again (stores them);
- a URL's outcome against an asset (``complete``, ``record_result``, ``record_url``): the asset must still be
  recorded, else ``AssetGone`` and the URL is settled again.

Why that is enough. Shared and exclusive holds exclude each other, so each recording transaction commits wholly
before a batch's re-check reads, or starts after its deletions are done. One that committed before: the batch's
re-check sees its URL record (an article using that URL keeps the image) and its fresh ``last_archived``. One that
starts after: the batch removed the asset's records before deleting its objects, so "the asset is still recorded"
is false and the counter has moved: it records nothing and archives the bytes again. A worker's decision taken
while a batch is under way waits for it at ``gc_barrier``. A worker paused (SIGSTOP) anywhere in between changes
nothing: its recording transaction is checked when it runs. A gc whose connection is lost during a batch has lost
its session locks with it: it stops before deleting any object (its journal has them: the next gc finishes).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archiver.errors import AssetGone, ManifestError
from archiver.manifest.dialect import GC_BATCH_LOCK, GC_RUNNING_LOCK, WRITER_LOCK
from archiver.manifest.rows import read_path

_CHUNK = 500  # bound parameters per statement
log = logging.getLogger("archiver")


@dataclass(frozen=True)
class GcObject:
    """One stored object the manifest records: an original (``width`` None) or one of its renditions."""

    key: str
    bytes: int
    width: int | None = None
    format: str | None = None


@dataclass(frozen=True)
class GcAsset:
    """An archived image with every object recorded for it, and when the manifest last recorded archiving it (its
    first archiving, or a later fetch of any URL that gave these bytes), in seconds since the epoch."""

    sha256: str
    objects: tuple[GcObject, ...]  # the original first
    last_archived: float

    @property
    def bytes(self) -> int:
        return sum(o.bytes for o in self.objects)


@dataclass(frozen=True)
class JournalRow:
    key: str
    asset: str
    bytes: int


EPOCH = "gc"  # the counters row: gc batches so far (raised with each batch's records removal)
WATCH = "archiver run --watch"  # how a watching run names its session (PostgreSQL) or its lock file (SQLite)
_POLL = 0.2  # seconds between two tries of the writer's lock while a gc waits for it


def _epoch(db: Any) -> int:
    row = db.execute("SELECT value FROM counters WHERE name = ?", (EPOCH,)).fetchone()
    return 0 if row is None else int(row[0])


def _bump(db: Any) -> None:
    db.execute("INSERT INTO counters (name, value) VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET "
               "value = counters.value + 1", (EPOCH,))


def watch_refused(where: object, holder: str) -> ManifestError:
    return ManifestError(f"{where}: `{holder}` holds this manifest and does not end: gc cannot delete beside it "
                         "(nothing deleted). Stop the watch (Ctrl-C or SIGTERM), run gc, then start the watch again")


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _marks(n: int) -> str:
    return ",".join("?" * n)


# The other assets with the same signature as a removed asset that heads recorded near-duplicate pairs. A pair is
# recorded once per pair of classes of identical signatures, between their heads (each class's member with the
# smallest id: pairs.update_pairs); when gc removes a head, its rows go and the rest of its class is marked unsearched,
# so the next search records the class's pairs again under its new head. Found through the index on each asset's
# identity pHash (migration 18).
_HEIRS = """
    SELECT s.sha256 FROM assets d JOIN assets s
        ON substr(s.phash_variants, 1, 16) = substr(d.phash_variants, 1, 16)
       AND s.phash_variants = d.phash_variants AND s.dhash_variants = d.dhash_variants
       AND COALESCE(s.grey, '') = COALESCE(d.grey, '') AND s.sha256 <> d.sha256
    WHERE d.sha256 IN ({m}) AND (EXISTS (SELECT 1 FROM near_duplicates n WHERE n.a = d.sha256)
                                 OR EXISTS (SELECT 1 FROM near_duplicates n WHERE n.b = d.sha256))
"""


class GcRecords:
    """Part of ``Manifest`` (which provides ``_db`` and ``_tx``)."""

    if TYPE_CHECKING:
        _db: sqlite3.Connection
        _lock_fd: int | None
        path: Path | str | None

        def _tx(self) -> AbstractContextManager[sqlite3.Connection]: ...

        @property
        def shared(self) -> bool: ...

    # -- the fleet's side of a gc batch (PostgreSQL; nothing on SQLite, where a run holds the lock throughout) -----
    def gc_barrier(self) -> int | None:
        """Before deciding that an image is already stored: waits for a gc batch under way, and returns how many
        batches ran so far, for ``record_asset(gc_epoch=…)``. None on SQLite."""
        if not self.shared:
            return None
        # said before waiting: a gc suspended (Ctrl-Z) or slow to delete holds every worker here, heartbeats included
        if self._db.execute("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND mode = "
                            "'ExclusiveLock' AND CAST(classid AS BIGINT) = ? AND CAST(objid AS BIGINT) = ?",
                            (GC_BATCH_LOCK >> 32, GC_BATCH_LOCK & 0xFFFF_FFFF)).fetchone()[0]:
            log.warning("waiting for an archiver gc batch on this manifest to finish (its deletions hold every worker)")
        with self._tx() as db:
            db.execute("SELECT pg_advisory_xact_lock_shared(?)", (GC_BATCH_LOCK,))
            return _epoch(db)

    # The lock and the read are two statements, never one: a statement reads the snapshot taken when it starts, so a
    # read in the statement that waited for the lock would not see what the batch it waited for committed.
    def _gc_epoch_holds(self, db: Any, epoch: int | None, what: str) -> None:
        """First in a transaction recording an asset decided at ``epoch``: AssetGone if a gc batch ran since."""
        if epoch is None or not self.shared:
            return
        db.execute("SELECT pg_advisory_xact_lock_shared(?)", (GC_BATCH_LOCK,))
        if _epoch(db) != epoch:
            raise AssetGone(f"{self.path}: {what}: an archiver gc deleted images since this was decided: archived "
                            "again")

    def _gc_asset_holds(self, db: Any, asset: str | None) -> None:
        """First in a transaction recording a URL's outcome against ``asset``: AssetGone if a gc deleted it."""
        if asset is None or not self.shared:
            return
        db.execute("SELECT pg_advisory_xact_lock_shared(?)", (GC_BATCH_LOCK,))
        if db.execute("SELECT 1 FROM assets WHERE sha256 = ?", (asset,)).fetchone() is None:
            raise AssetGone(f"{self.path}: image {asset[:16]}…: an archiver gc deleted it since it was archived: "
                            "archived again")

    # -- gc's own locks ----------------------------------------------------------------------------------
    def announce_watch(self) -> None:
        """A `run --watch` holding the writer's lock says so, for a gc to refuse at once instead of waiting for a
        command that never ends."""
        note = f"{WATCH} ({socket.gethostname()}:{os.getpid()})"
        if self.shared:
            self._db.name_session(note[:63])  # type: ignore[attr-defined]  # (NAMEDATALEN)
        elif self._lock_fd is not None:
            os.ftruncate(self._lock_fd, 0)
            os.pwrite(self._lock_fd, note.encode(), 0)

    def watching_run(self) -> str | None:
        """The `run --watch` holding the writer's lock, as it names itself; None when none does."""
        if self.shared:
            from archiver.manifest.postgres import writer

            holder = writer(self._db)  # type: ignore[arg-type]
            return holder[0] if holder and holder[0].startswith(WATCH) else None
        if not isinstance(self.path, Path):
            return None
        from archiver.manifest.connection import lock_note

        note = lock_note(self.path)
        return note if note and note.startswith(WATCH) else None

    def take_gc_running(self) -> None:
        """PostgreSQL: the lock a gc holds from start to end (one gc at a time; a run finding the writer's lock
        taken knows a gc batch holds it, and waits). SQLite: the ``.gc.lock`` file (commands/gc.py)."""
        if not self.shared:
            return
        from archiver.manifest.postgres import LOCK_GRACE, taken_within

        if not taken_within(  # a killed gc's session ends a moment after its exit
                lambda: bool(self._db.execute("SELECT pg_try_advisory_lock(?)", (GC_RUNNING_LOCK,)).fetchone()[0]),
                time.monotonic() + LOCK_GRACE):
            raise ManifestError(f"{self.path}: another archiver gc is using this manifest; wait for it to finish")

    @contextmanager
    def gc_batch(self, waiting: Callable[[], None]) -> Iterator[Callable[[], bool]]:
        """One gc batch's locks: the writer's lock (waited for: ``waiting()`` is called once if it is taken; a
        `run --watch` holding it: ManifestError at once) and, on PostgreSQL, GC_BATCH_LOCK exclusively. Yields
        ``intact()``: whether they are still held (a lost PostgreSQL connection took its session's locks along)."""
        watch_error = None
        if not self.shared:
            from archiver.manifest.connection import release_lock, take_lock

            assert isinstance(self.path, Path)
            while True:
                try:
                    fd = take_lock(self.path, wait=0.0)
                    break
                except ManifestError:
                    if (holder := self.watching_run()) is not None:
                        watch_error = watch_refused(self.path, holder)
                        break
                    waiting()
                    time.sleep(_POLL)
            if watch_error is not None:
                raise watch_error
            try:
                yield lambda: True
            finally:
                release_lock(fd)
            return
        db: Any = self._db
        while not db.execute("SELECT pg_try_advisory_lock(?)", (WRITER_LOCK,)).fetchone()[0]:
            if (holder := self.watching_run()) is not None:
                raise watch_refused(self.path, holder)
            waiting()
            time.sleep(_POLL)
        start = db.reconnects

        def intact() -> bool:  # asked of the server: a statement on a lost connection reconnects (locks gone)
            held = db.execute(
                "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid() "
                "AND objsubid = 1 AND CAST(classid AS BIGINT) = ? AND CAST(objid AS BIGINT) = ?",
                (GC_BATCH_LOCK >> 32, GC_BATCH_LOCK & 0xFFFF_FFFF)).fetchone()[0]
            return bool(held) and db.reconnects == start

        try:
            db.execute("SELECT pg_advisory_lock(?)", (GC_BATCH_LOCK,))  # once the recordings under way committed
            yield intact
        finally:
            if db.reconnects == start:
                db.execute("SELECT pg_advisory_unlock(?)", (GC_BATCH_LOCK,))
                db.execute("SELECT pg_advisory_unlock(?)", (WRITER_LOCK,))

    def gc_bump(self) -> None:
        """Count one more gc batch (finishing a killed gc's journal is one): a worker's decision taken before it is
        recorded by no ``record_asset``."""
        with self._tx() as db:
            _bump(db)

    def gc_assets(self, shas: Sequence[str] | None = None) -> list[GcAsset]:
        """Every asset (or those of ``shas`` still recorded) with its objects, by sha256."""
        out: list[GcAsset] = []
        for chunk in ([None] if shas is None else list(_chunks(list(shas)))):
            which, params = ("IS NOT NULL", []) if chunk is None else (f"IN ({_marks(len(chunk))})", list(chunk))
            rows = self._db.execute(
                "SELECT a.sha256, a.key, a.bytes, CASE WHEN u.t IS NOT NULL AND u.t > a.first_seen THEN u.t "
                "ELSE a.first_seen END FROM assets a LEFT JOIN (SELECT asset, MAX(last_tried) AS t FROM urls "
                f"WHERE asset {which} GROUP BY asset) u ON u.asset = a.sha256 WHERE a.sha256 {which} "
                "ORDER BY a.sha256", params + params,
            ).fetchall()
            reps: dict[str, list[GcObject]] = {}
            for sha, key, size, width, fmt in self._db.execute(
                f"SELECT asset, key, bytes, width, format FROM renditions WHERE asset {which} "
                "ORDER BY asset, width, format", params,
            ):
                reps.setdefault(sha, []).append(GcObject(key, size, width, fmt))
            out += (GcAsset(sha, (GcObject(key, size), *reps.get(sha, ())), float(t)) for sha, key, size, t in rows)
        return out

    def archived_urls_of(self, shas: Sequence[str]) -> dict[str, set[str]]:
        """asset sha256 -> the URLs (as stored) recorded as archived to it, for ``shas``."""
        out: dict[str, set[str]] = {}
        for chunk in _chunks(list(shas)):
            for url, sha, status in self._db.execute(  # status tested here: a planner would pick its index
                f"SELECT url, asset, status FROM urls WHERE asset IN ({_marks(len(chunk))})", chunk
            ):
                if status == "archived":
                    out.setdefault(sha, set()).add(url)
        return out

    def pending_write_texts(self) -> list[tuple[str, list[str]]]:
        """(article path, every replacement text) of each write a killed command left recorded and unconfirmed."""
        out = []
        for path, spans in self._db.execute("SELECT path, replacements FROM pending_writes"):
            texts = [str(s[3]) for gen in json.loads(spans) for s in gen]
            out.append((read_path(path), texts))
        return out

    def recorded_article_paths(self) -> list[str]:
        """Every article the manifest records a rewrite of."""
        return sorted(read_path(p) for (p,) in self._db.execute("SELECT path FROM articles"))

    def recorded_keys(self, keys: Sequence[str]) -> set[str]:
        """Those of ``keys`` that the manifest records as an asset's original or rendition."""
        out: set[str] = set()
        for chunk in _chunks(list(keys)):
            m = _marks(len(chunk))
            out.update(k for (k,) in self._db.execute(
                f"SELECT key FROM assets WHERE key IN ({m}) UNION SELECT key FROM renditions WHERE key IN ({m})",
                [*chunk, *chunk],
            ))
        return out

    def recorded_owners(self, keys: Sequence[str]) -> dict[str, str]:
        """Those of ``keys`` that the manifest records as an asset's original or rendition, each with its asset."""
        out: dict[str, str] = {}
        for chunk in _chunks(list(keys)):
            m = _marks(len(chunk))
            out.update((k, a) for k, a in self._db.execute(
                f"SELECT key, sha256 FROM assets WHERE key IN ({m}) UNION SELECT key, asset FROM renditions "
                f"WHERE key IN ({m})", [*chunk, *chunk]))
        return out

    def forget_assets(self, assets: Sequence[GcAsset]) -> None:
        """One transaction: journal every object of ``assets`` and remove every record of them (their URLs' outcomes
        included, so a later run that meets one of those URLs archives it again, and verify does not look for the
        objects). The record of settled article bytes goes too: a later run reads every article again once."""
        now = time.time()
        shas = [a.sha256 for a in assets]
        with self._tx() as db:
            db.executemany(
                "INSERT INTO gc_deletions (key, asset, bytes, recorded_at) VALUES (?,?,?,?) "
                "ON CONFLICT (key) DO UPDATE SET asset = excluded.asset, bytes = excluded.bytes",
                [(o.key, a.sha256, o.bytes, now) for a in assets for o in a.objects],
            )
            gone = set(shas)
            for chunk in _chunks(shas):  # first, while every row is there: see _HEIRS
                m, p = _marks(len(chunk)), list(chunk)
                heirs = [s for (s,) in db.execute(_HEIRS.format(m=m), p) if s not in gone]
                for part in _chunks(heirs):
                    hm = _marks(len(part))
                    db.execute(f"UPDATE assets SET search_mark = NULL WHERE sha256 IN ({hm})", part)
            for chunk in _chunks(shas):
                m, p = _marks(len(chunk)), list(chunk)
                db.execute(f"DELETE FROM near_duplicates WHERE a IN ({m}) OR b IN ({m})", p + p)
                db.execute(f"DELETE FROM lost_objects WHERE asset IN ({m})", p)
                db.execute(f"DELETE FROM renditions WHERE asset IN ({m})", p)
                db.execute(f"DELETE FROM urls WHERE asset IN ({m})", p)
                db.execute(f"DELETE FROM assets WHERE sha256 IN ({m})", p)
            if assets:
                db.execute("DELETE FROM settled_articles")
            _bump(db)

    def gc_journal(self) -> list[JournalRow]:
        """The objects whose records a gc removed and whose deletion from the store is not yet confirmed."""
        return [JournalRow(*r) for r in self._db.execute("SELECT key, asset, bytes FROM gc_deletions ORDER BY key")]

    def gc_journal_done(self, keys: Sequence[str]) -> None:
        with self._tx() as db:
            for chunk in _chunks(list(keys)):
                db.execute(f"DELETE FROM gc_deletions WHERE key IN ({_marks(len(chunk))})", list(chunk))

    def outstanding_dedupe(self) -> list[tuple[str | bytes, int, str]]:
        """(article as stored, generation, the text it replaced) of every span of a `dedupe --apply` generation not
        undone since: what `dedupe --undo` would put back."""
        return [(a, int(seq), orig) for a, seq, orig in self._db.execute(
            "SELECT r.article, r.seq, r.original FROM replacements r WHERE r.reason = 'dedupe' AND r.seq > "
            "COALESCE((SELECT MAX(u.seq) FROM replacements u WHERE u.article = r.article AND u.reason = 'dedupe-undo'), "
            "-1)"
        )]

    def finalise_dedupe(self, generations: Iterable[tuple[str | bytes, int]]) -> None:
        """Make these `dedupe --apply` generations final (`gc --forget-undo` deleted the copies they replaced):
        `dedupe --undo` passes them by; `restore` still undoes them with the rest."""
        with self._tx() as db:
            db.executemany("UPDATE replacements SET reason = 'dedupe-final' WHERE article = ? AND seq = ?",
                           list(generations))
