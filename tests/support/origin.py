"""A real aiohttp origin server on 127.0.0.1 (port 0) in a background thread, with fault routes, for the tests.

Fixtures: ``origin`` (per test: counters and added content reset; the server itself lives for the session,
also reachable as ``origin_server``), ``canary`` (a second loopback server whose hits must stay 0 in SSRF
tests) and ``fake_proxy`` (a loopback HTTP proxy that answers every proxied request itself with an image
and records the target, so no request ever leaves the machine).

Built-in routes of the origin:
    /image.jpg /image.png /image.webp /image.gif /image.svg   generated images (deterministic)
    /fail/{n}/{key}      500 the first n times per key, then the image
    /429/{key}           429 with Retry-After: 1 once per key, then the image
    /404  /410  /403     those statuses (small HTML body)
    /html                200 with an HTML page, Content-Type lies: image/jpeg
    /truncated           Content-Length larger than what is sent, then the connection is closed
    /slow                stalls SLOW_SECONDS before sending headers
    /oversize            OVERSIZE_BYTES JPEG-looking body with Content-Length
    /oversize-chunked    the same without Content-Length (chunked)
    /bomb                a 167-byte PNG declaring 30000x30000 pixels
    /gzip                the JPEG with Content-Encoding: gzip
    /encoded/{name}      the JPEG as gzip, deflate (zlib) or deflate-raw (sent as "deflate"); ?chunked=1
    /gzip-bomb           a JPEG header then 8 MB of zeros, gzipped to a few KB
    /chunked/{pieces}    the JPEG chunked in that many pieces, a short pause between them
    /chunked-cut         the first half of the JPEG chunked, then the connection closes (no last chunk)
    /short-length        declares half the JPEG's length in Content-Length, then sends all of it
                         (?later=1: the surplus 50 ms after the declared part)
    /reset/{n}/{key}     the first n times per key: half the body, then a TCP RST (SO_LINGER 0); then the JPEG
    /stall-body          headers and half the body, then stalls SLOW_SECONDS
    /trickle/{rate}      the JPEG (with Content-Length) at ``rate`` bytes/s
    /retry-after/{status}/{key}?seconds=N|date=N   once per key: that status with Retry-After as N seconds
                         or as an HTTP date N seconds ahead; then the JPEG
    /hold/{key}          the JPEG after HOLD_SECONDS (or ?s=...); ``max_in_flight()`` says how many were served at once
    /gate/{key}          the JPEG once the test calls ``open_gate(key)``; ``gate_reached(key)`` is set on arrival
    /storm/{key}         500 after HOLD_SECONDS (or ?s=...), every time (counted in ``max_in_flight`` like /hold)
    /loop/{n}/{i}        302 to /loop/{n}/{i+1 mod n}: a redirect cycle of length n
    /redirect/{n}        n redirects (alternately relative and absolute Location), then the image
    /redirect-to?url=U   302 to U
    /redirect-private    302 to http://169.254.169.254/latest/meta-data/ (the guard must refuse it)
    /redirect-loop       302 to itself
    /redirect-scheme     302 to file:///etc/passwd
    /hotlink/{name}      the JPEG only with ``Referer: http://blog.test/...`` (hotlink protection), else 403
    /cookie-gate/{name}  the JPEG only with the cookie ``gate=GATE_COOKIE``, else 403
Every request is counted per path (``hits``), its headers kept (``last_headers``) and its arrival logged
(``arrivals(host)``: time.monotonic(), Host header, path); /hold and /storm also count requests in flight per
Host header (``max_in_flight(host)``).
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from tests.support.images import make_gif, make_jpeg, make_png, make_png_bomb, make_webp

SLOW_SECONDS = 30.0  # far beyond any test's timeouts, so a bound between them survives a busy machine
HOLD_SECONDS = 0.1
GATE_COOKIE = "s3cr3t-c00kie"  # /cookie-gate/ opens to it (never a word a temp path holds: xdist's "popen-gw0")
OVERSIZE_BYTES = 3 * 1024 * 1024
JPEG = make_jpeg(640, 480, seed=1)
SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>\n'
HTML = b"<!DOCTYPE html><html><head><title>Not here</title></head><body>Sorry</body></html>"
PROXY_ENV = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Content:
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()
    status: int = 200
    delay: float = 0.0  # seconds before answering


@dataclass(frozen=True)
class Arrival:
    """One request as it reached the server: ``time.monotonic()`` (same clock as the tests), Host header, path."""

    at: float
    host: str
    path: str


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    hits: Counter[str] = field(default_factory=Counter)
    headers: dict[str, CIMultiDictProxy[str]] = field(default_factory=dict)
    content: dict[str, Content] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)
    in_flight: Counter[str] = field(default_factory=Counter)  # by Host header; "" is the total
    max_in_flight: Counter[str] = field(default_factory=Counter)
    arrivals: list[Arrival] = field(default_factory=list)
    gates: dict[str, tuple[threading.Event, threading.Event]] = field(default_factory=dict)  # (reached, open)


class Server:
    """An aiohttp app running in its own thread and event loop on ``host`` (127.0.0.1), ``port`` (0: any)."""

    def __init__(
        self, routes: Callable[[Server], list[web.RouteDef]], host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._state = _State()
        self._routes = routes
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self.host = host
        self.port = port
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-origin", daemon=True)

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> Server:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application(middlewares=[self._count])
        app.add_routes(self._routes(self))
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @web.middleware
    async def _count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        with self._state.lock:
            self._state.hits[request.path] += 1
            self._state.headers[request.path] = request.headers
            self._state.arrivals.append(Arrival(time.monotonic(), request.host, request.path))
        return await handler(request)

    # -- test API ----------------------------------------------------------
    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base + (path if path.startswith("/") else "/" + path)

    def hits(self, path: str) -> int:
        with self._state.lock:
            return self._state.hits[path]

    def total_hits(self) -> int:
        with self._state.lock:
            return sum(self._state.hits.values())

    def arrivals(self, host: str | None = None) -> list[Arrival]:
        """Requests in the order they arrived since the last reset (only those with that Host header if given)."""
        with self._state.lock:
            return [a for a in self._state.arrivals if host is None or a.host == host]

    def last_headers(self, path: str) -> CIMultiDict[str]:
        """Headers of the last request to ``path`` (empty if none)."""
        with self._state.lock:
            return CIMultiDict(self._state.headers.get(path, {}))

    def add(
        self,
        path: str,
        body: bytes,
        content_type: str = "application/octet-stream",
        headers: dict[str, str] | None = None,
        status: int = 200,
        delay: float = 0.0,
    ) -> str:
        """Serve ``body`` at ``path`` (after ``delay`` seconds) until the next reset; returns its URL."""
        with self._state.lock:
            self._state.content[path] = Content(
                body, content_type, tuple((headers or {}).items()), status, delay
            )
        return self.url(path)

    def content(self, path: str) -> Content | None:
        with self._state.lock:
            return self._state.content.get(path)

    def fail_once_more(self, key: str) -> int:
        """Count one more failure for ``key``; returns how many there were before."""
        with self._state.lock:
            before = self._state.failures[key]
            self._state.failures[key] += 1
            return before

    def hold(self, delta: int, host: str = "") -> None:
        """Track requests being served by /hold and /storm (for concurrency-limit tests), in total and by host."""
        with self._state.lock:
            for key in {"", host}:
                self._state.in_flight[key] += delta
                self._state.max_in_flight[key] = max(
                    self._state.max_in_flight[key], self._state.in_flight[key]
                )

    def max_in_flight(self, host: str = "") -> int:
        """Most /hold and /storm requests served at the same time since the last reset (for one Host header,
        e.g. ``"img.example.test"`` or ``"127.0.0.1:PORT"``, or in total)."""
        with self._state.lock:
            return self._state.max_in_flight[host]

    def _gate(self, key: str) -> tuple[threading.Event, threading.Event]:
        with self._state.lock:
            return self._state.gates.setdefault(key, (threading.Event(), threading.Event()))

    def gate_reached(self, key: str) -> threading.Event:
        """Set once a request to /gate/{key} has arrived (it waits for ``open_gate(key)``)."""
        return self._gate(key)[0]

    def open_gate(self, key: str) -> None:
        self._gate(key)[1].set()

    def reset(self) -> None:
        with self._state.lock:
            for _reached, opened in self._state.gates.values():
                opened.set()  # no request left waiting
            self._state.gates.clear()
            self._state.in_flight.clear()
            self._state.max_in_flight.clear()
            self._state.hits.clear()
            self._state.arrivals.clear()
            self._state.headers.clear()
            self._state.content.clear()
            self._state.failures.clear()


def _image(body: bytes = JPEG, content_type: str = "image/jpeg") -> web.Response:
    return web.Response(body=body, content_type=content_type)


def origin_routes(server: Server) -> list[web.RouteDef]:
    statics = {
        "/image.jpg": (JPEG, "image/jpeg"),
        "/image.png": (make_png(320, 240, seed=2), "image/png"),
        "/image.webp": (make_webp(320, 240, seed=3), "image/webp"),
        "/image.gif": (make_gif(160, 120, seed=4), "image/gif"),
        "/image.svg": (SVG, "image/svg+xml"),
        "/bomb": (make_png_bomb(), "image/png"),
    }

    async def anything(request: web.Request) -> web.StreamResponse:
        added = server.content(request.path)
        if added is not None:
            if added.delay:
                await asyncio.sleep(added.delay)
            resp = web.Response(body=added.body, status=added.status, headers=dict(added.headers))
            resp.content_type = added.content_type
            return resp
        if request.path in statics:
            return _image(*statics[request.path])
        return web.Response(status=404, body=HTML, content_type="text/html")

    async def fail(request: web.Request) -> web.StreamResponse:
        n, key = int(request.match_info["n"]), request.match_info["key"]
        if server.fail_once_more(f"fail/{key}") < n:
            return web.Response(status=500, text="boom")
        return _image()

    async def too_many(request: web.Request) -> web.StreamResponse:
        if server.fail_once_more(f"429/{request.match_info['key']}") < 1:
            return web.Response(status=429, headers={"Retry-After": "1"}, text="slow down")
        return _image()

    def status(code: int) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(status=code, body=HTML, content_type="text/html")

        return handler

    async def html(request: web.Request) -> web.StreamResponse:
        return web.Response(body=HTML, content_type="image/jpeg")

    async def truncated(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        resp.content_length = len(JPEG)
        await resp.prepare(request)
        await resp.write(JPEG[: len(JPEG) // 2])
        assert request.transport is not None
        request.transport.close()
        return resp

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(SLOW_SECONDS)
        return _image()

    async def oversize(request: web.Request) -> web.StreamResponse:
        chunked = request.path.endswith("chunked")
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        if chunked:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = OVERSIZE_BYTES
        await resp.prepare(request)
        block = (JPEG * (64 * 1024 // len(JPEG) + 1))[: 64 * 1024]
        sent = 0
        try:
            while sent < OVERSIZE_BYTES:
                await resp.write(block)
                sent += len(block)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up, as it should
        return resp

    async def hold(request: web.Request) -> web.StreamResponse:
        server.hold(+1, request.host)
        try:
            await asyncio.sleep(float(request.query.get("s", HOLD_SECONDS)))
        finally:
            server.hold(-1, request.host)
        if request.path.startswith("/storm/"):
            return web.Response(status=500, text="storm")
        return _image()

    async def gate(request: web.Request) -> web.StreamResponse:
        reached, opened = server._gate(request.match_info["key"])
        reached.set()
        while not opened.is_set():
            await asyncio.sleep(0.01)
        return _image()

    async def gzipped(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=gzip.compress(JPEG), headers={"Content-Type": "image/jpeg", "Content-Encoding": "gzip"}
        )

    async def encoded(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == "gzip":
            body = gzip.compress(JPEG)
        elif name == "deflate":
            body = zlib.compress(JPEG)  # RFC 9110 "deflate": zlib-wrapped
        elif name == "deflate-raw":
            compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)  # what some servers send as "deflate"
            body = compressor.compress(JPEG) + compressor.flush()
        else:
            raise web.HTTPNotFound()
        headers = {"Content-Type": "image/jpeg", "Content-Encoding": name.split("-")[0]}
        if not request.query.get("chunked"):
            return web.Response(body=body, headers=headers)
        resp = web.StreamResponse(headers=headers)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(body), 1000):
            await resp.write(body[i : i + 1000])
        await resp.write_eof()
        return resp

    async def gzip_bomb(request: web.Request) -> web.StreamResponse:
        body = gzip.compress(JPEG[:64] + bytes(8 * 1024 * 1024))
        return web.Response(body=body, headers={"Content-Type": "image/jpeg", "Content-Encoding": "gzip"})

    async def chunked(request: web.Request) -> web.StreamResponse:
        cut = request.path == "/chunked-cut"
        pieces = 2 if cut else int(request.match_info["pieces"])
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        step = -(-len(JPEG) // pieces)
        for i in range(0, len(JPEG), step):
            await resp.write(JPEG[i : i + step])
            await asyncio.sleep(0.005)
            if cut:
                assert request.transport is not None
                request.transport.close()
                return resp
        await resp.write_eof()
        return resp

    async def short_length(request: web.Request) -> web.StreamResponse:
        declared = len(JPEG) // 2
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        resp.content_length = declared
        await resp.prepare(request)
        await resp.write(JPEG[:declared])  # aiohttp itself never writes past Content-Length ...
        assert request.transport is not None
        if request.query.get("later"):
            await asyncio.sleep(0.05)  # the client has read the declared body before the surplus arrives
        request.transport.write(JPEG[declared:])  # ... so the rest goes to the socket directly
        return resp

    def _rst(request: web.Request) -> None:
        transport = request.transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.close()  # with SO_LINGER 0, close() sends RST instead of FIN

    async def reset(request: web.Request) -> web.StreamResponse:
        n, key = int(request.match_info["n"]), request.match_info["key"]
        if server.fail_once_more(f"reset/{key}") >= n:
            return _image()
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        resp.content_length = len(JPEG)
        await resp.prepare(request)
        await resp.write(JPEG[: len(JPEG) // 2])
        await asyncio.sleep(0.05)  # let the client read the first half: the reset comes mid-body
        _rst(request)
        return resp

    async def stall_body(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        resp.content_length = len(JPEG)
        await resp.prepare(request)
        await resp.write(JPEG[: len(JPEG) // 2])
        await asyncio.sleep(SLOW_SECONDS)
        return resp

    async def trickle(request: web.Request) -> web.StreamResponse:
        rate = int(request.match_info["rate"])
        step = max(1, rate // 10)
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        resp.content_length = len(JPEG)
        await resp.prepare(request)
        for i in range(0, len(JPEG), step):
            await resp.write(JPEG[i : i + step])
            await asyncio.sleep(step / rate)
        return resp

    async def retry_after(request: web.Request) -> web.StreamResponse:
        status, key = int(request.match_info["status"]), request.match_info["key"]
        if server.fail_once_more(f"retry-after/{key}") >= 1:
            return _image()
        if "date" in request.query:
            value = email.utils.formatdate(time.time() + float(request.query["date"]), usegmt=True)
        else:
            value = request.query["seconds"]
        return web.Response(status=status, headers={"Retry-After": value}, text="later")

    async def loop(request: web.Request) -> web.StreamResponse:
        n, i = int(request.match_info["n"]), int(request.match_info["i"])
        raise web.HTTPFound(f"/loop/{n}/{(i + 1) % n}")

    async def redirect(request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["n"])
        if n <= 0:
            return _image()
        target = f"/redirect/{n - 1}" if n % 2 else server.url(f"/redirect/{n - 1}")
        raise web.HTTPFound(target)

    async def redirect_to(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(request.query["url"])

    async def redirect_private(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")

    async def redirect_loop(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/redirect-loop")

    async def redirect_scheme(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("file:///etc/passwd")

    async def hotlink(request: web.Request) -> web.StreamResponse:
        if not request.headers.get("Referer", "").startswith("http://blog.test/"):
            return web.Response(status=403, body=HTML, content_type="text/html")
        return _image()

    async def cookie_gate(request: web.Request) -> web.StreamResponse:
        if request.cookies.get("gate") != GATE_COOKIE:
            return web.Response(status=403, body=HTML, content_type="text/html")
        return _image()

    return [
        web.get("/hotlink/{name}", hotlink),
        web.get("/cookie-gate/{name}", cookie_gate),
        web.get("/fail/{n}/{key}", fail),
        web.get("/429/{key}", too_many),
        web.get("/404", status(404)),
        web.get("/410", status(410)),
        web.get("/403", status(403)),
        web.get("/html", html),
        web.get("/truncated", truncated),
        web.get("/slow", slow),
        web.get("/oversize", oversize),
        web.get("/oversize-chunked", oversize),
        web.get("/gzip", gzipped),
        web.get("/hold/{key}", hold),
        web.get("/storm/{key}", hold),
        web.get("/gate/{key}", gate),
        web.get("/encoded/{name}", encoded),
        web.get("/gzip-bomb", gzip_bomb),
        web.get("/chunked/{pieces}", chunked),
        web.get("/chunked-cut", chunked),
        web.get("/short-length", short_length),
        web.get("/reset/{n}/{key}", reset),
        web.get("/stall-body", stall_body),
        web.get("/trickle/{rate}", trickle),
        web.get("/retry-after/{status}/{key}", retry_after),
        web.get("/loop/{n}/{i}", loop),
        web.get("/redirect/{n}", redirect),
        web.get("/redirect-to", redirect_to),
        web.get("/redirect-private", redirect_private),
        web.get("/redirect-loop", redirect_loop),
        web.get("/redirect-scheme", redirect_scheme),
        web.get("/{tail:.*}", anything),
    ]


def canary_routes(server: Server) -> list[web.RouteDef]:
    async def anything(request: web.Request) -> web.StreamResponse:
        return _image()

    return [web.route("*", "/{tail:.*}", anything)]


def proxy_routes(server: Server) -> list[web.RouteDef]:
    """A fake forward proxy: answers each proxied request with the image itself (or, for a target path
    ``/redirect-to?url=U``, with a 302 to U); hits are keyed by the full target URL
    (``fake_proxy.hits("http://img.example.test/a.jpg")``)."""

    async def anything(request: web.Request) -> web.StreamResponse:
        if request.path == "/redirect-to":
            raise web.HTTPFound(request.query["url"])
        return _image()

    return [web.route("*", "/{tail:.*}", anything)]


class _ProxyServer(Server):
    @web.middleware
    async def _count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        target = str(request.url) if request.url.is_absolute() else request.path
        with self._state.lock:
            self._state.hits[target] += 1
            self._state.headers[target] = request.headers
        return await handler(request)


def _serve(server: Server) -> Iterator[Server]:
    with pytest.MonkeyPatch.context() as mp:
        # Tests talk to loopback only: an outer proxy setting must not capture their requests.
        for name in PROXY_ENV:
            mp.delenv(name, raising=False)
            mp.delenv(name.upper(), raising=False)
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def origin_server() -> Iterator[Server]:
    yield from _serve(Server(origin_routes))


@pytest.fixture
def origin(origin_server: Server) -> Iterator[Server]:
    origin_server.reset()
    yield origin_server
    origin_server.reset()


@pytest.fixture(scope="session")
def canary_server() -> Iterator[Server]:
    yield from _serve(Server(canary_routes))


@pytest.fixture
def canary(canary_server: Server) -> Server:
    canary_server.reset()
    return canary_server


@pytest.fixture
def fake_proxy() -> Iterator[Server]:
    yield from _serve(_ProxyServer(proxy_routes))


__all__ = ["Arrival", "Server", "JPEG", "SVG", "HTML", "SLOW_SECONDS", "OVERSIZE_BYTES"]
