"""`archiver verify`: every object the manifest and the articles reference is in storage (and with --deep, intact).

Objects come from the manifest (originals and thumbnails) and from the articles (every reference that is
ours: ``public_base_url`` + a content-addressed key). Each is checked with a HEAD; with ``--deep`` its bytes
are read too: an original must hash to the SHA-256 its key names, a thumbnail must decode as an image of
the recorded format and size. Checks run concurrently (``storage.concurrency`` threads) with a progress
line; the report names each missing or corrupt object and the articles (file:line) that use it.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from PIL import Image

from archiver.articles.files import iter_article_paths, load_article
from archiver.config import Config
from archiver.errors import ArticleError, ConfigError, StorageError
from archiver.find.refs import article_refs
from archiver.manifest.sqlite import Manifest
from archiver.storage import Store, open_store
from archiver.storage.keys import archive_key, parse_key, public_bases
from archiver.terminal import StatusLine

_EXT_FORMAT = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "webp": "webp", "gif": "gif", "avif": "avif"}


@dataclass(frozen=True)
class Target:
    """One object to check. ``width`` is set for a thumbnail (whose key names its original's hash)."""

    key: str
    sha256: str
    width: int | None = None
    format: str | None = None  # a thumbnail's expected format ("webp"), when known
    size: tuple[int, int] | None = None  # a thumbnail's expected pixel size, when known (from the manifest)
    of: str | None = None  # a thumbnail's original's key, when known (from the manifest)


@dataclass(frozen=True)
class Finding:
    target: Target
    status: str  # "missing" | "corrupt" | "unchecked" (storage error)
    reason: str


def target_for_key(key: str) -> Target | None:
    """A Target for a content-addressed key (``…/ab/cd/abcd….jpg`` or ``…-320w.webp``), else None."""
    parsed = parse_key(key)
    if parsed is None:
        return None
    fmt = _EXT_FORMAT.get(parsed.ext) if parsed.width else None
    return Target(key, parsed.sha256, parsed.width, fmt)


# -- what to check ---------------------------------------------------------------------------------
def manifest_targets(manifest: Manifest) -> dict[str, Target]:
    """Every original and thumbnail the manifest records, by key."""
    out: dict[str, Target] = {}
    for key, sha, width, fmt, pw, ph, of in manifest.objects():
        if width is None:
            out[key] = Target(key, sha)
        else:
            out[key] = Target(key, sha, width, fmt, (pw or 0, ph or 0), of)
    return out


def manifest_article_paths(manifest: Manifest) -> list[str]:
    return [path for path, _, _ in manifest.rewritten_articles()]


@dataclass
class Usage:
    """Where the articles use archived objects: key -> [(article, line)], plus the articles not readable."""

    users: dict[str, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))
    articles: int = 0
    references: int = 0
    skipped: list[str] = field(default_factory=list)


def scan_articles(paths: Sequence[Path], cfg: Config) -> Usage:
    bases = public_bases(cfg)
    usage = Usage()
    for path in iter_article_paths(paths, cfg.articles.extensions):
        try:
            article = load_article(path)
            refs = article_refs(article, cfg.articles.front_matter_fields, cfg.articles.max_refs)
        except ArticleError as exc:
            usage.skipped.append(exc.message)
            continue
        usage.articles += 1
        for ref in refs:
            parsed = archive_key(ref.url, bases)
            if parsed is None:
                continue
            usage.references += 1
            users = usage.users[parsed.key]
            if not users or users[-1] != (str(path), ref.line):
                users.append((str(path), ref.line))
    return usage


# -- checking ----------------------------------------------------------------------------------------
def check_object(store: Store, target: Target, deep: bool) -> Finding | None:
    try:
        if not store.exists(target.key):
            return Finding(target, "missing", "not in storage")
        if not deep:
            return None
        data = store.get(target.key)
    except StorageError as exc:
        return Finding(target, "unchecked", exc.message)
    reason = corruption(target, data)
    return Finding(target, "corrupt", reason) if reason else None


def corruption(target: Target, data: bytes) -> str | None:
    """Why these bytes are not the object the key names, or None when they are."""
    if target.width is None:
        got = hashlib.sha256(data).hexdigest()
        if got != target.sha256:
            return f"its {len(data)} bytes hash to {got[:16]}…, not to the {target.sha256[:16]}… its key names"
        return None
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, size = (im.format or "?").lower(), im.size
            im.load()
    except Exception as exc:  # Pillow raises many types for bad data (OSError, SyntaxError, ValueError, ...)
        return f"not a readable image ({type(exc).__name__}: {exc})"
    if target.format and fmt != target.format:
        return f"a {fmt} image, expected {target.format}"
    if target.size and size != target.size:
        return f"{size[0]}x{size[1]} pixels, expected {target.size[0]}x{target.size[1]}"
    if size[0] > target.width:
        return f"{size[0]} pixels wide, more than the {target.width} its key names"
    return None


