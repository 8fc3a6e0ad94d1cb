"""Downloads one URL to a temporary file: guarded, rate-limited, retried, redirect-checked, sniffed while streaming.

Errors (archiver.errors): Refused (guard or scheme, at any redirect hop), DeadLink (404/410, other 4xx such as
403 hotlink protection, unknown host), NotAnImage (first bytes are not an image: reading stops at once),
TooLarge (Content-Length or streamed bytes over max_bytes), TransientFetchError (timeouts, resets, 408/429/5xx,
truncated bodies, bodies slower than ``min_rate``, DNS failures other than NXDOMAIN, still failing after
``retries`` more attempts). Every error carries ``attempts`` and ``status``; its URL is redacted (no
``user:password@``), and no aiohttp or OSError escapes ``fetch()``.

Time bounds: ``connect_timeout`` covers DNS and the TCP connect; ``timeout`` covers one whole attempt (headers
and body); after the first body byte, ``min_rate`` bytes/s measured over a sliding window of RATE_WINDOW seconds
ends a trickle long before ``timeout``. Waits between attempts (backoff, Retry-After in seconds or as an
HTTP date, both capped by ``max_backoff``) hold no slot: other URLs, of this host and others, go on meanwhile.

Content-Length is the body's framing: a shorter body is a transient truncation; when the server sends MORE
than it declared, aiohttp reads exactly the declared bytes (they fail later as a truncated image) or, when
the surplus arrives with them, reports a malformed response (transient). Surplus bytes never reach a file, and
a connection they arrive on is closed, not reused. Bodies are decoded (gzip, deflate, raw deflate, br):
``sha256``, ``size``, ``max_bytes`` and the stored file are all about the decoded image.

Proxies: the session trusts the environment (HTTP_PROXY/HTTPS_PROXY/NO_PROXY, and .netrc). Through a proxy our
resolver only sees the proxy's name, so for a proxied hop we first resolve the target ourselves and apply the
guard. The proxy resolves it again later: a DNS answer that changes in between (rebinding) is the remaining,
small window; run without a proxy where that matters. Proxy hosts themselves are trusted (operator's choice).
``connect_to`` hosts should be listed in NO_PROXY when a proxy is set, or the proxy gets their requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import errno
import hashlib
import os
import random
import socket
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
from aiohttp.abc import AbstractResolver
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from yarl import URL

from archiver.config import FetchConfig
from archiver.errors import DeadLink, FetchError, NotAnImage, Refused, TooLarge, TransientFetchError, UrlError
from archiver.guard import AddressRefused, Guard, GuardedResolver
from archiver.model import Download, ImageFormat
from archiver.sniff import SNIFF_BYTES, describe, sniff
from archiver.urls import redact, resolve

ACCEPT = "image/avif,image/webp,image/*,*/*;q=0.8"
CHUNK = 64 * 1024
RATE_WINDOW = 5.0  # seconds over which min_rate is measured
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_RETRY_STATUS = frozenset({408, 425, 429})
_NXDOMAIN = frozenset(e for e in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None)) if e)


@dataclass
class FetchStats:
    """Counters for the progress display (mutable, owned by one Fetcher)."""

    requests: int = 0  # HTTP requests sent, redirect hops and retries included
    bytes_received: int = 0  # body bytes read (decoded)
    retries: int = 0
    downloads: int = 0  # fetches that gave an image


class _Retry(Exception):
    """An attempt failed in a way worth retrying."""

    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _status_text(resp: aiohttp.ClientResponse) -> str:
    return f"{resp.status} {resp.reason or ''}".strip()


def _short(text: str, limit: int = 80) -> str:
    """One line of at most ``limit`` characters (aiohttp parse errors quote whole bodies)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class _RateMeter:
    """Bytes received over the last ``window`` seconds, from the first body byte on."""

    def __init__(self, min_rate: int, window: float) -> None:
        self._need = min_rate * window  # bytes a window must hold
        self._window = window
        self._first: float | None = None
        self._samples: deque[tuple[float, int]] = deque()
        self._in_window = 0

    def add(self, n: int) -> None:
        now = time.monotonic()
        if self._first is None:
            self._first = now
        self._samples.append((now, n))
        self._in_window += n

    def wait_limit(self) -> float | None:
        """How long the next read may wait before the rate must be checked again (None: no limit)."""
        if not self._need or self._first is None:
            return None
        return max(self._first + self._window - time.monotonic(), self._window / 4, 0.01)

    def too_slow(self) -> int | None:
        """Bytes in the last full window when that is below min_rate; None while fast enough or too early."""
        if not self._need or self._first is None:
            return None
        now = time.monotonic()
        if now - self._first < self._window:
            return None
        while self._samples and self._samples[0][0] <= now - self._window:
            self._in_window -= self._samples.popleft()[1]
        return self._in_window if self._in_window < self._need else None


