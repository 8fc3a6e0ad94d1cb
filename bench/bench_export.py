"""Benchmark: `archiver export` over a synthetic manifest of N archived images (time and peak RSS of the child).

    python bench/bench_export.py [--n N] [--placeholders P]

Writes a manifest with N assets (one source URL and one 320 px WebP rendition each), in one transaction, and runs
`archiver export` in a child process: JSON without placeholders for N, then JSON with placeholders for the first P
(each one a real 320x200 WebP thumbnail in a local archive folder, read and reduced to a 16 px WebP data URI).
Prints wall time, entries per second and the peak RSS (VmHWM) of the archiver process.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from archiver.manifest.sqlite import Manifest  # noqa: E402
from archiver.model import Outcome  # noqa: E402

PEAK = ("import resource, runpy, sys; sys.argv = ['archiver', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('archiver', run_name='__main__')\n"
        "finally:\n    r = resource.getrusage(resource.RUSAGE_SELF)\n"
        "    print('CPU', r.ru_utime + r.ru_stime, 'VmHWM', r.ru_maxrss, file=sys.stderr)")


def thumbnail(seed: int) -> bytes:
    im = Image.effect_noise((320, 200), 40 + seed % 50).convert("RGB")
    out = io.BytesIO()
    im.save(out, "WEBP", quality=80)
    return out.getvalue()


def build(folder: Path, n: int, with_files: int) -> None:
    path = folder / ".archiver" / "manifest.sqlite3"
    with Manifest.open(path) as m:
        m.record_url("https://cdn.example.com/dead.jpg", Outcome.DEAD, reason="404 Not Found")
    shas = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)]
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO assets (sha256, format, mime, ext, bytes, width, height, key, first_seen) "
                       "VALUES (?, 'jpeg', 'image/jpeg', 'jpg', ?, 1600, 1000, ?, ?)",
                       [(s, 100_000 + i, f"{s[:2]}/{s[2:4]}/{s}.jpg", 1.7e9 + i) for i, s in enumerate(shas)])
        db.executemany("INSERT INTO renditions (asset, width, format, pixel_width, pixel_height, bytes, key) "
                       "VALUES (?, 320, 'webp', 320, 200, 10, ?)", [(s, f"{s[:2]}/{s[2:4]}/{s}-320w.webp") for s in shas])
        db.executemany("INSERT INTO urls (url, status, attempts, asset, first_seen, last_tried) "
                       "VALUES (?, 'archived', 1, ?, 0, 0)",
                       [(f"https://cdn.example.com/images/{i:07d}/photo.jpg", s) for i, s in enumerate(shas)])
    thumbs = [thumbnail(i) for i in range(16)]
    for i, s in enumerate(shas[:with_files]):
        target = folder / "archive" / s[:2] / s[2:4] / f"{s}-320w.webp"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(thumbs[i % len(thumbs)])
    (folder / "archiver.toml").write_text('[storage]\nbackend = "local"\npath = "archive"\n', encoding="utf-8")


def export(folder: Path, *extra: str) -> tuple[float, float, int, int]:
    out = folder / "images.json"
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PEAK, "export", "--config", str(folder / "archiver.toml"), *extra,
                           str(out)], capture_output=True, text=True, cwd=ROOT, check=True)
    took = time.perf_counter() - started
    peak = int(proc.stderr.split("VmHWM")[-1].split()[0])
    cpu = float(proc.stderr.split("CPU")[-1].split()[0])
    return took, cpu, peak, out.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--placeholders", type=int, default=2_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big"
        build(big, args.n, 0)
        took, cpu, peak, size = export(big, "--no-placeholders")
        print(f"{args.n} entries, no placeholders: {took:.1f} s wall, {cpu:.1f} s CPU ({args.n / cpu:,.0f}/CPU-s), "
              f"peak RSS {peak / 1024:.0f} MB, {size / 1e6:.1f} MB of JSON")
        small = Path(tmp) / "small"
        build(small, args.placeholders, args.placeholders)
        took, cpu, peak, size = export(small)
        print(f"{args.placeholders} entries with placeholders: {took:.1f} s wall, {cpu:.1f} s CPU "
              f"({1000 * cpu / args.placeholders:.2f} ms CPU each), peak RSS {peak / 1024:.0f} MB, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
