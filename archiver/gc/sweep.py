"""The plan of a gc and its deletion: which recorded images nothing holds any more, deleted in small batches, each
re-checked under the manifest's lock against the articles as they are then and the manifest as it is then.

What holds an image (its original and every rendition, which go together):
``article``  an article on disk uses it: an archive URL of one of its objects (srcset renditions and rewritten images
             on disk included), or a URL the manifest archived to it that a run would point the article at;
``pending``  an article write a killed command left recorded names it;
``undo``     `dedupe --undo` would put back its URL (unless ``forget_undo``);
``rekey``    an unfinished `archiver rekey` is moving it (its articles may point at either key until it ends);
``recent``   the manifest recorded archiving it less than the grace period ago;
``limit``    deleting it would pass ``max_delete`` objects in this run.

Safe under a concurrent run: a run holds the manifest's lock for its whole length, a gc only for one batch; before
deleting, each batch reads again the articles that changed and the manifest's records of its images, so whatever a
run (or an editor) made use of in the meantime is kept. With PostgreSQL, workers record without that lock: a batch
also holds the gc batch lock, which their recordings take shared (archiver/manifest/gc.py says why that is safe). The records go first, with a journal of the keys, in one
transaction; then the store deletes the objects; then the journal rows go: a gc killed anywhere leaves either
records with their objects, or journal rows that the next gc finishes (skipping a key recorded again since).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from archiver.errors import ArchiverError, StorageError
from archiver.faults import crash_point
from archiver.gc.usage import Usage
from archiver.manifest.gc import GcAsset
from archiver.manifest.rows import LostObject, read_path
from archiver.manifest.sqlite import Manifest
from archiver.storage import Store
from archiver.storage.keys import parse_key
from archiver.terminal import shown_path

log = logging.getLogger("archiver")

LOST = ("the connection to PostgreSQL was lost during a batch, and the gc's locks with it: nothing more is deleted "
        "now (the next gc finishes this batch's deletion)")

LOST_DELETING = "the connection to PostgreSQL was lost while the store deleted a batch, and the gc's locks with it"
GONE = "deleted by an archiver gc whose PostgreSQL connection was lost during the deletion"

REASONS = {
    "article": "used by an article on disk",
    "pending": "named by an article write an interrupted command left pending",
    "undo": "kept for `dedupe --undo` (an applied dedupe replaced them; --forget-undo lets them go)",
    "rekey": "being moved by an unfinished `archiver rekey` (run it again to finish)",
    "recent": "archived within the grace period",
    "limit": "over --max-delete this run (the next gc takes them)",
}


@dataclass(frozen=True)
class Options:
    grace_days: float = 7.0
    max_delete: int = 1000  # objects (originals and renditions) per run
    force: bool = False  # no --max-delete limit, and go ahead where an article could not be read
    forget_undo: bool = False
    batch: int = 100  # images per locked batch


@dataclass
class Result:
    candidates: list[GcAsset] = field(default_factory=list)  # planned (a dry run: what would go)
    deleted: list[GcAsset] = field(default_factory=list)
    kept: Counter[str] = field(default_factory=Counter)  # reason -> images
    kept_objects: Counter[str] = field(default_factory=Counter)
    kept_bytes: Counter[str] = field(default_factory=Counter)
    late: int = 0  # planned, then found in use when checked again under the lock
    journal_objects: int = 0  # deletions a killed gc left, finished now
    journal_bytes: int = 0
    images: int = 0  # recorded when planned
    articles: int = 0  # read
    error: str | None = None  # a storage error that stopped the deletions (a re-run finishes them)

    def keep(self, reason: str, asset: GcAsset) -> None:
        self.kept[reason] += 1
        self.kept_objects[reason] += len(asset.objects)
        self.kept_bytes[reason] += asset.bytes


class Sweeper:
    """One gc over one manifest; ``manifest`` is opened without the lock (``Manifest.open(path, lock=False)``):
    the sweeper takes it for each batch (``Manifest.gc_batch``)."""

    def __init__(self, manifest: Manifest, manifest_path: Path | str, store: Store, usage: Usage, opts: Options,
                 now: Callable[[], float] = time.time) -> None:
        self.manifest = manifest
        self.path = manifest_path
        self.store = store
        self.usage = usage
        self.opts = opts
        self.now = now

    # -- what holds an image ------------------------------------------------------------------
    def holds(self, assets: Sequence[GcAsset]) -> tuple[dict[str, str], list[tuple[str | bytes, int, str]]]:
        """sha256 -> the first reason that keeps it, for ``assets`` as the manifest and the articles are now; and the
        applied dedupe generations that name each asset (article, generation, sha256), for ``forget_undo``."""
        keys_of = {a.sha256: [o.key for o in a.objects] for a in assets}
        asset_of_key = {k: sha for sha, keys in keys_of.items() for k in keys}

        moved = self.manifest.moved_keys()  # a URL recorded before a rekey names the key its object has now

        def asset_of(text: str) -> str | None:
            key = self.usage.archive_key(text)
            if key is None:
                return None
            seen: set[str] = set()
            while key in moved and key not in seen:
                seen.add(key)
                key = moved[key]
            sha = asset_of_key.get(key)
            if sha is None and (parsed := parse_key(key)) is not None and parsed.sha256 in keys_of:
                sha = parsed.sha256
            return sha

        out: dict[str, str] = {}
        for sha in self.usage.users(keys_of, self.manifest.archived_urls_of(list(keys_of))):
            out[sha] = "article"
        for _path, texts in self.manifest.pending_write_texts():
            for text in texts:
                if (sha := asset_of(text)) is not None:
                    out.setdefault(sha, "pending")
        undo: list[tuple[str | bytes, int, str]] = []
        for article, seq, original in self.manifest.outstanding_dedupe():
            if (sha := asset_of(original)) is None or not Path(read_path(article)).is_file():
                continue  # an article gone cannot be undone
            undo.append((article, seq, sha))
            if not self.opts.forget_undo:
                out.setdefault(sha, "undo")
        moving = {m.asset for m in self.manifest.moves()}
        for sha in keys_of:
            if sha in moving:
                out.setdefault(sha, "rekey")
        limit = self.now() - self.opts.grace_days * 86400
        for a in assets:
            if a.last_archived > limit:
                out.setdefault(a.sha256, "recent")
        return out, undo

    # -- planning -------------------------------------------------------------------------------
    def plan(self) -> Result:
        """What would go (``Result.candidates``, oldest first) and what stays, by reason; nothing changes."""
        result = Result()
        self.usage.refresh()
        result.articles = len(self.usage.files)
        assets = self.manifest.gc_assets()
        result.images = len(assets)
        if self.usage.blind and not self.opts.force:
            raise ArchiverError("cannot tell what these use, so nothing is deleted (--force: delete anyway): "
                                + "; ".join(self.usage.blind[:5]))
        if assets and not self.usage.files and not self.opts.force:
            roots = ", ".join(shown_path(r) for r in self.usage.roots)
            raise ArchiverError(f"no articles found under {roots}: every archived image would look unused; nothing "
                                "deleted (check [articles] root, or --force if the site really has no articles)")
        held, _undo = self.holds(assets)
        budget = None if self.opts.force else self.opts.max_delete
        for a in sorted(assets, key=lambda a: (a.last_archived, a.sha256)):
            if (reason := held.get(a.sha256)) is not None:
                result.keep(reason, a)
            elif budget is not None and len(a.objects) > budget:
                result.keep("limit", a)
                budget = 0
            else:
                result.candidates.append(a)
                if budget is not None:
                    budget -= len(a.objects)
        return result

    # -- deleting ---------------------------------------------------------------------------------
    def finish_journal(self, result: Result, waiting: Callable[[], None]) -> None:
        """Delete the objects a killed gc removed the records of (not one recorded again since), under the batch
        locks; counted as a batch (``gc_bump``): a worker that proved one of them stored before records nothing."""
        if not self.manifest.gc_journal():
            return
        with self.manifest.gc_batch(waiting) as intact:
            rows = self.manifest.gc_journal()
            keys = [r.key for r in rows]
            again = self.manifest.recorded_keys(keys)
            gone = [r for r in rows if r.key not in again]
            self.manifest.gc_bump()
            # recorded again but no longer stored: a gc that lost its locks while deleting could not mark it
            missing = {k: a for k, a in self.manifest.recorded_owners(sorted(again)).items()
                       if not self.store.exists(k)}
            if missing:
                self.manifest.mark_lost([LostObject(k, a, "missing", GONE) for k, a in sorted(missing.items())])
                result.error = (f"{len(missing)} objects an interrupted gc deleted were recorded again meanwhile: "
                                "marked missing, `archiver verify --repair` stores them again")
            if not intact():
                raise ArchiverError(f"{self.manifest.path}: {LOST}")
            self.store.delete([r.key for r in gone])
            if not intact():
                self._deleted_unlocked([r.key for r in gone], result, waiting)
                self.manifest.gc_journal_done(keys)
                raise ArchiverError(f"{self.manifest.path}: {result.error}")
            self.manifest.gc_journal_done(keys)
            result.journal_objects = len(gone)
            result.journal_bytes = sum(r.bytes for r in gone)

    def _deleted_unlocked(self, keys: list[str], result: Result, waiting: Callable[[], None]) -> None:
        """The locks went (a lost PostgreSQL connection) while the store deleted ``keys``: a worker or a run may have
        proven one of them stored (the object still there) and recorded it meanwhile. Under the locks again, count a
        batch (a decision taken in the gap records nothing) and mark each deleted key recorded since as missing, so
        `verify` reports it and `verify --repair` stores it again."""
        with self.manifest.gc_batch(waiting):
            self.manifest.gc_bump()
            again = self.manifest.recorded_owners(keys)
            self.manifest.mark_lost([LostObject(k, a, "missing", GONE) for k, a in sorted(again.items())])
        result.error = LOST_DELETING + (f"; {len(again)} deleted objects recorded again meanwhile are marked missing: "
                                        "`archiver verify --repair` stores them again" if again else "")

    def delete(self, result: Result, waiting: Callable[[], None]) -> None:
        """Delete the planned images batch by batch; each batch re-checked under the manifest's batch locks."""
        todo = list(result.candidates)
        for i in range(0, len(todo), self.opts.batch):
            batch = todo[i : i + self.opts.batch]
            with self.manifest.gc_batch(waiting) as intact:
                self.usage.refresh()
                if self.usage.blind and not self.opts.force:
                    result.error = ("cannot tell what these use, so nothing more is deleted: "
                                    + "; ".join(self.usage.blind[:5]))
                    return
                fresh = self.manifest.gc_assets([a.sha256 for a in batch])  # those a run has not dropped
                held, undo = self.holds(fresh)
                go = []
                for a in fresh:
                    if (reason := held.get(a.sha256)) is not None:
                        result.keep(reason, a)
                        result.late += 1
                        log.info("gc: kept %s: %s since the plan", a.objects[0].key, REASONS[reason])
                    else:
                        go.append(a)
                if not go:
                    continue
                if self.opts.forget_undo:
                    going = {a.sha256 for a in go}
                    self.manifest.finalise_dedupe({(art, seq) for art, seq, sha in undo if sha in going})
                self.manifest.forget_assets(go)
                crash_point("gc-recorded")
                if not intact():  # a worker may have proven one of these stored meanwhile: the journal keeps them
                    result.error = LOST
                    return
                keys = [o.key for a in go for o in a.objects]
                crash_point("gc-deleting")
                try:
                    self.store.delete(keys)
                except StorageError as exc:
                    result.error = f"{exc} (the next gc finishes the deletion)"
                    return
                crash_point("gc-deleted")
                if not intact():
                    self._deleted_unlocked(keys, result, waiting)
                    self.manifest.gc_journal_done(keys)
                    return
                self.manifest.gc_journal_done(keys)
                result.deleted += go
                for a in go:
                    for o in a.objects:
                        log.info("gc: deleted %s (%d bytes)", o.key, o.bytes)
