"""The fetcher's retry policy: which HTTP answers are retried or final, backoff with jitter, Retry-After, pauses."""

from __future__ import annotations

import email.utils
import random
import time

import aiohttp

from archiver.config import FetchConfig
from archiver.errors import DeadLink, Forbidden
from archiver.redaction import redact

REDIRECTS = frozenset({301, 302, 303, 307, 308})
RETRY_STATUS = frozenset({408, 425, 429})  # and every 5xx
FORBIDDEN_REASON = "403 Forbidden — the host may need a Referer or cookie, see [fetch] headers"


class Retry(Exception):
    """An attempt failed in a way worth retrying (``retry_after``: seconds the server asked for)."""

    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²" and "①" are digits to str.isdigit, not to float()
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(cfg: FetchConfig, attempt_number: int) -> float:
    """The wait after failed attempt ``attempt_number``: doubling from ``backoff``, capped, "equal jitter"."""
    delay = cfg.backoff * 2 ** min(attempt_number - 1, 64)
    return min(cfg.max_backoff, delay) * random.uniform(0.5, 1.0)


def retry_delay(cfg: FetchConfig, exc: BaseException | None, attempt_number: int) -> float:
    """The wait before the next attempt: the server's Retry-After if it gave one, else the backoff; capped."""
    if isinstance(exc, Retry) and exc.retry_after is not None:
        return min(cfg.max_backoff, exc.retry_after)
    return backoff_delay(cfg, attempt_number)


def host_pause(cfg: FetchConfig, exc: Retry, attempt_number: int) -> tuple[float, str] | None:
    """(seconds, why) the whole host is paused after this answer: a 429 (for its Retry-After, else the backoff
    delay) or a 503 with Retry-After, capped by max_backoff; None for anything else (only that URL backs off)."""
    if exc.status == 429 and exc.retry_after is None:
        return backoff_delay(cfg, attempt_number), "429 without Retry-After"
    if exc.status in (429, 503) and exc.retry_after is not None:
        return min(cfg.max_backoff, exc.retry_after), f"{exc.status} Retry-After"
    return None


def status_text(resp: aiohttp.ClientResponse) -> str:
    return f"{resp.status} {resp.reason or ''}".strip()


def short(text: str, limit: int = 80) -> str:
    """One line of at most ``limit`` characters (aiohttp parse errors quote whole bodies)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def check_status(url: str, resp: aiohttp.ClientResponse) -> None:
    """Nothing for a 2xx; Retry for 408/425/429/5xx; DeadLink (final at once) for any other status."""
    status = resp.status
    if 200 <= status < 300:
        return
    if status in RETRY_STATUS or status >= 500:
        raise Retry(status_text(resp), status, retry_after(resp.headers.get("Retry-After")))
    if status == 403:
        raise Forbidden(redact(url), FORBIDDEN_REASON, status=status)
    raise DeadLink(redact(url), status_text(resp), status=status)
