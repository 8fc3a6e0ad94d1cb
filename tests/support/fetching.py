"""Drives a Fetcher against the loopback servers in the fetch tests: the shared base config and run helpers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from aiohttp.abc import AbstractResolver

from archiver.config import FetchConfig
from archiver.fetch.client import RATE_WINDOW, Fetcher
from archiver.model import Download

T = TypeVar("T")

# Loopback allowed, short timeouts and backoff, 1 MiB bodies: each test module derives its CFG from this.
LOOPBACK = FetchConfig(
    allow_networks=("127.0.0.1/32",),
    connect_timeout=0.5,
    retries=2,
    backoff=0.01,
    max_backoff=2.0,
    max_bytes=1024 * 1024,
)


def run(
    cfg: FetchConfig,
    workdir: Path,
    body: Callable[[Fetcher], Coroutine[Any, Any, T]],
    *,
    resolver: AbstractResolver | None = None,
    rate_window: float = RATE_WINDOW,
) -> T:
    """Run ``body(fetcher)`` in a fresh event loop with one Fetcher open around it."""

    async def main() -> T:
        async with Fetcher(cfg, workdir, resolver=resolver, rate_window=rate_window) as fetcher:
            return await body(fetcher)

    return asyncio.run(main())


def fetch_with(cfg: FetchConfig, url: str, workdir: Path, **kw: Any) -> Download:
    """Fetch one URL with its own Fetcher (``kw``: ``resolver``, ``rate_window``)."""
    return run(cfg, workdir, lambda f: f.fetch(url), **kw)
