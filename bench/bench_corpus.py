"""Benchmark: `archiver run` over the real article corpus, every image served by a loopback origin.

    python bench/bench_corpus.py [CORPUS_DIR] [--limit N]

It copies the corpus articles to a temp folder, changes `https://` to `http://` in the copies (the
loopback origin speaks plain HTTP; nothing else in the articles changes), collects every image URL
the finder sees, generates one distinct photo-like JPEG per URL (so every URL costs a real decode,
thumbnail and upload: no dedupe shortcut), maps every host to the origin with `[fetch] connect_to`,
and runs `archiver run` twice in a subprocess: the first run (images/s, peak RSS of the archiver
process and of its image workers) and the second (a no-op: its time and the requests it made).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from archiver.articles.files import iter_article_paths, load_article  # noqa: E402
from archiver.errors import ArchiverError  # noqa: E402
from archiver.find.refs import find_refs  # noqa: E402
from archiver.urls import resolve  # noqa: E402

BASE_URL = "http://corpus-base.example/"
FIELDS = ("headimg", "thumbnail", "cover", "image", "banner", "feature", "featured_image")


def photo_like(seed: int, size: tuple[int, int] = (800, 600)) -> bytes:
    rnd = random.Random(seed)
    im = Image.new("RGB", size)
    draw = ImageDraw.Draw(im)
    for _ in range(40):
        x0, y0 = rnd.randrange(size[0]), rnd.randrange(size[1])
        x1, y1 = x0 + rnd.randrange(40, 400), y0 + rnd.randrange(40, 300)
        draw.ellipse((x0, y0, x1, y1), fill=tuple(rnd.randrange(256) for _ in range(3)))
    im = im.filter(ImageFilter.BoxBlur(3))
    noise = Image.effect_noise(size, 24).convert("RGB")
    im = Image.blend(im, noise, 0.15)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=85)
    return out.getvalue()


def collect_urls(root: Path) -> list[str]:
    urls: set[str] = set()
    for path in iter_article_paths([root], (".md", ".markdown", ".html", ".htm")):
        try:
            article = load_article(path)
        except ArchiverError:
            continue
        for ref in find_refs(article.text, article.format, FIELDS):
            with contextlib.suppress(ArchiverError):
                urls.add(resolve(ref.url, BASE_URL))
    return sorted(urls)


class Origin:
    def __init__(self, bodies: dict[str, bytes]) -> None:
        self.bodies = bodies
        self.requests = 0
        self.port = 0
        self._ready = threading.Event()

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = self.bodies.get(request.path_qs) or self.bodies.get(request.path)
        if body is None:
            return web.Response(status=404)
        return web.Response(body=body, content_type="image/jpeg")

    def start(self) -> None:
        def serve() -> None:
            loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_route("GET", "/{tail:.*}", self._handle)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = runner.addresses[0][1]
            self._ready.set()
            loop.run_forever()

        threading.Thread(target=serve, daemon=True).start()
        self._ready.wait(10)


# Runs the CLI in a child and reports the peak RSS of that process and of its largest image worker.
# VmHWM, not ru_maxrss: on Linux ru_maxrss survives exec, so a child forked from this (large) benchmark
# process would report the benchmark's own memory. Workers' figure is an upper bound for the same reason.
_WRAPPER = """
import re, resource, sys
from archiver.cli import main
code = main(sys.argv[1:])
status = open("/proc/self/status").read()
me = int(re.search(r"VmHWM:\\s+(\\d+)", status).group(1))
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"PEAK {me} {kids}", file=sys.stderr)
raise SystemExit(code)
"""


def run_archiver(config: Path) -> tuple[float, tuple[int, int], str]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, "run", "--config", str(config), "-q"],
        capture_output=True, text=True, cwd=ROOT,
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        print(proc.stdout, proc.stderr, file=sys.stderr)
        raise SystemExit(f"archiver exited {proc.returncode}")
    peak = next(line for line in proc.stderr.splitlines() if line.startswith("PEAK ")).split()[1:]
    return elapsed, (int(peak[0]), int(peak[1])), proc.stdout


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", nargs="?", default=str(ROOT.parent / "shared" / "corpus"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="archiver-bench-"))
    try:
        site = work / "site"
        for sub in ("rsshub-hexo", "made-mistakes-jekyll", "animenews"):
            src = Path(args.corpus) / sub
            if src.exists():
                shutil.copytree(src, site / sub)
        for path in site.rglob("*"):
            if path.is_file() and path.suffix in (".md", ".markdown", ".html", ".htm"):
                data = path.read_bytes()
                path.chmod(0o644)
                path.write_bytes(data.replace(b"https://", b"http://"))
        urls = collect_urls(site)
        hosts = sorted({urlsplit(u).hostname or "" for u in urls} - {""})
        t0 = time.perf_counter()
        bodies = {}
        for u in urls:
            parts = urlsplit(u)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            bodies[path] = photo_like(int(hashlib.sha256(u.encode()).hexdigest()[:8], 16))
        print(f"{len(urls)} image URLs on {len(hosts)} hosts; generated {len(bodies)} distinct JPEGs "
              f"({sum(map(len, bodies.values())) / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")
        origin = Origin(bodies)
        origin.start()
        connect_to = ", ".join(f'"{h}" = "127.0.0.1:{origin.port}"' for h in hosts)
        config = work / "archiver.toml"
        config.write_text(
            f'[articles]\nroot = "site"\nbase_url = "{BASE_URL}"\n'
            f'[fetch]\nallow_networks = ["127.0.0.1/32"]\nconnect_to = {{ {connect_to} }}\n'
            f'retries = 0\n[storage]\nbackend = "local"\npath = "archive"\n',
            encoding="utf-8",
        )
        first, peak1, out1 = run_archiver(config)
        requests1 = origin.requests
        second, peak2, out2 = run_archiver(config)
        requests2 = origin.requests - requests1
        archived = sum(1 for _ in (work / "archive").rglob("*") if _.is_file())
        print(out1.strip())
        print()
        print("| run | wall time | images/s | requests | peak RSS: archiver process | largest image worker (upper bound) |")
        print("|---|---|---|---|---|---|")
        print(f"| first | {first:.1f} s | {len(bodies) / first:.1f} | {requests1} | {peak1[0] / 1024:.0f} MB "
              f"| {peak1[1] / 1024:.0f} MB |")
        print(f"| second (no-op) | {second:.2f} s | - | {requests2} | {peak2[0] / 1024:.0f} MB | - |")
        print(f"objects stored: {archived}; cores: {os.cpu_count()}")
        print("second run: " + " / ".join(out2.strip().splitlines()[:3]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
