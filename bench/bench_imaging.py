"""Benchmark of the image stage: naive pipeline vs archiver.image.process.process, and the WebP method's cost.

Usage: python bench/bench_imaging.py [FOLDER] [--generated N] [--repeat R] [--workers W]

FOLDER defaults to /work/shared/corpus/images (its .jpg/.jpeg/.png files are used); N generated
1600×1000 baseline JPEGs (~300 KB, photo-like) are added. Both pipelines run in this one process,
one image after the other, each image R times; the best of the R runs counts. Prints a table. Then the same
images through W worker processes (default: the cores): concurrent.futures' ProcessPoolExecutor against the
pipeline's own pool (archiver.image.pool: a CPU budget per image, enforced from outside the workers).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import imagehash  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

import archiver.image.process  # noqa: E402
from archiver.config import ImagesConfig  # noqa: E402
from archiver.image.pool import default_workers, make_pool  # noqa: E402
from archiver.image.process import WEBP_METHOD, process  # noqa: E402
from archiver.model import ImageFormat  # noqa: E402

JPEG = ImageFormat("jpeg", "image/jpeg", "jpg")
PNG = ImageFormat("png", "image/png", "png")
WIDTH = 320


def naive(path: str) -> tuple[str, str, bytes]:
    """Full decode, thumbnail, hashes on the full image, default WebP encode."""
    with Image.open(path) as im:
        im.load()  # full-size decode: no draft
        im = ImageOps.exif_transpose(im)
        im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
        phash, dhash = str(imagehash.phash(im)), str(imagehash.dhash(im))
        thumb = im.copy()
        thumb.thumbnail((WIDTH, WIDTH * im.height // im.width + 1))
        buf = io.BytesIO()
        thumb.save(buf, "WEBP", quality=80)
        return phash, dhash, buf.getvalue()


def generated(folder: Path, n: int) -> list[Path]:
    """n different photo-like 1600×1000 baseline JPEGs (fractal + gradients + noise, quality 90)."""
    out = []
    for i in range(n):
        size = (1600, 1000)
        r = Image.effect_mandelbrot(size, (-2.2 + i * 0.01, -1.2, 1.0, 1.2), 60)
        g = Image.linear_gradient("L").resize(size).rotate(15 * i, expand=False)
        b = Image.blend(Image.effect_noise(size, 60).convert("L"), Image.radial_gradient("L").resize(size), 0.6)
        path = folder / f"generated_{i:03d}.jpg"
        Image.merge("RGB", (r, g, b)).save(path, "JPEG", quality=90, progressive=False)
        out.append(path)
    return out


def best_of(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def compare(paths: list[Path], repeat: int, cfg: ImagesConfig) -> tuple[float, float, float]:
    """Seconds for (naive, process(), process() with the default WebP method 4), best of `repeat` per image."""
    t_naive = t_ours = t_ours_m4 = 0.0
    for p in paths:
        fmt = PNG if p.suffix.lower() == ".png" else JPEG
        size = p.stat().st_size

        def ours(p: Path = p, fmt: ImageFormat = fmt, size: int = size) -> object:
            return process(str(p), fmt, "0" * 64, size, cfg)

        t_naive += best_of(lambda p=p: naive(str(p)), repeat)
        t_ours += best_of(ours, repeat)
        archiver.image.process.WEBP_METHOD = 4
        try:
            t_ours_m4 += best_of(ours, repeat)
        finally:
            archiver.image.process.WEBP_METHOD = WEBP_METHOD
    return t_naive, t_ours, t_ours_m4


def through_pools(paths: list[Path], repeat: int, cfg: ImagesConfig, workers: int) -> tuple[float, float]:
    """Seconds for every image through ``workers`` processes (best of ``repeat``): ProcessPoolExecutor, ImagePool."""
    import multiprocessing
    from concurrent.futures import Executor, ProcessPoolExecutor

    jobs = [(str(p), PNG if p.suffix.lower() == ".png" else JPEG, "0" * 64, p.stat().st_size, cfg) for p in paths]

    def timed(pool: Executor) -> float:
        for f in [pool.submit(process, *jobs[0]) for _ in range(2 * workers)]:  # start and warm every worker
            f.result()
        return best_of(lambda: [f.result() for f in [pool.submit(process, *job) for job in jobs]], repeat)

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as executor:
        t_executor = timed(executor)
    with make_pool(cfg.max_decode_seconds, workers) as pool:
        t_pool = timed(pool)
    return t_executor, t_pool


def webp_methods(paths: list[Path], repeat: int) -> list[tuple[str, int, float, float]]:
    """(mode, method, ms per encode, mean KB) for 320 px thumbnails, RGB and RGBA."""
    thumbs: dict[str, list[Image.Image]] = {"RGB": [], "RGBA": []}
    for p in paths:
        with Image.open(p) as im:
            t = im.convert("RGB")
            t.thumbnail((WIDTH, 10_000))
            thumbs["RGB"].append(t)
            a = t.convert("RGBA")
            a.putalpha(Image.radial_gradient("L").resize(t.size))
            thumbs["RGBA"].append(a)
    rows = []
    for mode, images in thumbs.items():
        for method in range(7):
            total, sizes = 0.0, []
            for im in images:
                buf = io.BytesIO()

                def encode(im: Image.Image = im, buf: io.BytesIO = buf, method: int = method) -> None:
                    buf.seek(0)
                    im.save(buf, "WEBP", quality=80, method=method)

                total += best_of(encode, repeat if method < 6 else 1)  # method 6 on RGBA: ~1 s each
                sizes.append(buf.tell())
            rows.append((mode, method, 1000 * total / len(images), statistics.mean(sizes) / 1024))
    return rows


def row(name: str, n: float, t_naive: float, t_ours: float, t_m4: float) -> None:
    print(f"{name:26} {n:4.0f} {n / t_naive:11.1f} {n / t_ours:13.1f} {t_naive / t_ours:5.2f}x"
          f" {n / t_m4:16.1f} {t_naive / t_m4:5.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default="/work/shared/corpus/images")
    ap.add_argument("--generated", type=int, default=20, help="generated 1600×1000 JPEGs (default 20)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per image; the best counts (default 3)")
    ap.add_argument("--workers", type=int, default=default_workers(), help="worker processes (default: the cores)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # Pillow's "malformed MPO" notice from the naive pipeline
    folder = Path(args.folder)
    real = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")) if folder.is_dir() else []
    cfg = ImagesConfig(thumbnails=(WIDTH,))
    with tempfile.TemporaryDirectory() as tmp:
        gen = generated(Path(tmp), args.generated)
        groups = {f"{folder.name}/ JPEG+PNG": real, "generated 1600x1000 JPEG": gen}
        print(f"Pillow {Image.__version__}, one process, best of {args.repeat}, thumbnails {WIDTH}px webp q80, "
              f"process() uses WebP method {WEBP_METHOD}\n")
        print(f"{'set':26} {'n':>4} {'naive img/s':>11} {'process img/s':>13} {'ratio':>6}"
              f" {'process m4 img/s':>16} {'ratio':>6}")
        totals = [0, 0.0, 0.0, 0.0]
        for name, paths in groups.items():
            if not paths:
                continue
            times = compare(paths, args.repeat, cfg)
            totals = [totals[0] + len(paths)] + [a + b for a, b in zip(totals[1:], times, strict=True)]
            row(name, len(paths), *times)
        row("all", *totals)
        kb = statistics.mean(p.stat().st_size for p in gen) / 1024 if gen else 0
        print(f"(generated JPEGs: mean {kb:.0f} KB; 'process m4' = process() with WebP method 4, naive's encoder)")
        every = real + gen
        t_executor, t_pool = through_pools(every, args.repeat, cfg, args.workers)
        print(f"\nThe {len(every)} images through {args.workers} worker processes, best of {args.repeat}:")
        print(f"  ProcessPoolExecutor {len(every) / t_executor:7.1f} img/s")
        print(f"  ImagePool (budget)  {len(every) / t_pool:7.1f} img/s  ({t_pool / t_executor - 1:+.1%} time)")
        print(f"\nWebP encode of {WIDTH}px thumbnails (quality 80), per image, over the same images:")
        print(f"{'mode':5} {'method':>6} {'ms':>8} {'mean KB':>8}")
        for mode, method, ms, kb in webp_methods(real[:10] + gen[:2], args.repeat):
            mark = "  <- process()" if method == WEBP_METHOD else ("  (Pillow default)" if method == 4 else "")
            print(f"{mode:5} {method:6d} {ms:8.2f} {kb:8.1f}{mark}")


if __name__ == "__main__":
    main()
