"""Serving the manifest's queue: claim URLs under a lease, settle each (archiver.run.settle), complete each with its
claim's fencing token; renew the leases and write a heartbeat from a timer. `archiver worker` runs this loop until
SIGTERM/SIGINT; `archiver run` with a PostgreSQL manifest runs it in its own process beside the fleet.

A completion the token check refuses means the lease passed and another worker took the URL: nothing is recorded
(the other worker records it once), one line is logged and the loss counted. Objects are stored before the
completion, under content-addressed keys, so a late worker's upload is the very object the other one records.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from archiver.errors import AssetGone, ManifestError, ManifestUnavailable
from archiver.manifest.queue import HEARTBEAT, Claim, UrlResult
from archiver.model import Outcome
from archiver.redaction import redact
from archiver.run.assets import GC_RACES
from archiver.run.settle import Settled, Settler
from archiver.terminal import count

if TYPE_CHECKING:
    from archiver.fetch.client import Fetcher
    from archiver.manifest.sqlite import Manifest

log = logging.getLogger("archiver.worker")

GRACE = 3.0  # seconds a stopping worker gives the URLs in flight before it releases them


def worker_id() -> str:
    """``host:pid:random``: unique across the fleet, readable in `archiver status` and the queue's claims."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class QueueWorker:
    """One worker's loop. ``on_settled(settled, recorded)``: told of each URL it settled (``recorded``: its
    completion was accepted), for a run that reports what it settles itself."""

    def __init__(self, manifest: Manifest, settler: Settler, *, batch: int, lease: float, poll: float = 1.0,
                 name: str | None = None,
                 on_settled: Callable[[Settled, bool], None] | None = None) -> None:
        self.manifest = manifest
        self.settler = settler
        self.batch = max(1, batch)
        self.lease = lease
        self.poll = poll
        self.name = name or worker_id()
        self.host = socket.gethostname()
        self._on_settled = on_settled
        self._held: dict[str, Claim] = {}  # url key -> the claim being worked on
        self._tasks: set[asyncio.Task[None]] = set()
        self._lost: set[Claim] = set()  # claims whose lease passed (logged once)
        self._wake = asyncio.Event()
        self.stop_reason: str | None = None
        self.done = 0  # completions accepted
        self.refused = 0  # completions refused: the lease had passed and another worker took the URL
        self.unavailable: ManifestUnavailable | None = None  # the manifest's server gone for good: the worker stopped
        self._state = ""

    # -- stopping --------------------------------------------------------------------------------
    def stop(self, reason: str, grace: float = GRACE) -> None:
        """Claim nothing more; the URLs in flight get ``grace`` seconds, then are released (a second call: now)."""
        loop = asyncio.get_running_loop()
        if self.stop_reason is None:
            self.stop_reason = reason
            log.warning("%s: %s; finishing what it holds (up to %gs), claiming nothing more", self.name, reason, grace)
            loop.call_later(grace, self._abandon)
        else:
            self._abandon()
        self._wake.set()

    def _abandon(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def _say(self, state: str, line: str) -> None:
        """One log line per change of state (working, idle, ...), never one per poll."""
        if state != self._state:
            self._state = state
            log.info("%s: %s", self.name, line)

    # -- the loop ----------------------------------------------------------------------------------
    async def serve(self, fetcher: Fetcher, done: Callable[[], bool] | None = None) -> None:
        """Claim and settle until stopped (or until ``done()`` says so, checked between claims); then release what
        is still held and remove this worker's row."""
        self._beat()
        timer = asyncio.create_task(self._keep_alive())
        try:
            while self.stop_reason is None and not (done is not None and done()):
                claims: list[Claim] = []
                if len(self._held) <= self.batch // 2:  # claim again once half the batch is done
                    claims = self.manifest.claim(self.name, self.batch - len(self._held), self.lease)
                for claim in claims:
                    self._held[claim.url] = claim
                    task = asyncio.create_task(self._work(fetcher, claim))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                if claims:
                    self._say("working", f"working (claimed {count(len(claims), 'URL')})")
                if not self._tasks:
                    self._say("idle", f"idle: the queue is empty ({count(self.done, 'URL')} done so far)")
                waker = asyncio.ensure_future(self._wake.wait())
                try:  # until a URL is done, a stop, or the next poll of the queue
                    await asyncio.wait([*self._tasks, waker], timeout=self.poll, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waker.cancel()
                self._wake.clear()
            if self._tasks:
                await asyncio.wait(self._tasks)  # a stop cancels them after its grace
        finally:
            timer.cancel()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks)
            unfinished = list(self._held.values())
            try:
                if unfinished:
                    self.manifest.release(unfinished)
                    log.info("%s: released %s it had not finished", self.name, count(len(unfinished), "URL"))
                self._held.clear()
                self.manifest.remove_worker(self.name)
            except ManifestError as exc:  # the leases pass on their own: another worker takes the URLs then
                log.warning("%s: could not release its claims: %s", self.name, exc.message)

    async def _work(self, fetcher: Fetcher, claim: Claim) -> None:
        if "#sha256=" in claim.url:  # a URL kept without its secret: only the run that read it can fetch it
            settled = Settled(claim.url, UrlResult(Outcome.FAILED, reason="the URL holds a secret the manifest does "
                                                   "not keep: `archiver run` on the articles fetches it"))
        else:
            settled = await self.settler.settle(fetcher, claim.url)
        try:
            for _ in range(GC_RACES - 1):
                try:
                    recorded = self.manifest.complete(claim.url, claim.token, settled.result)
                    break
                except AssetGone as exc:  # a gc deleted the image since it was settled: settled again (stored)
                    log.info("%s: %s: %s", self.name, redact(claim.url), exc.message)
                    settled = await self.settler.settle(fetcher, claim.url)
            else:
                recorded = self.manifest.complete(claim.url, claim.token, settled.result)
        except ManifestUnavailable as exc:  # nothing more can be recorded: stop; the leases pass to the others
            recorded = False
            if self.unavailable is None:
                self.unavailable = exc
                self.stop("the manifest's PostgreSQL server is unavailable", 0.0)
        except ManifestError as exc:  # not recorded: the lease passes and another worker settles it again
            log.warning("%s: %s: not recorded: %s", self.name, redact(claim.url), exc.message)
            recorded = False
        else:
            if recorded:
                self.done += 1
            else:
                self.refused += 1
                if claim not in self._lost:
                    self._lost.add(claim)
                    log.warning("%s: %s: lease lost (another worker took it): its result was not recorded",
                                self.name, redact(claim.url))
        finally:
            self._held.pop(claim.url, None)
        if self._on_settled is not None:
            self._on_settled(settled, recorded)

    # -- leases and heartbeat ----------------------------------------------------------------------
    def _beat(self) -> None:
        self.manifest.heartbeat(self.name, self.host, os.getpid(), held=len(self._held), done=self.done)

    async def _keep_alive(self) -> None:
        every = min(self.lease / 3, HEARTBEAT)
        while True:
            await asyncio.sleep(every)
            if self.unavailable is not None:
                return
            try:
                held = list(self._held.values())
                if held:
                    kept = set(self.manifest.renew(self.name, held, self.lease))
                    for claim in held:
                        if claim not in kept and claim not in self._lost and self._held.get(claim.url) == claim:
                            self._lost.add(claim)
                            log.warning("%s: %s: lease lost (another worker took it); its result will not be "
                                        "recorded", self.name, redact(claim.url))
                self._beat()
            except ManifestError as exc:
                self._say("unreachable", f"cannot renew its leases: {exc.message}")
