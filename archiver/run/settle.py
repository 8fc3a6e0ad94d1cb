"""Settling one URL end to end: fetch it (or read the file on disk) → sniff → process in the pool → store → record the
asset; the URL's outcome comes back as a ``UrlResult`` for the caller to record (`archiver run`: ``record_url``; a
worker: ``complete(url, token, result)``, fenced by its claim's token).

One code path for both: what `archiver run` does in its own process and what `archiver worker` does for the fleet.
Nothing here records the URL itself, so a worker whose lease passed records nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from archiver.config import Config, settings_fingerprint
from archiver.errors import ArchiverError, FetchError, GuardRefused, ImageError, StorageError
from archiver.faults import crash_point
from archiver.fetch.local import read_local
from archiver.manifest.queue import UrlResult
from archiver.model import Cause, Outcome
from archiver.redaction import redact, redact_text
from archiver.run.assets import AssetArchiver
from archiver.run.local import LocalRoots, is_local
from archiver.run.report import Stats

if TYPE_CHECKING:
    from archiver.fetch.client import Fetcher
    from archiver.manifest.sqlite import Manifest

log = logging.getLogger("archiver")


@dataclass(frozen=True)
class Settled:
    """One URL's outcome: what to record (``result``), the stored original's key when archived, and the error that
    decided any other outcome (a run reports the guard's address, a storage failure)."""

    url: str
    result: UrlResult
    key: str | None = None
    error: ArchiverError | None = None

    @property
    def problem(self) -> str | None:
        """Why the URL was not archived, as the summary shows it (None: archived)."""
        return None if self.result.status == Outcome.ARCHIVED else self.result.reason


def make_fetcher(cfg: Config, workdir: Path, manifest: Manifest) -> Fetcher:
    """The one place a run or a worker makes its HTTP client: with a shared (PostgreSQL) manifest, its per-host slots
    and pauses are the fleet's (archiver.run.fleet); a SQLite run keeps its own, as always."""
    from archiver.fetch.client import Fetcher  # only a run with something to fetch loads aiohttp

    if not manifest.shared:
        return Fetcher(cfg.fetch, workdir)
    from archiver.run.fleet import fleet_gate

    return Fetcher(cfg.fetch, workdir, gate=fleet_gate(manifest, cfg.fetch))


class Settler:
    """Settles URLs for a run or a worker: one ``AssetArchiver`` (objects stored once per process, however many URLs
    give the same bytes), the folders images on disk may be read from, the scratch folder downloads go to."""

    def __init__(self, cfg: Config, assets: AssetArchiver, stats: Stats, workdir: Path,
                 local: LocalRoots | None) -> None:
        self.cfg = cfg
        self.assets = assets
        self.stats = stats
        self.workdir = workdir
        self._local = local  # None: a worker, which never reads the run's files
        self._fingerprints = {cause: settings_fingerprint(cfg, cause) for cause in Cause}

    def fingerprint(self, cause: str | None) -> str | None:
        return self._fingerprints[Cause(cause)] if cause else None

    async def settle(self, fetcher: Fetcher, url: str) -> Settled:
        """The URL's outcome; never raises but for cancellation (an error nobody expected is a failure with its
        message: every URL ends in one recorded outcome)."""
        try:
            return await self._settle(fetcher, url)
        except Exception as exc:  # not CancelledError: an abandoned URL is left for later (not attempted)
            log.debug("unexpected error settling %s", redact(url), exc_info=True)
            return Settled(url, UrlResult(Outcome.FAILED, reason=f"internal error: {describe(exc)}"))

    async def _settle(self, fetcher: Fetcher, url: str) -> Settled:
        try:
            if is_local(url):
                if self._local is None:
                    return Settled(url, UrlResult(Outcome.FAILED, reason="an image on disk is archived by the "
                                                  "`archiver run` that found it, not by a worker"))
                roots = None if self._local.follow_outside else self._local.real()
                download = await asyncio.to_thread(read_local, url, self.workdir, self.cfg.fetch.max_bytes, roots)
            else:
                download = await fetcher.fetch(url)
        except FetchError as exc:
            cause = getattr(exc, "cause", None)
            return Settled(url, UrlResult(exc.outcome, reason=exc.reason, http_status=exc.status,
                                          attempts=exc.attempts, cause=cause, settings=self.fingerprint(cause)),
                           error=exc)
        crash_point("fetched")
        self.stats.fetched += 1
        self.stats.bytes_fetched += download.size
        try:
            key = await self.assets.archive(download)
        except (ImageError, StorageError) as exc:
            cause = getattr(exc, "cause", None)
            return Settled(url, UrlResult(exc.outcome, reason=exc.message, attempts=download.attempts, cause=cause,
                                          settings=self.fingerprint(cause)), error=exc)
        finally:
            download.path.unlink(missing_ok=True)
        return Settled(url, UrlResult(
            Outcome.ARCHIVED, asset=download.sha256, http_status=download.status, attempts=download.attempts,
            final_url=download.final_url, etag=download.etag, last_modified=download.last_modified,
        ), key=key)


def guard_address(settled: Settled) -> str | None:
    """The address the guard refused, when it decided the outcome."""
    return settled.error.address if isinstance(settled.error, GuardRefused) else None


def describe(exc: BaseException) -> str:
    """An unexpected error in one line: its type and message, any URL in it redacted."""
    text = redact_text(" ".join(str(exc).split()))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
