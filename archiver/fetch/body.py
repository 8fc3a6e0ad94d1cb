"""Streams one response body to a temp file: sniffed from its first bytes, size-capped, hashed, rate-checked."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import aiohttp

from archiver.errors import NotAnImage, TooLarge, TransientFetchError
from archiver.fetch.retry import Retry
from archiver.fetch.sniff import SNIFF_BYTES, describe, sniff
from archiver.model import Download, ImageFormat
from archiver.redaction import redact

CHUNK = 64 * 1024
RATE_WINDOW = 5.0  # seconds over which min_rate is measured


@dataclass
class FetchStats:
    """Counters for the progress display (mutable, owned by one Fetcher)."""

    requests: int = 0  # HTTP requests sent, redirect hops and retries included
    bytes_received: int = 0  # body bytes read (decoded)
    retries: int = 0
    downloads: int = 0  # fetches that gave an image


class RateMeter:
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


@dataclass(frozen=True)
class BodyReader:
    """Reads response bodies into temp files in ``workdir`` (``max_bytes`` of decoded data at most, and no
    slower than ``min_rate`` bytes/s over ``rate_window`` seconds once the first byte is in)."""

    workdir: Path
    max_bytes: int
    min_rate: int
    rate_window: float
    stats: FetchStats

    async def read(self, url: str, current: str, resp: aiohttp.ClientResponse, attempt_no: int) -> Download:
        """Stream the body to a temp file: sniff the first bytes, cap the size, hash as it goes."""
        limit = self.max_bytes
        declared = resp.content_length
        if declared is not None and declared > limit:
            resp.close()
            raise TooLarge(redact(url), f"Content-Length {declared} is over max_bytes {limit}", status=resp.status)
        path: Path | None = None
        try:
            fd, name = tempfile.mkstemp(dir=self.workdir, prefix="fetch-", suffix=".part")
            path = Path(name)
            with os.fdopen(fd, "wb") as out:
                size, digest, fmt = await self._stream(url, resp, out, limit)
            encoded = resp.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
            if declared is not None and not encoded and size < declared:
                raise Retry(f"truncated body ({size} of {declared} bytes)", resp.status)
        except BaseException as exc:
            if path is not None:
                with contextlib.suppress(OSError):
                    path.unlink()
            if isinstance(exc, OSError) and not isinstance(exc, (aiohttp.ClientError, TimeoutError)):
                # Our own disk, not the network: retrying this URL now would not help.
                reason = f"cannot write a temporary file in {self.workdir}: {exc.strerror or exc}"
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
        meter = RateMeter(self.min_rate, self.rate_window)
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

    async def _read_chunk(self, resp: aiohttp.ClientResponse, meter: RateMeter) -> bytes:
        """The next piece of the body (b"" at its end); Retry when it arrives slower than min_rate."""
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
                raise Retry(
                    f"too slow: {received} bytes in {self.rate_window:g}s, under min_rate {self.min_rate} bytes/s",
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
