"""The fetcher's gate for a fleet of workers: ``per_host`` and ``concurrency`` hold across every process sharing the
manifest, and a host one of them saw answer "slow down" is paused for all (the rows: archiver.manifest.fleet).

Wiring: ``Fetcher(cfg.fetch, workdir, gate=fleet_gate(manifest, cfg.fetch))``. The gate talks to the manifest on a
connection of its own (a claim must never land inside the run's own transactions), from one thread of its own
(the event loop never blocks on the database). Each task first takes this process's own slots (archiver.fetch.gate's
LocalGate: at most ``per_host`` tasks of this process ask the database for one host), then a row of the host's and
one of the global pseudo-host's, polling with short sleeps and jitter while they are all held and sleeping out a
pause. Held rows are renewed every third of their lease; a process that dies or stops holds them one lease at most.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from archiver.config import FetchConfig
from archiver.errors import ManifestError
from archiver.fetch.gate import HostGate, LocalGate, Slot
from archiver.fetch.pauses import HostPauses
from archiver.manifest.fleet import GLOBAL
from archiver.manifest.sqlite import Manifest

log = logging.getLogger(__name__)

LEASE = 30.0  # seconds a slot stays held without renewal
POLL_FIRST, POLL_MAX = 0.01, 0.25  # seconds between claims while every slot is held: growing, with jitter
T = TypeVar("T")


def holder_name() -> str:
    """This process, as slot rows name their holder: machine, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class FleetSlot:
    __slots__ = ("host", "rows", "_sem")

    def __init__(self, host: str, sem: asyncio.Semaphore, rows: list[tuple[str, int]]) -> None:
        self.host = host
        self._sem = sem  # this process's semaphore of the host
        self.rows = rows  # (host, slot) and (GLOBAL, slot)


class FleetGate:
    """A HostGate whose slots and pauses are rows of the manifest (``manifest``: a connection of the gate's own)."""

    def __init__(self, manifest: Manifest, cfg: FetchConfig, holder: str | None = None, *, lease: float = LEASE) -> None:
        self._db = manifest
        self.holder = holder or holder_name()
        self.lease = lease
        self._per_host = cfg.per_host
        self._concurrency = cfg.concurrency
        self._mirror = HostPauses()  # the pauses this process has read or set (remaining(), the status line)
        self._local = LocalGate(cfg.concurrency, cfg.per_host, self._mirror)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="archiver-fleet-gate")
        self._rows_made: set[str] = set()
        self._held = 0
        self._renewer: asyncio.Task[None] | None = None
        self._closed = False

    async def _call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, lambda: fn(*args, **kw))

    async def _claim(self, host: str, limit: int, paused_host: str) -> int | None:
        """A row of ``host``'s slots, polled for while all are held; None when ``paused_host`` is paused."""
        delay = POLL_FIRST
        while True:
            got = await self._call(self._db.claim_slot, self.holder, host, limit, self.lease,
                                   paused_host=paused_host, make_rows=host not in self._rows_made)
            self._rows_made.add(host)
            if got.paused:
                self._mirror.pause(paused_host, got.paused, "paused for the fleet")
                return None
            if got.slot is not None:
                return int(got.slot)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(POLL_MAX, delay * 1.5)

    async def acquire(self, host: str) -> FleetSlot:
        """This process's slot of the host, the host's row, this process's global slot, a global row: in that order,
        so tasks queued behind a busy host hold no global slot; a pause met on the way gives everything back."""
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew())
        sem, everyone = self._local._host(host), self._local._global
        while True:
            await self._mirror.wait(host)
            await sem.acquire()
            rows: list[tuple[str, int]] = []
            holds_global = False
            try:
                slot = await self._claim(host, self._per_host, host)
                if slot is not None:
                    rows.append((host, slot))
                    self._held += 1
                    await everyone.acquire()
                    holds_global = True
                    slot = await self._claim(GLOBAL, self._concurrency, host)
                    if slot is not None:
                        rows.append((GLOBAL, slot))
                        return FleetSlot(host, sem, rows)
            except BaseException:
                if rows:
                    await asyncio.shield(self._give_back(rows))
                if holds_global:
                    everyone.release()
                sem.release()
                raise
            if rows:  # paused on the way
                await self._give_back(rows)
            if holds_global:
                everyone.release()
            sem.release()

    async def _give_back(self, rows: list[tuple[str, int]]) -> None:
        self._held -= sum(1 for h, _ in rows if h != GLOBAL)
        try:
            await self._call(self._db.release_slots, self.holder, rows)
        except ManifestError as exc:  # its lease frees it
            log.warning("could not release a fleet slot (it comes free when its lease passes): %s", exc.message)

    async def release(self, slot: Slot) -> None:
        assert isinstance(slot, FleetSlot)
        try:
            await self._give_back(slot.rows)
        finally:
            self._local._global.release()
            slot._sem.release()

    async def _renew(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.lease / 3)
            if self._held > 0:
                try:
                    await self._call(self._db.renew_slots, self.holder, self.lease)
                except ManifestError as exc:
                    log.warning("could not renew the fleet's slot leases: %s", exc.message)

    async def pause(self, host: str, seconds: float, why: str) -> None:
        try:
            left, _changed = await self._call(self._db.pause_host, host, seconds, why)
        except ManifestError as exc:  # this process still pauses it
            log.warning("could not record the pause of %s for the fleet: %s", host, exc.message)
            left = seconds
        self._mirror.pause(host, left, why)

    def remaining(self, host: str) -> float:
        return self._mirror.remaining(host)

    def paused(self) -> list[tuple[str, float]]:
        return self._mirror.paused()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._renewer is not None:
            self._renewer.cancel()
        try:
            await self._call(self._db.release_holder, self.holder)
        except ManifestError as exc:
            log.warning("could not release the fleet's slots (they come free when their leases pass): %s",
                        exc.message)
        finally:
            await self._call(self._db.close)
            self._thread.shutdown(wait=False)


def fleet_gate(manifest: Manifest, cfg: FetchConfig, holder: str | None = None, *, lease: float = LEASE) -> HostGate:
    """The gate a fetcher of a fleet worker uses: its slots and pauses shared through ``manifest`` (PostgreSQL, or a
    SQLite file several processes of one machine share) on a connection of its own. An in-memory manifest (a dry
    run's copy) shares nothing: this process's own LocalGate."""
    if manifest.path is None:
        return LocalGate(cfg.concurrency, cfg.per_host)
    return FleetGate(manifest.sibling(), cfg, holder, lease=lease)


__all__ = ["FleetGate", "fleet_gate", "holder_name"]
