"""Benchmark: `archiver run` over the real article corpus, on inputs shaped like a news mirror's, beside a naive
sequential script, in one run.

    python bench/bench_corpus.py [--latency 0.04] [--per-host 8] [--dominant 0.9] [--naive 300] [--limit N]
                                 [--workers N] [--local]

- articles: the 766 posts of ../shared/corpus (Hexo news mirror, Jekyll blog, generated news site), copied, with
  https:// turned into http:// (the loopback origin speaks plain HTTP) and the hosts of --dominant of the URLs
  (0.9: nine in ten) moved onto one CDN host, where `[fetch] per_host` binds; root-relative URLs resolve there too;
- images: one distinct image per URL, drawn like a news site's (bench/rig.py: 480-1920 px, ~10 % PNG, real
  photographic content), served by a loopback origin in its own process that answers after --latency seconds;
- storage: SeaweedFS over S3 (the originals and one 320 px WebP rendition each), or --local for a folder.

It runs the archiver twice (the second run must be a no-op) and the naive script (bench/naive.py) over --naive
of the same URLs, against the same origin and S3 server, and prints images/s, CPU milliseconds per image for
every process (the archiver, its workers, the origin, the S3 server), each core's utilisation, peak RSS, and
the archiver's own per-stage CPU figures when it reports them (ARCHIVER_STAGE_STATS).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import naive  # noqa: E402
import rig  # noqa: E402

from archiver.articles.files import iter_article_paths, load_article  # noqa: E402
from archiver.errors import ArchiverError  # noqa: E402
from archiver.find.refs import find_refs  # noqa: E402
from archiver.urls import resolve  # noqa: E402

CDN = "img.cdn-news.test"
BASE_URL = f"http://{CDN}/"
FIELDS = ("headimg", "thumbnail", "cover", "image", "banner", "feature", "featured_image")
EXTS = (".md", ".markdown", ".html", ".htm")

# Runs the CLI in a child and reports its CPU, its children's CPU and peak RSS (VmHWM: ru_maxrss survives exec).
_WRAPPER = """
import json, re, resource, sys
from archiver.cli import main
code = main(sys.argv[1:])
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
hwm = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
print("STATS " + json.dumps({"cpu": me.ru_utime + me.ru_stime, "kids_cpu": kids.ru_utime + kids.ru_stime,
                             "rss_kb": hwm, "kids_rss_kb": kids.ru_maxrss}), file=sys.stderr)
