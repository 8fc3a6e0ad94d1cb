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
A host that says "slow down" (429, or 503 with Retry-After) is paused as a whole (archiver.fetch.pauses): no
request to it starts before the pause ends, and its waiting URLs hold no slot either; a redirect hop that
lands on a paused host ends that attempt (retried after the pause). Slots and pauses are per ``host:port``
of the URL, never of the address it resolves to.

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
import errno
import socket
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
from aiohttp.abc import AbstractResolver
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from yarl import URL

from archiver.config import FetchConfig
from archiver.errors import (
    ConfigError,
    DeadLink,
    FetchError,
    GuardRefused,
    Refused,
    TooManyRedirects,
    TransientFetchError,
    UnknownHost,
    UrlError,
)
from archiver.fetch.body import CHUNK, RATE_WINDOW, BodyReader, FetchStats
from archiver.fetch.guard import AddressRefused, Guard, GuardedResolver
from archiver.fetch.pauses import HostPauses, host_key
from archiver.fetch.retry import REDIRECTS, Retry, check_status, host_pause, retry_delay, short, status_text
from archiver.model import Download
from archiver.redaction import redact
from archiver.urls import resolve

ACCEPT = "image/avif,image/webp,image/*,*/*;q=0.8"
_NXDOMAIN = frozenset(e for e in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None)) if e)

__all__ = ["ACCEPT", "CHUNK", "RATE_WINDOW", "Fetcher", "FetchStats"]  # CHUNK, RATE_WINDOW, FetchStats: fetch.body