class VerifyStatus(StatusLine):
    """verify's status line: objects checked, and what was found so far."""

    def __init__(self, total: int, enabled: bool, stream: TextIO | None = None) -> None:
        super().__init__(self._line, stream, enabled=enabled)
        self.total = total
        self.done = 0
        self.counts = {"missing": 0, "corrupt": 0, "unchecked": 0}

    def _line(self) -> str:
        elapsed = self.elapsed
        rate = self.done / elapsed if elapsed > 0 else 0.0
        c = self.counts
        return (f"verify: {self.done}/{self.total} objects · {c['missing']} missing · {c['corrupt']} corrupt"
                f" · {c['unchecked']} unchecked · {rate:.0f} objects/s")

    def update(self, done: int = 0, counts: dict[str, int] | None = None) -> None:  # type: ignore[override]
        self.done = done
        self.counts = dict(counts or self.counts)
        super().update()


def check_all(
    store: Store, targets: Iterable[Target], deep: bool, workers: int, status: VerifyStatus
) -> list[Finding]:
    """Check every target with ``workers`` threads (at most 4 per worker queued at a time)."""
    findings: list[Finding] = []
    counts = {"missing": 0, "corrupt": 0, "unchecked": 0}
    done = 0
    pending: set[Future[Finding | None]] = set()

    def collect(finished: Iterable[Future[Finding | None]]) -> None:
        nonlocal done
        for future in finished:
            done += 1
            finding = future.result()
            if finding:
                findings.append(finding)
                counts[finding.status] += 1
        status.update(done, counts)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="verify") as pool:
        for target in targets:
            if len(pending) >= workers * 4:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                collect(finished)
            pending.add(pool.submit(check_object, store, target, deep))
        collect(wait(pending).done)
    status.clear()
    return sorted(findings, key=lambda f: (f.status, f.target.key))


# -- the command ---------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                        help="check only the objects these articles (or the articles under these folders) use")
    parser.add_argument("--deep", action="store_true",
                        help="also read every object: originals must hash to their key, thumbnails must decode")


def _article_paths(args: argparse.Namespace, cfg: Config, manifest: Manifest | None) -> list[Path]:
    if args.paths:
        for p in args.paths:
            if not p.exists():
                raise ConfigError(f"{p}: no such file or folder")
        return list(args.paths)
    root = cfg.resolve_path(cfg.articles.root)
    paths = [root] if root.exists() else []
    known = manifest_article_paths(manifest) if manifest else []
    return paths + [Path(p) for p in known if Path(p).is_file()]


def _describe(target: Target) -> str:
    return f"thumbnail {target.width}w of {target.of or target.sha256}" if target.width else "original"


def command(args: argparse.Namespace, cfg: Config) -> int:
    manifest_path = cfg.resolve_path(cfg.manifest.path)
    manifest = Manifest.open_readonly(manifest_path) if manifest_path.exists() else None
    try:
        known = manifest_targets(manifest) if manifest else {}
        paths = _article_paths(args, cfg, manifest)
    finally:
        if manifest:
            manifest.close()
    usage = scan_articles(paths, cfg) if paths else Usage()
    targets: dict[str, Target] = {} if args.paths else dict(known)
    for key in usage.users:
        target = known.get(key) or target_for_key(key)
        if target is not None:
            targets.setdefault(key, target)
    if args.paths:  # the thumbnails of the originals these articles use
        used = {t.sha256 for t in targets.values()}
        targets.update({k: t for k, t in known.items() if t.width and t.sha256 in used})

    store = open_store(cfg)
    store.check(write=False)  # one clear error for wrong credentials or a missing bucket; nothing is created
    started = time.monotonic()
    status = VerifyStatus(len(targets), enabled=not args.quiet)
    ordered = sorted(targets.values(), key=lambda t: t.key)
    findings = check_all(store, ordered, args.deep, cfg.storage.concurrency, status)
    elapsed = time.monotonic() - started

    affected: dict[str, set[int]] = defaultdict(set)
    if manifest is None:
        print(f"note: no manifest at {manifest_path}; only the articles' references were checked")
    for note in usage.skipped:
        print(f"note: article not scanned: {note}")
    by_hash: dict[str, list[tuple[str, int]]] = defaultdict(list)  # a thumbnail's users: its original's
    for k, users in usage.users.items():
        if (t := targets.get(k)) is not None and not t.width:
            by_hash[t.sha256].extend(users)
    for f in findings:
        users = by_hash.get(f.target.sha256, []) if f.target.width else usage.users.get(f.target.key, [])
        for article, line in users:
            affected[article].add(line)
        used = ", ".join(f"{a}:{n}" for a, n in users) if users else "no scanned article uses it"
        print(f"{f.status}: {f.target.key} ({_describe(f.target)}): {f.reason}; used by {used}")
    if affected:
        print(f"articles affected ({len(affected)}):")
        for article in sorted(affected):
            print(f"  {article}: lines {', '.join(str(n) for n in sorted(affected[article]))}")
    originals = sum(1 for t in targets.values() if not t.width)
    counts = {s: sum(1 for f in findings if f.status == s) for s in ("missing", "corrupt", "unchecked")}
    print(
        f"verify{' --deep' if args.deep else ''}: {len(targets)} objects checked ({originals} originals, "
        f"{len(targets) - originals} thumbnails) in {elapsed:.1f} s; {usage.articles} articles scanned, "
        f"{usage.references} references to the archive; {counts['missing']} missing, {counts['corrupt']} corrupt, "
        f"{counts['unchecked']} could not be checked" + ("" if args.deep else " (--deep also checks contents)")
    )
    return 1 if findings else 0
