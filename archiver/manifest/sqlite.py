"""The manifest: a SQLite (WAL) or PostgreSQL record of every URL, asset, stored object and rewritten article.

It is the run's memory: a second run reads it to skip what is done, ``status`` summarises it, and
restore/verify read the replaced spans and object keys from it (the article records: manifest/articles.py). One process writes at a time (an
exclusive lock file beside the database; in PostgreSQL a session advisory lock); every write is its own short transaction, so a run killed
at any moment leaves a consistent database. One class for both databases: queries are written once in the subset
both accept (manifest/dialect.py translates placeholders and DDL types for PostgreSQL: manifest/postgres.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import pairwise
from operator import attrgetter
from pathlib import Path
from typing import Any

from archiver.errors import ManifestError
from archiver.manifest.articles import ArticleRecords
from archiver.manifest.connection import connect, folder_hint, make_folder, read_only, take_lock
from archiver.manifest.fleet import FleetRecords
from archiver.manifest.gc import GcRecords
from archiver.manifest.keys import KeyRecords
from archiver.manifest.lost import LostObjects
from archiver.manifest.queue import WorkQueue
from archiver.manifest.rows import (
    AssetRow,
    ExportedAsset,
    ExportedRendition,
    PairRow,
    RenditionRow,
    ShownImage,
    ShownRendition,
    SignatureRow,
    StoredAsset,
    StoredObject,
    UnsearchedAsset,
    UrlState,
    VariantRow,
    url_key,
)
from archiver.manifest.schema import MIGRATIONS, check_ours, migrate
from archiver.manifest.target import is_postgres
from archiver.model import Asset, Outcome
from archiver.redaction import redact, redact_text

__all__ = ["Manifest", "url_key"]


class NoManifest(ManifestError):
    """An empty PostgreSQL database where a manifest was to be read."""


def _text(text: str) -> str:
    """Text SQLite can store: a lone surrogate (a byte a server or a file name held that is not UTF-8) as its
    ``\\udcXX`` escape, not an error that would leave the URL without an outcome."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