def environment_proxies() -> dict[str, str]:
    """The http and https proxies the environment names (HTTP_PROXY, HTTPS_PROXY), checked: a value that is not a
    proxy URL (``http://host:port``) is a ConfigError at start-up, not a refusal of every URL later."""
    out: dict[str, str] = {}
    for scheme, value in getproxies().items():
        if scheme not in ("http", "https"):
            continue
        try:
            parts = urlsplit(value)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
        except ValueError:  # unbalanced brackets, a port that is not a number
            ok = False
        if not ok:
            raise ConfigError(f"{scheme}_proxy in the environment: {redact(value)!r} is not a proxy URL such as "
                              "http://proxy.example:3128")
        out[scheme] = value
    return out


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
        self._guard = Guard(cfg.allow_networks)
        self._proxies = environment_proxies()
        proxy_hosts = frozenset(h for h in (urlsplit(v).hostname for v in self._proxies.values()) if h)
        self._resolver = GuardedResolver(
            self._guard, cfg.connect_to, trusted_hosts=proxy_hosts, base=resolver, timeout=cfg.connect_timeout
        )
        self._proxy_hosts = proxy_hosts
        self._headers = {host.lower(): dict(h) for host, h in cfg.headers.items()}
        self._session: aiohttp.ClientSession | None = None
        self._global: asyncio.Semaphore | None = None
        self._per_host: dict[str, asyncio.Semaphore] = {}
        self._pauses = HostPauses()
        self.stats = FetchStats()
        self._body = BodyReader(workdir, cfg.max_bytes, cfg.min_rate, rate_window, self.stats)

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
        self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        return retry_delay(self._cfg, exc, state.attempt_number)

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
            retry=retry_if_exception_type(Retry),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempt_no = attempt.retry_state.attempt_number
                    download = await self._attempt(url, target, attempt_no)
            self.stats.downloads += 1
            return download
        except Retry as exc:
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
        """One attempt, once the URL's host is not paused and this task holds a per-host and a global slot.

        Per-host slot first (by the URL's own host, also across its redirect hops), then a global slot: tasks
        queued behind a busy host never sit on global slots that other hosts could use. A pause that began
        while the task queued sends it back to wait, giving its slots to others."""
        assert self._global is not None
        key = host_key(target)
        while True:
            await self._pauses.wait(key)
            async with contextlib.AsyncExitStack() as slots:
                await slots.enter_async_context(self._host_semaphore(key))
                if self._pauses.remaining(key):
                    continue
                await slots.enter_async_context(self._global)
                if self._pauses.remaining(key):
                    continue
                return await self._hops(url, target, attempt_no)

    async def _hops(self, url: str, target: str, attempt_no: int) -> Download:
        current = target
        seen = {target}
        for hop in range(self._cfg.max_redirects + 1):
            host = (urlsplit(current).hostname or "").lower()
            key = host_key(current)
            via = f"redirect to {redact(current)}: " if hop else ""
            paused = self._pauses.remaining(key)
            if paused:
                raise Retry(f"{via}{key} asked to slow down; paused", retry_after=paused)
            await self._check_hop(url, current, host, via)
            result = await self._request(url, current, host, key, via, attempt_no)
            if isinstance(result, Download):
                return result
            if result in seen:
                raise DeadLink(redact(url), f"redirect loop at {redact(result)}")
            seen.add(result)
            current = result
        raise TooManyRedirects(redact(url), f"more than {self._cfg.max_redirects} redirects (last: {redact(current)})")

    async def _check_hop(self, url: str, current: str, host: str, via: str) -> None:
        """Guard checks aiohttp cannot do for us: IP-literal hosts, and targets hidden behind a proxy."""
        try:
            self._guard.check_url_host(current)
        except GuardRefused as exc:
            raise GuardRefused(redact(url), via + exc.reason, address=exc.address) from None
        except Refused as exc:
            raise Refused(redact(url), via + exc.reason) from None
        scheme = urlsplit(current).scheme
        proxied = scheme in self._proxies and not proxy_bypass(host)
        if proxied or host in self._proxy_hosts:
            try:
                await self._resolver.resolve(host, urlsplit(current).port or 0, socket.AF_UNSPEC)
            except AddressRefused as exc:
                raise GuardRefused(redact(url), via + exc.reason, address=exc.address) from None
            except OSError as exc:
                raise self._dns_error(url, exc) from exc

    @staticmethod
    def _dns_error(url: str, err: OSError) -> FetchError | Retry:
        if isinstance(err, socket.gaierror) and err.errno in _NXDOMAIN:
            return UnknownHost(redact(url), "host not found (NXDOMAIN)")
        return Retry(f"DNS lookup failed: {err.strerror or err}")

    async def _request(
        self, url: str, current: str, host: str, key: str, via: str, attempt_no: int
    ) -> Download | str:
        """One HTTP request: a Download, or the next URL when it redirects."""
        assert self._session is not None
        headers = self._headers.get(host, {})
        self.stats.requests += 1
        try:
            async with self._session.get(
                URL(current, encoded=True), headers=headers, allow_redirects=False
            ) as resp:
                if resp.status in REDIRECTS:
                    return self._next_hop(url, current, resp)
                self._check_status(url, resp, key, attempt_no)
                return await self._body.read(url, current, resp, attempt_no)
        except (FetchError, Retry):
            raise
        except aiohttp.ClientConnectorError as exc:
            err = exc.os_error
            if isinstance(err, AddressRefused):
                raise GuardRefused(redact(url), via + err.reason, address=err.address) from exc
            if isinstance(exc, aiohttp.ClientConnectorDNSError):
                raise self._dns_error(url, err) from exc
            if isinstance(exc, aiohttp.ClientProxyConnectionError):
                raise Retry(f"cannot connect to proxy: {err.strerror or err}") from exc
            raise Retry(f"connection failed: {err.strerror or err}") from exc
        except aiohttp.ClientPayloadError as exc:
            how = "reset by the server" if "ConnectionResetError" in str(exc) else "closed early"
            raise Retry(f"truncated body (connection {how})") from exc
        except TimeoutError as exc:
            raise Retry(f"timed out (timeout {self._cfg.timeout:g}s, connect {self._cfg.connect_timeout:g}s)") from exc
        except aiohttp.InvalidURL as exc:
            raise Refused(redact(url), "invalid URL") from exc
        except aiohttp.ClientResponseError as exc:
            raise Retry(f"bad HTTP response ({short(exc.message)})", status=exc.status or None) from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise Retry("the server closed the connection without answering") from exc
        except (aiohttp.ClientError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno == errno.ECONNRESET:
                raise Retry("connection reset by the server") from exc
            raise Retry(f"connection error: {type(exc).__name__}") from exc

    def _next_hop(self, url: str, current: str, resp: aiohttp.ClientResponse) -> str:
        location = resp.headers.get("Location")
        if not location:
            raise DeadLink(redact(url), f"{status_text(resp)} redirect without a Location", status=resp.status)
        try:
            return resolve(location, current)
        except UrlError as exc:
            raise Refused(redact(url), f"redirect to {exc.url}: {exc.reason}", status=resp.status) from None

    def _check_status(self, url: str, resp: aiohttp.ClientResponse, key: str, attempt_no: int) -> None:
        try:
            check_status(url, resp)
        except Retry as exc:
            pause = host_pause(self._cfg, exc, attempt_no)
            if pause is not None:
                self._pauses.pause(key, *pause)
            raise
