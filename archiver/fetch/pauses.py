"""Per-host pauses: a host that answered "slow down" (429, 503 with Retry-After) gets no new request until then."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"http": 80, "https": 443}
LOG_AGAIN = 1.0  # seconds: a pause extended by at least this much is logged again


def host_key(url: str) -> str:
    """``host:port`` of ``url`` (lower case, default port filled in; never credentials, path or query).

    Per-host slots and pauses are keyed by it: two names mapped to one address by ``connect_to`` stay two hosts."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port or DEFAULT_PORTS.get(parts.scheme.lower(), 0)}"


class HostPauses:
    """Not-before times by host key. ``pause`` starts or extends one, never shortens it; ``wait`` sleeps until
    the host may be contacted. A waiter holds nothing, so callers take their slots after ``wait`` and check
    ``remaining`` again once they hold them (a pause may have begun while they queued)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}

    def pause(self, host: str, seconds: float, why: str) -> bool:
        """Pause ``host`` for ``seconds`` from now (logged once at INFO); False when it was already paused longer."""
        now = self._clock()
        until = now + max(0.0, seconds)
        before = self._until.get(host, now)
        if until <= before:
            return False
        self._until[host] = until
        if before <= now or until - before >= LOG_AGAIN:
            log.info("pausing %s for %.3g s (%s)", host, seconds, why)
        else:
            log.debug("pause of %s extended by %.3g s (%s)", host, until - before, why)
        return True

    def remaining(self, host: str) -> float:
        """Seconds until ``host`` may be contacted again (0.0: now)."""
        until = self._until.get(host)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._until[host]
            return 0.0
        return left

    def paused(self) -> list[tuple[str, float]]:
        """(host, seconds left) of every host paused now, the longest pause first (for the status line)."""
        now = self._clock()
        return sorted(((h, until - now) for h, until in self._until.items() if until > now), key=lambda x: -x[1])

    async def wait(self, host: str) -> None:
        """Return once ``host`` is not paused (sleeping again if the pause was extended meanwhile)."""
        while (left := self.remaining(host)) > 0:
            await asyncio.sleep(left)