class Fetcher:
    """One HTTP session per run; ``fetch(url)`` downloads one absolute URL to a temp file in ``workdir``.

    ``resolver`` replaces the system resolver under the guard (tests use it to simulate DNS answers);
    ``rate_window`` is the window of ``min_rate`` (tests shorten it)."""

    def __init__(
        self,
        cfg: FetchConfig,
        workdir: Path,
        *,
        resolver: AbstractResolver | None = None,
        rate_window: float = RATE_WINDOW,
    ) -> None:
        self._cfg = cfg
        self._workdir = workdir
        self._rate_window = rate_window
        self._guard = Guard(cfg.allow_networks)
        self._proxies = {k: v for k, v in getproxies().items() if k in ("http", "https")}
        proxy_hosts = frozenset(h for h in (urlsplit(v).hostname for v in self._proxies.values()) if h)
        self._resolver = GuardedResolver(
            self._guard, cfg.connect_to, trusted_hosts=proxy_hosts, base=resolver, timeout=cfg.connect_timeout
        )
        self._proxy_hosts = proxy_hosts
        self._headers = {host.lower(): dict(h) for host, h in cfg.headers.items()}
        self._session: aiohttp.ClientSession | None = None
        self._global: asyncio.Semaphore | None = None
        self._per_host: dict[str, asyncio.Semaphore] = {}
        self.stats = FetchStats()

    async def __aenter__(self) -> Fetcher:
        self._workdir.mkdir(parents=True, exist_ok=True)
        connector = aiohttp.TCPConnector(resolver=self._resolver, limit=self._cfg.concurrency, limit_per_host=0)
        self._session = aiohttp.ClientSession(
            connector=connector,
            trust_env=True,
            timeout=aiohttp.ClientTimeout(total=self._cfg.timeout, sock_connect=self._cfg.connect_timeout),
            headers={"User-Agent": self._cfg.user_agent, "Accept": ACCEPT},
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._global = asyncio.Semaphore(self._cfg.concurrency)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            await self._resolver.close()
            self._session = None

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        delay = self._cfg.backoff * 2 ** (state.attempt_number - 1)
        delay = min(self._cfg.max_backoff, delay) * random.uniform(0.5, 1.0)  # "equal jitter"
        if isinstance(exc, _Retry) and exc.retry_after is not None:
            delay = exc.retry_after
        self.stats.retries += 1
        return min(self._cfg.max_backoff, delay)

    async def fetch(self, url: str) -> Download:
        """Download ``url`` (absolute, from urls.resolve); the caller deletes ``Download.path``."""
        if self._session is None:
            raise RuntimeError("use 'async with Fetcher(...)'")
        try:
            target = resolve(url, "")  # a no-op for what urls.resolve returned; refuses anything else
        except UrlError as exc:
            raise Refused(redact(url), exc.reason) from None
        attempt_no = 0
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._cfg.retries + 1),
            wait=self._wait,
            retry=retry_if_exception_type(_Retry),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempt_no = attempt.retry_state.attempt_number
                    download = await self._attempt(url, target, attempt_no)
            self.stats.downloads += 1
            return download
        except _Retry as exc:
            raise TransientFetchError(
                redact(url), exc.reason, status=exc.status, attempts=attempt_no
            ) from exc
        except FetchError as exc:
            exc.attempts = attempt_no
            raise

    def _host_semaphore(self, host: str) -> asyncio.Semaphore:
        sem = self._per_host.get(host)
        if sem is None:
            sem = self._per_host[host] = asyncio.Semaphore(self._cfg.per_host)
        return sem

    async def _attempt(self, url: str, target: str, attempt_no: int) -> Download:
        assert self._global is not None
        current = target
        seen = {target}
        # Per-host slot first (by the URL's own host, also across its redirect hops), then a global slot:
        # tasks queued behind a busy host never sit on global slots that other hosts could use.
        async with self._host_semaphore((urlsplit(target).hostname or "").lower()), self._global:
            for hop in range(self._cfg.max_redirects + 1):
                host = (urlsplit(current).hostname or "").lower()
                via = f"redirect to {redact(current)}: " if hop else ""
                await self._check_hop(url, current, host, via)
                result = await self._request(url, current, host, via, attempt_no)
                if isinstance(result, Download):
                    return result
                if result in seen:
                    raise DeadLink(redact(url), f"redirect loop at {redact(result)}")
                seen.add(result)
                current = result
        raise DeadLink(redact(url), f"more than {self._cfg.max_redirects} redirects (last: {redact(current)})")

    async def _check_hop(self, url: str, current: str, host: str, via: str) -> None:
        """Guard checks aiohttp cannot do for us: IP-literal hosts, and targets hidden behind a proxy."""
        try:
            self._guard.check_url_host(current)
        except Refused as exc:
            raise Refused(redact(url), via + exc.reason) from None
        scheme = urlsplit(current).scheme
        proxied = scheme in self._proxies and not proxy_bypass(host)
        if proxied or host in self._proxy_hosts:
            try:
                await self._resolver.resolve(host, urlsplit(current).port or 0, socket.AF_UNSPEC)
            except AddressRefused as exc:
                raise Refused(redact(url), via + exc.reason) from None
            except OSError as exc:
                raise self._dns_error(url, exc) from exc

    @staticmethod
    def _dns_error(url: str, err: OSError) -> FetchError | _Retry:
        if isinstance(err, socket.gaierror) and err.errno in _NXDOMAIN:
            return DeadLink(redact(url), "host not found (NXDOMAIN)")
        return _Retry(f"DNS lookup failed: {err.strerror or err}")

    async def _request(self, url: str, current: str, host: str, via: str, attempt_no: int) -> Download | str:
        """One HTTP request: a Download, or the next URL when it redirects."""
        assert self._session is not None
        headers = self._headers.get(host, {})
        self.stats.requests += 1
        try:
            async with self._session.get(
                URL(current, encoded=True), headers=headers, allow_redirects=False
            ) as resp:
                if resp.status in _REDIRECTS:
                    return self._next_hop(url, current, resp)
                self._check_status(url, resp)
                return await self._read(url, current, resp, attempt_no)
        except (FetchError, _Retry):
            raise
        except aiohttp.ClientConnectorError as exc:
            err = exc.os_error
            if isinstance(err, AddressRefused):
                raise Refused(redact(url), via + err.reason) from exc
            if isinstance(exc, aiohttp.ClientConnectorDNSError):
                raise self._dns_error(url, err) from exc
            if isinstance(exc, aiohttp.ClientProxyConnectionError):
                raise _Retry(f"cannot connect to proxy: {err.strerror or err}") from exc
            raise _Retry(f"connection failed: {err.strerror or err}") from exc
        except aiohttp.ClientPayloadError as exc:
            how = "reset by the server" if "ConnectionResetError" in str(exc) else "closed early"
            raise _Retry(f"truncated body (connection {how})") from exc
        except TimeoutError as exc:
            raise _Retry(f"timed out (timeout {self._cfg.timeout:g}s, connect {self._cfg.connect_timeout:g}s)") from exc
        except aiohttp.InvalidURL as exc:
            raise Refused(redact(url), "invalid URL") from exc
        except aiohttp.ClientResponseError as exc:
            raise _Retry(f"bad HTTP response ({_short(exc.message)})", status=exc.status or None) from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise _Retry("the server closed the connection without answering") from exc
        except (aiohttp.ClientError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno == errno.ECONNRESET:
                raise _Retry("connection reset by the server") from exc
            raise _Retry(f"connection error: {type(exc).__name__}") from exc

    def _next_hop(self, url: str, current: str, resp: aiohttp.ClientResponse) -> str:
        location = resp.headers.get("Location")
        if not location:
            raise DeadLink(redact(url), f"{_status_text(resp)} redirect without a Location", status=resp.status)
        try:
            return resolve(location, current)
        except UrlError as exc:
            raise Refused(redact(url), f"redirect to {exc.url}: {exc.reason}", status=resp.status) from None

    def _check_status(self, url: str, resp: aiohttp.ClientResponse) -> None:
        status = resp.status
        if 200 <= status < 300:
            return
        if status in _RETRY_STATUS or status >= 500:
            raise _Retry(_status_text(resp), status, _retry_after(resp.headers.get("Retry-After")))
        if status == 403:
            reason = "403 Forbidden (hotlink protection? a per-host Referer in [fetch] headers may help)"
            raise DeadLink(redact(url), reason, status=status)
        raise DeadLink(redact(url), _status_text(resp), status=status)

    async def _read(self, url: str, current: str, resp: aiohttp.ClientResponse, attempt_no: int) -> Download:
        """Stream the body to a temp file: sniff the first bytes, cap the size, hash as it goes."""
        limit = self._cfg.max_bytes
        declared = resp.content_length
        if declared is not None and declared > limit:
            resp.close()
            raise TooLarge(redact(url), f"Content-Length {declared} is over max_bytes {limit}", status=resp.status)
        path: Path | None = None
        try:
            fd, name = tempfile.mkstemp(dir=self._workdir, prefix="fetch-", suffix=".part")
            path = Path(name)
            with os.fdopen(fd, "wb") as out:
                size, digest, fmt = await self._stream(url, resp, out, limit)
            encoded = resp.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
            if declared is not None and not encoded and size < declared:
                raise _Retry(f"truncated body ({size} of {declared} bytes)", resp.status)
        except BaseException as exc:
            if path is not None:
                with contextlib.suppress(OSError):
                    path.unlink()
            if isinstance(exc, OSError) and not isinstance(exc, (aiohttp.ClientError, TimeoutError)):
                # Our own disk, not the network: retrying this URL now would not help.
                reason = f"cannot write a temporary file in {self._workdir}: {exc.strerror or exc}"
                raise TransientFetchError(redact(url), reason, status=resp.status) from exc
            raise
        return Download(
            url=url,
            final_url=current,
            path=path,
            size=size,
            sha256=digest,
            format=fmt,
            status=resp.status,
            content_type=resp.headers.get("Content-Type"),
            etag=resp.headers.get("ETag"),
            last_modified=resp.headers.get("Last-Modified"),
            attempts=attempt_no,
        )

    async def _stream(
        self, url: str, resp: aiohttp.ClientResponse, out: BinaryIO, limit: int
    ) -> tuple[int, str, ImageFormat]:
        sha = hashlib.sha256()
        head = b""
        fmt: ImageFormat | None = None
        size = 0
        write = out.write
        meter = _RateMeter(self._cfg.min_rate, self._rate_window)
        while True:
            chunk = await self._read_chunk(resp, meter)
            if not chunk:
                break
            size += len(chunk)
            self.stats.bytes_received += len(chunk)
            if size > limit:
                resp.close()
                raise TooLarge(redact(url), f"body is over max_bytes {limit}", status=resp.status)
            if fmt is None:
                head += chunk
                if len(head) < SNIFF_BYTES:
                    continue
                fmt = self._sniff(url, resp, head)
                chunk, head = head, b""
            sha.update(chunk)
            write(chunk)
        if fmt is None:
            fmt = self._sniff(url, resp, head)
            sha.update(head)
            write(head)
        return size, sha.hexdigest(), fmt

    async def _read_chunk(self, resp: aiohttp.ClientResponse, meter: _RateMeter) -> bytes:
        """The next piece of the body (b"" at its end); _Retry when it arrives slower than min_rate."""
        while True:
            waiting = asyncio.timeout(meter.wait_limit())
            try:
                async with waiting:
                    chunk = await resp.content.read(CHUNK)
            except TimeoutError:
                if not waiting.expired():
                    raise  # aiohttp's own timeout
                chunk = None
            if chunk == b"":
                return chunk  # the whole body is in: however slow, it is complete
            if chunk:
                meter.add(len(chunk))
            received = meter.too_slow()
            if received is not None:
                resp.close()
                window = self._rate_window
                raise _Retry(
                    f"too slow: {received} bytes in {window:g}s, under min_rate {self._cfg.min_rate} bytes/s",
                    resp.status,
                )
            if chunk is not None:
                return chunk

    @staticmethod
    def _sniff(url: str, resp: aiohttp.ClientResponse, head: bytes) -> ImageFormat:
        fmt = sniff(head)
        if fmt is None:
            resp.close()
            raise NotAnImage(redact(url), f"not an image ({describe(head)})", status=resp.status)
        return fmt
