"""The manifest's record of the articles we rewrote: each rewrite generation's spans, and the write-ahead record of
an article write in progress (recorded before the rename, confirmed after: archiver.articles.journal drives it).

Paths are stored by ``rows.stored_path``: TEXT, or the file name's bytes when it is not UTF-8, so every path
round-trips, whatever the file system holds.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager

from archiver.errors import ManifestError
from archiver.manifest.rows import Generation, PendingWrite, RewrittenArticle, read_path, stored_path, url_key
from archiver.model import RESTORE, ArticleReplacement
from archiver.redaction import has_secret


class ArticleRecords:
    """The article part of ``Manifest`` (which provides the connection and its transactions)."""

    _db: sqlite3.Connection
    path: object

    def _tx(self, *, durable: bool = False) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    # -- generations ------------------------------------------------------------------------------
    def record_article(
        self,
        path: str,
        sha_before: str,
        sha_after: str,
        replacements: Sequence[ArticleReplacement],
        reason: str = "archive",
    ) -> None:
        """One rewrite generation of an article; ``reason`` is "archive" (run) or "dedupe" (dedupe --apply)."""
        with self._tx() as db:
            _add_generation(db, stored_path(path), sha_before, sha_after, _stored_spans(replacements), reason)

    def rewritten_articles(self) -> list[RewrittenArticle]:
        """(path, sha256 before our first rewrite, sha256 after our latest) of every rewritten article."""
        rows = self._db.execute("SELECT path, sha256_before, sha256_after FROM articles")
        return sorted(RewrittenArticle(read_path(p), b, a) for p, b, a in rows)

    def forget_article(self, path: str) -> None:
        """Drop an article's rewrite generations and its row: as if we had never rewritten it (after restore)."""
        with self._tx() as db:
            _forget(db, stored_path(path))

    def article_generations(self, path: str) -> list[Generation]:
        """Every rewrite generation of an article with its reason ("archive", "dedupe", ...), oldest first."""
        gens: dict[int, Generation] = {}
        for seq, reason, *rest in self._db.execute(
            "SELECT seq, reason, start, \"end\", original, replacement, url FROM replacements WHERE article=? "
            "ORDER BY seq, start",
            (stored_path(path),),
        ):
            gens.setdefault(seq, Generation(reason, []))[1].append(ArticleReplacement(*rest))
        return [gens[k] for k in sorted(gens)]

    def article_replacements(self, path: str) -> list[list[ArticleReplacement]]:
        """Every rewrite generation of an article, oldest first."""
        return [g.replacements for g in self.article_generations(path)]

    def articles_rewritten_for(self, reason: str) -> set[str]:
        """Paths of the articles with at least one rewrite generation of this reason."""
        rows = self._db.execute("SELECT DISTINCT article FROM replacements WHERE reason=?", (reason,))
        return {read_path(r[0]) for r in rows}

    # -- the write-ahead record -------------------------------------------------------------------
    def intend_rewrite(
        self, path: str, sha_before: str, sha_after: str, generations: Sequence[Sequence[ArticleReplacement]],
        reason: str,
    ) -> None:
        """Record the write about to be renamed into place: the rewrite generations it makes (usually one; with
        ``RESTORE``, none: it undoes them all). ManifestError if it cannot be recorded, or if a write of this article
        is already pending: then the article must not be written."""
        key = stored_path(path)
        spans = json.dumps([_stored_spans(g) for g in generations], ensure_ascii=False)
        with self._tx(durable=True) as db:  # on disk before the rename it announces, power cut or not
            if db.execute("SELECT 1 FROM pending_writes WHERE path=?", (key,)).fetchone():
                raise ManifestError(f"{self.path or 'manifest'}: an earlier write of this article is still pending")
            db.execute(
                "INSERT INTO pending_writes (path, sha256_before, sha256_after, reason, replacements, started_at) "
                "VALUES (?,?,?,?,?,?)",
                (key, sha_before, sha_after, reason, spans, time.time()),
            )

    def confirm_rewrite(self, path: str) -> None:
        """The pending write is in place: record its generations (or forget the restored article), in one step."""
        key = stored_path(path)
        with self._tx() as db:
            row = db.execute(
                "SELECT sha256_before, sha256_after, reason, replacements FROM pending_writes WHERE path=?", (key,)
            ).fetchone()
            if row is None:
                return
            before, after, reason, generations = row
            if reason == RESTORE:
                _forget(db, key)
            for spans in json.loads(generations):
                _add_generation(db, key, before, after, [tuple(s) for s in spans], reason)
            db.execute("DELETE FROM pending_writes WHERE path=?", (key,))

    def abandon_rewrite(self, path: str) -> None:
        """The pending write did not happen (refused, or failed before its rename): drop its record."""
        with self._tx() as db:
            db.execute("DELETE FROM pending_writes WHERE path=?", (stored_path(path),))

    def pending_rewrites(self) -> list[PendingWrite]:
        """The writes recorded and never confirmed or abandoned (their run was killed in between), by path."""
        rows = self._db.execute("SELECT path, sha256_before, sha256_after, reason FROM pending_writes")
        return sorted(PendingWrite(read_path(p), b, a, r) for p, b, a, r in rows)


_Span = tuple[int, int, str, str, str]


def _stored_spans(replacements: Sequence[ArticleReplacement]) -> list[_Span]:
    # a span that held a secret is never stored as written (not even in the write-ahead record)
    return [(r.start, r.end, "" if has_secret(r.original) else r.original, r.replacement, url_key(r.url))
            for r in replacements]


def _add_generation(
    db: sqlite3.Connection, key: str | bytes, sha_before: str, sha_after: str, spans: Sequence[Sequence[object]],
    reason: str,
) -> None:
    row = db.execute("SELECT sha256_before FROM articles WHERE path=?", (key,)).fetchone()
    seq = db.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM replacements WHERE article=?", (key,)).fetchone()[0]
    db.execute(
        """INSERT INTO articles (path, sha256_before, sha256_after, rewritten_at) VALUES (?,?,?,?)
           ON CONFLICT(path) DO UPDATE SET sha256_after=excluded.sha256_after, rewritten_at=excluded.rewritten_at""",
        (key, row[0] if row else sha_before, sha_after, time.time()),
    )
    db.executemany(
        'INSERT INTO replacements (article, seq, start, "end", original, replacement, url, reason) VALUES (?,?,?,?,?,?,?,?)',
        [(key, seq, *span, reason) for span in spans],
    )


def _forget(db: sqlite3.Connection, key: str | bytes) -> None:
    db.execute("DELETE FROM replacements WHERE article=?", (key,))
    db.execute("DELETE FROM articles WHERE path=?", (key,))