class Manifest(ArticleRecords, LostObjects, WorkQueue, GcRecords, KeyRecords, FleetRecords):
    """Open with ``Manifest.open(path)`` (or a PostgreSQL URL); ``None`` gives a throw-away in-memory manifest.
    ``path``: how messages name it (the file, or the URL with its password hidden). ``reconnect_for``: seconds a
    PostgreSQL manifest waits for its server to come back after losing the connection (manifest/postgres.py;
    None: ``[manifest] reconnect_for``'s default)."""

    def __init__(self, conn: sqlite3.Connection, path: Path | str | None, lock_fd: int | None, *,
                 locked: bool = False) -> None:
        self._db = conn
        self.path = path
        self._lock_fd = lock_fd
        self._locked = locked or lock_fd is not None  # holds the writer's lock (a PostgreSQL manifest: its session)
        self._write_lock = threading.RLock()

    @property
    def shared(self) -> bool:
        """A manifest many processes write at once (PostgreSQL): runs queue their URLs for the workers."""
        return self._db.dialect.name == "postgresql"  # type: ignore[attr-defined]

    @property
    def index_folder(self) -> Path | None:
        """Where this manifest's on-disk indexes live: beside a SQLite manifest; for a PostgreSQL manifest, in this
        machine's cache (``postgres.local_index_folder``). None (the search builds its index in memory): an in-memory
        manifest, or one opened without the writer's lock (only the lock holder writes the index)."""
        if not self._locked:
            return None
        if self.shared:
            from archiver.manifest.postgres import local_index_folder

            return local_index_folder(str(self.path), self._db.database)  # type: ignore[attr-defined]
        if not isinstance(self.path, Path):
            return None
        return self.path.with_name(self.path.name + ".index")

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path | str | None, *, lock: bool = True, reconnect_for: float | None = None) -> Manifest:
        if is_postgres(path):
            return cls._open_postgres(str(path), lock=lock, reconnect_for=reconnect_for)
        assert not isinstance(path, str)
        lock_fd = None
        try:
            if path is None:
                conn = connect(":memory:", None, isolation_level=None)
            else:
                make_folder(path)
                if lock:
                    lock_fd = take_lock(path)
                conn = connect(path, path, isolation_level=None, timeout=30)
                check_ours(conn, path)  # before the journal mode changes its header
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            migrate(conn, path)
        except (sqlite3.Error, ManifestError) as exc:
            if lock_fd is not None:
                os.close(lock_fd)
            if isinstance(exc, ManifestError):
                raise
            raise ManifestError(f"{path}: cannot open manifest: {exc}{folder_hint(path)}") from exc
        return cls(conn, path, lock_fd)

    @classmethod
    def _open_postgres(cls, url: str, *, lock: bool, create: bool = True,
                       reconnect_for: float | None = None) -> Manifest:
        """``create``: make the schema in an empty database (else an empty one is "no manifest yet")."""
        from archiver.manifest import postgres

        conn = postgres.connect(url, reconnect_for=reconnect_for)
        try:
            if not create and conn.dialect.version(conn) == 0 and not conn.dialect.has_tables(conn):
                raise NoManifest(f"{conn.where}: no manifest yet (run `archiver run` first)")
            if lock:
                postgres.take_lock(conn)
            migrate(conn, conn.where)
        except BaseException:
            conn.close()
            raise
        return cls(conn, conn.where, None, locked=lock)  # type: ignore[arg-type]

    @classmethod
    def open_existing(cls, path: Path | str, *, reconnect_for: float | None = None, lock: bool = True) -> Manifest:
        """A manifest that must exist already (``NoManifest`` if not), opened for writing, with the writer's lock
        (``lock=False``: without it, for a caller that takes it when it writes, as gc does for each batch)."""
        if is_postgres(path):
            return cls._open_postgres(str(path), lock=lock, create=False, reconnect_for=reconnect_for)
        assert isinstance(path, Path)
        if not path.exists():
            raise NoManifest(f"{path}: no manifest yet")
        return cls.open(path, lock=lock)

    @classmethod
    def snapshot(cls, path: Path | str) -> Manifest:
        """An in-memory copy of an existing manifest (for --dry-run: reads the real one, writes nowhere)."""
        mem = cls.open(None)
        if is_postgres(path):
            from archiver.manifest.copy import copy_manifest

            try:
                src = cls._open_postgres(str(path), lock=False, create=False)
            except NoManifest as exc:
                mem._db.where = exc.message.split(": no manifest")[0]  # type: ignore[attr-defined]
                return mem
            with src:
                mem._db.where = src._db.where  # type: ignore[attr-defined]
                copy_manifest(src, mem, replace=True)
            return mem
        assert isinstance(path, Path)
        mem._db.where = str(path)  # type: ignore[attr-defined]
        if path.exists():
            src, _version = read_only(path)
            try:
                src.backup(mem._db)
            except sqlite3.Error as exc:
                raise ManifestError(f"{path}: cannot read manifest: {exc}{folder_hint(path)}") from exc
            finally:
                src.close()
            migrate(mem._db, path)
        return mem

    @classmethod
    def open_readonly(cls, path: Path | str, *, reconnect_for: float | None = None) -> Manifest:
        """For reading only (status, verify): no lock, no copy; an older schema is migrated in a memory copy (in
        PostgreSQL, in place: a migration is one transaction, safe beside a running writer)."""
        if is_postgres(path):
            return cls._open_postgres(str(path), lock=False, create=False, reconnect_for=reconnect_for)
        assert isinstance(path, Path)
        if not path.exists():
            raise ManifestError(f"{path}: no manifest yet (run `archiver run` first)")
        conn, version = read_only(path)
        if version == len(MIGRATIONS):
            return cls(conn, path, None)
        conn.close()
        return cls.snapshot(path)

    def close(self) -> None:
        self._db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction; one at a time, whichever thread asks (a run writes article records from the
        threads that rewrite articles, and everything else from its event loop). A SQLite manifest commits without
        an fsync (WAL, synchronous=NORMAL: a killed process loses nothing, a power cut may lose the last commits);
        ``durable`` fsyncs this commit, and with it every commit before it (the WAL is one sequence): what an
        article about to be renamed depends on."""
        full = durable and self._db.dialect.name == "sqlite" and self.path is not None  # type: ignore[attr-defined]
        with self._write_lock:
            try:
                if full:
                    self._db.execute("PRAGMA synchronous=FULL")
                try:
                    self._db.execute(self._db.dialect.begin)  # type: ignore[attr-defined]
                    try:
                        yield self._db
                    except BaseException:
                        self._db.execute("ROLLBACK")
                        raise
                    self._db.execute("COMMIT")
                finally:
                    if full:
                        self._db.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise ManifestError(f"{self.path or 'manifest'}: write failed: {exc}") from exc

    # -- URLs ----------------------------------------------------------------------------------
    def url_states(self, urls: Iterable[str]) -> dict[str, UrlState]:
        """The recorded state of each URL, keyed by the URL as given."""
        by_key = {url_key(u): u for u in urls}
        return {by_key[row[0]]: _url_state(row) for row in self._rows_in(
            "SELECT url, status, reason, attempts, asset, http_status, cause FROM urls", "url", by_key)}

    def _rows_in(self, select: str, column: str, keys: Iterable[object]) -> Iterator[tuple[object, ...]]:
        """The rows of ``select`` (a SELECT ... FROM, no WHERE) whose ``column`` is one of ``keys`` (each distinct key
        once), asked 500 keys at a time (SQLite's limit on parameters; PostgreSQL's plans stay small)."""
        batch = sorted(set(keys))  # type: ignore[type-var]
        for i in range(0, len(batch), 500):
            chunk = batch[i : i + 500]
            # a chunk's rows fetched at once: a generator left unfinished (Ctrl-C) holds no cursor, which closing it
            # after the connection would try to close ("Cannot operate on a closed database" at exit)
            yield from self._db.execute(f"{select} WHERE {column} IN ({','.join('?' * len(chunk))})", chunk).fetchall()

    def record_url(
        self,
        url: str,
        status: Outcome,
        *,
        reason: str | None = None,
        asset: str | None = None,
        http_status: int | None = None,
        attempts: int = 0,
        final_url: str | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        cause: str | None = None,
        settings: str | None = None,
    ) -> None:
        """One URL's outcome; ``cause`` and ``settings``: the setting that decided a refusal and the digest of
        the settings it was decided under (config.settings_fingerprint)."""
        with self._tx() as db:
            self._gc_asset_holds(db, asset)
            self._upsert_url(db, url, status, reason=reason, asset=asset, http_status=http_status,
                             attempts=attempts, final_url=final_url, etag=etag, last_modified=last_modified,
                             cause=cause, settings=settings)

    def _upsert_url(self, db: sqlite3.Connection, url: str, status: Outcome, *, reason: str | None = None,
                    asset: str | None = None, http_status: int | None = None, attempts: int = 0,
                    final_url: str | None = None, etag: str | None = None, last_modified: str | None = None,
                    cause: str | None = None, settings: str | None = None) -> None:
        now = time.time()
        db.execute(
            """INSERT INTO urls (url, status, reason, http_status, attempts, asset, final_url, etag,
                                 last_modified, first_seen, last_tried, cause, settings)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)
               ON CONFLICT(url) DO UPDATE SET status=excluded.status, reason=excluded.reason,
                 http_status=excluded.http_status, attempts=urls.attempts + excluded.attempts,
                 asset=excluded.asset, final_url=excluded.final_url, etag=excluded.etag,
                 last_modified=excluded.last_modified, last_tried=excluded.last_tried,
                 cause=excluded.cause, settings=excluded.settings""",
            (url_key(url), status, _text(redact_text(reason)) if reason else reason, http_status, attempts, asset,
             redact(final_url) if final_url else None, etag, last_modified, now, now, cause, settings),
        )

    def record_rejections(self, rows: Iterable[tuple[str, str, str | None, str | None]]) -> None:
        """URLs refused before any request, as (URL as shown, reason, cause, settings digest), in one transaction;
        a row already recorded alike is left as it is (a second run writes nothing)."""
        now = time.time()
        with self._tx() as db:
            db.executemany(
                """INSERT INTO urls (url, status, reason, attempts, first_seen, last_tried, cause, settings)
                   VALUES (?, 'rejected', ?, 0, ?, ?, ?, ?)
                   ON CONFLICT(url) DO UPDATE SET status=excluded.status, reason=excluded.reason,
                     asset=NULL, last_tried=excluded.last_tried, cause=excluded.cause, settings=excluded.settings
                   WHERE urls.status IS NOT 'rejected' OR urls.reason IS NOT excluded.reason
                     OR urls.cause IS NOT excluded.cause OR urls.settings IS NOT excluded.settings""",
                [(url_key(url), reason, now, now, cause, settings) for url, reason, cause, settings in rows],
            )

    def forget_stale_refusals(self, fingerprints: Mapping[str, str]) -> int:
        """Forget the dead and rejected URLs whose cause's settings are not ``fingerprints[cause]`` any more (they
        are tried again, and recorded again if the refusal still holds); returns how many."""
        with self._tx() as db:
            return sum(db.execute(
                "DELETE FROM urls WHERE status IN ('dead', 'rejected') AND cause = ? AND settings IS NOT ?",
                (cause, digest),
            ).rowcount for cause, digest in fingerprints.items())

    # -- articles known to be fully archived ---------------------------------------------------
    def settled_refs(self, sha256: str, fingerprint: str) -> int | None:
        """The reference count of article bytes hashing to ``sha256`` recorded as fully archived under
        ``fingerprint`` (None: not recorded, or under other settings or finder code)."""
        try:
            row = self._db.execute(
                "SELECT refs FROM settled_articles WHERE sha256 = ? AND fingerprint = ?", (sha256, fingerprint)
            ).fetchone()
        except sqlite3.Error:  # a manifest read as it is (a dry run's snapshot of an older schema): scan
            return None
        return None if row is None else int(row[0])

    def record_settled(self, rows: Iterable[tuple[str, int]], fingerprint: str) -> None:
        """Article contents found fully archived, as (sha256, references), in one transaction; rows recorded under
        another fingerprint are dropped (they can never match again). A second run writes nothing."""
        rows = list(rows)
        stale = self._db.execute(
            "SELECT 1 FROM settled_articles WHERE fingerprint IS NOT ? LIMIT 1", (fingerprint,)
        ).fetchone()
        if not rows and not stale:
            return
        with self._tx() as db:
            if stale:
                db.execute("DELETE FROM settled_articles WHERE fingerprint IS NOT ?", (fingerprint,))
            db.executemany(
                """INSERT INTO settled_articles (sha256, fingerprint, refs) VALUES (?, ?, ?)
                   ON CONFLICT(sha256) DO UPDATE SET fingerprint=excluded.fingerprint, refs=excluded.refs
                   WHERE settled_articles.fingerprint IS NOT excluded.fingerprint
                     OR settled_articles.refs IS NOT excluded.refs""",
                [(sha, fingerprint, refs) for sha, refs in rows],
            )

    # -- references found in articles (archiver dedupe) ------------------------------------------
    def article_refs(self, fingerprint: str) -> dict[tuple[str, str], list[str]]:
        """(sha256 of an article's bytes, format) -> the text of each reference found in them, as recorded under
        ``fingerprint`` (``record_article_refs``)."""
        out: dict[tuple[str, str], list[str]] = {}
        for sha, fmt, refs in self._db.execute(
                "SELECT sha256, format, refs FROM article_refs WHERE fingerprint = ?", (fingerprint,)):
            try:
                found = json.loads(refs)
            except (ValueError, RecursionError):  # a damaged row (not JSON, or nested too deep for the decoder):
                continue  # parsed again, and recorded anew
            if isinstance(found, list) and all(isinstance(x, str) for x in found):
                out[(sha, fmt)] = found
        return out

    def add_article_refs(self, rows: Iterable[tuple[str, str, list[str]]], fingerprint: str) -> None:
        """``record_article_refs`` of what a run parsed anyway (the articles it left fully archived), without dropping
        the rows of contents it did not see (a run reads only what changed); rows of another fingerprint go."""
        rows = list(rows)
        if not rows:
            return
        with self._tx() as db:
            db.execute("DELETE FROM article_refs WHERE fingerprint <> ?", (fingerprint,))
            _put_article_refs(db, rows, fingerprint)

    def record_article_refs(self, rows: Iterable[tuple[str, str, list[str]]], fingerprint: str,
                            seen: Iterable[tuple[str, str]]) -> None:
        """One transaction: the references found in article bytes, as (sha256, format, texts), under
        ``fingerprint``; the rows of another fingerprint go (they can never match again), and so do those of
        contents not in ``seen`` (the articles' contents now: an edited article's old bytes). Nothing is written when
        nothing changed."""
        rows, seen = list(rows), set(seen)
        stale = [k for k, fp in ((tuple(r[:2]), r[2]) for r in self._db.execute(
            "SELECT sha256, format, fingerprint FROM article_refs")) if fp != fingerprint or k not in seen]
        if not rows and not stale:
            return
        with self._tx() as db:
            db.executemany("DELETE FROM article_refs WHERE sha256 = ? AND format = ?", stale)
            _put_article_refs(db, rows, fingerprint)

    # -- assets --------------------------------------------------------------------------------
    def asset(self, sha256: str) -> StoredAsset | None:
        row = self._db.execute(
            "SELECT sha256, format, mime, ext, bytes, width, height, phash, dhash, key FROM assets WHERE sha256=?",
            (sha256,),
        ).fetchone()
        return StoredAsset(*row) if row else None

    def rendition_keys(self, sha256: str) -> dict[tuple[int, str], str]:
        return {
            (w, f): k
            for w, f, k in self._db.execute(
                "SELECT width, format, key FROM renditions WHERE asset=?", (sha256,)
            )
        }

    def shown_image(self, sha256: str) -> ShownImage | None:
        """What a page needs to show the asset responsively (``[rewrite] responsive``); None: not archived."""
        with self._write_lock:  # read from the rewrite threads: one statement at a time on the connection
            row = self._db.execute("SELECT width, height, frames, key FROM assets WHERE sha256=?", (sha256,)).fetchone()
            if row is None:
                return None
            reps = self._db.execute(
                "SELECT width, format, pixel_width, pixel_height, key FROM renditions WHERE asset=? "
                "ORDER BY format, pixel_width, width", (sha256,)
            ).fetchall()
        return ShownImage(sha256, row[0], row[1], row[2], row[3], tuple(ShownRendition(*r) for r in reps))

    def record_asset(self, asset: Asset, key: str, rendition_keys: Sequence[str], source: str | None = None,
                     archived_at: float | None = None, *, gc_epoch: int | None = None) -> None:
        """An asset and its objects' keys; ``source`` (redacted) and ``archived_at``: the URL and time its key was
        made from (kept from its first record). ``gc_epoch``: what ``gc_barrier()`` said before the objects were
        stored or proven (PostgreSQL): AssetGone, nothing recorded, if a gc batch ran since."""
        now = time.time() if archived_at is None else archived_at
        with self._tx() as db:
            self._gc_epoch_holds(db, gc_epoch, f"image {asset.sha256[:16]}…")
            if asset.phash_variants:  # variants given to an asset recorded without them: the variant index
                db.execute(           # (which only reads assets added after it) must be made again
                    "DELETE FROM hash_index WHERE EXISTS (SELECT 1 FROM assets WHERE sha256 = ? AND "
                    "(phash_variants IS NULL OR dhash_variants IS NULL))", (asset.sha256,))
            db.execute(
                """INSERT INTO assets (sha256, format, mime, ext, bytes, width, height, frames, phash, dhash,
                                       key, first_seen, phash_variants, dhash_variants, grey, colours, chroma,
                                       source, content)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(sha256) DO UPDATE SET
                     phash_variants=COALESCE(assets.phash_variants, excluded.phash_variants),
                     dhash_variants=COALESCE(assets.dhash_variants, excluded.dhash_variants),
                     grey=COALESCE(assets.grey, excluded.grey),
                     colours=COALESCE(assets.colours, excluded.colours),
                     chroma=COALESCE(assets.chroma, excluded.chroma),
                     content=COALESCE(assets.content, excluded.content)""",
                (asset.sha256, asset.format.name, asset.format.mime, asset.format.ext, asset.size, asset.width,
                 asset.height, asset.frames, asset.phash, asset.dhash, key, now,
                 ",".join(asset.phash_variants) or None, ",".join(asset.dhash_variants) or None,
                 asset.grey or None, asset.colours, asset.chroma, redact(source) if source else None,
                 asset.content if asset.phash_variants else None),
            )
            if db.execute("SELECT id FROM assets WHERE sha256=?", (asset.sha256,)).fetchone()[0] is None:
                new_id = db.execute(
                    "UPDATE counters SET value = value + 1 WHERE name = 'assets' RETURNING value"
                ).fetchone()[0]
                db.execute("UPDATE assets SET id=? WHERE sha256=?", (new_id, asset.sha256))
            for r, rkey in zip(asset.renditions, rendition_keys, strict=True):
                db.execute(
                    """INSERT INTO renditions (asset, width, format, pixel_width, pixel_height, bytes, key, sha256)
                       VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(asset, width, format) DO UPDATE SET
                         pixel_width=excluded.pixel_width, pixel_height=excluded.pixel_height, bytes=excluded.bytes,
                         key=excluded.key, sha256=excluded.sha256""",
                    (asset.sha256, r.width, r.format.name, r.pixel_width, r.pixel_height, len(r.data), rkey,
                     hashlib.sha256(r.data).hexdigest()),
                )
            # what was just stored (and proven) is no longer lost
            db.executemany("DELETE FROM lost_objects WHERE key=?", [(k,) for k in (key, *rendition_keys)])

    # -- near-duplicate search -----------------------------------------------------------------
    def variant_batches(self, size: int = 65_536) -> Iterator[list[VariantRow]]:
        """(id, phash variants, dhash variants, grey) of every asset with variants, by id, ``size`` at a time."""
        cur = self._db.execute(
            "SELECT id, phash_variants, dhash_variants, grey FROM assets "
            "WHERE phash_variants IS NOT NULL AND dhash_variants IS NOT NULL ORDER BY id"
        )
        while rows := cur.fetchmany(size):
            yield [VariantRow(*r) for r in rows]

    def variant_rows_after(self, last_id: int, size: int = 65_536) -> Iterator[list[SignatureRow]]:
        """(id, sha256, phash variants, dhash variants, grey) of the assets with variants whose id is above
        ``last_id``, by id, ``size`` at a time: what the on-disk variant index has not seen yet (ids only grow)."""
        cur = self._db.execute(
            "SELECT id, sha256, phash_variants, dhash_variants, grey FROM assets "
            "WHERE id > ? AND phash_variants IS NOT NULL AND dhash_variants IS NOT NULL ORDER BY id",
            (last_id,),
        )
        while rows := cur.fetchmany(size):
            yield [SignatureRow(*r) for r in rows]

    def asset_shas(self, ids: Iterable[int]) -> dict[int, str]:
        """The sha256 of each asset id (ids the manifest does not know are left out)."""
        return dict(self._rows_in("SELECT id, sha256 FROM assets", "id", ids))

    def asset_ids(self, shas: Iterable[str]) -> dict[str, int]:
        """The id of each asset sha256 (those the manifest does not know are left out)."""
        return dict(self._rows_in("SELECT sha256, id FROM assets", "sha256", shas))

    def resign_asset(self, sha256: str, phash_variants: Sequence[str], dhash_variants: Sequence[str],
                     grey: str, content: float) -> None:
        """Give an archived image a new signature (`dedupe --resign`), in one transaction: the near-duplicate pairs
        recorded for it and for the assets sharing its old or its new signature (a class of identical signatures
        records its pairs through one head) are dropped and those assets searched again; the on-disk variant index,
        which holds the old hashes, is made again on its next use."""
        pv, dv = ",".join(phash_variants), ",".join(dhash_variants)
        with self._tx() as db:
            row = db.execute("SELECT phash_variants, dhash_variants, grey FROM assets WHERE sha256 = ?",
                             (sha256,)).fetchone()
            if row is None:
                return
            affected = {sha256}
            for p, d, g in (tuple(row), (pv, dv, grey)):
                if p and d:
                    affected.update(s for (s,) in db.execute(
                        "SELECT sha256 FROM assets WHERE substr(phash_variants, 1, 16) = ? AND phash_variants = ? "
                        "AND dhash_variants = ? AND COALESCE(grey, '') = ?", (p[:16], p, d, g or "")))
            shas = sorted(affected)
            for i in range(0, len(shas), 400):
                part = shas[i : i + 400]
                m = ",".join("?" * len(part))
                db.execute(f"DELETE FROM near_duplicates WHERE a IN ({m}) OR b IN ({m})", (*part, *part))
                db.execute(f"UPDATE assets SET search_mark = NULL WHERE sha256 IN ({m})", part)
            db.execute("UPDATE assets SET phash = ?, dhash = ?, phash_variants = ?, dhash_variants = ?, grey = ?, "
                       "content = ? WHERE sha256 = ?",
                       (phash_variants[0], dhash_variants[0], pv, dv, grey or None, content, sha256))
            db.execute("DELETE FROM hash_index")

    def asset_rows_by_sha(self, shas: Iterable[str]) -> list[AssetRow]:
        """``asset_rows`` of the given sha256s only (those the manifest does not know are left out), by sha256."""
        return self._asset_rows_in("sha256", shas)

    def asset_rows_of(self, ids: Iterable[int]) -> list[AssetRow]:
        """``asset_rows`` of the given asset ids only, by sha256."""
        return self._asset_rows_in("id", ids)

    def _asset_rows_in(self, column: str, keys: Iterable[object]) -> list[AssetRow]:
        return sorted((AssetRow(*r) for r in self._rows_in(f"SELECT {_ASSET_COLUMNS} FROM assets", column, keys)),
                      key=lambda r: r.sha256)

    def hash_index_state(self, name: str) -> tuple[str, int, int, str] | None:
        """(token, generation, assets, checksum) the last update of the on-disk index ``name`` recorded."""
        row = self._db.execute(
            "SELECT token, generation, assets, checksum FROM hash_index WHERE name = ?", (name,)).fetchone()
        return None if row is None else (row[0], int(row[1]), int(row[2]), row[3])

    def record_hash_index_state(self, name: str, token: str, generation: int, assets: int, checksum: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO hash_index (name, token, generation, assets, checksum) VALUES (?,?,?,?,?) "
                "ON CONFLICT (name) DO UPDATE SET token=excluded.token, generation=excluded.generation, "
                "assets=excluded.assets, checksum=excluded.checksum",
                (name, token, generation, assets, checksum),
            )

    def unsearched(self, max_distance: int, rule: int, limit: int = -1) -> list[UnsearchedAsset]:
        """(id, sha256) of the assets with hash variants not yet searched at ``max_distance`` or more under
        ``rule``, by id (the first ``limit`` of them; -1: all). Reads only those assets (the index on ``search_mark``,
        migration 16): what a run adds, not the archive."""
        n = limit if limit >= 0 else 2**62
        return [UnsearchedAsset(*r) for r in sorted(self._unsearched("id, sha256", max_distance, rule, n))[:n]]

    def unsearched_ids(self, max_distance: int, rule: int) -> list[int]:
        """The ids of ``unsearched``'s assets, ascending, read from the index on ``search_mark`` alone: a search of most
        of the archive (a first search, a rescan) needs no sha256 (reading 10 M of them with their rows took 60 s, the
        ids ~11 s)."""
        return sorted(r[0] for r in self._unsearched("id", max_distance, rule, 2**62))

    def _unsearched(self, columns: str, max_distance: int, rule: int, limit: int) -> list[tuple[Any, ...]]:
        """``columns`` of the assets ``unsearched`` names, in no order (at most ``limit`` from each of the three ranges
        of the index on ``search_mark``: never searched, searched below ``max_distance`` or under an older rule, under
        a later rule; an ORDER BY makes SQLite walk every asset by id instead)."""
        low, high = _mark(rule, max_distance), _mark(rule + 1, 0)  # searched: low <= mark < high
        rows: list[tuple[Any, ...]] = []
        for test, args in (("IS NULL", ()), ("< ?", (low,)), (">= ?", (high,))):
            rows += self._db.execute(
                f"SELECT {columns} FROM assets WHERE phash_variants IS NOT NULL AND dhash_variants IS NOT NULL "
                f"AND search_mark {test} LIMIT ?", (*args, limit)).fetchall()
        return rows

    def searched_below(self, max_distance: int, rule: int) -> int:
        """How many assets were searched under ``rule`` but at a smaller distance than ``max_distance``."""
        return self._db.execute(
            "SELECT COUNT(*) FROM assets WHERE phash_variants IS NOT NULL AND dhash_variants IS NOT NULL "
            "AND search_mark >= ? AND search_mark < ?", (_mark(rule, 0), _mark(rule, max_distance))
        ).fetchone()[0]

    def signature_rows(self, rowids: Iterable[int]) -> list[SignatureRow]:
        """(id, sha256, phash variants, dhash variants, grey) of the given assets."""
        return [SignatureRow(*r) for r in self._rows_in(
            "SELECT id, sha256, phash_variants, dhash_variants, grey FROM assets", "id", rowids)]

    def record_pair_search(self, pairs: Iterable[tuple[str, str, int, int, str, float, int]], searched: Iterable[str],
                           max_distance: int, rule: int, *, replace_all: bool = False,
                           searched_ids: Iterable[int] | None = None) -> None:
        """One transaction: the confirmed pairs (a < b, pHash and dHash distances, transform mapping a onto b, grey
        distance, smallest accepting max_distance) found by searching ``searched`` against every asset, and
        their marks (searched at ``max_distance`` under ``rule``). Pairs of another rule are dropped; all pairs
        and every other mark when ``replace_all`` (a search of the whole archive from scratch). ``searched_ids``:
        the ids of ``searched``, when the caller has them (else looked up: ~6 s for a million)."""
        mark = _mark(rule, max_distance)
        # (int: sqlite3 binds a numpy integer as a BLOB, never >= an id; a search's ids come ascending: not sorted again)
        ids = [int(i) for i in (self.asset_ids(searched).values() if searched_ids is None else searched_ids)]
        if any(a >= b for a, b in pairwise(ids)):
            ids = sorted(set(ids))
        runs = _runs(ids)
        with self._tx() as db:
            if replace_all:
                db.execute("DELETE FROM near_duplicates")
                gaps = list(zip([-(2**63), *(hi + 1 for _, hi in runs)], [*(lo - 1 for lo, _ in runs), 2**63 - 1],
                                strict=True))  # the ids around the runs: each mark outside them cleared
                db.executemany("UPDATE assets SET search_mark = NULL WHERE id >= ? AND id <= ? AND "
                               "search_mark IS NOT NULL", [g for g in gaps if g[0] <= g[1]])
            else:  # two ranges, not "!=": both read through the index on rule
                db.execute("DELETE FROM near_duplicates WHERE rule < ?", (rule,))
                db.execute("DELETE FROM near_duplicates WHERE rule > ?", (rule,))
            db.executemany(
                "INSERT INTO near_duplicates (a, b, phash_distance, dhash_distance, transform, grey_distance, "
                "min_distance, rule) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(a, b) DO UPDATE SET "
                "phash_distance=excluded.phash_distance, dhash_distance=excluded.dhash_distance, "
                "transform=excluded.transform, grey_distance=excluded.grey_distance, "
                "min_distance=excluded.min_distance, rule=excluded.rule",
                sorted((*p, rule) for p in pairs),  # in key order: each B-tree page is visited once, not per row
            )
            # the marks a run of consecutive ids at a time, through the index on id: a first search or a rescan is
            # a few runs, a run adding images one (row by row by sha256 it was 28 s of a 1 M rescan, now ~7 s)
            # (rows already holding the mark are not written again: a rescan at the same distance writes none)
            db.executemany("UPDATE assets SET search_mark = ? WHERE id >= ? AND id <= ? AND "
                           "(search_mark IS NULL OR search_mark <> ?)", [(mark, lo, hi, mark) for lo, hi in runs])

    def recorded_pairs(self, max_distance: int, rule: int) -> list[PairRow]:
        """(a, b, pHash distance, dHash distance) of the recorded pairs the rule accepts at ``max_distance``."""
        return [PairRow(*r) for r in self._db.execute(
            "SELECT a, b, phash_distance, dhash_distance FROM near_duplicates WHERE rule = ? AND min_distance <= ?",
            (rule, max_distance),
        )]

    def objects(self) -> Iterator[StoredObject]:
        """Every stored object, originals first (their rendition fields are None), with its expected size, SHA-256
        and type."""
        for sha, key, size, mime in self._db.execute("SELECT sha256, key, bytes, mime FROM assets"):
            yield StoredObject(key, sha, size=size, content_sha256=sha, mime=mime)
        yield from (
            StoredObject(key, sha, w, fmt, pw, ph, of, size, rsha, f"image/{fmt}")
            for sha, w, fmt, pw, ph, key, of, size, rsha in self._db.execute(
                "SELECT r.asset, r.width, r.format, r.pixel_width, r.pixel_height, r.key, a.key, r.bytes, r.sha256 "
                "FROM renditions r JOIN assets a ON a.sha256 = r.asset"
            )
        )

    def renditions_of(self, shas: Iterable[str]) -> list[RenditionRow]:
        """``renditions`` of the given assets only, by asset then width."""
        return sorted(RenditionRow(*r) for r in self._rows_in("SELECT asset, width, key FROM renditions", "asset", shas))

    def original_owners(self, keys: Iterable[str]) -> dict[str, str]:
        """The asset sha256 whose original is stored under each of ``keys`` (keys of no original are left out)."""
        return dict(self._rows_in("SELECT key, sha256 FROM assets", "key", keys))

    def unsigned_asset_rows(self, well_formed: int) -> list[AssetRow]:
        """``asset_rows()`` of the raster assets (a pHash) whose variants or grey thumbnail are missing or not well
        formed (``well_formed``: the length of a well-formed variants field): those archived before variants were
        taken, or damaged. One pass over the table in its own order, no row built for the others (at 1 M, 0.8 s of
        CPU; in sha256 order, through its index, 2.5 s)."""
        return sorted(AssetRow(*r) for r in self._db.execute(
            f"SELECT {_ASSET_COLUMNS} FROM assets WHERE phash IS NOT NULL AND ("
            "phash_variants IS NULL OR dhash_variants IS NULL OR LENGTH(phash_variants) <> ? OR "
            "LENGTH(dhash_variants) <> ? OR (grey IS NOT NULL AND LENGTH(grey) <> 128))", (well_formed, well_formed)))

    def renditions(self) -> list[RenditionRow]:
        """(asset sha256, width, key) of every stored thumbnail, by asset then width."""
        return [RenditionRow(*r) for r in self._db.execute("SELECT asset, width, key FROM renditions ORDER BY asset, width")]

    def asset_rows(self, *, well_formed: int | None = None) -> list[AssetRow]:
        """Every asset, by sha256: what grouping needs. With ``well_formed`` (the length of a well-formed variants
        field), the variants and grey thumbnail of the assets whose fields have that form come back as "" (read
        later, for the few assets that can be in a group: ``asset_rows_of``); the others' as they are."""
        if well_formed is None:
            return [AssetRow(*r) for r in self._db.execute(f"SELECT {_ASSET_COLUMNS} FROM assets ORDER BY sha256")]
        head = _ASSET_COLUMNS.split(", phash_variants")[0]  # the columns before the variants
        # whether the fields are well formed, tested once a row (not once per field), and the rows read in the table's
        # order, sorted here (through the sha256 index, a million rows cost 2 s more): at 1 M, 8.4 -> 6.0 s of CPU
        ok = "LENGTH(phash_variants) = ? AND LENGTH(dhash_variants) = ? AND (grey IS NULL OR LENGTH(grey) = 128)"
        rows = self._db.execute(f"SELECT {head}, {ok}, colours, chroma, content FROM assets",
                                (well_formed, well_formed)).fetchall()
        odd = [r[0] for r in rows if not r[11]]  # not well formed (or NULL): as they are (few)
        fields = {r[0]: r[1:] for r in self._rows_in(
            "SELECT sha256, phash_variants, dhash_variants, grey FROM assets", "sha256", odd)}
        well, gone = ("", "", ""), (None, None, None)  # gone: deleted between the two reads (as unknown)
        out = [AssetRow(*r[:11], *(well if r[11] else fields.get(r[0], gone)), *r[12:]) for r in rows]
        out.sort(key=attrgetter("sha256"))
        return out

    def record_colour(self, rows: Iterable[tuple[str, int | None, float | None]]) -> None:
        """(sha256, palette colours, chroma) measured later for assets archived before they were recorded."""
        with self._tx() as db:
            db.executemany("UPDATE assets SET colours = COALESCE(colours, ?), chroma = COALESCE(chroma, ?) "
                           "WHERE sha256 = ?", [(colours, chroma, sha) for sha, colours, chroma in rows])

    def source_urls_of(self, shas: Iterable[str]) -> dict[str, list[str]]:
        """The archived URLs of each of ``shas`` (those with any), each asset's oldest first (then by URL): looked up
        through the index on the URLs' asset, a batch at a time, not every URL of the archive read; or, when they are
        a quarter of the archive's assets or more (a report of an archive with many duplicates), in one pass over
        the URLs, which costs less than that many lookups (at 1 M, 390 000 assets: 3.4 -> 2.0 s). SQLite only: its
        rows come a step at a time, where psycopg's would all be held at once (~170 MB a million URLs)."""
        wanted = shas if isinstance(shas, (set, frozenset, dict)) else set(shas)
        found: dict[str, list[tuple[float, str]]] = defaultdict(list)
        if not self.shared and len(wanted) * 4 >= (  # (psycopg would hold every URL of the archive at once)
                self._db.execute("SELECT MAX(id) FROM assets").fetchone()[0] or 0):  # through its index: at once
            for url, asset, first_seen in self._db.execute(
                    "SELECT url, asset, first_seen FROM urls WHERE status = 'archived' AND asset IS NOT NULL"):
                if asset in wanted:
                    found[asset].append((first_seen, url))
        else:
            for url, asset, status, first_seen in self._rows_in("SELECT url, asset, status, first_seen FROM urls",
                                                                "asset", wanted):
                if status == "archived":
                    found[asset].append((first_seen, url))
        return {asset: [url for _, url in sorted(urls)] if len(urls) > 1 else [urls[0][1]]
                for asset, urls in found.items()}

    def assets_with_several_urls(self) -> list[str]:
        """The assets reached through more than one archived URL (by sha256): one pass over the index on the URLs'
        asset and the rows it names, in the database, no row built for the others."""
        return [sha for (sha,) in self._db.execute(
            "SELECT asset FROM urls WHERE asset IS NOT NULL AND status = 'archived' GROUP BY asset "
            "HAVING COUNT(*) > 1 ORDER BY asset")]

    # -- reporting -----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        out = {str(s): 0 for s in Outcome}
        for status, n in self._db.execute("SELECT status, COUNT(*) FROM urls GROUP BY status"):
            out[status] = n
        out["assets"], out["bytes_original"] = self._db.execute(
            "SELECT COUNT(*), CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM assets"
        ).fetchone()
        out["renditions"], out["bytes_renditions"] = self._db.execute(
            "SELECT COUNT(*), CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM renditions"
        ).fetchone()
        out["articles"] = self._db.execute("SELECT COUNT(*) FROM articles").fetchone()[0]
        out["articles_pending"] = self._db.execute("SELECT COUNT(*) FROM pending_writes").fetchone()[0]
        out["near_duplicate_pairs"] = self._db.execute("SELECT COUNT(*) FROM near_duplicates").fetchone()[0]
        out["duplicate_urls"] = self._db.execute(
            "SELECT CAST(COALESCE(SUM(n - 1), 0) AS BIGINT) FROM (SELECT COUNT(*) AS n FROM urls "
            "WHERE asset IS NOT NULL GROUP BY asset) AS g"
        ).fetchone()[0]
        return out

    def exported_assets(self) -> Iterator[ExportedAsset]:
        """Every asset at least one archived URL resolves to, oldest first, with its source URLs and renditions;
        streamed (one asset in memory at a time)."""
        cursor = self._db.execute(
            "SELECT sha256, format, mime, bytes, width, height, first_seen, key FROM assets a WHERE EXISTS "
            "(SELECT 1 FROM urls u WHERE u.asset = a.sha256 AND u.status = 'archived') ORDER BY first_seen, sha256"
        )
        for sha, fmt, mime, size, width, height, first_seen, key in cursor:
            sources = [u for (u,) in self._db.execute(
                "SELECT url FROM urls WHERE asset = ? AND status = 'archived' ORDER BY first_seen, url", (sha,))]
            renditions = [ExportedRendition(*r) for r in self._db.execute(
                "SELECT width, format, pixel_width, pixel_height, bytes, key FROM renditions WHERE asset = ? "
                "ORDER BY width, format", (sha,))]
            yield ExportedAsset(sha, fmt, mime, size, width, height, first_seen, key, sources, renditions)

    def unarchived(self) -> Iterator[UrlState]:
        """Every URL recorded as dead, rejected or failed, by URL (streamed)."""
        for row in self._db.execute(
            "SELECT url, status, reason, attempts, asset, http_status, cause FROM urls WHERE status != 'archived' "
            "ORDER BY url"
        ):
            yield _url_state(row)

    def failures(self, limit: int = 20) -> list[UrlState]:
        return [
            _url_state(row)
            for row in self._db.execute(
                "SELECT url, status, reason, attempts, asset, http_status, cause FROM urls "
                "WHERE status != 'archived' ORDER BY last_tried DESC LIMIT ?",
                (limit,),
            )
        ]


# an AssetRow's columns, in its order
_ASSET_COLUMNS = ("sha256, format, mime, ext, bytes, width, height, first_seen, key, phash, dhash, phash_variants, "
                  "dhash_variants, grey, colours, chroma, content")


def _put_article_refs(db: sqlite3.Connection, rows: list[tuple[str, str, list[str]]], fingerprint: str) -> None:
    """Each (sha256, format, texts) of ``rows`` recorded under ``fingerprint``, replacing what was there."""
    db.executemany(
        "INSERT INTO article_refs (sha256, format, fingerprint, refs) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (sha256, format) DO UPDATE SET fingerprint = excluded.fingerprint, refs = excluded.refs",
        [(sha, fmt, fingerprint, json.dumps(refs)) for sha, fmt, refs in rows])  # ASCII: a lone surrogate too


def _runs(ids: list[int]) -> list[tuple[int, int]]:
    """Ascending ids as runs of consecutive ones, (first, last) each."""
    out: list[tuple[int, int]] = []
    if not ids:
        return out
    start = prev = ids[0]
    for i in ids[1:]:
        if i != prev + 1:
            out.append((start, prev))
            start = i
        prev = i
    out.append((start, prev))
    return out


def _mark(rule: int, max_distance: int) -> int:
    """An asset's ``search_mark``: searched at ``max_distance`` (below 1000) under ``rule``."""
    return rule * 1000 + max_distance


def _url_state(row: Sequence[object]) -> UrlState:
    url, status, *rest = row
    return UrlState(url, Outcome(status), *rest)  # type: ignore[arg-type]
