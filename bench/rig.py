"""The benchmark rig: realistic images, a loopback origin with latency in a process of its own, SeaweedFS, and
CPU meters (per process, per core). Shared by bench_corpus.py and naive.py.

Images are drawn like a news site's: widths from 480 to 1920 px (most 800-1280), the aspect ratios of press
photos, JPEG at quality 78-92 with 4:2:0 chroma (about 10 % progressive), and about 10 % PNG (screenshots and
graphics: flat colours, text-like strokes, a photo inset). Their content is cut from the real photographs in
the shared corpus (random crops, zooms, flips, colour and exposure shifts, noise), so JPEG sizes, decode costs
and perceptual hashes behave like real photos, and each image is distinct. They are generated once per seed and
kept in ~/.cache/archiver-bench.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageOps

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "archiver-bench"
PHOTOS = ("skimage_astronaut.png", "skimage_chelsea.png", "skimage_coffee.png", "skimage_rocket.jpg",
          "skimage_hubble_deep_field.jpg", "skimage_retina.jpg", "skimage_brick.png", "skimage_grass.png",
          "skimage_gravel.png", "skimage_camera.png", "skimage_coins.png", "pillow_flower2.jpg", "pillow_hopper.jpg",
          "imagehash_peppers.png", "skimage_ihc.png", "pillow_flower.jpg")
WIDTHS = ((480, 6), (640, 12), (800, 18), (960, 14), (1024, 14), (1200, 12), (1280, 10), (1600, 8), (1920, 6))
ASPECTS = ((4 / 3, 30), (3 / 2, 25), (16 / 9, 30), (1.0, 8), (3 / 4, 7))


def _weighted(rnd: random.Random, table: Sequence[tuple[float, int]]) -> float:
    return rnd.choices([v for v, _ in table], weights=[w for _, w in table])[0]


def _sources() -> list[Image.Image]:
    out = []
    for name in PHOTOS:
        path = CORPUS / "images" / name
        if path.exists():
            with Image.open(path) as im:
                out.append(im.convert("RGB"))
    if not out:
        raise SystemExit(f"no source photographs in {CORPUS / 'images'}")
    return out


_SRC: list[Image.Image] = []


def _photo(rnd: random.Random, size: tuple[int, int]) -> Image.Image:
    if not _SRC:
        _SRC.extend(_sources())
    src = rnd.choice(_SRC)
    w, h = size
    zoom = rnd.uniform(0.35, 1.0)
    cw = max(16, int(src.width * zoom))
    ch = max(16, min(src.height, int(cw * h / w)))
    cw = max(16, min(src.width, int(ch * w / h)))
    x, y = rnd.randint(0, src.width - cw), rnd.randint(0, src.height - ch)
    im = src.crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.BICUBIC)
    if rnd.random() < 0.5:
        im = ImageOps.mirror(im)
    im = ImageEnhance.Color(im).enhance(rnd.uniform(0.6, 1.4))
    im = ImageEnhance.Brightness(im).enhance(rnd.uniform(0.8, 1.2))
    noise = Image.effect_noise((w, h), rnd.uniform(4, 14)).convert("RGB")
    return Image.blend(im, noise, rnd.uniform(0.03, 0.08))


def _graphic(rnd: random.Random, size: tuple[int, int]) -> Image.Image:
    w, h = size
    im = Image.new("RGB", size, tuple(rnd.randrange(200, 256) for _ in range(3)))
    draw = ImageDraw.Draw(im)
    for _ in range(rnd.randint(4, 12)):
        x0, y0 = rnd.randrange(w), rnd.randrange(h)
        draw.rectangle((x0, y0, x0 + rnd.randrange(20, w // 2), y0 + rnd.randrange(10, h // 3)),
                       fill=tuple(rnd.randrange(256) for _ in range(3)))
    for row in range(rnd.randint(5, 25)):  # lines of "text"
        y = 10 + row * 18
        x = 10
        while x < w - 40 and y < h - 10:
            word = rnd.randint(8, 60)
            draw.rectangle((x, y, x + word, y + 9), fill=(30, 30, 30))
            x += word + 7
    if rnd.random() < 0.6:
        inset = _photo(rnd, (max(32, w // 3), max(32, h // 3)))
        im.paste(inset, (rnd.randrange(max(1, w - inset.width)), rnd.randrange(max(1, h - inset.height))))
    return im


@dataclass(frozen=True)
class Spec:
    seed: int
    width: int
    height: int
    fmt: str  # "jpeg" or "png"
    quality: int
    progressive: bool


def spec_for(seed: int) -> Spec:
    rnd = random.Random(seed)
    w = int(_weighted(rnd, WIDTHS))
    h = max(64, int(w / _weighted(rnd, ASPECTS)))
    png = rnd.random() < 0.10
    return Spec(seed, w, h, "png" if png else "jpeg", rnd.randint(78, 92), rnd.random() < 0.10)


def render(spec: Spec) -> bytes:
    rnd = random.Random(spec.seed * 7919 + 1)
    size = (spec.width, spec.height)
    out = io.BytesIO()
    if spec.fmt == "png":
        _graphic(rnd, size).save(out, "PNG", optimize=False, compress_level=6)
    else:
        _photo(rnd, size).save(out, "JPEG", quality=spec.quality, subsampling=2, progressive=spec.progressive,
                               optimize=spec.progressive)
    return out.getvalue()


def _render_to(args: tuple[Spec, str]) -> None:
    spec, path = args
    tmp = path + ".tmp"
    Path(tmp).write_bytes(render(spec))
    os.replace(tmp, path)


def image_set(seeds: Sequence[int]) -> dict[int, Path]:
    """One file per seed (generated once, in parallel, then cached)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    paths = {s: CACHE / f"v1-{s}.{spec_for(s).fmt[:3].replace('jpe', 'jpg')}" for s in seeds}
    todo = [(spec_for(s), str(p)) for s, p in paths.items() if not p.exists()]
    if todo:
        started = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(os.cpu_count() or 1) as pool:
            pool.map(_render_to, todo, chunksize=16)
        print(f"generated {len(todo)} images in {time.perf_counter() - started:.0f} s (cached in {CACHE})")
    return paths


