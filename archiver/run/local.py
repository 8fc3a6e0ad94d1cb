"""Which references are images on disk, and the ``file://`` URL that stands for each in the manifest and the run.

A reference without a scheme is a file of the site when it can be found: a relative path (``a.jpg``,
``img/a.jpg``, ``../images/a.png``) in the post's asset folder (Hexo: ``post/`` beside ``post.md``) or beside the
article (a Hugo page bundle); a root-relative path (``/images/x.png``) under ``[articles] site_root`` when that is
set. Such a reference is archived from disk (archiver.fetch.local), with no HTTP. A relative path found on disk
nowhere is fetched from ``[articles] base_url`` as before when there is one, else it stands for the file beside
the article, which the run reports missing, with its article and line. A path that leads outside the allowed
folders (the folders given, the folder of a file given, ``root`` and ``site_root``), ``../../etc/passwd`` for one, is
refused here; a symlink leading out is refused when the file is read, as for articles.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from archiver.config import ArticlesConfig, Config
from archiver.errors import UrlError
from archiver.fetch.local import LOCAL_PREFIX, file_path, file_url
from archiver.urls import resolve

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


@dataclass(frozen=True)
class LocalRoots:
    """The folders local images may be read from: absolute and normalised (lexical), and as real paths."""

    folders: tuple[Path, ...]
    site_root: Path | None
    follow_outside: bool = False

    @classmethod
    def of(cls, cfg: ArticlesConfig, paths: Sequence[Path], root: Path | None = None) -> LocalRoots:
        folders = [p if p.is_dir() else p.parent for p in paths]
        if root is not None:
            folders.append(root)
        site = Path(cfg.site_root) if cfg.site_root else None
        if site is not None:
            folders.append(site)
        return cls(tuple(Path(os.path.abspath(f)) for f in folders), site and Path(os.path.abspath(site)),
                   cfg.follow_symlinks_outside)

    def real(self) -> tuple[Path, ...]:
        return tuple(Path(os.path.realpath(f)) for f in self.folders)

    def holds(self, path: Path) -> bool:
        return any(path == f or path.is_relative_to(f) for f in self.folders)


def locate(raw: str, article: Path, cfg: ArticlesConfig, roots: LocalRoots | None, *, asset: bool = False) -> str:
    """The URL reference ``raw`` of ``article`` stands for: a ``file://`` URL for an image on disk, else the
    absolute http(s) URL of urls.resolve. UrlError when it can be neither (outside the allowed folders included).
    ``asset``: the name in a Hexo ``{% asset_img %}``, a file of the post's asset folder and nothing else."""
    text = raw.strip()
    if asset:
        if roots is None:
            raise UrlError(raw, "a post asset: read only by `archiver run`")
        here = Path(os.path.abspath(article)).parent
        return _allowed(raw, _existing([Path(os.path.normpath(here / article.stem / name))
                                        for name in _names(urlsplit(text).path)]), roots)
    if roots is None or not text or _SCHEME.match(text) or text.startswith(("//", "\\\\", "#", "?")):
        return resolve(raw, cfg.base_url)
    parts = urlsplit(text)
    if not parts.path:
        return resolve(raw, cfg.base_url)
    names = _names(parts.path)
    if names[0].startswith("/"):
        if roots.site_root is None:
            return resolve(raw, cfg.base_url)
        site_root = roots.site_root
        return _allowed(raw, _existing([Path(os.path.normpath(site_root / n.lstrip("/"))) for n in names]), roots)
    here = Path(os.path.abspath(article)).parent
    for folder in (here / article.stem, here):
        for rel in names:
            candidate = Path(os.path.normpath(folder / rel))
            if os.path.lexists(candidate) and roots.holds(candidate):
                return _allowed(raw, candidate, roots)
    if cfg.base_url:
        return resolve(raw, cfg.base_url)
    folder = here / article.stem if (here / article.stem).is_dir() else here
    return _allowed(raw, Path(os.path.normpath(folder / names[0])), roots)


def _names(path: str) -> list[str]:
    """The file names a percent-encoded path can stand for, most likely first. Escapes that are UTF-8 have one
    reading. Others (``caf%E9.jpg``, written by a Latin-1 editor) stand for the bytes as they are, as a web server
    serving the folder reads them (a file named in Latin-1), and for those bytes read as Latin-1 (``café.jpg``
    named in UTF-8): each is looked for before the file is called missing."""
    try:
        return [unquote(path, errors="strict")]
    except UnicodeDecodeError:
        return [unquote(path, errors="surrogateescape"), unquote(path, encoding="latin-1")]


def _existing(candidates: list[Path]) -> Path:
    """The first candidate that exists (a dangling symlink counts: reading it says why), else the first."""
    return next((c for c in candidates if os.path.lexists(c)), candidates[0])


def _allowed(raw: str, path: Path, roots: LocalRoots) -> str:
    if not roots.holds(path):
        raise UrlError(raw, "a local path outside the allowed folders (the articles' folders and [articles] "
                            "site_root): never read")
    return file_url(path)


def is_local(url: str) -> bool:
    return url.startswith(LOCAL_PREFIX)


def shown_source(url: str, cfg: Config) -> str:
    """How a source URL is shown beyond this machine (``export`` keys and sources, a stored object's ``source-url``).

    A local image's ``file://`` URL holds the absolute path, folder and user names included: a file under
    ``[articles] site_root`` is shown as the root-relative path the site serves it at (``/images/x.png``), joined to
    ``[articles] base_url`` when set (``https://your.site/images/x.png``, as the same reference would resolve without
    ``site_root``); any other file as its path relative to the config file's folder (``source/_posts/p/a.jpg``).
    Other URLs are returned as they are. The manifest keeps the ``file://`` URL: this is only how it is shown."""
    if not is_local(url):
        return url
    path = Path(os.path.abspath(file_path(url)))
    if cfg.articles.site_root.strip():
        site = Path(os.path.abspath(cfg.resolve_path(cfg.articles.site_root)))
        if path.is_relative_to(site):
            rel = "/" + _encoded(path.relative_to(site).as_posix())
            if cfg.articles.base_url:
                try:
                    return resolve(rel, cfg.articles.base_url)
                except UrlError:
                    return rel
            return rel
    folder = Path(os.path.abspath(cfg.source.parent if cfg.source is not None else Path.cwd()))
    return _encoded(Path(os.path.relpath(path, folder)).as_posix())


def _encoded(path: str) -> str:
    """A path as a URL path: percent-encoded bytes, as file_url writes them (ASCII, fit for object metadata)."""
    return quote(os.fsencode(path), safe="/")
