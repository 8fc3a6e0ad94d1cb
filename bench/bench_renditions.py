"""Benchmark of responsive renditions: the cost per image of each width and format, and of whole configurations.

Usage: python bench/bench_renditions.py [--generated N] [--repeat R]

N generated 1600×1000 baseline JPEGs (~300 KB, photo-like, as bench_imaging.py makes them). In this one process,
each image R times, the best of the R runs counts, in CPU time of the process (the machine is shared):

1. per width and format: the resize from the decoded image (JPEG draft at the scale that width needs) and the
   encode of that rendition, in ms per image, and its size in KB;
2. AVIF encoder speeds at 640 px (archiver.image.process.AVIF_SPEED is the one used);
3. the whole of archiver.image.process.process (decode, hashes, every rendition) per image for a few
   [images] thumbnails/formats configurations.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_imaging import generated  # noqa: E402
from PIL import Image  # noqa: E402

from archiver.config import ImagesConfig  # noqa: E402
from archiver.image.process import AVIF_SPEED, encode, process  # noqa: E402
from archiver.model import ImageFormat  # noqa: E402

JPEG = ImageFormat("jpeg", "image/jpeg", "jpg")
WIDTHS = (320, 640, 1280)
FORMATS = ("webp", "avif", "jpeg", "png")
CONFIGS = (
    ((320,), ("webp",)),
    ((320, 640, 1280), ("webp",)),
    ((320, 640, 1280), ("jpeg",)),
    ((320, 640, 1280), ("avif",)),
    ((320, 640, 1280), ("webp", "avif")),
)


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """CPU seconds of this process for ``fn`` (the encoders run on one thread), the best of ``repeat`` runs: on a
    machine shared with other work, wall time measures the neighbours too."""
    times = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times)


def decoded(path: Path, width: int) -> Image.Image:
    """The image as process() decodes it for a rendition ``width`` px wide (draft, then RGB)."""
    im = Image.open(path)
    im.draft("RGB", (width, round(width * im.height / im.width)))
    return im.convert("RGB")


def per_rendition(paths: list[Path], repeat: int) -> list[tuple[int, str, float, float, float]]:
    """(width, format, resize ms, encode ms, KB) per image, averaged over the images."""
    out = []
    for width in WIDTHS:
        resize_s = 0.0
        enc: dict[str, list[float]] = {f: [0.0, 0.0] for f in FORMATS}
        for p in paths:
            big = decoded(p, width)
            size = (width, round(width * big.height / big.width))
            resize_s += best_of(lambda big=big, size=size: big.resize(size, Image.Resampling.LANCZOS), repeat)
            small = big.resize(size, Image.Resampling.LANCZOS)
            for fmt in FORMATS:
                enc[fmt][0] += best_of(lambda small=small, fmt=fmt: encode(small.copy(), fmt, 80), repeat)
                enc[fmt][1] += len(encode(small.copy(), fmt, 80))
        n = len(paths)
        for fmt in FORMATS:
            out.append((width, fmt, resize_s / n * 1000, enc[fmt][0] / n * 1000, enc[fmt][1] / n / 1024))
    return out


def avif_speeds(paths: list[Path], repeat: int) -> list[tuple[int, float, float]]:
    out = []
    for speed in (6, 8, 10):
        t = size = 0.0
        for p in paths:
            big = decoded(p, 640)
            small = big.resize((640, round(640 * big.height / big.width)), Image.Resampling.LANCZOS)

            def run(small: Image.Image = small, speed: int = speed) -> bytes:
                buf = io.BytesIO()
                small.save(buf, "AVIF", quality=80, speed=speed, max_threads=1)
                return buf.getvalue()

            t += best_of(run, repeat)
            size += len(run())
        out.append((speed, t / len(paths) * 1000, size / len(paths) / 1024))
    return out


def whole(paths: list[Path], repeat: int) -> list[tuple[str, float]]:
    out = []
    for widths, formats in CONFIGS:
        cfg = ImagesConfig(thumbnails=widths, formats=formats)
        t = sum(best_of(lambda p=p, cfg=cfg: process(str(p), JPEG, "0" * 64, p.stat().st_size, cfg), repeat) for p in paths)
        out.append((f"thumbnails = {list(widths)}, formats = {list(formats)}", t / len(paths) * 1000))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generated", type=int, default=8, help="generated 1600×1000 JPEGs (default 8)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per image; the best counts (default 3)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = generated(Path(tmp), args.generated)
        print(f"{len(paths)} generated 1600x1000 JPEGs, best of {args.repeat}, one process, CPU time\n")
        print("| width | format | resize ms | encode ms | KB |")
        print("|---:|---|---:|---:|---:|")
        for width, fmt, r, e, kb in per_rendition(paths, args.repeat):
            print(f"| {width} | {fmt} | {r:.1f} | {e:.1f} | {kb:.1f} |")
        print("\n| AVIF speed (640 px) | encode ms | KB |\n|---:|---:|---:|")
        for speed, ms, kb in avif_speeds(paths, args.repeat):
            print(f"| {speed}{' (used)' if speed == AVIF_SPEED else ''} | {ms:.1f} | {kb:.1f} |")
        print("\n| process() per image | ms |\n|---|---:|")
        for name, ms in whole(paths, args.repeat):
            print(f"| {name} | {ms:.1f} |")


if __name__ == "__main__":
    main()
