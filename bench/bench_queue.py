"""The coordinator's ceiling: URL claims + completions per second through the manifest's queue, PostgreSQL and
SQLite side by side in the same run, with W simulated workers (threads, each its own connection) claiming batches.

Usage: python bench/bench_queue.py [--urls N] [--workers W ...] [--batch B]

Starts its own PostgreSQL (Debian's binaries, as the tests do: tests/support/postgres.py) and a SQLite file in a
temp folder; each worker loops claim(B) → complete each URL (its outcome recorded, its queue row deleted, one
transaction per URL) until the queue is empty. Prints URLs settled per second per backend and worker count. The
workers do no other work, so this is the queue's own cost, the ceiling for a fleet; the GIL of this one process is
part of it (real workers are separate processes on separate machines, so this figure is a lower bound for PG).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archiver.manifest.queue import UrlResult  # noqa: E402
from archiver.manifest.sqlite import Manifest  # noqa: E402
from archiver.model import Outcome  # noqa: E402

RESULT = UrlResult(Outcome.DEAD, reason="404 Not Found", http_status=404, attempts=1)


def settle(target: Path | str, urls: int, workers: int, batch: int) -> float:
    with Manifest.open(target, lock=False) as m:
        m.enqueue(f"https://img.example/{i:08}.jpg" for i in range(urls))
    done = [0] * workers

    def work(k: int) -> None:
        with Manifest.open(target, lock=False) as w:
            while claims := w.claim(f"w{k}", batch, lease=60):
                for c in claims:
                    if w.complete(c.url, c.token, RESULT):
                        done[k] += 1

    threads = [threading.Thread(target=work, args=(k,)) for k in range(workers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    assert sum(done) == urls, (sum(done), urls)
    return urls / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=4000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--batch", type=int, default=20)
    args = parser.parse_args()

    import pytest  # noqa: F401 - the test support module's failures are pytest's

    from tests.support.postgres import PostgresServer

    base = Path(tempfile.mkdtemp(prefix="archiver-pg-"))
    server = PostgresServer(base)
    server.start()  # fsync off, as in the tests: the figure is the queue's CPU and round trips, not the disk's
    try:
        print(f"{args.urls} URLs, batches of {args.batch}; URLs settled (claimed + completed) per second")
        print(f"{'workers':>8} {'PostgreSQL':>12} {'SQLite':>12}")
        with tempfile.TemporaryDirectory() as tmp:
            for w in args.workers:
                pg = settle(server.new_database(), args.urls, w, args.batch)
                lite = settle(Path(tmp) / f"q{w}.sqlite3", args.urls, w, args.batch)
                print(f"{w:>8} {pg:>12.0f} {lite:>12.0f}")
    finally:
        server.stop("immediate")


if __name__ == "__main__":
    main()
