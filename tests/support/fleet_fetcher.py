"""A fleet worker's fetcher, alone in a process, for the fleet tests: ``python -m tests.support.fleet_fetcher JSON``.

JSON: {"manifest": target, "urls": [...], "fetch": {FetchConfig fields}, "workdir": path, "holder": name,
"lease": seconds, "wait": bool}. Opens the manifest (no writer's lock), builds a Fetcher with the fleet gate, prints "ready" when its
gate is open, waits for a line on stdin if "wait", fetches every URL at once, then prints one JSON line: {url: "ok" | "ErrorClass: reason"}.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from archiver.config import FetchConfig
from archiver.errors import FetchError
from archiver.fetch.client import Fetcher
from archiver.manifest.sqlite import Manifest
from archiver.run.fleet import fleet_gate


def main(spec: dict) -> dict[str, str]:
    target = spec["manifest"] if "://" in spec["manifest"] else Path(spec["manifest"])
    fields = dict(spec["fetch"])
    for name in ("allow_networks",):
        if name in fields:
            fields[name] = tuple(fields[name])
    cfg = FetchConfig(**fields)
    manifest = Manifest.open(target, lock=False)
    out: dict[str, str] = {}

    async def one(fetcher: Fetcher, url: str) -> None:
        try:
            download = await fetcher.fetch(url)
            download.path.unlink(missing_ok=True)
            out[url] = "ok"
        except FetchError as exc:
            out[url] = f"{type(exc).__name__}: {exc.reason}"

    async def run() -> None:
        gate = fleet_gate(manifest, cfg, spec.get("holder"), lease=spec.get("lease", 30.0))
        async with Fetcher(cfg, Path(spec["workdir"]), gate=gate) as fetcher:
            print("ready", flush=True)
            if spec.get("wait"):  # until the test says go (a line on stdin)
                await asyncio.to_thread(sys.stdin.readline)
            await asyncio.gather(*(one(fetcher, u) for u in spec["urls"]))

    try:
        asyncio.run(run())
    finally:
        manifest.close()
    return out


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))), flush=True)
