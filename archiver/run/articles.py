"""The articles of one run: the image URLs each one uses, and its rewrite once every one of them is settled."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

from archiver.articles.files import load_article, outside_roots
from archiver.articles.journal import Journal, sha256, write_recorded
from archiver.articles.responsive import Options, Shown, additions
from archiver.articles.rewrite import Replacement, render, unified_diff
from archiver.config import ArticlesConfig, Config
from archiver.errors import ArticleError, UrlError
from archiver.find.frontmatter import Notice
from archiver.find.refs import article_refs
from archiver.find.tags import asset_rewrite
from archiver.manifest.keys import KeyRecord
from archiver.manifest.rows import ShownImage
from archiver.model import Article, ArticleReplacement, Cause, ImageRef, RefKind
from archiver.redaction import has_secret, redact
from archiver.run.local import LocalRoots, locate
from archiver.storage.keys import KeyLookup, ParsedKey, archive_key, public_bases
from archiver.terminal import shown_path
from archiver.urls import kept_fragment, resolve


@dataclass(frozen=True)
class OwnUrls:
    """The URLs this archiver wrote (public_base_url + a content-addressed key, or a key the manifest records:
    ``lookup``, for templated keys): never fetched again."""

    bases: tuple[str, ...]
    lookup: KeyLookup | None = None

    @classmethod
    def of(cls, cfg: Config, records: Callable[[str], KeyRecord | None] | None = None) -> OwnUrls:
        """``records``: the manifest's ``key_record``."""
        if records is None:
            return cls(public_bases(cfg))

        def lookup(key: str) -> ParsedKey | None:
            r = records(key)
            return None if r is None else ParsedKey(key, "", r.sha256, r.ext, r.width)

        return cls(public_bases(cfg), lookup)

    def __contains__(self, raw: str) -> bool:
        return archive_key(raw, self.bases, self.lookup) is not None

    def key(self, raw: str) -> ParsedKey | None:
        return archive_key(raw, self.bases, self.lookup)


@dataclass(frozen=True)
class Responsive:
    """``[rewrite] responsive``: how an archived image is shown (``image``: the manifest's record of an original by
    its SHA-256; ``url_for``: a key's public URL) and the attributes to add."""

    options: Options
    image: Callable[[str], ShownImage | None]
    url_for: Callable[[str], str]

    @classmethod
    def of(cls, cfg: Config, image: Callable[[str], ShownImage | None], url_for: Callable[[str], str]) -> Responsive:
        rw = cfg.rewrite
        opts = Options(rw.sizes, rw.loading, rw.decoding, rw.picture, cfg.images.output_formats)
        return cls(opts, image, url_for)

    def shown(self, url: str, own: OwnUrls) -> Shown | None:
        """The image at the archive URL ``url`` (an original's), as a page can show it; None: not one we know."""
        parsed = own.key(url)
        if parsed is None or parsed.width is not None:
            return None
        img = self.image(parsed.sha256)
        if img is None:
            return None
        renditions: dict[str, list[tuple[int, str]]] = {}
        for r in img.renditions:
            renditions.setdefault(r.format, []).append((r.pixel_width, self.url_for(r.key)))
        return Shown(img.width, img.height, url, {f: tuple(c) for f, c in renditions.items()}, img.frames > 1)


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
    sha256: str = ""  # of the bytes scanned

    @property
    def settled(self) -> bool:
        """Nothing to do and nothing to report: every reference already points at the archive."""
        return self.refs == self.done and not self.rejected and not self.notices and not self.work.uses


@dataclass(frozen=True)
class Rewritten:
    """An article rewritten (or, in a dry run, what its rewrite would be)."""

    before: str  # sha256 of the bytes read
    after: str  # sha256 of the bytes written
    replaced: list[ArticleReplacement]
    diff: str | None  # a dry run's unified diff; None when the file was written
    settled_refs: int | None = None  # the bytes written point only at the archive, with this many references
    changed: bool = True  # False: nothing to write (returned only to say the bytes are settled)
    # of settled bytes: their format and each reference's text (what `archiver dedupe` would parse them for)
    ref_texts: tuple[str, tuple[str, ...]] | None = None  # (format, texts); None: not settled


