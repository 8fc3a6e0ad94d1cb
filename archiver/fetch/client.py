"""Downloads one URL to a temporary file: guarded, rate-limited, retried, redirect-checked, sniffed while streaming.

Errors (archiver.errors): Refused (guard or scheme, at any redirect hop), DeadLink (404/410, other 4xx, unknown
host; Forbidden for a 403, often hotlink protection), NotAnImage (first bytes are not an image: reading stops at once),
TooLarge (Content-Length or streamed bytes over max_bytes), TransientFetchError (timeouts, resets, 408/429/5xx,
truncated bodies, bodies slower than ``min_rate``, DNS failures other than NXDOMAIN, still failing after
``retries`` more attempts). Every error carries ``attempts`` and ``status``; its URL is redacted (no
``user:password@``), and no aiohttp or OSError escapes ``fetch()``.

Time bounds: ``connect_timeout`` covers DNS and the TCP connect; ``timeout`` covers one whole attempt (headers
and body); after the first body byte, ``min_rate`` bytes/s measured over a sliding window of RATE_WINDOW seconds
ends a trickle long before ``timeout``. Waits between attempts (backoff, Retry-After in seconds or as an
HTTP date, both capped by ``max_backoff``) hold no slot: other URLs, of this host and others, go on meanwhile.
A host that says "slow down" (429, or 503 with Retry-After) is paused as a whole (the gate: archiver.fetch.gate): no
request to it starts before the pause ends, and its waiting URLs hold no slot either; a redirect hop that
lands on a paused host ends that attempt (retried after the pause). Slots and pauses are per ``host:port``
of the URL, never of the address it resolves to.

Content-Length is the body's framing: a shorter body is a transient truncation; when the server sends MORE
than it declared, aiohttp reads exactly the declared bytes (they fail later as a truncated image) or, when
the surplus arrives with them, reports a malformed response (transient). Surplus bytes never reach a file, and
a connection they arrive on is closed, not reused. Bodies are decoded (gzip, deflate, raw deflate, br):
``sha256``, ``size``, ``max_bytes`` and the stored file are all about the decoded image.

Credentials and proxies: the session does not trust the environment (no ``~/.netrc``, whose ``default`` entry
would go to every host); a request carries only the credentials configured for its own host (``user:pw@`` in its
URL, ``[fetch] headers`` for that host, the cookies of ``[fetch] cookies`` that name it). Proxies come from HTTP_PROXY/HTTPS_PROXY/NO_PROXY (archiver.fetch.proxy),
with their own ``user:pw@`` sent to the proxy only. The proxy's name is resolved without the guard (the
operator chose it) and aiohttp connects to that address, so the trust covers the connection to the proxy and
nothing else: every target, on the proxy's host name or not, direct or proxied, redirects included, is guarded.
Through a proxy our resolver never sees the target's addresses, so for a proxied hop we first resolve the
target ourselves and apply the guard. The proxy resolves it again later: a DNS answer that changes in between
(rebinding) is the remaining, small window; run without a proxy where that matters.
``connect_to`` hosts should be listed in NO_PROXY when a proxy is set, or the proxy gets their requests.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from yarl import URL

from archiver.config import FetchConfig
from archiver.errors import (
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
from archiver.fetch.cookies import Cookies, with_cookies
from archiver.fetch.gate import HostGate, LocalGate
from archiver.fetch.guard import AddressRefused, Guard, GuardedResolver
from archiver.fetch.pauses import host_key
from archiver.fetch.proxy import Proxies, Proxy
from archiver.fetch.retry import REDIRECTS, Retry, check_status, host_pause, retry_delay, short, status_text
from archiver.model import Download
from archiver.redaction import redact
from archiver.urls import resolve

ACCEPT = "image/avif,image/webp,image/*,*/*;q=0.8"
_NXDOMAIN = frozenset(e for e in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None)) if e)

__all__ = ["ACCEPT", "CHUNK", "RATE_WINDOW", "Fetcher", "FetchStats", "Head"]  # CHUNK, RATE_WINDOW, FetchStats: fetch.body


@dataclass(frozen=True)
class Head:
    """What a HEAD request found: the status of the last hop, its URL (redacted), length and type."""

    status: int
    final_url: str
    content_length: int | None
    content_type: str | None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Fetcher:
    """One HTTP session per run; ``fetch(url)`` downloads one absolute URL to a temp file in ``workdir``.

    ``resolver`` replaces the system resolver under the guard (tests use it to simulate DNS answers);
    ``rate_window`` is the window of ``min_rate`` (tests shorten it); ``gate`` holds the slots and pauses
    (archiver.fetch.gate; default: this process's own, ``LocalGate``), and is closed with the fetcher."""

    def __init__(
        self,
        cfg: FetchConfig,
        workdir: Path,
        *,
        resolver: AbstractResolver | None = None,
        rate_window: float = RATE_WINDOW,
        gate: HostGate | None = None,
    ) -> None:
        self._cfg = cfg
        self._workdir = workdir
        self._guard = Guard(cfg.allow_networks)
        self._proxies = Proxies()
        self._proxy_addresses: dict[Proxy, str] = {}
        self._resolver = GuardedResolver(self._guard, cfg.connect_to, base=resolver, timeout=cfg.connect_timeout)
        self._headers = {host.lower(): dict(h) for host, h in cfg.headers.items()}
        self._cookies = Cookies(cfg.cookies) if cfg.cookies else None  # a bad file: ConfigError, before any request
        self._session: aiohttp.ClientSession | None = None
        self._gate: HostGate | None = gate
        self.stats = FetchStats()
        self._body = BodyReader(workdir, cfg.max_bytes, cfg.min_rate, rate_window, self.stats)

    async def __aenter__(self) -> Fetcher:
        self._workdir.mkdir(parents=True, exist_ok=True)
        connector = aiohttp.TCPConnector(resolver=self._resolver, limit=self._cfg.concurrency, limit_per_host=0)
        self._session = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,  # no ~/.netrc; proxies come from archiver.fetch.proxy
            timeout=aiohttp.ClientTimeout(total=self._cfg.timeout, sock_connect=self._cfg.connect_timeout),
            headers={"User-Agent": self._cfg.user_agent, "Accept": ACCEPT},
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        if self._gate is None:
            self._gate = LocalGate(self._cfg.concurrency, self._cfg.per_host)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            await self._resolver.close()
            self._session = None
        if self._gate is not None:
            await self._gate.aclose()

    def _wait(self, state: RetryCallState) -> float:
        self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        return retry_delay(self._cfg, exc, state.attempt_number)

    def paused_hosts(self) -> list[tuple[str, float]]:
        """(host, seconds left) of the hosts paused now ("slow down" answers), longest first."""
        return self._gate.paused() if self._gate is not None else []

    async def fetch(self, url: str) -> Download:
        """Download ``url`` (absolute, from urls.resolve); the caller deletes ``Download.path``."""
        result = await self._retrying(url, "GET")
        assert isinstance(result, Download)
        return result

    async def head(self, url: str) -> Head:
        """A HEAD request to ``url`` under every rule a download follows (guard, redirects, limits, retries, pauses):
        a Head for a 2xx answer, the same errors as ``fetch`` for anything else."""
        result = await self._retrying(url, "HEAD")
        assert isinstance(result, Head)
        return result

    async def _retrying(self, url: str, method: str) -> Download | Head:
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
                    result = await self._attempt(url, target, attempt_no, method)
            if isinstance(result, Download):
                self.stats.downloads += 1
            return result
        except Retry as exc:
            raise TransientFetchError(
                redact(url), exc.reason, status=exc.status, attempts=attempt_no
            ) from exc
        except FetchError as exc:
            exc.attempts = attempt_no
            raise

    async def _attempt(self, url: str, target: str, attempt_no: int, method: str = "GET") -> Download | Head:
        """One attempt, once the URL's host is not paused and this task holds a per-host and a global slot (the
        gate's: archiver.fetch.gate). The slot is the URL's own host's, also across its redirect hops."""
        assert self._gate is not None
        slot = await self._gate.acquire(host_key(target))
        try:
            return await self._hops(url, target, attempt_no, method)
        finally:
            await asyncio.shield(self._gate.release(slot))

    async def _hops(self, url: str, target: str, attempt_no: int, method: str = "GET") -> Download | Head:
        current = target
        seen = {target}
        for hop in range(self._cfg.max_redirects + 1):
            host = (urlsplit(current).hostname or "").lower()
            key = host_key(current)
            via = f"redirect to {redact(current)}: " if hop else ""
            paused = self._gate.remaining(key) if self._gate is not None else 0.0
            if paused:
                raise Retry(f"{via}{key} asked to slow down; paused", retry_after=paused)
            proxy = await self._check_hop(url, current, host, via)
            result = await self._request(url, current, host, key, via, attempt_no, proxy, method)
            if not isinstance(result, str):
                return result
            if result in seen:
                raise DeadLink(redact(url), f"redirect loop at {redact(result)}")
            seen.add(result)
            current = result
        raise TooManyRedirects(redact(url), f"more than {self._cfg.max_redirects} redirects (last: {redact(current)})")

    async def _check_hop(self, url: str, current: str, host: str, via: str) -> Proxy | None:
        """Guard checks aiohttp cannot do for us: IP-literal hosts, and targets hidden behind a proxy. Returns the
        proxy this hop goes through (None: direct, guarded by the resolver as aiohttp connects)."""
        try:
            self._guard.check_url_host(current)
        except GuardRefused as exc:
            raise GuardRefused(redact(url), via + exc.reason, address=exc.address) from None
        except Refused as exc:
            raise Refused(redact(url), via + exc.reason) from None
        proxy = self._proxies.for_url(urlsplit(current).scheme, host) if self._proxies else None
        if proxy is not None:
            try:
                await self._resolver.resolve(host, urlsplit(current).port or 0, socket.AF_UNSPEC)
            except AddressRefused as exc:
                raise GuardRefused(redact(url), via + exc.reason, address=exc.address) from None
            except OSError as exc:
                raise self._dns_error(url, exc) from exc
        return proxy

    async def _proxy_address(self, proxy: Proxy) -> str:
        """The address the proxy's name resolves to (connect_to applies; the guard does not: the operator chose
        it), looked up once per run."""
        address = self._proxy_addresses.get(proxy)
        if address is None and _is_ip(proxy.host):
            address = proxy.host
        if address is None:
            try:
                found = await self._resolver.resolve_unguarded(proxy.host, proxy.port)
            except OSError as exc:
                raise Retry(f"cannot resolve the proxy {proxy.host}: {exc.strerror or exc}") from exc
            if not found:
                raise Retry(f"cannot resolve the proxy {proxy.host}")
            address = self._proxy_addresses[proxy] = found[0]["host"]
        return address

    @staticmethod
    def _dns_error(url: str, err: OSError) -> FetchError | Retry:
        if isinstance(err, socket.gaierror) and err.errno in _NXDOMAIN:
            return UnknownHost(redact(url), "host not found (NXDOMAIN)")
        return Retry(f"DNS lookup failed: {err.strerror or err}")

    async def _request(
        self, url: str, current: str, host: str, key: str, via: str, attempt_no: int, proxy: Proxy | None = None,
        method: str = "GET",
    ) -> Download | Head | str:
        """One HTTP request (through ``proxy`` if given): a Download (a Head for HEAD), or the next URL when it
        redirects."""
        assert self._session is not None
        headers = self._headers.get(host, {})
        if self._cookies is not None:
            headers = with_cookies(headers, self._cookies.header(current))
        via_proxy: dict[str, object] = {}
        if proxy is not None:
            via_proxy["proxy"] = proxy.url(await self._proxy_address(proxy))
            if proxy.authorization and urlsplit(current).scheme == "https":  # on the CONNECT, not in the tunnel
                via_proxy["proxy_headers"] = {"Proxy-Authorization": proxy.authorization}
            elif proxy.authorization:  # the request itself goes to the proxy
                headers = {**headers, "Proxy-Authorization": proxy.authorization}
        self.stats.requests += 1
        try:
            async with self._session.request(
                method, URL(current, encoded=True), headers=headers, allow_redirects=False, **via_proxy
            ) as resp:
                if resp.status in REDIRECTS:
                    return self._next_hop(url, current, resp)
                await self._check_status(url, resp, key, attempt_no)
                if method == "HEAD":
                    length = resp.headers.get("Content-Length", "")
                    return Head(resp.status, redact(current), int(length) if length.isascii() and length.isdigit() else None,
                                resp.headers.get("Content-Type"))
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
                if proxy is not None:
                    self._proxy_addresses.pop(proxy, None)  # look it up again on the next attempt
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

    async def _check_status(self, url: str, resp: aiohttp.ClientResponse, key: str, attempt_no: int) -> None:
        try:
            check_status(url, resp)
        except Retry as exc:
            pause = host_pause(self._cfg, exc, attempt_no)
            if pause is not None and self._gate is not None:
                await self._gate.pause(key, *pause)
            raise
