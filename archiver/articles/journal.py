"""Writing an article only together with its record: the write-ahead step every rewrite and restore goes through.

The record (a ``Journal``: the manifest) first gets what is about to be written (the article's hash before and
after, the spans replaced and why), then the new bytes are renamed into place, then the record is confirmed. If the
record cannot be written, the article is not written. A run killed in between leaves the record pending, and the
next command that writes (run, restore, dedupe) settles it by the file's current hash (``settle_pending``):

- it holds the new bytes: the rename happened, the record is confirmed;
- it holds the old bytes: the rename never happened, the record is dropped;
- anything else (edited since, or gone): a rewrite is confirmed, since restore finds our spans by what they hold
  and reports the rest, and losing the record would lose the originals; a restore is dropped, so the article stays
  recorded and the next restore does what is left.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from archiver.articles.rewrite import write_atomic
from archiver.errors import ArticleError, ManifestError
from archiver.faults import crash_point
from archiver.model import RESTORE, Article, ArticleReplacement
from archiver.terminal import shown_path

log = logging.getLogger("archiver")


class Pending(Protocol):
    path: str
    sha256_before: str
    sha256_after: str
    reason: str


class Journal(Protocol):
    """Where article writes are recorded (archiver.manifest's ``Manifest``)."""

    def intend_rewrite(self, path: str, sha_before: str, sha_after: str,
                       generations: Sequence[Sequence[ArticleReplacement]], reason: str) -> None: ...
    def confirm_rewrite(self, path: str) -> None: ...
    def abandon_rewrite(self, path: str) -> None: ...
    def pending_rewrites(self) -> Sequence[Pending]: ...


def record_key(path: Path) -> str:
    """The path an article is recorded under: its real path (symlinks resolved; never raises, loops included)."""
    return os.path.realpath(path)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_recorded(journal: Journal, article: Article, data: bytes,
                   generations: Sequence[Sequence[ArticleReplacement]], reason: str, key: str | None = None) -> None:
    """Write ``data`` over ``article`` (atomically, only if the file still is what was read: ``write_atomic``) with
    its record in the same step: recorded before the rename, confirmed after. ``generations``: the rewrite
    generations this write makes (each the spans it replaced, in the text the one before left; one, usually; none
    for a restore). ``key``: the path it is recorded
    under (default ``record_key``). ArticleError: not written, nothing recorded; ManifestError: the record could not
    be written (then neither was the article), or not confirmed (then the next run settles it)."""
    key = record_key(article.path) if key is None else key
    before, after = sha256(article.raw), sha256(data)
    intended = False

    def intend() -> None:
        nonlocal intended
        journal.intend_rewrite(key, before, after, generations, reason)
        intended = True
        crash_point("article-intended")

    try:
        write_atomic(article.path, data, expected=article.raw, state=article.state, before_rename=intend)
    except ArticleError:
        if intended:
            with contextlib.suppress(ManifestError):  # left pending: settled as "did not happen" by the next run
                journal.abandon_rewrite(key)
        raise
    except ManifestError as exc:
        raise ManifestError(f"not written, because its record cannot be written: {exc}") from exc
    crash_point("article-replaced")
    try:
        journal.confirm_rewrite(key)
    except ManifestError as exc:
        raise ManifestError(f"written, but its record is not confirmed yet ({exc}); the next run settles it") from exc
    crash_point("recorded-article")


def settle_pending(journal: Journal) -> list[str]:
    """Settle the writes a killed command left pending (see the module's docstring); returns one line for each."""
    done: list[str] = []
    for p in journal.pending_rewrites():
        current = _hash_of(p.path)
        if current == p.sha256_after or (current != p.sha256_before and p.reason != RESTORE):
            journal.confirm_rewrite(p.path)
            what = "in place" if current == p.sha256_after else "changed since"
            done.append(f"{shown_path(p.path)}: the {p.reason} write of an interrupted run is {what}: recorded")
        else:
            journal.abandon_rewrite(p.path)
            done.append(f"{shown_path(p.path)}: the {p.reason} write of an interrupted run did not happen: dropped")
    for line in done:
        log.info("%s", line)
    return done


def _hash_of(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None
