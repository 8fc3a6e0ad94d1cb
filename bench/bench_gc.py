"""Benchmark: `archiver gc` over a synthetic manifest of N archived images, local store.

    python bench/bench_gc.py [--n N] [--articles A] [--delete D]

Writes a manifest with N assets (one source URL and one 320 px WebP rendition each), A Markdown articles that use
all but D of them (by archive URL; a tenth by source URL instead, as a restored article would), and for the D
unused ones a real file per object in a local archive folder.
Then, each in a child process, on its own copy of the same state:

* `gc --dry-run --grace 0` (the plan: read every article, judge every image);
* `gc --grace 0 --max-delete 2D` (the plan, then 2D objects deleted in batches of 100 images, each batch re-reading
  the articles that changed and the manifest under the lock);
* the baseline: the same gc with batches of one image (a lock, an article walk, a transaction and a store call per
  image: what re-checking every candidate costs without batching).

Prints wall time, CPU and peak RSS (VmHWM) of each.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from archiver.manifest.sqlite import Manifest  # noqa: E402

CHILD = ("import resource, runpy, sys\n"
         "batch = int(sys.argv.pop(1))\n"
         "if batch:\n"
         "    import functools, archiver.commands.gc as g\n"
         "    g.Options = functools.partial(g.Options, batch=batch)\n"
         "sys.argv = ['archiver', *sys.argv[1:]]\n"
         "try:\n    runpy.run_module('archiver', run_name='__main__')\n"
         "finally:\n    r = resource.getrusage(resource.RUSAGE_SELF)\n"
         "    print('CPU', r.ru_utime + r.ru_stime, 'VmHWM', r.ru_maxrss, file=sys.stderr)")


def sha(i: int) -> str:
    return hashlib.sha256(f"image {i}".encode()).hexdigest()


def key(h: str, suffix: str = ".jpg") -> str:
    return f"{h[:2]}/{h[2:4]}/{h}{suffix}"


def build(folder: Path, n: int, articles: int, delete: int) -> None:
    now = time.time() - 30 * 86400
    (folder / "site").mkdir(parents=True)
    (folder / "archiver.toml").write_text('[articles]\nroot = "site"\nbase_url = "https://blog.example/"\n'
                                          '[storage]\npath = "archive"\n', encoding="utf-8")
    with Manifest.open(folder / ".archiver" / "manifest.sqlite3") as m, m._tx() as db:
        db.executemany(
            "INSERT INTO assets (sha256, format, mime, ext, bytes, width, height, frames, key, first_seen) "
            "VALUES (?, 'jpeg', 'image/jpeg', 'jpg', 100000, 1600, 1000, 1, ?, ?)",
            [(sha(i), key(sha(i)), now) for i in range(n)])
        db.executemany(
            "INSERT INTO renditions (asset, width, format, pixel_width, pixel_height, bytes, key, sha256) "
            "VALUES (?, 320, 'webp', 320, 200, 9000, ?, ?)",
            [(sha(i), key(sha(i), "-320w.webp"), sha(i)) for i in range(n)])
        db.executemany(
            "INSERT INTO urls (url, status, attempts, asset, first_seen, last_tried) "
            "VALUES (?, 'archived', 1, ?, ?, ?)",
            [(f"https://img.example/{i}.jpg", sha(i), now, now) for i in range(n)])
    used = n - delete
    per = max(1, used // articles)
    for a in range(articles):
        lines = []
        for i in range(a * per, min((a + 1) * per, used)):
            url = f"https://img.example/{i}.jpg" if i % 10 == 0 else f"/archive/{key(sha(i))}"
            lines.append(f"![image {i}]({url})\n\nSome text about image {i}.\n")
        (folder / "site" / f"post-{a:05}.md").write_text(f"---\ntitle: post {a}\n---\n{''.join(lines)}",
                                                         encoding="utf-8")
    for i in range(used, used + delete):
        for k in (key(sha(i)), key(sha(i), "-320w.webp")):
            path = folder / "archive" / k
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")


def child(folder: Path, batch: int, *args: str) -> tuple[float, str, str]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(batch), "gc", "--config", str(folder / "archiver.toml"),
                           "--grace", "0", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"gc failed: {proc.stderr}")
    usage = proc.stderr.strip().splitlines()[-1]
    summary = [line for line in proc.stdout.splitlines() if line.startswith(("deleted", "would delete"))]
    return wall, usage, summary[0] if summary else ""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--articles", type=int, default=2_000)
    ap.add_argument("--delete", type=int, default=1_000, help="unused images with objects on disk to delete")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-gc-") as tmp:
        base = Path(tmp) / "base"
        started = time.perf_counter()
        build(base, args.n, args.articles, args.delete)
        print(f"{args.n} images recorded, {args.articles} articles using {args.n - args.delete}, {args.delete} unused with "
              f"objects on disk: built in {time.perf_counter() - started:.1f} s")
        for name, batch, extra in (("plan (--dry-run)", 0, ["--dry-run"]),
                                   ("gc, batches of 100 images", 0, ["--max-delete", str(2 * args.delete)]),
                                   ("baseline: batches of 1 image", 1, ["--max-delete", str(2 * args.delete)])):
            work = Path(tmp) / name.split()[0].strip(":,")
            shutil.copytree(base, work, symlinks=True)
            wall, usage, summary = child(work, batch, *extra)
            print(f"{name:30} {wall:7.2f} s  {usage}  ({summary.split(':')[0]})")
            shutil.rmtree(work)


if __name__ == "__main__":
    main()