@cache
def finder_code() -> str:
    """A digest of the code that decides what a scan finds (a new finder must not trust an old verdict)."""
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent.parent
    for path in sorted([*here.joinpath("find").glob("*.py"), here / "articles" / "files.py", here / "articles" / "responsive.py", Path(__file__).resolve(),
                        here / "run" / "local.py",
                        here / "urls.py", here / "storage" / "keys.py"]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def scan_fingerprint(cfg: Config) -> str:
    """What a scan's verdict depends on besides the article's bytes: the settings that decide which references
    are found and which point at the archive, and the finder's own code."""
    a = cfg.articles
    settings = [sorted(a.front_matter_fields), a.base_url, a.site_root, a.max_refs, list(public_bases(cfg)), finder_code(),
                parser_versions(),
                repr(cfg.rewrite), repr(cfg.images.thumbnails), repr(cfg.images.output_formats)]
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


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
    return Scanned(refs, done, tuple(rejected), work, tuple(archived), tuple(notices), sha256(article.raw))


def _all_archived(article: Article, cfg: ArticlesConfig, own: OwnUrls) -> tuple[str, ...] | None:
    """Each reference's text when every one points at the archive (and the front matter raises no warning);
    else None."""
    notices: list[Notice] = []
    refs = article_refs(article, cfg.front_matter_fields, cfg.max_refs, notices)
    if notices or any(ref.url not in own for ref in refs):
        return None
    return tuple(article.text[ref.start : ref.end] for ref in refs)


def refs_fingerprint(fields: Sequence[str], max_refs: int, bases: Sequence[str]) -> str:
    """What the references recorded for an article's bytes (``Manifest.article_refs``: what `archiver dedupe` reads
    instead of parsing an unchanged article again) depend on besides them and its format: the front-matter fields,
    the limit, the finder's code, and the archive URL forms (only references of their shape are recorded:
    ``archive_shaped``)."""
    settings = [sorted(fields), max_refs, finder_code(), parser_versions(), list(bases)]
    return hashlib.sha256(json.dumps(settings).encode()).hexdigest()


def parser_versions() -> list[str]:
    """The versions of the libraries that decode and parse an article (markdown-it-py, PyYAML and whether it has its
    libyaml loader, charset-normalizer) and of Python (its ``html`` entities, ``tomllib``): an upgrade may find other
    references in the same bytes, so what a scan or a report found before it is not trusted after it (found by the
    sixth round's review). Read from the modules a run loads anyway (``importlib.metadata`` would load ~30 more)."""
    import sys

    import charset_normalizer
    import markdown_it
    import yaml

    return [f"markdown-it-py {markdown_it.__version__}", f"PyYAML {yaml.__version__}",
            f"libyaml {getattr(yaml, '__with_libyaml__', False)}", f"charset-normalizer {charset_normalizer.__version__}",
            f"python {sys.version_info[0]}.{sys.version_info[1]}"]


_KEY_SHAPED = re.compile(r"[A-Za-z0-9_.~/-]+")  # what a checked key may hold (storage.keys.check_key)


def archive_shaped(texts: Iterable[str], bases: Sequence[str]) -> list[str]:
    """The references' texts that could name an archived object: one of ``bases`` followed by a key's characters,
    without the ``#fragment`` a run keeps after one (``kept_fragment``: ``…/key.jpg#center``, which `dedupe --apply`
    rewrites as the URL before it). Only those are recorded in the manifest: a URL of another site, which may carry
    credentials or a token, never is (as the manifest keeps no replaced span that carries one), and nothing else can
    name an archived image."""
    out = []
    for t in texts:
        if kept_fragment(t):
            t = t[: t.find("#")]
        if any(t.startswith(b) and _KEY_SHAPED.fullmatch(t, len(b)) is not None for b in bases):
            out.append(t)
    return out


def _secrets_masked(article: Article, record: Sequence[ArticleReplacement]) -> Article:
    """The article as a dry run's diff shows it: each span that carries a secret (not kept: ``original`` "")
    redacted as a whole, even when it runs over several lines (a diff masked line by line would show the part of
    a split URL that holds the secret)."""
    text = article.text
    for r in sorted(record, key=lambda r: r.start, reverse=True):
        if r.original or r.start == r.end:
            continue
        span = re.sub(r"[\t\n\r]", "", text[r.start : r.end])  # as a browser reads it
        shown = redact(span)
        if has_secret(shown) or shown == span:
            shown = "***"
        text = text[: r.start] + shown + text[r.end :]
    return replace(article, text=text)


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
    roots: Sequence[Path] | None = None, responsive: Responsive | None = None, check_settled: bool = False,
    local: LocalRoots | None = None,
) -> Rewritten | None:
    """Re-read the article (it may have changed since the scan), splice archived URLs in, write atomically
    (only if the file still holds the bytes read) with its record in ``journal`` (``write_recorded``); a dry run
    writes nothing and returns the diff. None: no change. ``roots``: the real folders the article must still be
    in (a symlink on its way may have changed since the scan); None: anywhere. ``responsive``: also insert what each
    archived ``<img>`` lacks (archiver.articles.responsive), recorded with the URL spans. ``check_settled``: tell
    whether the bytes left (written or not) point only at the archive, as a later scan would read them
    (``settled_refs``; an unchanged article is then returned with ``changed`` false)."""
    if roots is not None and (real := outside_roots(path, roots)) is not None:
        raise ArticleError(path, f"now leads to {shown_path(real)}, outside the folders given; not written")
    article = load_article(path)
    repls: list[Replacement] = []
    record: list[ArticleReplacement] = []
    notices: list[Notice] = []
    refs = article_refs(article, cfg.front_matter_fields, cfg.max_refs, notices)
    now: dict[tuple[int, int], str] = {}  # span -> the archive URL it holds, or will
    for ref in refs:
        if ref.url in own:
            now[ref.start, ref.end] = ref.url
            continue
        try:
            public = archived.get(locate(ref.url, path, cfg, local, asset=ref.kind == RefKind.ASSET_TAG))
        except UrlError:
            continue
        if public is None:
            continue
        now[ref.start, ref.end] = public
        span = article.text[ref.start : ref.end]
        if ref.kind == RefKind.ASSET_TAG:  # {% asset_img cls a.jpg … %} -> {% img cls URL … %}, as Hexo renders it
            public = asset_rewrite(span, ref.url, public)
        else:  # "a.jpg#center": the fragment is never fetched, but it means something to the page
            public += kept_fragment(ref.url)
        repls.append(Replacement(ref.start, ref.end, public))
        # a span carrying credentials or secret values is not kept in the manifest ("" = not kept)
        record.append(ArticleReplacement(ref.start, ref.end, "" if _secret_span(span, ref.url) else span, public,
                                         ref.url))
    if responsive is not None:

        seen: dict[str, Shown | None] = {}  # one manifest lookup per image, however often the article shows it

        def shown_for(ref: ImageRef) -> Shown | None:
            url = now.get((ref.start, ref.end))
            if url is None:
                return None
            if url not in seen:
                seen[url] = responsive.shown(url, own)
            return seen[url]

        for ins in additions(article.text, refs, shown_for, responsive.options):
            repls.append(Replacement(ins.at, ins.at, ins.text))
            record.append(ArticleReplacement(ins.at, ins.at, "", ins.text, ins.url))
        record.sort(key=lambda r: (r.start, r.end))
    new = render(article, repls) if repls else article.raw
    if new == article.raw:
        if check_settled and not notices and all(ref.url in own for ref in refs):  # nothing to add: settled as is
            sha = sha256(article.raw)
            texts = tuple(article.text[ref.start : ref.end] for ref in refs)
            return Rewritten(sha, sha, [], None, settled_refs=len(refs), changed=False,
                             ref_texts=(article.format, texts))
        return None
    diff = None
    if dry_run:
        diff = unified_diff(_secrets_masked(article, record), new.decode(article.encoding))
        return Rewritten(sha256(article.raw), sha256(new), record, diff)
    write_recorded(journal, article, new, [record], "archive")
    done = Rewritten(sha256(article.raw), sha256(new), record, diff)
    if check_settled:  # what was written, read as a later run will: fully archived?
        written = replace(article, raw=new, text=new.decode(article.encoding), state=None)
        texts = _all_archived(written, cfg, own)
        if texts is not None:
            done = replace(done, settled_refs=len(texts), ref_texts=(written.format, texts))
    return done
