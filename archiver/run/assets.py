"""The images of one run: each download processed in the worker pool, its objects stored once, its asset recorded.

The pool (archiver.image.pool) bounds each image's CPU time; a task cancelled while its image is being decoded
(the run is stopping) kills that worker instead of waiting for it."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential, wait_random

from archiver.config import Config
from archiver.cputime import timed
from archiver.errors import ArchiverError, AssetGone, StorageError
from archiver.faults import crash_point
from archiver.image.pool import ImagePool
from archiver.manifest.rows import StoredAsset
from archiver.manifest.sqlite import Manifest
from archiver.model import Asset, Download, ImageFormat
from archiver.redaction import redact
from archiver.run.local import shown_source
from archiver.run.report import Stats
from archiver.storage import Store, prove
from archiver.storage.keys import templated_key
from archiver.storage.template import KeyParts, KeyTemplate, rendition_of

log = logging.getLogger("archiver")

GC_RACES = 3  # times a URL is archived again after a concurrent gc deleted its bytes meanwhile (then: failed)


class AssetArchiver:
    """Stores a download's bytes and renditions, once however many URLs lead to the same bytes.

    A store that stays unavailable for ``[storage] retry_for`` seconds stops the run (``request_stop``); from then
    on every store attempt fails at once with the same message.
    """

    def __init__(
        self,
        cfg: Config,
        manifest: Manifest,
        store: Store,
        stats: Stats,
        pool: ImagePool | None,
        request_stop: Callable[[str, float], None],
        *,
        lost: set[str] | None = None,
    ) -> None:
        self.cfg = cfg
        self.manifest = manifest
        self.store = store
        self.stats = stats
        self._pool = pool
        self._request_stop = request_stop
        self._asset_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._store_slots = asyncio.Semaphore(cfg.storage.concurrency)
        self._storage_down: str | None = None
        # assets with an object verify found missing or corrupt: stored again before any article points at them
        self.lost: set[str] = {o.asset for o in manifest.lost_objects()} if lost is None else lost
        self.replaced: list[str] = []  # "key: why" of each object that held other bytes than its key names
        self.widened: list[str] = []  # "key: why" of each templated key taken by other bytes (a longer hash used)
        self._reserved: dict[str, str] = {}  # templated key -> the asset it was chosen for, until it is recorded

    async def archive(self, download: Download) -> str:
        """Make sure the bytes and their renditions are stored; return the original's key. With a PostgreSQL
        manifest, a gc batch that deleted these bytes between the decision that they are stored and their record
        (AssetGone) makes them stored again (manifest/gc.py)."""
        async with self._asset_locks[download.sha256]:
            for _ in range(GC_RACES - 1):
                try:
                    return await self._archive(download)
                except AssetGone as exc:
                    log.info("%s", exc.message)
            return await self._archive(download)

    async def _archive(self, download: Download) -> str:
        sha = download.sha256
        epoch = self.manifest.gc_barrier()  # before deciding what is stored
        stored = self.manifest.asset(sha)
        if stored and self.renditions_complete(sha, stored.ext) and sha not in self.lost:
            self.stats.duplicates += 1
            crash_point("reused")
            return stored.key
        from archiver.image.process import (
            process,  # here, not at the top: only the image workers need Pillow and SciPy
        )

        job = (str(download.path), download.format, sha, download.size, self.cfg.images)
        # no pool (an embedding program's choice): in a thread of this process, without a CPU budget
        asset: Asset = await (self._pool.run(process, *job) if self._pool else asyncio.to_thread(process, *job))
        crash_point("processed")
        # a key is made once, when the bytes are first archived, and reused whatever URL brings them later
        now = time.time()
        if stored is not None:
            key, ext = stored.key, stored.ext
        else:
            ext = download.format.ext
            key = await self._choose_key(KeyParts(sha, ext, download.url, now), download)
        have = self.manifest.rendition_keys(sha)
        # a local file's absolute path (folder and user names) never goes into the store: its site path does
        meta = {"source-url": redact(shown_source(download.url, self.cfg))}
        await self._put(key, download.path, download.format.mime, meta, download.size, sha)
        rkeys = []
        for r in asset.renditions:
            rkey = have.get((r.width, r.format.name)) or rendition_of(key, ext, r.width, r.format.ext)
            await self._put(rkey, r.data, r.format.mime, meta, len(r.data), hashlib.sha256(r.data).hexdigest())
            rkeys.append(rkey)
        self.manifest.record_asset(asset, key, rkeys, download.url, now, gc_epoch=epoch)
        for k in (key, *rkeys):
            self._reserved.pop(k, None)
        crash_point("recorded-asset")
        if stored is None:
            self.stats.assets_new += 1
        elif sha in self.lost:
            self.stats.restored += 1
        self.lost.discard(sha)
        return key

    async def complete(self, stored: StoredAsset, workdir: Path) -> None:
        """Make the configured renditions an archived asset lacks (a width or format added to the config since it was
        archived) from its stored original; nothing if that cannot be read (verify finds it). ArchiverError: not
        made (the asset keeps the renditions it has)."""
        if self.renditions_complete(stored.sha256, stored.ext):
            return
        download = await asyncio.to_thread(stored_original, self.store, stored, workdir)
        if download is None:
            return
        try:
            await self.archive(download)
            self.stats.renditions_added += 1
        finally:
            download.path.unlink(missing_ok=True)

    async def _choose_key(self, parts: KeyParts, download: Download) -> str:
        """A new asset's key: under ``[storage] key_template``, the first of its renderings (the hash widened 8 → 16
        → 64 digits) that no other asset's original or thumbnail has or is being given, and under which the store
        holds nothing or these very bytes; never another content's object. Content-addressed without a template."""
        text = self.cfg.storage.key_template
        if not text:
            return templated_key(self.cfg, parts)
        images = self.cfg.images
        exts = {"jpeg": "jpg"}
        key = ""
        for width in KeyTemplate.parse(text).widths():
            key = templated_key(self.cfg, parts, width)
            thumbs = [rendition_of(key, parts.ext, w, exts.get(f, f)) for f in images.output_formats
                      for w in images.thumbnails]
            owner = next((o for k in (key, *thumbs)
                          if (o := self._reserved.get(k) or self.manifest.key_owner(k)) not in (None, parts.sha256)),
                         None)
            if owner is not None:
                self.widened.append(f"{key}: the key of other bytes (sha256 {owner[:16]}…)")
                log.info("storage: %s; a longer hash is used", self.widened[-1])
                continue
            for k in (key, *thumbs):
                self._reserved[k] = parts.sha256
            async with self._store_slots:
                proof = await asyncio.to_thread(prove, self.store, key, download.size, parts.sha256,
                                                download.format.mime)
            if proof.state != "different" or width == 64:
                return key  # a full-hash key holding other bytes is corrupt: replaced, as any content-addressed key
            for k in (key, *thumbs):
                self._reserved.pop(k, None)
            self.widened.append(f"{key}: the store holds other bytes there ({proof.reason})")
            log.info("storage: %s; a longer hash is used", self.widened[-1])
        return key

    def renditions_complete(self, sha: str, ext: str) -> bool:
        """Whether the manifest records every configured width in every configured format for the asset."""
        have = self.manifest.rendition_keys(sha)
        if ext == "svg":
            return True
        images = self.cfg.images
        return all((w, fmt) in have for fmt in images.output_formats for w in images.thumbnails)

    async def _put(self, key: str, data: bytes | Path, mime: str, meta: dict[str, str], size: int, sha: str) -> None:
        """Store one object unless the store proves it holds these very bytes (size, type and the checksum it keeps:
        an object that merely exists may hold anything); replace one that does not. On S3 the first request is a
        PUT that creates the key only if it is free; only a key already taken is proven. Wait out a store that is
        briefly unavailable."""

        def worth_waiting(exc: BaseException) -> bool:
            return isinstance(exc, StorageError) and exc.transient and self._storage_down is None

        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_delay(self.cfg.storage.retry_for),
                wait=wait_exponential(multiplier=0.5, max=10.0) + wait_random(0, 0.5),
                retry=retry_if_exception(worth_waiting),
                before_sleep=lambda state: log.info("storage: %s; retrying", state.outcome.exception()),
                reraise=True,
            ):
                with attempt:
                    if self._storage_down:
                        raise StorageError(self._storage_down)
                    async with self._store_slots:
                        # an S3 store: one conditional PUT in the usual case, a new object (no HEAD before it);
                        # an object already there (or a server without conditional writes) is proven as below
                        if (put_new := getattr(self.store, "put_if_absent", None)) is not None:
                            try:
                                created = await asyncio.to_thread(timed("store", put_new), key, data, mime, meta, sha)
                            except StorageError as exc:  # refused (access denied...): prove and put say why
                                if exc.transient:
                                    raise
                                created = None
                            if created:
                                crash_point("stored")
                                self.stats.uploaded += 1
                                return
                        proof = await asyncio.to_thread(timed("store", prove), self.store, key, size, sha, mime)
                        if proof.ok:
                            self.stats.already_stored += 1
                            return
                        if proof.state == "different":
                            log.warning("storage: %s: %s; replacing it with the bytes its key names", key, proof.reason)
                        try:
                            await asyncio.to_thread(timed("store", self.store.put), key, data, mime, meta, sha)
                        except StorageError as exc:
                            if proof.state != "different":
                                raise
                            raise StorageError(
                                f"{key}: the object stored there is not the one its key names ({proof.reason}) and "
                                f"cannot be replaced: {exc.message}", transient=exc.transient) from exc
                        crash_point("stored")
                        self.stats.uploaded += 1
                        if proof.state == "different":
                            self.replaced.append(f"{key}: {proof.reason}")
        except StorageError as exc:
            if exc.transient and self._storage_down is None:
                self._storage_down = f"storage unavailable for {self.cfg.storage.retry_for:g}s: {exc.message}"
                self._request_stop("storage unavailable", 0.0)
            raise


def stored_original(store: Store, asset: StoredAsset, workdir: Path) -> Download | None:
    """The stored original as a download, if it still hashes to its key (else None: fetch it from its source)."""
    try:
        data = store.get(asset.key)
    except ArchiverError:
        return None
    if hashlib.sha256(data).hexdigest() != asset.sha256:
        return None
    path = workdir / f"repair-{asset.sha256[:16]}-{os.getpid()}.part"
    path.write_bytes(data)
    fmt = ImageFormat(asset.format, asset.mime, asset.ext, raster=asset.format != "svg")
    return Download(asset.key, asset.key, path, len(data), asset.sha256, fmt, 200)
