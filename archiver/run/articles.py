"""The articles of one run: the image URLs each one uses, and its rewrite once every one of them is settled."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from archiver.articles.files import load_article, outside_roots
from archiver.articles.journal import Journal, sha256, write_recorded
from archiver.articles.rewrite import Replacement, render, unified_diff
from archiver.config import ArticlesConfig, Config
from archiver.errors import ArticleError, UrlError
from archiver.find.frontmatter import Notice
from archiver.find.refs import article_refs
from archiver.find.tags import asset_rewrite
from archiver.model import ArticleReplacement, Cause, RefKind
from archiver.redaction import has_secret, redact
from archiver.run.local import LocalRoots, locate
from archiver.storage.keys import ParsedKey, archive_key, public_bases
from archiver.terminal import shown_path
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

    def key(self, raw: str) -> ParsedKey | None:
        return archive_key(raw, self.bases)


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
    # (URL as shown, reason, line, cause): URLs that cannot be fetched (shown: redacted, long ones cut short)
    rejected: tuple[tuple[str, str, int, Cause | None], ...]
    work: ArticleWork  # the URLs to settle (none: nothing to do)
    archived: tuple[tuple[str, str, int], ...] = ()  # (URL as written, sha256 of its original, line): the done ones
    notices: tuple[Notice, ...] = ()  # front matter a site generator would refuse (the article is still read)


@dataclass(frozen=True)
class Rewritten:
    """An article rewritten (or, in a dry run, what its rewrite would be)."""

    before: str  # sha256 of the bytes read
    after: str  # sha256 of the bytes written
    replaced: list[ArticleReplacement]
    diff: str | None  # a dry run's unified diff; None when the file was written


def scan_article(path: Path, cfg: ArticlesConfig, own: OwnUrls, local: LocalRoots | None = None) -> Scanned:
    """Read an article (ArticleError if we cannot, or if it holds more than articles.max_refs references) and
    resolve the image URLs it uses (``local``: where images on disk may be read; None: only URLs)."""
    article = load_article(path)
    refs = done = 0
    rejected: list[tuple[str, str, int, Cause | None]] = []
    archived: list[tuple[str, str, int]] = []
    work = ArticleWork(path, set())
    notices: list[Notice] = []
    for ref in article_refs(article, cfg.front_matter_fields, cfg.max_refs, notices):
        refs += 1
        if (parsed := own.key(ref.url)) is not None:
            done += 1
            archived.append((ref.url, parsed.sha256, ref.line))
            continue
        try:
            url = locate(ref.url, path, cfg, local, asset=ref.kind == RefKind.ASSET_TAG)
        except UrlError as exc:
            rejected.append((redact(exc.url), exc.reason, ref.line, exc.cause))
            continue
        work.uses.setdefault(url, []).append(ref.line)
        work.pending.add(url)
    return Scanned(refs, done, tuple(rejected), work, tuple(archived), tuple(notices))


def _secret_span(span: str, url: str) -> bool:
    """Whether the span as written, or the absolute URL it spells (``url``: decoded), carries a secret."""
    if has_secret(span) or has_secret(url):
        return True
    try:
        return has_secret(resolve(url, ""))  # every spelling urls.resolve reads; relative URLs need a base: none
    except UrlError:
        return False


def rewrite_article(
    path: Path, archived: Mapping[str, str], cfg: ArticlesConfig, own: OwnUrls, journal: Journal, *, dry_run: bool,
    roots: Sequence[Path] | None = None, local: LocalRoots | None = None,
) -> Rewritten | None:
    """Re-read the article (it may have changed since the scan), splice archived URLs in, write atomically
    (only if the file still holds the bytes read) with its record in ``journal`` (``write_recorded``); a dry run
    writes nothing and returns the diff. None: no change. ``roots``: the real folders the article must still be
    in (a symlink on its way may have changed since the scan); None: anywhere."""
    if roots is not None and (real := outside_roots(path, roots)) is not None:
        raise ArticleError(path, f"now leads to {shown_path(real)}, outside the folders given; not written")
    article = load_article(path)
    repls: list[Replacement] = []
    record: list[ArticleReplacement] = []
    for ref in article_refs(article, cfg.front_matter_fields, cfg.max_refs):
        if ref.url in own:
            continue
        try:
            public = archived.get(locate(ref.url, path, cfg, local, asset=ref.kind == RefKind.ASSET_TAG))
        except UrlError:
            continue
        if public is None:
            continue
        span = article.text[ref.start : ref.end]
        if ref.kind == RefKind.ASSET_TAG:  # {% asset_img cls a.jpg … %} -> {% img cls URL … %}, as Hexo renders it
            public = asset_rewrite(span, ref.url, public)
        repls.append(Replacement(ref.start, ref.end, public))
        # a span carrying credentials or secret values is not kept in the manifest ("" = not kept)
        record.append(ArticleReplacement(ref.start, ref.end, "" if _secret_span(span, ref.url) else span, public,
                                         ref.url))
    if not repls:
        return None
    new = render(article, repls)
    if new == article.raw:
        return None
    diff = None
    if dry_run:
        diff = unified_diff(article, new.decode(article.encoding))
    else:
        write_recorded(journal, article, new, [record], "archive")
    return Rewritten(sha256(article.raw), sha256(new), record, diff)
