"""Which archived objects the articles on disk use: every reference the finder sees, each archive URL taken back to
its key by stripping a configured public base (the manifest's recorded keys decide what a key is; ``parse_key``
only as a fallback), every other URL resolved as `run` resolves it (images on disk included) so that an article a
run has not rewritten yet (or that `restore` gave back its sources) keeps what the manifest archived for it.

Each file is remembered with its (size, mtime, inode): ``refresh`` reads again only the files that changed, appeared
or went away since, so a gc re-checks the articles before every batch of deletions for the cost of a walk.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from archiver.articles.files import iter_article_paths, load_article
from archiver.config import Config
from archiver.errors import ArticleError, UrlError
from archiver.find.refs import article_refs
from archiver.manifest.rows import url_key
from archiver.model import RefKind
from archiver.run.local import LocalRoots, locate
from archiver.storage.keys import parse_key, public_bases
from archiver.terminal import shown_path

if TYPE_CHECKING:
    from archiver.manifest.sqlite import Manifest

log = logging.getLogger("archiver")


@dataclass(frozen=True)
class FileUse:
    """What one article file references."""

    stamp: tuple[int, ...]  # (size, mtime_ns, inode, ctime_ns) when read
    keys: frozenset[str] = frozenset()  # archive URLs, as keys (a base stripped)
    shas: frozenset[str] = frozenset()  # the SHA-256 those keys name when they have the content-addressed shape
    urls: frozenset[str] = frozenset()  # other image URLs, resolved and keyed as the manifest keys them
    raw: bytes | None = None  # the bytes of a file that could not be parsed: searched for keys instead
    unreadable: str | None = None  # why not even its bytes could be read
    # whatever in its bytes could be a key, whatever the form around it (another public base, `#center`, `?w=300`,
    # a hand-written link the finder does not read as an image): the safety net under keys/shas/urls
    tokens: frozenset[str] = frozenset()
    hexes: frozenset[str] = frozenset()  # 64-hex-digit runs: the SHA-256 a content-addressed key holds


@dataclass
class Usage:
    """The references of every article under the roots (and of the articles the manifest records elsewhere)."""

    cfg: Config
    roots: list[Path]
    extra: list[Path]  # article files the manifest knows (outside the roots, or skipped by the walk)
    extra_source: Callable[[], list[Path]] | None = None  # read again at every refresh (a run may add some)
    files: dict[Path, FileUse] = field(default_factory=dict)
    blind: list[str] = field(default_factory=list)  # what could not be read at all (a folder, a broken link)

    def __post_init__(self) -> None:
        self._bases = public_bases(self.cfg)
        self._local = LocalRoots.of(self.cfg.articles, self.roots)

    # -- reading ---------------------------------------------------------------------------------
    def refresh(self) -> list[Path]:
        """Read the files that are new or changed since the last refresh and forget those gone; returns the paths
        read."""
        blind: list[str] = []

        def skipped(path: Path, why: str) -> None:
            if path.is_file() and not path.is_symlink():  # a hard-linked article: skipped by run, read here
                found.append(path)
            else:
                blind.append(f"{shown_path(path)}: {why}")

        found: list[Path] = []
        found += iter_article_paths(self.roots, self.cfg.articles.extensions, follow_outside=True, on_skip=skipped)
        if self.extra_source is not None:
            self.extra = self.extra_source()
        found += [p for p in self.extra if p.is_file()]
        read: list[Path] = []
        seen: set[Path] = set()
        for path in found:
            path = Path(os.path.abspath(path))
            if path in seen:
                continue
            seen.add(path)
            try:
                st = path.stat()
            except OSError as exc:
                blind.append(f"{shown_path(path)}: {exc.strerror or exc}")
                continue
            # ctime too: an edit that keeps size and restores mtime (cp -p, rsync -t) still changes it
            stamp = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
            old = self.files.get(path)
            if old is not None and old.stamp == stamp:
                continue
            self.files[path] = self._read(path, stamp)
            read.append(path)
        for gone in set(self.files) - seen:
            del self.files[gone]
        self.blind = blind + [f"{shown_path(p)}: {u.unreadable}" for p, u in self.files.items() if u.unreadable]
        return read

    def _read(self, path: Path, stamp: tuple[int, ...]) -> FileUse:
        try:
            raw = path.read_bytes()
        except OSError as err:
            return FileUse(stamp, raw=b"", unreadable=str(err.strerror or err))
        tokens, hexes = key_tokens(raw)
        use = self._parse(path, stamp)
        return FileUse(use.stamp, use.keys, use.shas, use.urls, use.raw, use.unreadable, tokens, hexes)

    def _parse(self, path: Path, stamp: tuple[int, ...]) -> FileUse:
        a = self.cfg.articles
        try:
            article = load_article(path)
            refs = article_refs(article, a.front_matter_fields, a.max_refs)
        except ArticleError as exc:
            log.warning("%s (its bytes are searched for archive keys instead)", exc)
            try:
                return FileUse(stamp, raw=path.read_bytes())
            except OSError as err:
                return FileUse(stamp, raw=b"", unreadable=str(err.strerror or err))
        keys: set[str] = set()
        urls: set[str] = set()
        for ref in refs:
            key = self.archive_key(ref.url)
            if key is not None:
                keys.add(key)
                continue
            try:
                url = locate(ref.url, path, a, self._local, asset=ref.kind == RefKind.ASSET_TAG)
            except UrlError:
                continue
            urls.add(url_key(url))
        shas = frozenset(p.sha256 for k in keys if (p := parse_key(k)) is not None)
        return FileUse(stamp, frozenset(keys), shas, frozenset(urls))

    def archive_key(self, url: str) -> str | None:
        """The key of an archive URL (one of the public bases + a key), else None."""
        for base in self._bases:
            if url.startswith(base) and len(url) > len(base):
                rest = url[len(base):].split("#", 1)[0].split("?", 1)[0]
                return rest or None
        return None

    # -- judging ---------------------------------------------------------------------------------
    def users(self, keys_of: Mapping[str, Sequence[str]], urls_of: Mapping[str, set[str]]) -> dict[str, Path]:
        """asset sha256 -> one article that uses it: through the key of one of its objects (``keys_of``), through a
        URL the manifest archived to it (``urls_of``), or, in a file that could not be parsed, its key or SHA-256
        among the bytes."""
        asset_of_key = {k: sha for sha, keys in keys_of.items() for k in keys}
        asset_of_url = {u: sha for sha, urls in urls_of.items() for u in urls}
        key_set, sha_set, url_set = set(asset_of_key), set(keys_of), set(asset_of_url)
        out: dict[str, Path] = {}
        unparsed: list[tuple[Path, bytes]] = []
        for path, use in self.files.items():  # set intersections: a batch of 100 against 100 000 references is cheap
            if use.raw is not None:
                unparsed.append((path, use.raw))
            for key in use.keys & key_set:
                out.setdefault(asset_of_key[key], path)
            for sha in use.shas & sha_set:  # a key of the content-addressed shape: the fallback
                out.setdefault(sha, path)
            for url in use.urls & url_set:
                out.setdefault(asset_of_url[url], path)
            for key in use.tokens & key_set:  # the safety net: a key in any form, under any base
                out.setdefault(asset_of_key[key], path)
            for sha in use.hexes & sha_set:
                out.setdefault(sha, path)
        for path, raw in unparsed:
            text = raw.decode("latin-1")
            for sha, keys in keys_of.items():
                if sha not in out and (sha in text or any(k in text for k in keys)):
                    out[sha] = path
        return out


def known_articles(manifest: Manifest) -> list[Path]:
    """Every article the manifest records or a pending write names, wherever it is: read even when the walk of the
    root skips it (a hidden folder, another extension)."""
    paths = [Path(p) for p in manifest.recorded_article_paths()]
    return paths + [Path(p) for p, _texts in manifest.pending_write_texts()]


# a run of the characters a key is made of (RFC 3986 unreserved and "/") that ends like a file name
_CANDIDATE = re.compile(rb"[A-Za-z0-9._~/-]*\.[A-Za-z0-9]{1,5}(?![A-Za-z0-9])")
_HEX64 = re.compile(rb"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")


def key_tokens(raw: bytes) -> tuple[frozenset[str], frozenset[str]]:
    """What in ``raw`` could be an object key: each candidate run and every suffix of it that starts after a "/"
    (``/archive/2026/12/x.jpg`` gives ``archive/2026/12/x.jpg``, ``2026/12/x.jpg``, ``12/x.jpg``, ``x.jpg``), and
    every 64-hex-digit run. Cheap to keep per article, whatever the article's size."""
    tokens: set[str] = set()
    for m in _CANDIDATE.finditer(raw):
        run = m.group().decode("ascii")
        tokens.add(run)
        i = run.find("/")
        while i != -1:
            if i + 1 < len(run):
                tokens.add(run[i + 1 :])
            i = run.find("/", i + 1)
    return frozenset(tokens), frozenset(h.decode("ascii") for h in _HEX64.findall(raw))
