"""What `archiver gc` reads from and writes to the manifest: the recorded objects with the time each was last
archived, who still points at them, their removal, and the journal of deletions in progress.

The journal (``gc_deletions``) is written in the same transaction that removes an asset's records and emptied only
once the store has deleted its objects: a gc killed in between finishes the job on its next run, and never deletes a
key that a run has recorded again since. The SQL is portable (SQLite and PostgreSQL).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from archiver.manifest.rows import read_path

_CHUNK = 500  # bound parameters per statement


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

        def _tx(self) -> AbstractContextManager[sqlite3.Connection]: ...

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
                    db.execute(f"DELETE FROM pair_searches WHERE asset IN ({hm})", part)
            for chunk in _chunks(shas):
                m, p = _marks(len(chunk)), list(chunk)
                db.execute(f"DELETE FROM near_duplicates WHERE a IN ({m}) OR b IN ({m})", p + p)
                db.execute(f"DELETE FROM pair_searches WHERE asset IN ({m})", p)
                db.execute(f"DELETE FROM lost_objects WHERE asset IN ({m})", p)
                db.execute(f"DELETE FROM renditions WHERE asset IN ({m})", p)
                db.execute(f"DELETE FROM urls WHERE asset IN ({m})", p)
                db.execute(f"DELETE FROM assets WHERE sha256 IN ({m})", p)
            if assets:
                db.execute("DELETE FROM settled_articles")

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
