"""Who may open a connection to a host now: the fetcher's slots (``per_host`` per host, ``concurrency`` in all) and
host pauses ("slow down" answers), behind one small protocol, ``HostGate``.

``LocalGate`` (the default) keeps them in this process: semaphores and ``HostPauses``. Another gate can share them
with other processes (a fleet of workers: archiver.run.fleet keeps them in the manifest's tables) without the
fetcher knowing; the fetcher only asks ``acquire``/``release`` around each attempt, ``pause`` on a "slow down"
answer and ``remaining`` before each redirect hop.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from archiver.fetch.pauses import HostPauses


class Slot(Protocol):
    """What ``acquire`` hands back and ``release`` takes back (opaque to the fetcher)."""

    host: str


class HostGate(Protocol):
    async def acquire(self, host: str) -> Slot:
        """Wait until ``host`` (a ``host_key``) is not paused, then hold one of its ``per_host`` slots and one of the
        ``concurrency`` slots; a pause that begins while waiting sends the caller back to wait, holding nothing."""
        ...

    async def release(self, slot: Slot) -> None:
        """Give back what ``acquire`` took (never raises)."""
        ...

    async def pause(self, host: str, seconds: float, why: str) -> None:
        """No new request to ``host`` for ``seconds`` from now; a longer pause already set is never shortened."""
        ...

    def remaining(self, host: str) -> float:
        """Seconds ``host`` stays paused, as far as this process knows (0.0: not paused)."""
        ...

    def paused(self) -> list[tuple[str, float]]:
        """(host, seconds left) of the hosts paused now, the longest first (the status line)."""
        ...

    async def aclose(self) -> None:
        """Give back everything still held (the fetcher closes its gate with its session)."""
        ...


class LocalSlot:
    __slots__ = ("host", "_sem")

    def __init__(self, host: str, sem: asyncio.Semaphore) -> None:
        self.host = host
        self._sem = sem


class LocalGate:
    """This process's slots and pauses (what every fetcher had before gates existed).

    Per-host slot first, then a global one: tasks queued behind a busy host never sit on global slots that other
    hosts could use. A pause that began while a task queued sends it back to wait, giving its slots to others."""

    def __init__(self, concurrency: int, per_host: int, pauses: HostPauses | None = None) -> None:
        self.concurrency = concurrency
        self.per_host = per_host
        self.pauses = pauses or HostPauses()
        self._global = asyncio.Semaphore(concurrency)
        self._hosts: dict[str, asyncio.Semaphore] = {}

    def _host(self, host: str) -> asyncio.Semaphore:
        sem = self._hosts.get(host)
        if sem is None:
            sem = self._hosts[host] = asyncio.Semaphore(self.per_host)
        return sem

    async def acquire(self, host: str) -> LocalSlot:
        sem = self._host(host)
        while True:
            await self.pauses.wait(host)
            await sem.acquire()
            if self.pauses.remaining(host):
                sem.release()
                continue
            try:
                await self._global.acquire()
            except BaseException:
                sem.release()
                raise
            if self.pauses.remaining(host):
                self._global.release()
                sem.release()
                continue
            return LocalSlot(host, sem)

    async def release(self, slot: Slot) -> None:
        assert isinstance(slot, LocalSlot)
        self._global.release()
        slot._sem.release()

    async def pause(self, host: str, seconds: float, why: str) -> None:
        self.pauses.pause(host, seconds, why)

    def remaining(self, host: str) -> float:
        return self.pauses.remaining(host)

    def paused(self) -> list[tuple[str, float]]:
        return self.pauses.paused()

    async def aclose(self) -> None:
        pass


__all__ = ["HostGate", "LocalGate", "LocalSlot", "Slot"]