# -- the origin ---------------------------------------------------------------------------------------------
_ORIGIN = """
import asyncio, json, sys
from aiohttp import web
routes = json.load(open(sys.argv[1]))
latency = float(sys.argv[2])
count = {"n": 0}
async def handle(request):
    count["n"] += 1
    await asyncio.sleep(latency)
    entry = routes.get(request.path_qs) or routes.get(request.path)
    if entry is None:
        return web.Response(status=404)
    return web.FileResponse(entry[0], headers={"Content-Type": entry[1]})
async def stats(request):
    return web.json_response(count)
app = web.Application()
app.router.add_get("/__stats", stats)
app.router.add_route("GET", "/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[3]), access_log=None, print=None)
"""


class Origin:
    """The loopback origin in a process of its own (its CPU is measured apart), answering after ``latency``."""

    def __init__(self, routes: dict[str, tuple[str, str]], latency: float) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        fd, self._routes = tempfile.mkstemp(suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(routes, f)
        self.proc = subprocess.Popen([sys.executable, "-c", _ORIGIN, self._routes, str(latency), str(self.port)])
        self._wait()

    def _wait(self) -> None:
        import urllib.request

        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/__stats", timeout=1).read()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("origin did not start")

    def requests(self) -> int:
        import urllib.request

        data = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/__stats", timeout=5).read()
        return int(json.loads(data)["n"]) - 0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        os.unlink(self._routes)


# -- CPU meters ---------------------------------------------------------------------------------------------
def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of one process, its waited-for children included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / ticks


def _core_times() -> list[tuple[int, int]]:
    out = []
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            v = [int(x) for x in line.split()[1:]]
            idle = v[3] + v[4]
            out.append((sum(v) - idle, sum(v)))
    return out


class CoreMeter:
    """Busy fraction of each core between start() and stop()."""

    def start(self) -> None:
        self._t0 = _core_times()

    def stop(self) -> list[float]:
        t1 = _core_times()
        return [(b1 - b0) / max(1, a1 - a0) for (b0, a0), (b1, a1) in zip(self._t0, t1, strict=True)]
