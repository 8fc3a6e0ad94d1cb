"""The images of one run: each download processed in the worker pool, its objects stored once, its asset recorded.

The pool (archiver.image.pool) bounds each image's CPU time; a task cancelled while its image is being decoded
(the run is stopping) kills that worker instead of waiting for it."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential, wait_random

from archiver.config import Config
from archiver.errors import StorageError
from archiver.faults import crash_point
from archiver.image.pool import ImagePool
from archiver.manifest.sqlite import Manifest
from archiver.model import Asset, Download
from archiver.redaction import redact
from archiver.run.report import Stats
from archiver.storage import Store
from archiver.storage.keys import original_key, rendition_key

log = logging.getLogger("archiver")


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

    async def archive(self, download: Download) -> str:
        """Make sure the bytes and their renditions are stored; return the original's key."""
        sha = download.sha256
        async with self._asset_locks[sha]:
            stored = self.manifest.asset(sha)
            if stored and self._renditions_complete(sha, stored.ext):
                self.stats.duplicates += 1
                return stored.key
            from archiver.image.process import (
                process,  # here, not at the top: only the image workers need Pillow and SciPy
            )

            job = (str(download.path), download.format, sha, download.size, self.cfg.images)
            # no pool (an embedding program's choice): in a thread of this process, without a CPU budget
            asset: Asset = await (self._pool.run(process, *job) if self._pool else asyncio.to_thread(process, *job))
            crash_point("processed")
            prefix = self.cfg.storage.prefix
            key = original_key(prefix, sha, download.format.ext)
            meta = {"source-url": redact(download.url)}
            await self._put(key, download.path, download.format.mime, meta)
            rkeys = []
            for r in asset.renditions:
                rkey = rendition_key(prefix, sha, r.width, r.format.ext)
                await self._put(rkey, r.data, r.format.mime, meta)
                rkeys.append(rkey)
            self.manifest.record_asset(asset, key, rkeys)
            crash_point("recorded-asset")
            if stored is None:
                self.stats.assets_new += 1
            return key

    def _renditions_complete(self, sha: str, ext: str) -> bool:
        have = self.manifest.rendition_keys(sha)
        if ext == "svg":
            return True
        fmt = self.cfg.images.thumbnail_format
        return all((w, fmt) in have for w in self.cfg.images.thumbnails)

    async def _put(self, key: str, data: bytes | Path, mime: str, meta: dict[str, str]) -> None:
        """Store one object unless it is there already; wait out a store that is briefly unavailable."""

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
                        if await asyncio.to_thread(self.store.exists, key):
                            self.stats.already_stored += 1
                            return
                        await asyncio.to_thread(self.store.put, key, data, mime, meta)
                        crash_point("stored")
                        self.stats.uploaded += 1
        except StorageError as exc:
            if exc.transient and self._storage_down is None:
                self._storage_down = f"storage unavailable for {self.cfg.storage.retry_for:g}s: {exc.message}"
                self._request_stop("storage unavailable", 0.0)
            raise