raise SystemExit(code)
"""


def collect_urls(root: Path) -> list[str]:
    urls: set[str] = set()
    for path in iter_article_paths([root], EXTS):
        with contextlib.suppress(ArchiverError):
            article = load_article(path)
            for ref in find_refs(article.text, article.format, FIELDS):
                with contextlib.suppress(ArchiverError):
                    urls.add(resolve(ref.url, BASE_URL))
    return sorted(urls)


def prepare_site(site: Path, dominant: float, limit: int | None) -> list[str]:
    for sub in ("rsshub-hexo", "made-mistakes-jekyll", "animenews"):
        src = rig.CORPUS / sub
        if src.exists():
            shutil.copytree(src, site / sub)
    files = sorted(p for p in site.rglob("*") if p.is_file() and p.suffix in EXTS)
    if limit:
        for p in files[limit:]:
            p.unlink()
        files = files[:limit]
    for p in files:
        p.chmod(0o644)
        p.write_bytes(p.read_bytes().replace(b"https://", b"http://"))
    urls = collect_urls(site)
    by_host = Counter(urlsplit(u).hostname for u in urls)
    moved, covered = [], by_host.get(CDN, 0)
    for host, n in by_host.most_common():
        if host != CDN and covered < dominant * len(urls):
            moved.append(host)
            covered += n
    for p in files:
        data = p.read_bytes()
        for host in sorted(moved, key=len, reverse=True):
            data = data.replace(f"http://{host}/".encode(), f"http://{CDN}/{host}/".encode())
        p.write_bytes(data)
    return collect_urls(site)


def run_archiver(config: Path, env: dict[str, str], prefix: tuple[str, ...] = ()) -> tuple[float, dict[str, float], str, str]:
    started = time.perf_counter()
    proc = subprocess.run([*prefix, sys.executable, "-c", _WRAPPER, "run", "--config", str(config), "-q"],
                          capture_output=True, text=True, cwd=ROOT, env=env)
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        print(proc.stdout, proc.stderr, file=sys.stderr)
        raise SystemExit(f"archiver exited {proc.returncode}")
    stats = json.loads(next(x for x in proc.stderr.splitlines() if x.startswith("STATS "))[6:])
    return elapsed, stats, proc.stdout, proc.stderr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency", type=float, default=0.04, help="seconds the origin waits before each answer")
    ap.add_argument("--per-host", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--dominant", type=float, default=0.9, help="share of URLs moved onto one CDN host")
    ap.add_argument("--naive", type=int, default=300, help="URLs the naive script archives (0: skip)")
    ap.add_argument("--limit", type=int, help="only the first N articles")
    ap.add_argument("--workers", type=int, help="[run] workers, if the archiver has the key")
    ap.add_argument("--local", action="store_true", help="a local folder instead of SeaweedFS")
    ap.add_argument("--profile", metavar="FILE", help="sample the first run and its workers with py-spy into FILE "
                    "(collapsed stacks; py-spy must be installed; the figures of a profiled run are not comparable)")
    args = ap.parse_args()

    from tests.support.seaweed import SeaweedS3

    work = Path(tempfile.mkdtemp(prefix="archiver-bench-"))
    s3 = origin = None
    try:
        site = work / "site"
        urls = prepare_site(site, args.dominant, args.limit)
        seeds = {u: int(hashlib.sha256(u.encode()).hexdigest()[:12], 16) for u in urls}
        files = rig.image_set(list(seeds.values()))
        routes: dict[str, tuple[str, str]] = {}
        for u in urls:
            p = urlsplit(u)
            f = files[seeds[u]]
            routes[p.path + (f"?{p.query}" if p.query else "")] = (str(f), "image/png" if f.suffix == ".png" else "image/jpeg")
        hosts = sorted({urlsplit(u).hostname or "" for u in urls} - {""})
        total = sum(Path(f).stat().st_size for f, _ in routes.values())
        pngs = sum(1 for f, _ in routes.values() if f.endswith(".png"))
        share = Counter(urlsplit(u).hostname for u in urls)[CDN] / max(1, len(urls))
        print(f"{len(urls)} image URLs on {len(hosts)} hosts ({share:.0%} on {CDN}); {total / 1e6:.0f} MB of images, "
              f"{pngs / max(1, len(urls)):.0%} PNG, mean {total / max(1, len(urls)) / 1e3:.0f} KB; "
              f"origin latency {args.latency * 1000:.0f} ms")
        origin = rig.Origin(routes, args.latency)
        connect_to = ", ".join(f'"{h}" = "127.0.0.1:{origin.port}"' for h in hosts)
        env = dict(os.environ)
        if args.local:
            storage = '[storage]\nbackend = "local"\npath = "archive"\n'
        else:
            s3 = rig_s3 = SeaweedS3(work / "s3")
            rig_s3.start()
            bucket = rig_s3.make_bucket("bench")
            env.update(AWS_ACCESS_KEY_ID=rig_s3.access_key, AWS_SECRET_ACCESS_KEY=rig_s3.secret_key)
            storage = (f'[storage]\nbackend = "s3"\nbucket = "{bucket}"\nendpoint_url = "{rig_s3.endpoint_url}"\n'
                       f'region = "{rig_s3.region}"\npublic_base_url = "/archive/"\n')
        run_section = f"[run]\nworkers = {args.workers}\n" if args.workers else ""
        config = work / "archiver.toml"
        config.write_text(
            f'[articles]\nroot = "site"\nbase_url = "{BASE_URL}"\n'
            f'[fetch]\nallow_networks = ["127.0.0.1/32"]\nconnect_to = {{ {connect_to} }}\nretries = 0\n'
            f"per_host = {args.per_host}\nconcurrency = {args.concurrency}\n{storage}{run_section}",
            encoding="utf-8",
        )
        env["ARCHIVER_STAGE_STATS"] = str(work / "stages.json")
        weed_pid = s3._proc.pid if s3 is not None else None  # type: ignore[attr-defined]
        origin_cpu0 = rig.process_cpu(origin.proc.pid)
        weed_cpu0 = rig.process_cpu(weed_pid) if weed_pid else 0.0
        cores = rig.CoreMeter()
        cores.start()
        prefix: tuple[str, ...] = ()
        if args.profile:
            prefix = (shutil.which("py-spy") or "py-spy", "record", "--subprocesses", "--rate", "250",
                      "--format", "raw", "--output", args.profile, "--")
        first, st1, out1, _err1 = run_archiver(config, env, prefix)
        busy = cores.stop()
        origin_cpu = rig.process_cpu(origin.proc.pid) - origin_cpu0
        weed_cpu = (rig.process_cpu(weed_pid) - weed_cpu0) if weed_pid else 0.0
        requests1 = origin.requests()
        stages = json.loads((work / "stages.json").read_text()) if (work / "stages.json").exists() else None
        second, st2, out2, _ = run_archiver(config, env)
        requests2 = origin.requests() - requests1

        n = len(urls)
        rate = n / first
        print(out1.strip().split("\n\n")[0])
        print()
        print("| | wall | images/s | CPU ms/image: archiver | its workers | origin | S3 server | peak RSS: archiver | workers |")
        print("|---|---|---|---|---|---|---|---|---|")
        print(f"| archiver, first run | {first:.1f} s | **{rate:.1f}** | {st1['cpu'] * 1000 / n:.1f} | "
              f"{st1['kids_cpu'] * 1000 / n:.1f} | {origin_cpu * 1000 / n:.1f} | {weed_cpu * 1000 / n:.1f} | "
              f"{st1['rss_kb'] / 1024:.0f} MB | {st1['kids_rss_kb'] / 1024:.0f} MB |")
        print(f"| archiver, second run (no-op: {requests2} requests) | {second:.2f} s | - | - | - | - | - | "
              f"{st2['rss_kb'] / 1024:.0f} MB | - |")
        if args.naive and not args.local:
            sample = urls[: args.naive]
            client = s3.client()  # type: ignore[union-attr]
            nb = s3.make_bucket("naive")  # type: ignore[union-attr]
            o0 = rig.process_cpu(origin.proc.pid)
            w0 = rig.process_cpu(weed_pid) if weed_pid else 0.0
            res = naive.run(sample, origin.port, client, nb)
            o1 = rig.process_cpu(origin.proc.pid) - o0
            w1 = (rig.process_cpu(weed_pid) - w0) if weed_pid else 0.0
            nrate = res.images / res.seconds
            print(f"| naive script, {len(sample)} of the same URLs | {res.seconds:.1f} s | {nrate:.1f} | "
                  f"{res.cpu_seconds * 1000 / max(1, res.images):.1f} | - | {o1 * 1000 / max(1, res.images):.1f} | "
                  f"{w1 * 1000 / max(1, res.images):.1f} | - | - |")
            print(f"\narchiver / naive: {rate / nrate:.1f}x")
        print(f"core utilisation during the first run: {', '.join(f'{b:.0%}' for b in busy)} "
              f"({len(busy)} cores); requests: {requests1}")
        if stages:
            print("archiver per-stage CPU ms/image: " + ", ".join(f"{k} {v * 1000 / n:.2f}" for k, v in stages.items()))
    finally:
        if origin is not None:
            origin.stop()
        if s3 is not None:
            s3.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
