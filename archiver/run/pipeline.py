"""One archiving run: scan articles, settle every unique URL (fetch → image → store), rewrite articles.

Each unique URL is fetched at most once per run, however many articles use it; an article is
rewritten as soon as every URL it uses is settled, so a long run makes progress that survives a kill.
The manifest records a URL as archived only after its objects are stored, and an article only after
its atomic write, so a re-run after a crash at any point converges on the same result.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from collections import defaultdict, deque
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from archiver import scratch
from archiver.articles.files import iter_article_paths, read_raw
from archiver.articles.journal import settle_pending, sha256
from archiver.articles.rewrite import remove_stale_temp_files
from archiver.config import Config, settings_fingerprint
from archiver.cputime import stage, timed
from archiver.errors import (
    ArchiverError,
    ArticleError,
    GuardRefused,
    ManifestError,
    ManifestUnavailable,
    StorageError,
)
from archiver.faults import crash_point
from archiver.image.pool import ImagePool, make_pool
from archiver.manifest.queue import LIVE, RUN_PREFIX, UrlResult
from archiver.manifest.rows import StoredAsset, url_key
from archiver.manifest.sqlite import Manifest
from archiver.model import SIMILARITY_RULE_VERSION, Cause, Outcome
from archiver.redaction import redact
from archiver.run.articles import (
    ArticleWork,
    OwnUrls,
    Responsive,
    Scanned,
    archive_shaped,
    refs_fingerprint,
    rewrite_article,
    scan_article,
    scan_fingerprint,
)
from archiver.run.assets import AssetArchiver
from archiver.run.local import LocalRoots, is_local
from archiver.run.report import SKIPPED, WARNING, Problem, RunReport, Stats
from archiver.run.settle import Settled, Settler, describe, guard_address, make_fetcher
from archiver.run.watch import article_key
from archiver.storage import Store, prove
from archiver.storage.keys import public_bases
from archiver.terminal import count, shown_path

if TYPE_CHECKING:
    from archiver.fetch.client import Fetcher
    from archiver.run.worker import QueueWorker

log = logging.getLogger("archiver")
POLL = 0.5  # seconds between two reads of the states of the URLs a run waits for the workers to settle
NO_WORKER_CHECK = 5.0  # seconds between two looks at the workers' heartbeats of a --no-process run
NO_WORKER_GRACE = 15.0  # seconds without a live worker before a --no-process run says so


class Run:
    """Everything one `archiver run` needs; call ``await Run(...).execute()``."""

    def __init__(
        self,
        cfg: Config,
        paths: Sequence[Path],
        manifest: Manifest,
        store: Store,
        *,
        dry_run: bool = False,
        retry_dead: bool = False,
        workdir: Path,
        pool: ImagePool | None = None,
        check_store: bool = False,
        only: Collection[str] | None = None,
        process: bool = True,
        lease: float = 60.0,
    ) -> None:
        """``only``: scan just these articles (run.watch.article_key) among those under ``paths``
        (`run --watch`: the files that changed), walked with the same rules."""
        self.cfg = cfg
        self._only = None if only is None else set(only)
        self.paths = list(paths)
        self.manifest = manifest
        self.store = store
        self.dry_run = dry_run
        self.check_store = check_store  # check the store (Store.check) before the first fetch
        self.retry_dead = retry_dead
        self.workdir = workdir
        self.report = RunReport(Stats())
        self.stats = self.report.stats
        self._assets = AssetArchiver(cfg, manifest, store, self.stats, pool, self.request_stop)
        self._own = OwnUrls.of(cfg, manifest.key_record)
        self._local = LocalRoots.of(cfg.articles, self.paths)  # where images on disk may be read from
        self._settler = Settler(cfg, self._assets, self.stats, workdir, self._local)
        self._responsive = Responsive.of(cfg, manifest.shown_image, store.url_for) if cfg.rewrite.responsive else None
        # where articles may be written: the real folders given (None: anywhere a symlink leads, by configuration)
        self._roots = None if cfg.articles.follow_symlinks_outside else [Path(os.path.realpath(p)) for p in paths]
        self._archived: dict[str, str] = {}  # resolved URL -> public URL of the stored original
        self._articles: dict[Path, ArticleWork] = {}
        self._users: dict[str, list[Path]] = defaultdict(list)
        self._rewrites: list[asyncio.Future[None]] = []
        # archive URLs in the articles whose objects verify found missing or corrupt: sha256 -> [(path, line, url)]
        self._lost_refs: dict[str, list[tuple[Path, int, str]]] = defaultdict(list)
        self._shown: set[str] = set()  # originals the articles already point at (their renditions are completed)
        self._lost_why: dict[str, str] = {}  # why a lost asset could not be stored again
        self._lost_sources_of: dict[str, str] = {}  # source URL fetched again -> the lost asset it should give back
        self._in_flight: set[asyncio.Task[None]] = set()
        self._done: set[str] = set()  # URLs with their outcome: each gets exactly one
        self._refused_at_scan: dict[str, tuple[str, Cause | None]] = {}  # URL as shown -> (reason, cause)
        self._fingerprints = {cause: settings_fingerprint(cfg, cause) for cause in Cause}
        self._scan_fp = scan_fingerprint(cfg)
        self._settled_bytes: list[tuple[str, int]] = []  # (sha256, references) of article bytes found fully archived
        # (sha256, format, archive URL texts) of the bytes of articles this run left fully archived, parsed already:
        # recorded, so that `archiver dedupe` does not parse them again (Manifest.article_refs)
        self._bases = public_bases(cfg)
        self._refs_fp = refs_fingerprint(cfg.articles.front_matter_fields, cfg.articles.max_refs, self._bases)
        self._article_refs: list[tuple[str, str, list[str]]] = []
        self._clean: set[Path] = set()  # articles whose scan found nothing to refuse and nothing to warn about
        self.stop_reason: str | None = None
        self._manifest_down: ManifestUnavailable | None = None  # the run stops, and fails with it
        self._fetcher: Fetcher | None = None
        self._proven: dict[str, bool] = {}  # asset -> whether this run's store holds the original a worker stored
        self.process = process  # a shared manifest: settle queued URLs here too, beside the workers
        self.lease = lease
        self._worker: QueueWorker | None = None

    def paused_hosts(self) -> list[tuple[str, float]]:
        """The hosts the fetcher has paused right now, with the seconds left (for the status line)."""
        return self._fetcher.paused_hosts() if self._fetcher is not None else []

    # -- stopping ------------------------------------------------------------------------------
    def request_stop(self, reason: str, grace: float = 3.0) -> None:
        """Start nothing new; give in-flight URLs ``grace`` seconds, then abandon them (a second call: now).

        Called from signal handlers (SIGINT/SIGTERM) and when storage stays unavailable. Abandoned URLs are
        not recorded but counted as not attempted: their temp files are removed, an image being decoded has its
        worker killed (never waited for), and a re-run picks them up.
        """
        loop = asyncio.get_running_loop()
        if self.stop_reason is None:
            self.stop_reason = reason
            log.warning("%s: finishing what is in flight (up to %gs), starting nothing new", reason, grace)
            loop.call_later(grace, self._abandon_in_flight)
        else:
            self._abandon_in_flight()
        if self._worker is not None:
            self._worker.stop(reason, grace)

    def _abandon_in_flight(self) -> None:
        for task in list(self._in_flight):
            task.cancel()

    # -- scanning ------------------------------------------------------------------------------
    def _scan(self) -> None:
        cfg = self.cfg.articles
        settle_pending(self.manifest)  # article writes a killed run left between their rename and their record
        for root in self.paths:
            if root.is_dir() and not self.dry_run:
                for stale in remove_stale_temp_files(root):
                    log.info("removed %s left by an interrupted run", shown_path(stale))

        def skipped(path: Path, why: str) -> None:  # a symlink loop, a link outside the folders given, ...
            if self._only is None or article_key(path) in self._only:
                self._problem(Problem(SKIPPED, why, article=shown_path(path)))

        # Bytes a run found fully archived are not parsed again (hashing is ~100x cheaper), unless verify found
        # objects missing: every archive URL must then be read, to store again what the articles point at.
        known = not self._assets.lost
        for path in iter_article_paths(self.paths, cfg.extensions, follow_outside=cfg.follow_symlinks_outside,
                                       on_skip=skipped):
            if self.stop_reason:  # interrupted while scanning: what was not scanned is left for a re-run
                break
            if self._only is not None and article_key(path) not in self._only:
                continue
            if known and (refs := self._known_settled(path)) is not None:
                self.stats.articles += 1
                self.stats.refs += refs
                self.stats.refs_done += refs
                continue
            try:
                scanned = scan_article(path, cfg, self._own, self._local)
            except ArticleError as exc:
                self._problem(Problem(SKIPPED, exc.reason, article=shown_path(path), line=exc.line))
                continue
            except Exception as exc:  # a scanner fault on odd input: this article is reported, the rest go on
                log.debug("unexpected error scanning %s", path, exc_info=True)
                self._problem(Problem(Outcome.FAILED, f"internal error: {describe(exc)}", article=str(path)))
                continue
            self.stats.articles += 1
            for notice in scanned.notices:
                self._problem(Problem(WARNING, notice.message, article=str(path), line=notice.line))
            self.stats.refs += scanned.refs
            self.stats.refs_done += scanned.done
            for shown, reason, line, cause in scanned.rejected:
                if shown not in self._refused_at_scan:  # one outcome per unique URL, a problem per reference
                    self._refused_at_scan[shown] = (reason, cause)
                    self.stats.rejected += 1
                self._problem(Problem(Outcome.REJECTED, reason, shown, shown_path(path), line))
            for raw, sha, line in scanned.archived:
                if sha in self._assets.lost:
                    self._lost_refs[sha].append((path, line, raw))
                else:
                    self._shown.add(sha)
            for url in scanned.work.uses:
                self._users[url].append(path)
            if scanned.work.uses or (self._responsive is not None and scanned.archived):
                self._articles[path] = scanned.work  # responsive: its archived <img>s may lack attributes
            self._note_scanned(path, scanned)

    def _known_settled(self, path: Path) -> int | None:
        """The references of an article whose bytes a run found fully archived (under these settings), or None."""
        try:
            raw = read_raw(path)
        except ArticleError:
            return None  # the scan reports it
        return self.manifest.settled_refs(sha256(raw), self._scan_fp)

    def _note_scanned(self, path: Path, scanned: Scanned) -> None:
        # responsive: an article of archive URLs may still lack attributes; its rewrite tells (check_settled)
        if scanned.settled and (self._responsive is None or not scanned.archived):
            self._settled_bytes.append((scanned.sha256, scanned.refs))
        elif not scanned.rejected and not scanned.notices:
            self._clean.add(path)

    # -- settling URLs -------------------------------------------------------------------------
    async def execute(self) -> RunReport:
        from archiver.fetch.proxy import Proxies

        Proxies()  # before the scan: a proxy setting that cannot work stops the run now
        retried = self.manifest.forget_stale_refusals(self._fingerprints)
        if retried:
            log.info("%d URLs refused under other settings are evaluated again", retried)
        await asyncio.to_thread(self._scan)
        self.stats.urls = len(self._users) + len(self._refused_at_scan)
        self.manifest.record_rejections(
            (shown, reason, cause, self._fingerprints[cause] if cause else None)
            for shown, (reason, cause) in self._refused_at_scan.items()
        )
        known = self.manifest.url_states(self._users)
        todo: list[str] = []
        incomplete: dict[str, tuple[StoredAsset, list[str]]] = {}
        for url in self._users:
            state = known.get(url)
            stored = self.manifest.asset(state.asset) if state and state.asset else None
            if state and state.status == Outcome.ARCHIVED and stored and stored.sha256 not in self._assets.lost:
                self.stats.urls_known += 1
                if self._assets.renditions_complete(stored.sha256, stored.ext):
                    self._settled(url, self.store.url_for(stored.key))
                else:  # a width or format configured since it was archived: made from the stored original first
                    incomplete.setdefault(stored.sha256, (stored, []))[1].append(url)
            elif state and state.status.final and not self.retry_dead and not is_local(url):  # a file: look again
                if state.cause == Cause.GUARD:
                    self.report.guard_refused += 1
                self._failed_url(url, state.status, f"{state.reason} (earlier run; --retry-dead to try again)")
            else:
                todo.append(url)  # new, to retry, or archived as an object that is missing or corrupt in storage
        todo += self._lost_sources(todo)
        for sha in sorted(self._shown - incomplete.keys()):
            stored = self.manifest.asset(sha)
            if stored is not None and not self._assets.renditions_complete(sha, stored.ext):
                incomplete[sha] = (stored, [])
        if incomplete:
            await self._complete_renditions(list(incomplete.values()))
        if todo:
            # Only a run with something to fetch loads the HTTP client and contacts the store (a run with nothing
            # new stays well under a second, even with S3).
            fetcher = make_fetcher(self.cfg, self.workdir, self.manifest)
            self._fetcher = fetcher  # the status line shows the hosts it pauses
            if self.check_store:
                await asyncio.to_thread(self.store.check)  # one clear error before anything is fetched
            async with fetcher:
                if self.manifest.shared and not self.dry_run:
                    await self._settle_with_fleet(fetcher, todo)
                else:
                    await self._settle_here(fetcher, todo)
        if self._manifest_down is not None:  # nothing more can be recorded: no rewrite either (a re-run does them)
            if self._rewrites:
                await asyncio.gather(*self._rewrites)
            raise self._manifest_down  # the command's one line, exit 1
        if not self.stop_reason:
            self._unsettled_failed()
        for work in self._articles.values():  # responsive: articles whose every URL was archived before
            if not work.pending and not work.scheduled:
                work.scheduled = True
                self._rewrites.append(asyncio.ensure_future(self._rewrite(work)))
        if self.stop_reason:
            # stopped early: rewrite every article with what is archived so far; a re-run does the rest
            for work in self._articles.values():
                if work.pending and not work.scheduled:
                    work.scheduled = True
                    self._rewrites.append(asyncio.ensure_future(self._rewrite(work)))
        if self._rewrites:
            await asyncio.gather(*self._rewrites)
        for sha, uses in self._lost_refs.items():
            if sha in self._assets.lost:  # the articles point at an object that is still missing or corrupt
                why = self._lost_why.get(sha) or "not attempted"
                for path, line, raw in uses:
                    self._problem(Problem(Outcome.FAILED, f"its object is missing or corrupt in storage (found by "
                                          f"verify) and could not be stored again: {why}", raw, str(path), line))
        if not self.dry_run:
            try:
                self.manifest.record_settled(self._settled_bytes, self._scan_fp)
                self.manifest.add_article_refs(self._article_refs, self._refs_fp)
            except ManifestError as exc:  # only a later run's (or report's) speed depends on it
                log.warning("%s", exc.message)
        self.report.diffs.sort()
        self.report.replaced = sorted(self._assets.replaced)
        self.report.stopped = self.stop_reason
        self.stats.not_attempted = self.stats.urls - self.stats.settled  # never started, or abandoned
        if not self.dry_run and not self.stop_reason:  # the next run catches up what a stopped one did not search
            self._record_near_duplicates()
        return self.report

    async def _settle_here(self, fetcher: Fetcher, urls: list[str]) -> None:
        """Settle ``urls`` in this process, ``4 × [fetch] concurrency`` at a time, hosts interleaved."""
        limit = self.cfg.fetch.concurrency * 4
        for url in _interleave_hosts(urls):
            if len(self._in_flight) >= limit and not self.stop_reason:
                await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
            if self.stop_reason:
                continue
            task = asyncio.create_task(self._settle(fetcher, url))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        if self._in_flight:
            await asyncio.wait(self._in_flight)  # _settle never raises; cancelled: left for a re-run

    async def _settle_with_fleet(self, fetcher: Fetcher, todo: list[str]) -> None:
        """A shared (PostgreSQL) manifest: queue the URLs for the workers, settle them here too through the same
        worker loop (unless ``process`` is off), and learn the outcomes the others record by polling the URLs'
        states. A URL the manifest keeps without its secret, or an image on disk, is settled here: no worker could
        fetch or read it."""
        own = [u for u in todo if url_key(u) != u or is_local(u)]
        queued = [u for u in todo if url_key(u) == u and not is_local(u)]
        waiting = set(queued)
        if released := self.manifest.release_runs():
            log.info("%d URLs an interrupted run held are queued again", released)
        if queued:
            added = self.manifest.enqueue(queued)
            if not self.process:
                log.warning("%s queued for the workers (`archiver worker`); waiting for their outcomes",
                            count(added, "URL"))

        def from_worker(settled: Settled, recorded: bool) -> None:
            if recorded and settled.url in waiting:
                waiting.discard(settled.url)
                self._report_settled(settled)

        jobs = [self._poll_fleet(fetcher, waiting)]
        if own:
            jobs.append(self._settle_here(fetcher, own))
        if self.process and queued and not self.stop_reason:
            from archiver.run.worker import QueueWorker, worker_id

            self._worker = QueueWorker(self.manifest, self._settler, batch=self.cfg.fetch.concurrency * 4,
                                       lease=self.lease, on_settled=from_worker, name=RUN_PREFIX + worker_id())
            jobs.append(self._worker.serve(fetcher, done=lambda: not waiting))
        await asyncio.gather(*jobs)
        if self._worker is not None and self._worker.unavailable is not None and self._manifest_down is None:
            self._manifest_down = self._worker.unavailable

    async def _poll_fleet(self, fetcher: Fetcher, waiting: set[str]) -> None:
        """Until every URL in ``waiting`` has left the queue with its outcome recorded (or the run stops): read their
        states every POLL seconds, in batches, and report each as this run's own."""
        alone_since: float | None = None  # --no-process: since when no live worker was seen (said once)
        checked = said = 0.0
        while waiting and not self.stop_reason:
            now = time.monotonic()
            if not self.process and not said and now - checked >= NO_WORKER_CHECK:
                checked = now
                try:
                    live = any(w.silent_for < LIVE and not w.id.startswith(RUN_PREFIX)
                               for w in self.manifest.workers())
                except ManifestUnavailable:
                    live = True  # said below
                alone_since = None if live else (alone_since or now)
                if alone_since is not None and now - alone_since >= NO_WORKER_GRACE:
                    said = now
                    log.warning("no live `archiver worker` on this manifest: %s waiting in the queue; start workers, "
                                "or run without --no-process (Ctrl-C leaves them queued for the workers)",
                                count(len(waiting), "URL"))
            try:
                states = self.manifest.unqueued_states(waiting)
            except ManifestUnavailable as exc:  # nothing more can be learnt or recorded: stop
                self._manifest_down = self._manifest_down or exc
                self.request_stop("the manifest's PostgreSQL server is unavailable", grace=0.0)
                return
            for url, (status, reason, asset, http_status, cause) in states.items():
                waiting.discard(url)
                stored = self.manifest.asset(asset) if asset else None
                if status == Outcome.ARCHIVED and stored is None:
                    status, reason = Outcome.FAILED, "recorded as archived by a worker, but its asset is not recorded"
                elif status == Outcome.ARCHIVED and stored is not None and not await self._in_own_store(stored):
                    # a worker with another [storage] (or an object lost since): never point an article at an object
                    # this run's store lacks; fetched and stored here, as verify's lost objects are
                    log.warning("%s: archived by a worker, but %s is not in this run's store (do the workers use the "
                                "same [storage]?); storing it here", redact(url), stored.key)
                    self._assets.lost.add(stored.sha256)
                    task = asyncio.create_task(self._settle(fetcher, url))
                    self._in_flight.add(task)
                    task.add_done_callback(self._in_flight.discard)
                    continue
                result = UrlResult(status, reason=reason, asset=asset, http_status=http_status, cause=cause)
                self.stats.by_workers += 1
                self._report_settled(Settled(url, result, key=stored.key if stored else None))
            if waiting and not self.stop_reason:
                await asyncio.sleep(POLL)
        if self._in_flight:  # URLs stored here again (above); _settle never raises
            await asyncio.wait(self._in_flight)

    async def _in_own_store(self, stored: StoredAsset) -> bool:
        """Whether this run's store holds the original a worker recorded (once per asset: its size and checksum,
        without a download, as storage.prove judges)."""
        if stored.sha256 not in self._proven:
            try:
                proof = await asyncio.to_thread(prove, self.store, stored.key, stored.bytes, stored.sha256,
                                                stored.mime, read_local=False)  # a folder: its size (hashing: verify)
            except StorageError:  # cannot be asked now: the worker's record stands (verify checks it later)
                return True
            self._proven[stored.sha256] = proof.state in ("ok", "unproven")
        return self._proven[stored.sha256]

    async def _complete_renditions(self, assets: list[tuple[StoredAsset, list[str]]]) -> None:
        """Give archived images the renditions configured since (from their stored originals), then settle their
        URLs as archived: the originals are there either way, and an image whose renditions could not be made keeps
        those it has (logged)."""
        slots = asyncio.Semaphore(max(2, self.cfg.storage.concurrency))

        async def one(stored: StoredAsset, urls: list[str]) -> None:
            async with slots:
                if not self.stop_reason:
                    try:
                        await self._assets.complete(stored, self.workdir)
                    except ArchiverError as exc:
                        log.warning("%s: the renditions configured since it was archived could not be made: %s",
                                    stored.key, exc.message)
            for url in urls:
                self._settled(url, self.store.url_for(stored.key))

        await asyncio.gather(*(one(stored, urls) for stored, urls in assets))

    def _lost_sources(self, todo: list[str]) -> list[str]:
        """One source URL to fetch again for each lost asset the articles point at (through an archive URL) and no
        URL to settle gives back: the oldest the manifest keeps that can be fetched (not one kept redacted)."""
        extra: list[str] = []
        settling = set(todo)
        for sha in self._lost_refs:
            sources = self.manifest.source_urls(sha)
            if any(u in settling for u in sources):
                continue
            usable = [u for u in sources if "#sha256=" not in u]
            if not usable:
                self._lost_why[sha] = "no source URL to fetch it from (none recorded, or only one with a secret)"
                continue
            extra.append(usable[0])
            self._lost_sources_of[usable[0]] = sha
            self._lost_why[sha] = f"{redact(usable[0])} now gives other bytes"
        self.stats.urls += len(extra)
        return extra

    def _record_near_duplicates(self) -> None:
        """Pairs between the images not yet searched (this run's, and any a killed run left) and the whole archive,
        by the rule `archiver dedupe` uses; recorded with their "searched" marks in one transaction."""
        if not self.manifest.unsearched(self.cfg.dedupe.max_distance, SIMILARITY_RULE_VERSION, limit=1):
            return  # the usual second run: nothing to search, so no need to load SciPy, numba and the index
        with stage("near-duplicate search"):
            from archiver.dedupe.pairs import update_pairs

            update_pairs(self.manifest, self.cfg.dedupe.max_distance)

    async def _settle(self, fetcher: Fetcher, url: str) -> None:
        """Give ``url`` its one recorded outcome; an error nobody expected is that URL's failure, never silence."""
        try:
            await self._fetch_and_archive(fetcher, url)
        except ManifestUnavailable as exc:  # nothing more can be recorded: stop; the URL is left for a re-run
            if self._manifest_down is None:
                self._manifest_down = exc
                self.request_stop("the manifest's PostgreSQL server is unavailable", grace=0.0)
        except Exception as exc:  # not CancelledError: an abandoned URL is left for a re-run (not attempted)
            self._unexpected(url, exc)

    def _unsettled_failed(self) -> None:
        """The last guard of "every URL ends in exactly one outcome": a run that was not stopped and still has URLs
        without one (a bug, wherever it is) reports each as failed, at every line that uses it, exit 1 — never a
        silent exit 0 with images missing. Nothing is recorded for them: the next run settles them as new."""
        left = [u for u in self._users if u not in self._done]
        if left:
            log.error("%s ended without an outcome (an internal error: please report it); run again to settle "
                      "them", count(len(left), "URL"))
        for url in left:
            self._failed_url(url, Outcome.FAILED, "internal error: the run ended without an outcome for it; run "
                             "again")

    def _unexpected(self, url: str, exc: BaseException) -> None:
        log.debug("unexpected error settling %s", redact(url), exc_info=exc)
        if url in self._done:
            log.error("%s: internal error after its outcome was recorded: %s", redact(url), describe(exc))
            return
        reason = f"internal error: {describe(exc)}"
        try:
            self.manifest.record_url(url, Outcome.FAILED, reason=reason)
        except Exception as again:  # the manifest itself failing: still report the URL
            reason += f" (not recorded: {describe(again)})"
        self._failed_url(url, Outcome.FAILED, reason)

    async def _fetch_and_archive(self, fetcher: Fetcher, url: str) -> None:
        try:
            await self._settle_one(fetcher, url)
        except asyncio.CancelledError:  # abandoned by a stop: nothing recorded, left for a re-run
            self.stats.not_attempted += 1
            raise

    async def _settle_one(self, fetcher: Fetcher, url: str) -> None:
        settled = await self._settler.settle(fetcher, url)
        self.manifest.record_result(url, settled.result)
        self._report_settled(settled)

    def _report_settled(self, settled: Settled) -> None:
        """Count and report a URL's recorded outcome (by this run, or by a worker)."""
        url, result = settled.url, settled.result
        if result.status == Outcome.ARCHIVED and settled.key is not None:
            crash_point("recorded-url")
            log.debug("archived %s as %s", redact(url), settled.key)
            self._settled(url, self.store.url_for(settled.key))
            return
        if isinstance(settled.error, GuardRefused) or result.cause == Cause.GUARD:
            self.report.guard_refused += 1
            if address := guard_address(settled):
                self.report.guard_addresses.add(address)
        if isinstance(settled.error, StorageError):
            self.report.storage_error = settled.error.message
        self._failed_url(url, result.status, settled.problem or "")

    # -- bookkeeping ---------------------------------------------------------------------------
    def _problem(self, problem: Problem) -> None:
        self.report.problems.append(problem)
        where = f"{problem.article}:{problem.line}: " if problem.article and problem.line else (
            f"{problem.article}: " if problem.article else ""
        )
        log.warning("%s%s%s%s", where, f"{problem.url}: " if problem.url else "", problem.reason,
                    "" if problem.outcome == Outcome.FAILED else f" ({problem.outcome})")

    def _failed_url(self, url: str, outcome: Outcome, reason: str) -> None:
        setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)
        if url in self._lost_sources_of:
            self._lost_why[self._lost_sources_of[url]] = f"{redact(url)}: {reason}"
        shown = redact(url)
        for path in self._users[url]:  # every line that uses it: each is a place the image is missing from
            for line in dict.fromkeys(self._articles[path].uses.get(url, [None])):
                self._problem(Problem(outcome, reason, shown, shown_path(path), line))
        self._url_done(url)

    def _settled(self, url: str, public_url: str) -> None:
        self.stats.archived += 1
        self._archived[url] = public_url
        self._url_done(url)

    def _url_done(self, url: str) -> None:
        self._done.add(url)
        for path in self._users[url]:
            work = self._articles[path]
            work.pending.discard(url)
            if not work.pending and not work.scheduled:
                work.scheduled = True
                self._rewrites.append(asyncio.ensure_future(self._rewrite(work)))

    # -- rewriting -----------------------------------------------------------------------------
    async def _rewrite(self, work: ArticleWork) -> None:
        try:
            every = work.path in self._clean and all(u in self._archived for u in work.uses)
            done = await asyncio.to_thread(
                timed("rewrite", rewrite_article), work.path, self._archived, self.cfg.articles, self._own, self.manifest,
                dry_run=self.dry_run, roots=self._roots, responsive=self._responsive,
                check_settled=every and not self.dry_run, local=self._local,
            )
        except ArticleError as exc:
            self._problem(Problem(Outcome.FAILED, exc.reason, article=shown_path(work.path), line=exc.line))
            return
        except ManifestError as exc:  # not written, as its record cannot be; or written and not yet confirmed
            self._problem(Problem(Outcome.FAILED, exc.message, article=shown_path(work.path)))
            return
        except Exception as exc:  # reported with the article, and the other rewrites go on
            log.debug("unexpected error rewriting %s", work.path, exc_info=True)
            self._problem(Problem(Outcome.FAILED, f"internal error: {describe(exc)}", article=str(work.path)))
            return
        if done is not None:
            if done.settled_refs is not None:
                self._settled_bytes.append((done.after, done.settled_refs))
            if done.ref_texts is not None:
                fmt, texts = done.ref_texts
                self._article_refs.append((done.after, fmt, archive_shaped(texts, self._bases)))
            if not done.changed:
                return
            self.stats.articles_rewritten += 1
            if done.diff is not None:
                self.report.diffs.append(done.diff)


def _interleave_hosts(urls: Sequence[str]) -> list[str]:
    """Round-robin over hosts, so one slow host's backlog cannot fill every in-flight slot."""
    by_host: dict[str, deque[str]] = defaultdict(deque)
    for url in urls:
        by_host[url.split("/", 3)[2] if "//" in url else ""].append(url)
    queues = deque(by_host.values())
    out: list[str] = []
    while queues:
        q = queues.popleft()
        out.append(q.popleft())
        if q:
            queues.append(q)
    return out


def prepare_workdir(manifest_path: Path | None) -> Path:
    """A new scratch folder of this run for downloads (archiver.scratch): beside the manifest, where the scratch
    folders of killed runs are removed first, or, for a dry run (``None``), in the system's temp folder."""
    parent = Path(tempfile.gettempdir()) if manifest_path is None else manifest_path.parent
    if manifest_path is not None:
        for stale in scratch.remove_stale(parent):
            log.info("removed %s left by an interrupted run", shown_path(stale))
    try:
        return scratch.create(parent)
    except OSError as exc:
        raise ManifestError(f"{parent}: cannot create a scratch folder for downloads: {exc.strerror or exc}") from None


__all__ = ["Run", "make_pool", "prepare_workdir"]
