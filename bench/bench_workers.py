"""Benchmark: a fleet of `archiver worker` processes on one PostgreSQL manifest beside the single-process SQLite run,
in one run, against an origin with realistic latency and one dominant host.

    python bench/bench_workers.py [--images 400] [--latency 0.1] [--workers 1 2 4] [--per-host 8] [--concurrency 16]

- images: --images distinct news-site images (bench/rig.py: 480-1920 px, ~10 % PNG, real photographic content), all on
  one CDN host, served by a loopback origin in its own process that answers after --latency seconds;
- articles: five images each, Hexo-style front matter and raw HTML;
- storage: a local folder (the S3 server's cost is bench_corpus.py's subject);
- rows: `archiver run` with a SQLite manifest (the baseline: one process, its image pool), `archiver run` alone on a
  PostgreSQL manifest (the same work through the queue and the fleet gate), then W `archiver worker` processes plus
  `archiver run --no-process` for each W. Each row starts from the same fresh site, an empty store and an empty
  manifest, and reports images/s (wall clock from the run's start to its exit), CPU seconds of every process of the
  row (run, workers, their image pools; the origin and PostgreSQL apart), each core's busy share, and the origin's
  request count (every URL once).

With fetching bound by latency and `per_host` (fleet-wide: one slot table for all workers), more workers help only
until the host's slots or the cores are full; the figures say where.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import rig  # noqa: E402

CDN = "img.cdn-news.test"


def _site(folder: Path, n: int) -> None:
    posts = folder / "site"
    posts.mkdir(parents=True)
    for a in range(0, n, 5):
        refs = [f"http://{CDN}/img/{i}" for i in range(a, min(n, a + 5))]
        body = f"---\ntitle: post {a}\nheadimg: {refs[0]}\n---\n"
        body += "".join(f'<p><img src="{u}" referrerpolicy="no-referrer"></p>\n' for u in refs[1:])
        (posts / f"post-{a:05}.md").write_text(body, encoding="utf-8")


def _config(folder: Path, port: int, per_host: int, concurrency: int) -> Path:
    cfg = folder / "archiver.toml"
    cfg.write_text(
        f'[articles]\nroot = "site"\n'
        f'[fetch]\nallow_networks = ["127.0.0.1/32"]\nconnect_to = {{ "{CDN}" = "127.0.0.1:{port}" }}\n'
        f"per_host = {per_host}\nconcurrency = {concurrency}\nretries = 1\n"
        f'[storage]\nbackend = "local"\npath = "archive"\n',
        encoding="utf-8",
    )
    return cfg


def _archiver(cfg: Path, *args: str, manifest_url: str | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ARCHIVER_MANIFEST_URL", None)
    if manifest_url:
        env["ARCHIVER_MANIFEST_URL"] = manifest_url
    out = open(cfg.parent / f"{args[0]}-{len(list(cfg.parent.glob(args[0] + '-*.out')))}.out", "wb")  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "archiver", *args, "--config", str(cfg), "-q"], cwd=cfg.parent,
                            env=env, stdout=out, stderr=subprocess.PIPE)


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a live process and its live children (its image pool)."""
    total = 0.0
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for c in child.read_text().split():
            with contextlib.suppress(OSError, ValueError):
                total += _tree_cpu(int(c))
    try:
        return total + rig.process_cpu(pid)
    except OSError:
        return total


def _row(name: str, work: Path, n: int, origin: rig.Origin, args: argparse.Namespace, workers: int,
         manifest_url: str | None) -> dict[str, object]:
    if work.exists():
        shutil.rmtree(work)
    _site(work, n)
    cfg = _config(work, origin.port, args.per_host, args.concurrency)
    before = origin.requests()
    fleet = [_archiver(cfg, "worker", manifest_url=manifest_url) for _ in range(workers)]
    time.sleep(1.5 if fleet else 0)  # the workers import and connect (not counted: they are long-running)
    meter = rig.CoreMeter()
    meter.start()
    started = time.perf_counter()
    fleet_cpu0 = sum(_tree_cpu(p.pid) for p in fleet)
    run = _archiver(cfg, "run", *(["--no-process"] if fleet else []), manifest_url=manifest_url)
    run_cpu = 0.0
    while run.poll() is None:  # the run's CPU, read while it lives (its pool's children included)
        run_cpu = max(run_cpu, _tree_cpu(run.pid))
        time.sleep(0.2)
    wall = time.perf_counter() - started
    fleet_cpu = sum(_tree_cpu(p.pid) for p in fleet) - fleet_cpu0
    busy = meter.stop()
    for p in fleet:
        p.send_signal(signal.SIGTERM)
    for p in fleet:
        p.wait(30)
    err = run.stderr.read().decode(errors="replace") if run.stderr else ""
    if run.returncode != 0:
        raise SystemExit(f"{name}: run exited {run.returncode}: {err[-2000:]}")
    stored = sum(1 for p in (work / "archive").rglob("*") if p.is_file() and "-" not in p.name)
    requests = origin.requests() - before
    summary = ""
    if requests != n or stored != n:  # not every image once: what the run said, printed under the table
        summary = (work / "run-0.out").read_text(errors="replace") + err[-2000:]
    return {"name": name, "wall": wall, "rate": n / wall, "cpu": run_cpu + fleet_cpu, "busy": busy,
            "requests": requests, "stored": stored, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--per-host", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    import pytest  # noqa: F401 - the test support module's failures are pytest's

    from tests.support.postgres import PostgresServer

    images = rig.image_set(range(1, args.images + 1))
    routes = {f"/img/{i}": (str(p), "image/png" if p.suffix == ".png" else "image/jpeg")
              for i, p in zip(range(args.images), images.values(), strict=True)}
    size = sum(Path(p).stat().st_size for p, _ in routes.values())
    base = Path(tempfile.mkdtemp(prefix="archiver-bench-workers-"))
    pg_base = Path(tempfile.mkdtemp(prefix="archiver-bench-pg-"))  # chowned to the postgres user when root
    server = PostgresServer(pg_base)
    server.start()  # fsync off, as in the tests
    origin = rig.Origin(routes, args.latency)
    rows = []
    try:
        rows.append(_row("run, SQLite (baseline)", base / "w", args.images, origin, args, 0, None))
        rows.append(_row("run, PostgreSQL", base / "w", args.images, origin, args, 0, server.new_database()))
        for w in args.workers:
            rows.append(_row(f"{w} worker{'s' if w > 1 else ''} + run --no-process", base / "w", args.images, origin,
                             args, w, server.new_database()))
    finally:
        origin.stop()
        server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(pg_base, ignore_errors=True)
    print(f"{args.images} images ({size / 1e6:.0f} MB) on one host, {args.latency * 1000:.0f} ms per response, "
          f"per_host {args.per_host}, concurrency {args.concurrency}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'':34} {'wall s':>7} {'images/s':>9} {'CPU s':>7} {'CPU ms/img':>11} {'cores busy':>12} {'requests':>9} {'stored':>7}")
    for r in rows:
        busy = " ".join(f"{b * 100:.0f}%" for b in r["busy"])  # type: ignore[union-attr]
        print(f"{r['name']:34} {r['wall']:7.1f} {r['rate']:9.1f} {r['cpu']:7.1f} "
              f"{r['cpu'] / args.images * 1000:11.1f} {busy:>12} {r['requests']:9} {r['stored']:7}")
    for r in rows:
        if r["summary"]:
            print(f"\n{r['name']}: not every image requested and stored once; the run said:\n{r['summary']}")


if __name__ == "__main__":
    main()
