"""`archiver worker`: serve a PostgreSQL manifest's queue until SIGTERM/SIGINT (the loop is archiver.run.worker)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from dataclasses import replace

from archiver import scratch, terminal
from archiver.config import Config
from archiver.errors import EXIT_FAILED, EXIT_OK, ConfigError
from archiver.image.formats import writable
from archiver.image.pool import make_pool
from archiver.manifest.sqlite import Manifest
from archiver.manifest.target import is_postgres, local_path, manifest_target, shown
from archiver.run.assets import AssetArchiver
from archiver.run.pipeline import prepare_workdir
from archiver.run.report import Stats
from archiver.run.settle import Settler, make_fetcher
from archiver.run.worker import QueueWorker
from archiver.storage import open_store
from archiver.terminal import count

DEFAULT_LEASE = 60.0


MAX_LEASE = 3600.0  # seconds: how long at most a killed worker's URLs wait for another


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=int, metavar="N",
                        help="URLs claimed and worked on at a time (default: 4 × [fetch] concurrency, as a run)")
    parser.add_argument("--lease", type=float, default=DEFAULT_LEASE, metavar="SECONDS",
                        help="how long a claim lasts without renewal: a worker killed or paused this long loses its "
                             f"URLs to the others (renewed every third of it, at most every 10 s; default "
                             f"{DEFAULT_LEASE:g})")


def command(args: argparse.Namespace, cfg: Config) -> int:
    target = manifest_target(cfg)
    if not is_postgres(target):
        where = f"{cfg.source}: " if cfg.source else ""
        raise ConfigError(
            f"{where}archiver worker needs a PostgreSQL manifest ([manifest] url, or ARCHIVER_MANIFEST_URL); "
            f"{shown(target)} is a SQLite file, which one `archiver run` at a time writes")
    if args.batch is not None and args.batch < 1:
        raise ConfigError("--batch must be at least 1")
    if not 1 <= args.lease <= MAX_LEASE:  # "inf" would keep a killed worker's URLs from every other worker for good
        raise ConfigError(f"--lease must be between 1 and {MAX_LEASE:g} seconds")
    batch = args.batch or cfg.fetch.concurrency * 4
    images, messages = writable(cfg.images)
    if messages:
        terminal.say(*messages)
        cfg = replace(cfg, images=images)
    store = open_store(cfg)
    store.check()  # a worker stores every image it settles: a store it cannot use is said now (exit 2)
    manifest = Manifest.open(target, lock=False, reconnect_for=cfg.manifest.reconnect_for)  # no writer lock: many
    workdir = prepare_workdir(local_path(cfg))
    pool = make_pool(cfg.images.max_decode_seconds)
    own = logging.getLogger("archiver.worker")  # state changes are shown (not every retry of the others)
    saved = own.level
    if not args.quiet:
        own.setLevel(logging.INFO)
    failed: list[str] = []
    try:
        async def main() -> None:
            stats = Stats()
            worker: QueueWorker

            def storage_down(reason: str, grace: float) -> None:
                failed.append(reason)
                worker.stop(reason, grace)

            assets = AssetArchiver(cfg, manifest, store, stats, pool, storage_down)
            settler = Settler(cfg, assets, stats, workdir, None)
            worker = QueueWorker(manifest, settler, batch=batch, lease=args.lease)
            loop = asyncio.get_running_loop()
            for sig, name in ((signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")):
                loop.add_signal_handler(sig, worker.stop, f"interrupted ({name})")
            logging.getLogger("archiver.worker").info(
                "%s: serving the queue of %s (batch %d, lease %gs)", worker.name, shown(target), batch, args.lease)
            async with make_fetcher(cfg, workdir, manifest) as fetcher:
                await worker.serve(fetcher)
            if worker.unavailable is not None:
                raise worker.unavailable  # one line, exit 1
            logging.getLogger("archiver.worker").info(
                "%s: stopped: %s done, %s refused because their lease had passed", worker.name,
                count(worker.done, "URL"), count(worker.refused, "result"))

        asyncio.run(main())
    finally:
        own.setLevel(saved)
        pool.terminate()
        manifest.close()
        store.close()
        scratch.remove(workdir)
    return EXIT_FAILED if failed else EXIT_OK
