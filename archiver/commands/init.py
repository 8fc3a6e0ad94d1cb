"""`archiver init`: write a commented archiver.toml fitted to the site in a folder (Hexo, Hugo or Jekyll, detected
or named): where its articles are, where a local archive must live so the site generator publishes it (Hexo
``source/``, Hugo ``static/``, Jekyll's root), the public URL it is then served at, and the site's own URL for
relative image URLs. An existing file is never overwritten."""

from __future__ import annotations

import argparse
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from archiver.config import Config
from archiver.errors import EXIT_OK, ConfigError
from archiver.terminal import say, shown_path

SITES = ("hexo", "hugo", "jekyll")
NEEDS_CONFIG = False  # the CLI does not load a config for this command: it writes one
HUGO_CONFIGS = ("hugo.toml", "hugo.yaml", "hugo.yml", "hugo.json", "config.toml", "config.yaml", "config.yml",
                "config.json")
# Hugo's configuration directory: config/_default/, then the environment `hugo` builds with (production) on top
HUGO_CONFIG_DIRS = ("config/_default", "config/production")


@dataclass(frozen=True)
class Site:
    kind: str
    articles: str  # the articles folder, relative to the site
    archive: str  # where a local archive is published from, relative to the site
    url: str  # the site's own URL ("" unknown): resolves root-relative image URLs
    path_prefix: str  # the path the site is served under ("/" or "/blog/")
    found_in: str  # the file that told us (for the comment)
    site_root: str = ""  # the folder the site serves at its root (Hugo static/, Hexo source/, Jekyll's root)
    site_root_exists: bool = False

    @property
    def public_base_url(self) -> str:
        if self.kind == "hexo" and self.path_prefix != "/" and self.url:
            # Hexo's {% img %} tag (what an asset_img becomes) passes a root-relative URL through url_for, which
            # prepends `root` again (/blog/blog/archive/…): under a sub-path, a full URL is left as it is
            return f"{self.url}{Path(self.archive).name}/"
        return f"{self.path_prefix}{Path(self.archive).name}/"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", nargs="?", type=Path, default=Path("."), metavar="FOLDER",
                        help="the site's folder (default: the current one); archiver.toml is written there")
    parser.add_argument("--site", choices=SITES, help="the site generator, when it cannot be detected")


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _hugo_settings(path: Path) -> dict[str, Any]:
    try:
        if path.suffix == ".toml":
            return tomllib.loads(path.read_text(encoding="utf-8", errors="replace"))
        if path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
            return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
    return _yaml(path)


def _hugo_config(folder: Path) -> tuple[dict[str, Any], str]:
    """Hugo's settings as ``hugo`` builds the site: the root config file (hugo.* before config.*), then
    config/_default/, then config/production/ on top (keys compared without case, as Hugo does); and the file that
    gave the last baseURL (or the first found)."""
    merged: dict[str, Any] = {}
    found_in = ""
    for where in ("", *HUGO_CONFIG_DIRS):
        name = next((n for n in HUGO_CONFIGS if (folder / where / n).is_file()), "")
        if not name:
            continue
        shown = f"{where}/{name}" if where else name
        settings = {str(k).lower(): v for k, v in _hugo_settings(folder / where / name).items()}
        if not found_in or "baseurl" in settings:
            found_in = shown
        merged.update(settings)
    return merged, found_in


def _folder(value: Any, default: str) -> str:
    """A folder setting: a string, or the first of a list (Hugo's staticDir may list several)."""
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str) and v.strip("/")), "")
    return str(value).strip("/") if isinstance(value, str) and value.strip("/") else default


def _prefix(url: str) -> str:
    path = urlsplit(url).path if url else ""
    return "/" + path.strip("/") + "/" if path.strip("/") else "/"


