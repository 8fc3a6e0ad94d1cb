"""`archiver verify`: every object the manifest and the articles reference is in storage and is what its key names.

Objects come from the manifest (originals and thumbnails) and from the articles (every reference that is
ours: ``public_base_url`` + a content-addressed key). Each is checked with a HEAD: its size, type and the checksum
the store keeps must match what the manifest recorded (``storage.prove``); an S3 object without a checksum, and an
object the manifest records as missing or corrupt, is read (its size proves nothing); a local folder keeps no
checksum, so there the size is checked. With ``--deep`` every object's bytes are read: an original must hash to
the SHA-256 its key names, a thumbnail must decode as an image of the recorded format and size. Checks run concurrently
(``storage.concurrency`` threads) with a progress line; the report names each missing or corrupt object and the
articles (file:line) that use it, and the manifest remembers them (so `run` stores them again before it points an
article at them). ``--repair`` re-creates them (archiver.run.repair); ``--public`` asks every archive URL the
articles use, as a reader would (HEAD), and reports those that do not answer 200 with the right length and type.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import socket
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from archiver import scratch
from archiver.articles.files import iter_article_paths, load_article
from archiver.config import Config, FetchConfig
from archiver.errors import ArticleError, ConfigError, FetchError, ManifestError
from archiver.fetch.client import Fetcher
from archiver.find.refs import article_refs
from archiver.manifest.rows import LostObject
from archiver.manifest.sqlite import Manifest
from archiver.manifest.target import exists, local_path, manifest_target, shown
from archiver.redaction import redact
from archiver.storage import open_store
from archiver.storage.audit import Finding, Target, VerifyStatus, check_all, target_for_key
from archiver.storage.keys import ParsedKey, archive_key, public_bases
from archiver.terminal import count, say, shown_path


# -- what to check ---------------------------------------------------------------------------------
def manifest_targets(manifest: Manifest) -> dict[str, Target]:
    """Every original and thumbnail the manifest records, by key."""
    out: dict[str, Target] = {}
    for o in manifest.objects():
        if o.width is None:
            out[o.key] = Target(o.key, o.sha256, length=o.size, digest=o.content_sha256, mime=o.mime, known=True)
        else:
            out[o.key] = Target(o.key, o.sha256, o.width, o.format, (o.pixel_width or 0, o.pixel_height or 0),
                                o.original_key, o.size, o.content_sha256, o.mime, known=True)
    return out


def manifest_article_paths(manifest: Manifest) -> list[str]:
    return [path for path, _, _ in manifest.rewritten_articles()]


@dataclass
class Usage:
    """Where the articles use archived objects: key -> [(article, line)], plus the articles not readable."""

    users: dict[str, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))
    urls: dict[str, str] = field(default_factory=dict)  # each archive URL as written -> its key
    articles: int = 0
    references: int = 0
    skipped: list[str] = field(default_factory=list)


def scan_articles(paths: Sequence[Path], cfg: Config, known: Mapping[str, Target] | None = None) -> Usage:
    """Where the articles use archive URLs: content-addressed keys by their shape, templated ones (``[storage]
    key_template``) when ``known`` (the manifest's objects, by key) has them."""
    bases = public_bases(cfg)
    targets = known or {}

    def lookup(key: str) -> ParsedKey | None:
        t = targets.get(key)
        return None if t is None else ParsedKey(key, "", t.sha256, key.rsplit(".", 1)[-1], t.width)

    usage = Usage()
    def skipped(path: Path, why: str) -> None:
        usage.skipped.append(f"{shown_path(path)}: {why}")

    for path in iter_article_paths(paths, cfg.articles.extensions,
                                   follow_outside=cfg.articles.follow_symlinks_outside, on_skip=skipped):
        try:
            article = load_article(path)
            refs = article_refs(article, cfg.articles.front_matter_fields, cfg.articles.max_refs)
        except ArticleError as exc:
            usage.skipped.append(exc.message)
            continue
        usage.articles += 1
        for ref in refs:
            parsed = archive_key(ref.url, bases, lookup)
            if parsed is None:
                continue
            usage.references += 1
            usage.urls[ref.url] = parsed.key
            users = usage.users[parsed.key]
            if not users or users[-1] != (shown_path(path), ref.line):
                users.append((shown_path(path), ref.line))
    return usage


# -- what a reader gets (--public) ---------------------------------------------------------------------
def public_check_config(cfg: Config, urls: Iterable[str]) -> FetchConfig:
    """The fetch settings for asking the archive's own URLs: the fetcher's, plus the addresses of the archive's
    hosts (those of ``public_base_url``) allowed past the private-address guard: a bucket or CDN on a private
    network is still the user's archive. Every other host and every redirect elsewhere is guarded as always."""
    allowed = set(cfg.fetch.allow_networks)
    mapped = {h.lower().rstrip("."): t.rpartition(":")[0].strip("[]") for h, t in cfg.fetch.connect_to.items()}
    for host in sorted({urlsplit(u).hostname or "" for u in urls} - {""}):
        try:
            infos = socket.getaddrinfo(mapped.get(host.rstrip("."), host), None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            continue  # reported when its URL is asked
        allowed.update(str(ipaddress.ip_network(info[4][0].split("%", 1)[0])) for info in infos)
    return replace(cfg.fetch, allow_networks=tuple(sorted(allowed)))


def public_url_problems(cfg: Config, urls: dict[str, Target | None], workdir: Path) -> dict[str, str]:
    """HEAD each absolute archive URL (as the articles use it); URL -> what is wrong with the answer."""

    async def main() -> dict[str, str]:
        problems: dict[str, str] = {}
        async with Fetcher(public_check_config(cfg, urls), workdir) as fetcher:

            async def one(url: str, target: Target | None) -> None:
                try:
                    head = await fetcher.head(url)
                except FetchError as exc:
                    problems[url] = exc.reason
                    return
                ctype = (head.content_type or "").split(";")[0].strip()
                if head.status != 200:
                    problems[url] = f"answered {head.status}, not 200"
                elif target and target.length is not None and head.content_length != target.length:
                    problems[url] = f"Content-Length {head.content_length}, not the {target.length} bytes stored"
                elif target and target.mime and ctype != target.mime:
                    problems[url] = f"Content-Type {ctype or 'missing'}, not {target.mime}"
                elif not ctype.startswith("image/"):
                    problems[url] = f"Content-Type {ctype or 'missing'}, not an image type"

            await asyncio.gather(*(one(u, t) for u, t in urls.items()))
        return problems

    return asyncio.run(main())


def public_urls(cfg: Config, usage: Usage) -> dict[str, str]:
    """The absolute URL a reader asks for each archive URL the articles use -> its key, for ``--public``. A relative
    one (a relative ``public_base_url``) cannot be asked without ``[articles] base_url``: a configuration error,
    refused before anything is checked (exit 2), with how many URLs it leaves unchecked."""
    urls = {(urljoin(cfg.articles.base_url, raw) if cfg.articles.base_url else raw): key
            for raw, key in usage.urls.items()}
    relative = sum(1 for url in urls if not url.startswith(("http://", "https://")))
    if relative:
        where = shown_path(cfg.source) if cfg.source else "the default settings"
        raise ConfigError(
            f"{where}: verify --public: {relative} public URLs could not be checked: public_base_url is relative "
            f"({cfg.storage.public_base_url!r}) and [articles] base_url is empty; set base_url to the site's address")
    return urls


def _check_public(cfg: Config, usage: Usage, urls: dict[str, str], known: dict[str, Target]) -> tuple[int, list[str]]:
    """(URLs asked, lines to print) for ``--public``."""
    lines: list[str] = []
    asked: dict[str, Target | None] = {}
    where: dict[str, list[str]] = defaultdict(list)
    for url, key in urls.items():
        asked[url] = known.get(key) or target_for_key(key)
        where[url] += [f"{a}:{n}" for a, n in usage.users.get(key, [])]
    if asked:
        scratch_dir = scratch.create(Path(tempfile.gettempdir()))
        try:
            problems = public_url_problems(cfg, asked, scratch_dir)
        finally:
            scratch.remove(scratch_dir)
        for url in sorted(problems):
            lines.append(f"public: {redact(url)}: {problems[url]}; used by {', '.join(where[url])}")
    return len(asked), lines


# -- the manifest's memory, and --repair ------------------------------------------------------------------
def remember(manifest_path: Path | str, targets: dict[str, Target], findings: list[Finding],
             reconnect_for: float) -> str | None:
    """Mark in the manifest the objects found missing or corrupt, unmark those proven intact (by the store's checksum
    or by their bytes: a size that matches proves nothing); a note if it is busy."""
    found = [LostObject(f.target.key, f.target.sha256, f.status, f.reason)
             for f in findings if f.target.known and f.status in ("missing", "corrupt")]
    unproven = {f.target.key for f in findings if f.status != "intact"}
    intact = [k for k, t in targets.items() if t.known and k not in unproven]
    try:
        with Manifest.open(manifest_path, reconnect_for=reconnect_for) as manifest:
            if found or {o.key for o in manifest.lost_objects()} & set(intact):
                manifest.mark_lost(found, intact)
    except ManifestError as exc:
        return f"note: not recorded in the manifest ({exc.message}); a later verify records it"
    except OSError as exc:  # its lock file cannot be made (a read-only folder)
        return f"note: not recorded in the manifest ({exc.strerror or exc}); a later verify records it"
    return None


def repair_findings(cfg: Config, manifest_path: Path | str, findings: list[Finding],
                    scope: set[str] | None) -> tuple[list[str], set[str]]:
    """Re-create what verify found (``archiver.run.repair``) and every object the manifest records as missing or
    corrupt (those of ``scope``, when verify was given PATHs: an earlier ``--deep`` may have found what this plain
    verify cannot see), and give a checksum to the objects stored without one: the lines to print, and the keys
    of the missing, corrupt or unchecked objects that are not repaired."""
    from archiver.image.pool import make_pool
    from archiver.run.pipeline import prepare_workdir
    from archiver.run.repair import repair

    todo = {f.target.key: LostObject(f.target.key, f.target.sha256, f.status, f.reason) for f in findings
            if f.target.known and f.status in ("missing", "corrupt")}
    todo.update({f.target.key: LostObject(f.target.key, f.target.sha256, "unproven", f.reason) for f in findings
                 if f.target.known and f.status == "intact" and f.read == "no checksum"})
    lines = [f"lost: {f.target.key}: cannot be re-created: the manifest does not know it"
             for f in findings if not f.target.known and f.status in ("missing", "corrupt")]
    unrepaired = {f.target.key for f in findings if f.status in ("missing", "corrupt", "unchecked")}
    manifest = Manifest.open(manifest_path, reconnect_for=cfg.manifest.reconnect_for)
    try:
        recorded = [o for o in manifest.lost_objects() if scope is None or o.key in scope]
    finally:
        manifest.close()
    for o in recorded:
        todo.setdefault(o.key, o)
        unrepaired.add(o.key)
    if not todo:
        return lines, unrepaired
    store = open_store(cfg)
    store.check()
    manifest = Manifest.open(manifest_path, reconnect_for=cfg.manifest.reconnect_for)
    workdir = prepare_workdir(local_path(cfg))
    pool = make_pool(cfg.images.max_decode_seconds)
    try:
        done = asyncio.run(repair(cfg, manifest, store, list(todo.values()), workdir, pool))
    finally:
        pool.terminate()
        manifest.close()
        store.close()
        scratch.remove(workdir)
    lines += [f"repaired: {k} (from {src})" for k, src in sorted(done.repaired.items())]
    lines += [f"lost: {k}: {why}" for k, why in sorted(done.lost.items())]
    return lines, unrepaired - set(done.repaired)


# -- the command ---------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                        help="check only the objects these articles (or the articles under these folders) use")
    parser.add_argument("--deep", action="store_true",
                        help="also read every object: originals must hash to their key, thumbnails must decode")
    parser.add_argument("--public", action="store_true",
                        help="also ask every archive URL the articles use (HEAD): 200, the right length and type")
    parser.add_argument("--repair", action="store_true",
                        help="re-create what is missing, corrupt or without a checksum: originals from their source "
                             "URLs (checked to hash to their key), thumbnails from their originals")


def _article_paths(args: argparse.Namespace, cfg: Config, manifest: Manifest | None) -> list[Path]:
    if args.paths:
        for p in args.paths:
            if not p.exists():
                why = "a broken symlink, or a symlink loop" if p.is_symlink() else "no such file or folder"
                raise ConfigError(f"{shown_path(p)}: {why}")
        return list(args.paths)
    root = cfg.resolve_path(cfg.articles.root)
    if not root.exists():  # as `run`: checking nothing must not look like "all is well"
        why = "a broken symlink, or a symlink loop" if root.is_symlink() else "no such file or folder"
        raise ConfigError(f"{shown_path(root)}: {why} ([articles] root; or name the articles as PATHs)")
    known = manifest_article_paths(manifest) if manifest else []
    return [root] + [Path(p) for p in known if Path(p).is_file()]


def _describe(target: Target) -> str:
    return f"thumbnail {target.width}w of {target.of or target.sha256}" if target.width else "original"


def command(args: argparse.Namespace, cfg: Config) -> int:
    manifest_path = manifest_target(cfg)
    manifest = Manifest.open_readonly(manifest_path) if exists(manifest_path) else None
    try:
        known = manifest_targets(manifest) if manifest else {}
        recorded = frozenset(o.key for o in manifest.lost_objects()) if manifest else frozenset()
        paths = _article_paths(args, cfg, manifest)
    finally:
        if manifest:
            manifest.close()
    if args.repair and manifest is None:
        raise ManifestError(f"{shown(manifest_path)}: no manifest: --repair re-creates what the manifest records")
    usage = scan_articles(paths, cfg, known) if paths else Usage()
    urls = public_urls(cfg, usage) if args.public else {}
    targets: dict[str, Target] = {} if args.paths else dict(known)
    for key in usage.users:
        target = known.get(key) or target_for_key(key)
        if target is not None:
            targets.setdefault(key, target)
    if args.paths:  # the thumbnails of the originals these articles use
        used = {t.sha256 for t in targets.values()}
        targets.update({k: t for k, t in known.items() if t.width and t.sha256 in used})

    store = open_store(cfg)
    try:
        store.check(write=False)  # one clear error for wrong credentials or a missing bucket; nothing is created
        started = time.monotonic()
        status = VerifyStatus(len(targets), enabled=not args.quiet)
        ordered = sorted(targets.values(), key=lambda t: t.key)
        findings = check_all(store, ordered, args.deep, cfg.storage.concurrency, status, recorded)
        elapsed = time.monotonic() - started
    finally:
        store.close()
    notes = [f"note: no manifest at {manifest_path}; only the articles' references were checked"] if not manifest else [
        note for note in [remember(manifest_path, targets, findings, cfg.manifest.reconnect_for)] if note]
    scope = set(targets) if args.paths else None
    repaired, unrepaired = repair_findings(cfg, manifest_path, findings, scope) if args.repair else ([], set())
    asked, public = _check_public(cfg, usage, urls, known) if args.public else (0, [])

    affected: dict[str, set[int]] = defaultdict(set)
    for note in notes + [f"note: article not scanned: {n}" for n in usage.skipped]:
        say(note)
    by_hash: dict[str, list[tuple[str, int]]] = defaultdict(list)  # a thumbnail's users: its original's
    for k, users in usage.users.items():
        if (t := targets.get(k)) is not None and not t.width:
            by_hash[t.sha256].extend(users)
    for f in findings:
        if f.status in ("unproven", "intact"):
            continue
        users = by_hash.get(f.target.sha256, []) if f.target.width else usage.users.get(f.target.key, [])
        for article, line in users:
            affected[article].add(line)
        used = ", ".join(f"{a}:{n}" for a, n in users) if users else "no scanned article uses it"
        say(f"{f.status}: {f.target.key} ({_describe(f.target)}): {f.reason}; used by {used}")
    if affected:
        say(f"articles affected ({len(affected)}):")
        for article in sorted(affected):
            say(f"  {article}: lines {', '.join(str(n) for n in sorted(affected[article]))}")
    unvouched = sum(1 for f in findings if f.read == "no checksum")
    if unvouched and not args.repair:
        say(f"note: {count(unvouched, 'object')} {'has' if unvouched == 1 else 'have'} no checksum in the store (stored before checksums were kept, or in "
            f"parts){'' if args.deep else ', so verify read them'}; --repair stores them again with one")
    for line in repaired + public:
        say(line)
    originals = sum(1 for t in targets.values() if not t.width)
    reread = sum(1 for f in findings if f.read == "recorded")
    local = cfg.storage.backend == "local"  # no checksum kept: without --deep, sizes are compared
    counts = {s: sum(1 for f in findings if f.status == s) for s in ("missing", "corrupt", "unchecked")}
    say(
        f"verify{' --deep' if args.deep else ''}: {count(len(targets), 'object')} checked "
        f"({count(originals, 'original')}, {count(len(targets) - originals, 'thumbnail')}) in {elapsed:.1f} s; "
        f"{count(usage.articles, 'article')} scanned, {count(usage.references, 'reference')} to the archive; {counts['missing']} missing, {counts['corrupt']} corrupt, "
        f"{counts['unchecked']} could not be checked"
        + ("" if args.deep or local else f"; {unvouched} read because the store keeps no checksum for them")
        + (f"; {reread} recorded missing or corrupt read again" if reread and not args.deep else "")
        + (" (--deep also checks contents)" if local and not args.deep else "")
        + (f"; {len(unrepaired)} could not be repaired" if args.repair else "")
        + (f"; {len(public)} of {asked} public URLs do not work" if args.public else "")
    )
    bad = {f.target.key for f in findings if f.status in ("missing", "corrupt", "unchecked")}
    return 1 if (unrepaired if args.repair else bad) or public else 0
