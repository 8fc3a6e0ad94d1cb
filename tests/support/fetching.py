"""Drives a Fetcher against the loopback servers in the fetch tests: the shared base config, run helpers and a
pretend DNS (``StaticResolver``)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from aiohttp.abc import AbstractResolver, ResolveResult

from archiver.config import FetchConfig
from archiver.fetch.client import RATE_WINDOW, Fetcher
from archiver.model import Download

T = TypeVar("T")


class StaticResolver(AbstractResolver):
    """Pretend DNS: name → addresses; unknown names are NXDOMAIN, names mapped to None fail temporarily."""

    def __init__(self, answers: Mapping[str, Sequence[str] | None]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        addrs = self.answers[host]
        if addrs is None:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return [
            {"hostname": host, "host": a, "port": port, "family": socket.AF_INET6 if ":" in a else socket.AF_INET,
             "proto": 0, "flags": 0}
            for a in addrs
        ]  # fmt: skip

    async def close(self) -> None:
        pass


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
