"""A hostile HTTP server on 127.0.0.1 (port 0) for the tests: answers each path with raw bytes a test chose, so a
response can carry what aiohttp's server would never send (ESC sequences in the reason phrase or a Location).

Fixture: ``hostile`` (a new server per test; ``hostile.answer(path, raw_bytes)``; other paths get a 404).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest


class HostileServer:
    def __init__(self) -> None:
        self.port = 0
        self._answers: dict[str, bytes] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-hostile", daemon=True)
        self._server: asyncio.Server | None = None

    def answer(self, path: str, raw: bytes) -> str:
        """Send ``raw`` (status line, headers and body, as is) to every request for ``path``; returns the path."""
        self._answers[path] = raw
        return path

    def start(self) -> HostileServer:
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

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode("latin-1").split("?", 1)[0]
            writer.write(self._answers.get(path, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    server = HostileServer().start()
    try:
        yield server
    finally:
        server.stop()


__all__ = ["HostileServer", "hostile"]
