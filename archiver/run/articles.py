"""The articles of one run: the image URLs each one uses, and its rewrite once every one of them is settled."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from archiver.articles.files import load_article
from archiver.articles.rewrite import Replacement, render, unified_diff, write_atomic
from archiver.config import ArticlesConfig, Config
from archiver.errors import UrlError
from archiver.find.refs import article_refs
from archiver.model import ArticleReplacement
from archiver.redaction import has_secret
from archiver.storage.keys import archive_key, public_bases
from archiver.urls import resolve


@dataclass(frozen=True)
class OwnUrls:
    """The URLs this archiver wrote (public_base_url + a content-addressed key): never fetched again."""

    bases: tuple[str, ...]

    @classmethod
    def of(cls, cfg: Config) -> OwnUrls:
        return cls(public_bases(cfg))

    def __contains__(self, raw: str) -> bool:
        return archive_key(raw, self.bases) is not None


@dataclass
class ArticleWork:
    """One article's part in a run: the URLs it uses and those not yet settled."""

    path: Path
    pending: set[str]  # resolved URLs not yet settled
    scheduled: bool = False  # its rewrite has been started
    uses: dict[str, list[int]] = field(default_factory=dict)  # url -> lines, for the report


@dataclass(frozen=True)
class Scanned:
    """What the scan found in one article."""

    refs: int  # image references
    done: int  # of those, already pointing at the archive
    rejected: tuple[tuple[str, str, int], ...]  # (URL as written, reason, line): URLs that cannot be fetched
    work: ArticleWork  # the URLs to settle (none: nothing to do)


@dataclass(frozen=True)
class Rewritten:
    """An article rewritten (or, in a dry run, what its rewrite would be)."""

    before: str  # sha256 of the bytes read
    after: str  # sha256 of the bytes written
    replaced: list[ArticleReplacement]
    diff: str | None  # a dry run's unified diff; None when the file was written


def scan_article(path: Path, cfg: ArticlesConfig, own: OwnUrls) -> Scanned:
    """Read an article (ArticleError if we cannot, or if it holds more than articles.max_refs references) and
    resolve the image URLs it uses."""
    article = load_article(path)
    refs = done = 0
    rejected: list[tuple[str, str, int]] = []
    work = ArticleWork(path, set())
    for ref in article_refs(article, cfg.front_matter_fields, cfg.max_refs):
        refs += 1
        if ref.url in own:
            done += 1
            continue
        try:
            url = resolve(ref.url, cfg.base_url)
        except UrlError as exc:
            rejected.append((ref.url, exc.reason, ref.line))
            continue
        work.uses.setdefault(url, []).append(ref.line)
        work.pending.add(url)
    return Scanned(refs, done, tuple(rejected), work)


def rewrite_article(
    path: Path, archived: Mapping[str, str], cfg: ArticlesConfig, own: OwnUrls, *, dry_run: bool
) -> Rewritten | None:
    """Re-read the article (it may have changed since the scan), splice archived URLs in, write atomically
    (only if the file still holds the bytes read); a dry run writes nothing and returns the diff. None: no change."""
    article = load_article(path)
    repls: list[Replacement] = []
    record: list[ArticleReplacement] = []
    for ref in article_refs(article, cfg.front_matter_fields, cfg.max_refs):
        if ref.url in own:
            continue
        try:
            public = archived.get(resolve(ref.url, cfg.base_url))
        except UrlError:
            continue
        if public is None:
            continue
        repls.append(Replacement(ref.start, ref.end, public))
        span = article.text[ref.start : ref.end]
        # a span carrying credentials or secret query values is not kept in the manifest ("" = not kept)
        record.append(ArticleReplacement(ref.start, ref.end, "" if has_secret(span) else span, public, ref.url))
    if not repls:
        return None
    new = render(article, repls)
    if new == article.raw:
        return None
    diff = None
    if dry_run:
        diff = unified_diff(article, new.decode(article.encoding))
    else:
        write_atomic(path, new, expected=article.raw)
    return Rewritten(hashlib.sha256(article.raw).hexdigest(), hashlib.sha256(new).hexdigest(), record, diff)
