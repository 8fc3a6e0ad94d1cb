"""A real HTTP proxy on 127.0.0.1 (port 0) in a background thread: forwards absolute-form requests and tunnels
CONNECT, as squid or tinyproxy would, so a test sees what a proxy would really reach.

Unlike ``fake_proxy`` (tests/support/origin.py), which answers every request itself, this one connects to the
target. Names are resolved only through its own table (``hosts``: ``"name"`` or ``"name:port"`` -> ``"address"``
or ``"address:port"``; an IP literal is used as is); any other name gets 502, so nothing leaves the machine.
Every request is recorded (``seen``) with its Proxy-Authorization header, which is not forwarded.

Fixture: ``forward_proxy`` (a new proxy per test; set its ``hosts`` before use).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

_HOP_BY_HOP = {"proxy-authorization", "proxy-connection", "connection", "keep-alive"}


@dataclass(frozen=True)
class Seen:
    """One request as the proxy received it."""

    method: str
    target: str  # absolute URL, or host:port for CONNECT
    proxy_authorization: str | None
    headers: dict[str, str]  # lower-cased names


@dataclass
class ForwardProxy:
    hosts: dict[str, str] = field(default_factory=dict)
    port: int = 0
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._lock = threading.Lock()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ForwardProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._client, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def targets(self) -> list[str]:
        with self._lock:
            return [s.target for s in self.seen]

    # -- the proxy ------------------------------------------------------------------------------
    def _route(self, host: str, port: int) -> tuple[str, int] | None:
        for key in (f"{host}:{port}", host):
            if key in self.hosts:
                address, _, to_port = self.hosts[key].partition(":")
                return address, int(to_port or port)
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(host.strip("[]"))
            return host.strip("[]"), port
        return None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = (lines[0].split(" ") + ["", ""])[:3]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        with self._lock:
            self.seen.append(Seen(method, target, headers.get("proxy-authorization"), headers))
        try:
            if method == "CONNECT":
                await self._tunnel(target, reader, writer)
            else:
                await self._forward(method, target, headers, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _open(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        route = self._route(host.lower(), port)
        if route is None:
            return None
        try:
            return await asyncio.open_connection(*route)
        except OSError:
            return None

    async def _tunnel(self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, _, port = target.rpartition(":")
        upstream = await self._open(host, int(port or 443))
        if upstream is None:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        up_reader, up_writer = upstream
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def _forward(self, method: str, target: str, headers: dict[str, str], writer: asyncio.StreamWriter) -> None:
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        upstream = await self._open(parts.hostname, parts.port or 80)
        if upstream is None:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        up_reader, up_writer = upstream
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        kept = "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k not in _HOP_BY_HOP)
        up_writer.write(f"{method} {path} HTTP/1.1\r\n{kept}Connection: close\r\n\r\n".encode("latin-1"))
        await up_writer.drain()
        await _pipe(up_reader, writer)
        up_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.write_eof()


@pytest.fixture
def forward_proxy() -> Iterator[ForwardProxy]:
    proxy = ForwardProxy().start()
    try:
        yield proxy
    finally:
        proxy.stop()


__all__ = ["ForwardProxy", "Seen", "forward_proxy"]