def _is_hexo(folder: Path) -> bool:
    try:
        package = json.loads((folder / "package.json").read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        package = {}
    deps = {**package.get("dependencies", {}), **package.get("devDependencies", {})} if isinstance(package, dict) else {}
    return "hexo" in deps or (isinstance(package, dict) and "hexo" in package) or (folder / "scaffolds").is_dir()


def detect(folder: Path) -> str | None:
    """Which generator the site in ``folder`` uses: Hexo (``package.json`` naming hexo, or ``scaffolds/``), Hugo
    (a ``hugo.*``, a ``config.*`` with ``content/``, or either in ``config/_default/``), Jekyll (``_config.yml`` with ``_posts/``, or a Gemfile naming
    jekyll); None when it is none of them."""
    if (folder / "_config.yml").is_file() and _is_hexo(folder):
        return "hexo"
    if any((folder / name).is_file() for name in HUGO_CONFIGS[:4]) or (
        (folder / "content").is_dir() and any((folder / name).is_file() for name in HUGO_CONFIGS)
    ) or any((folder / HUGO_CONFIG_DIRS[0] / name).is_file() for name in HUGO_CONFIGS):
        return "hugo"
    gemfile = folder / "Gemfile"
    if (folder / "_config.yml").is_file() and (
        (folder / "_posts").is_dir() or (gemfile.is_file() and "jekyll" in gemfile.read_text(errors="replace"))
    ):
        return "jekyll"
    return None


def describe(folder: Path, kind: str) -> Site:
    """What archiver.toml needs to know about a site of ``kind`` in ``folder``, read from its own config."""
    if kind == "hexo":
        cfg = _yaml(folder / "_config.yml")
        url = str(cfg.get("url") or "")
        root = str(cfg.get("root") or _prefix(url))
        source = str(cfg.get("source_dir") or "source").strip("/")
        prefix = "/" + root.strip("/") + "/" if root.strip("/") else "/"
        # Hexo's url already holds the sub-folder the site is served under (root repeats it as a path)
        return Site("hexo", f"{source}/_posts", f"{source}/archive", url.rstrip("/") + "/" if url else "", prefix,
                    "_config.yml", source, (folder / source).is_dir())
    if kind == "hugo":
        cfg, found = _hugo_config(folder)
        url = str(cfg.get("baseurl") or "")
        content = _folder(cfg.get("contentdir"), "content")
        static = _folder(cfg.get("staticdir"), "static")
        return Site("hugo", content, f"{static}/archive", url, _prefix(url), found or "(no config file found)",
                    static, (folder / static).is_dir())
    cfg = _yaml(folder / "_config.yml")
    url = str(cfg.get("url") or "").rstrip("/")
    baseurl = str(cfg.get("baseurl") or "")
    prefix = "/" + baseurl.strip("/") + "/" if baseurl.strip("/") else "/"
    source = str(cfg.get("source") or ".").strip("/") or "."
    inside = "" if source == "." else f"{source}/"
    return Site("jekyll", f"{inside}_posts", f"{inside}archive", url + prefix if url else "", prefix, "_config.yml",
                source, (folder / source).is_dir())


def _q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a TOML basic string: JSON's escapes are TOML's


_HOW_SERVED = {
    "hexo": "Hexo copies every file under source/ (except _ folders) into public/: the archive is published as is",
    "hugo": "Hugo copies static/ into public/ as is: the archive is published with the site",
    "jekyll": "Jekyll copies folders not starting with _ or . into _site/: the archive is published with the site",
}


def render(site: Site) -> str:
    """The commented archiver.toml for ``site`` (every other key keeps its default: config.example.toml lists them)."""
    base_note = (f"# from {site.found_in}: root-relative image URLs (/images/x.png) are resolved against it"
                 if site.url else
                 "# the site's URL, e.g. \"https://example.com/\": root-relative image URLs (/images/x.png) are\n"
                 "# resolved against it; empty: such URLs are reported, not guessed")
    site_root = _site_root_lines(site)
    jekyll_note = ("# Jekyll publishes every file of the site's root that _config.yml does not exclude: append this\n"
                   "# file and the report folder to its exclude: list (one list; a second exclude: key replaces the\n"
                   "# first), e.g.  exclude: [archiver.toml, report]\n") if site.kind == "jekyll" else ""
    return f"""# archiver configuration for this {site.kind} site, written by `archiver init`.
# Every key not set here keeps its default; config.example.toml (in the archiver's sources) lists them all.
# Relative paths are relative to this file's folder. S3 credentials never go here (see [storage] below).
{jekyll_note}
[articles]
# the articles `archiver run` scans when it is given no PATH
root = {_q(site.articles)}
{base_note}
base_url = {_q(site.url)}
{site_root}
[fetch]
# Some CDNs refuse images without their own site's Referer (403, "hotlink protection"); give one per host:
# headers = {{ "cdn.example.com" = {{ Referer = "https://example.com/" }} }}
# Others need a login cookie: a Netscape cookie file (as curl or a browser extension exports it). Keep it in
# .archiver/ (a folder starting with "." is never published), never in a folder the site publishes:
# cookies = ".archiver/cookies.txt"

[storage]
# A local archive inside the site: {_HOW_SERVED[site.kind]},
# and the rewritten articles point at {site.public_base_url}<key>.
backend = "local"
path = {_q(site.archive)}
public_base_url = {_q(site.public_base_url)}
# To archive to S3-compatible storage instead (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or
# AWS_PROFILE), replace backend, path and public_base_url above with:
# backend = "s3"
# bucket = "my-media-archive"
# endpoint_url = ""                          # empty for AWS; e.g. "https://s3.example.net" otherwise
# public_base_url = "https://media.example.com/"   # where readers fetch the objects (a CDN in front of the bucket)

[manifest]
# the record of every URL, image and rewrite (keep it: re-runs, `restore` and `verify` read it); a folder
# starting with "." is not published by {site.kind}
path = ".archiver/manifest.sqlite3"
"""


def _site_root_lines(site: Site) -> str:
    """``[articles] site_root``: the folder the site serves at its root, so that ``/images/x.png`` is read from
    disk. Commented out when that folder does not exist yet, or when the site is served under a sub-path (its
    articles then write ``/blog/images/x.png``, which is no file under that folder: fetched from base_url instead)."""
    why = ("# the folder this site serves at its root: root-relative image paths (/images/x.png) are archived from\n"
           "# the files there, no HTTP (a path missing there is reported, never fetched)\n")
    line = f"site_root = {_q(site.site_root)}\n"
    if not site.site_root_exists:
        return why + f"# ({site.site_root}/ does not exist yet: uncomment once it does)\n# " + line
    if site.path_prefix != "/":
        return (why + f"# This site is served under {site.path_prefix}: a path written {site.path_prefix}images/x.png is no "
                f"file under\n# {site.site_root}/, so it stays commented (such paths are fetched from base_url):\n# "
                + line)
    return why + line


def command(args: argparse.Namespace, cfg: Config) -> int:
    folder: Path = args.folder
    if not folder.is_dir():
        raise ConfigError(f"{shown_path(folder)}: no such folder")
    kind = args.site or detect(folder)
    if kind is None:
        raise ConfigError(f"{shown_path(folder)}: no Hexo, Hugo or Jekyll site found here (no _config.yml with "
                          "_posts/ or a hexo package.json, no hugo.toml or config.* with content/); name one with "
                          "--site hexo|hugo|jekyll")
    site = describe(folder, kind)
    target = args.config if getattr(args, "config", None) else folder / "archiver.toml"
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)  # never over an existing file
    except FileExistsError:
        raise ConfigError(f"{shown_path(target)} exists: not overwritten (remove it, or edit it)") from None
    except OSError as exc:
        raise ConfigError(f"{shown_path(target)}: cannot create: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(render(site))
    say(f"wrote {shown_path(target)} for a {kind} site: articles in {site.articles}/, archive in {site.archive}/ "
        f"served at {site.public_base_url}" + ("" if site.url else "; set [articles] base_url to your site's URL"),
        *(["jekyll publishes the site's root: append archiver.toml and report to the `exclude:` list of _config.yml "
           "(e.g. `exclude: [archiver.toml, report]`; one list: a second `exclude:` key replaces the first)"]
          if kind == "jekyll" else []),
        "next: `archiver run --dry-run` shows what a run would change; then `archiver run --report "
        "report/failures.html`")
    return EXIT_OK
