"""Cost of one fleet-gate acquire + release (a host's row and a global row, archiver/run/fleet.py) against a
PostgreSQL server of its own on this machine: one process, one task, sequential. ``python bench/bench_fleet_gate.py``
"""

from __future__ import annotations

import asyncio
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from archiver.config import FetchConfig  # noqa: E402
from archiver.manifest.sqlite import Manifest  # noqa: E402
from archiver.run.fleet import fleet_gate  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402


def main(n: int = 1000) -> None:
    server = PostgresServer(pathlib.Path(tempfile.mkdtemp(prefix="gatebench-")))
    server.start()
    try:
        manifest = Manifest.open(server.new_database(), lock=False)
        cfg = FetchConfig(per_host=4, concurrency=16)

        async def run() -> None:
            gate = fleet_gate(manifest, cfg)
            for _ in range(50):  # warm up: rows made, statements prepared
                await gate.release(await gate.acquire("h:80"))
            started = time.perf_counter()
            for _ in range(n):
                await gate.release(await gate.acquire("h:80"))
            took = time.perf_counter() - started
            await gate.aclose()
            print(f"{n} acquire+release: {took:.2f} s, {took / n * 1000:.2f} ms each")

        asyncio.run(run())
        manifest.close()
    finally:
        server.stop("immediate")


if __name__ == "__main__":
    main()
