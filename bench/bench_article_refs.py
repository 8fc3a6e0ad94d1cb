"""Benchmark: peak memory and time of `archiver run` over ONE article holding N image references.

    python bench/bench_article_refs.py [N ...] [--unique U] [--format markdown|html]

Writes one article with N references (alternating Markdown images and <img> tags; in the html format, <img>
tags only) to U distinct tiny JPEGs served by a loopback origin, and runs `archiver run` in a child process
twice: the first run (fetches the U images and rewrites the article) and the second (nothing new). Prints the
wall time and the peak RSS (VmHWM) of the archiver process for each N. An article over ``[articles] max_refs``
(default 20 000) is skipped and reported: ``--extra 'max_refs = 1000000'`` lifts the bound.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from bench_corpus import Origin, run_archiver  # noqa: E402


def tiny_jpeg(seed: int) -> bytes:
    im = Image.new("RGB", (16, 12), ((seed * 37) % 256, (seed * 91) % 256, (seed * 13) % 256))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=60)
    return out.getvalue()


def article(n: int, unique: int, fmt: str) -> bytes:
    lines = []
    for i in range(n):
        url = f"http://img.test/r/{i % unique}.jpg"
        if fmt == "html" or i % 2:
            lines.append(f'<p><img src="{url}" alt="{i}"></p>')
        else:
            lines.append(f"![{i}]({url})")
    head = "<!DOCTYPE html>\n<html><body>\n" if fmt == "html" else "---\ntitle: many\n---\n"
    return (head + "\n\n".join(lines) + "\n").encode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("counts", nargs="*", type=int, default=[100_000, 1_000_000])
    ap.add_argument("--unique", type=int, default=100)
    ap.add_argument("--format", choices=("markdown", "html"), default="markdown")
    ap.add_argument("--extra", default="", help="extra TOML for the [articles] section, e.g. 'max_refs = 1000000'")
    args = ap.parse_args()
    origin = Origin({f"/r/{i}.jpg": tiny_jpeg(i) for i in range(args.unique)})
    origin.start()
    print(f"{'refs':>9} {'format':8} {'article MB':>10} {'run':6} {'wall s':>7} {'peak RSS MB':>11}")
    for n in args.counts:
        with tempfile.TemporaryDirectory() as tmp:
            site = Path(tmp) / "site"
            site.mkdir()
            raw = article(n, args.unique, args.format)
            (site / ("many.html" if args.format == "html" else "many.md")).write_bytes(raw)
            config = Path(tmp) / "archiver.toml"
            config.write_text(
                f'[articles]\nroot = "site"\n{args.extra}\n'
                f'[fetch]\nallow_networks = ["127.0.0.1/32"]\nconnect_to = {{ "img.test" = "127.0.0.1:{origin.port}" }}\n',
                encoding="utf-8",
            )
            for label in ("first", "second"):
                elapsed, (peak_kb, _), out = run_archiver(config)
                print(f"{n:9,} {args.format:8} {len(raw) / 1e6:10.1f} {label:6} {elapsed:7.1f} "
                      f"{peak_kb / 1024:11.0f}", flush=True)
                skipped = [x.strip() for x in out.splitlines() if x.strip().startswith("[skipped]")]
                if skipped and label == "first":
                    print(f"{'':9} {skipped[0][:110]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
