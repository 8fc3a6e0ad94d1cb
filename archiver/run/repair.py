"""`verify --repair`: store again the objects verify found missing, corrupt or unproven, from where they came from.

An original is re-created from the bytes its key names: the stored copy when it still hashes to its key, else its
source URLs, fetched again with the run's fetcher under the same rules (guard, limits, retries) and kept only if
they hash to the key; a source that is gone or now serves other bytes is reported ("lost at the source"). Its
thumbnails are re-made from it by the image stage, at the widths and format the manifest records. Every object
goes through the run's ``AssetArchiver``: stored only where the store cannot prove it already holds those bytes,
and recording the asset ends its "lost" marks.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from archiver.config import Config, ImagesConfig
from archiver.errors import ArchiverError, FetchError
from archiver.fetch.client import Fetcher
from archiver.fetch.local import LOCAL_PREFIX, read_local
from archiver.image.pool import ImagePool
from archiver.manifest.rows import LostObject, StoredAsset
from archiver.manifest.sqlite import Manifest
from archiver.model import Download
from archiver.redaction import redact
from archiver.run.assets import AssetArchiver, stored_original
from archiver.run.report import Stats
from archiver.storage import Store

log = logging.getLogger("archiver")


@dataclass
class Repair:
    """What ``repair`` did, per object key."""

    repaired: dict[str, str] = field(default_factory=dict)  # key -> from where ("source URL", "the stored original")
    lost: dict[str, str] = field(default_factory=dict)  # key -> why it could not be re-created
    stats: Stats = field(default_factory=Stats)


async def repair(cfg: Config, manifest: Manifest, store: Store, objects: Iterable[LostObject], workdir: Path,
                 pool: ImagePool | None) -> Repair:
    """Re-create ``objects`` (each an original or a thumbnail of an asset the manifest knows), asset by asset."""
    by_asset: dict[str, list[LostObject]] = defaultdict(list)
    for o in objects:
        by_asset[o.asset].append(o)
    result = Repair()
    slots = asyncio.Semaphore(cfg.fetch.concurrency)
    async with Fetcher(cfg.fetch, workdir) as fetcher:

        async def one(sha: str, lost: list[LostObject]) -> None:
            async with slots:
                try:
                    await _repair_asset(cfg, manifest, store, fetcher, pool, sha, lost, workdir, result)
                except ArchiverError as exc:
                    for o in lost:
                        result.lost[o.key] = exc.message

        await asyncio.gather(*(one(sha, lost) for sha, lost in sorted(by_asset.items())))
    return result


async def _repair_asset(cfg: Config, manifest: Manifest, store: Store, fetcher: Fetcher, pool: ImagePool | None,
                        sha: str, lost: list[LostObject], workdir: Path, result: Repair) -> None:
    asset = manifest.asset(sha)
    if asset is None:
        for o in lost:
            result.lost[o.key] = "the manifest no longer knows its image"
        return
    download, source = None, "the stored original"
    if all(o.key != asset.key or o.state == "unproven" for o in lost):  # it may still hash to its key: read it
        download = await asyncio.to_thread(stored_original, store, asset, workdir)
    if download is None:  # the original itself is missing or corrupt: its sources give it back, or nothing does
        download, source = await _fetch_source(manifest, fetcher, asset, _local_roots(cfg), workdir, cfg.fetch.max_bytes)
        if download is None:
            for o in lost:
                result.lost[o.key] = source
            return
    try:
        for images in _rendition_configs(cfg, manifest, asset):
            archiver = AssetArchiver(replace(cfg, images=images), manifest, store, result.stats, pool,
                                     lambda reason, grace: None, lost={sha})
            await archiver.archive(download)
    finally:
        download.path.unlink(missing_ok=True)
    for o in lost:
        result.repaired[o.key] = source


def _rendition_configs(cfg: Config, manifest: Manifest, asset: StoredAsset) -> list[ImagesConfig]:
    """The image settings that re-make the thumbnails the manifest records for the asset (one per format), or the
    configured ones when it records none."""
    formats: dict[str, list[int]] = defaultdict(list)
    for width, fmt in manifest.rendition_keys(asset.sha256):
        formats[fmt].append(width)
    if not formats:
        return [cfg.images]
    return [replace(cfg.images, thumbnails=tuple(sorted(widths)), thumbnail_format=fmt, formats=())
            for fmt, widths in sorted(formats.items())]


def _local_roots(cfg: Config) -> list[Path] | None:
    """Where a local source may be read from again: ``[articles] root`` and ``site_root`` (real paths); None:
    anywhere a symlink leads (``follow_symlinks_outside``)."""
    if cfg.articles.follow_symlinks_outside:
        return None
    folders = [cfg.resolve_path(cfg.articles.root)] + ([Path(cfg.articles.site_root)] if cfg.articles.site_root else [])
    return [Path(os.path.realpath(f)) for f in folders]


async def _fetch_source(manifest: Manifest, fetcher: Fetcher, asset: StoredAsset, local_roots: list[Path] | None,
                        workdir: Path, max_bytes: int) -> tuple[Download | None, str]:
    """(the first source URL's download that hashes to the key, "its URL"), else (None, why none did). A file on
    disk (a ``file://`` source) is read again from there, inside ``local_roots``."""
    why: list[str] = []
    for url in manifest.source_urls(asset.sha256):
        if "#sha256=" in url:  # kept redacted: the secret it carried is not in the manifest
            why.append(f"{url.split('#', 1)[0]}: held a secret, which the manifest does not keep")
            continue
        try:
            if url.startswith(LOCAL_PREFIX):
                download = await asyncio.to_thread(read_local, url, workdir, max_bytes, local_roots)
            else:
                download = await fetcher.fetch(url)
        except FetchError as exc:
            why.append(f"{redact(url)}: {exc.reason}")
            continue
        if download.sha256 == asset.sha256:
            return download, redact(url)
        download.path.unlink(missing_ok=True)
        why.append(f"{redact(url)}: now serves other bytes (sha256 {download.sha256[:16]}…)")
    if not why:
        return None, "lost at the source: the manifest records no URL it came from"
    return None, "lost at the source: " + "; ".join(why)
