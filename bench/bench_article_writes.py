"""What recording every article write before its rename costs: the write-ahead step against the write it replaced.

    python bench/bench_article_writes.py [--n 2000]

Writes N small articles (about 4 KB, 5 replaced spans each) with a real manifest on disk, three ways, interleaved
article by article on three copies: the atomic write alone; the write then one manifest transaction (what a rewrite did before
the write-ahead record); and ``write_recorded`` (record, checks, rename, confirm: what every rewrite does now). Also
times the two checks for another writer: the kernel lease probe and the /proc search that stands in for it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from archiver.articles.files import load_article  # noqa: E402
from archiver.articles.journal import sha256, write_recorded  # noqa: E402
from archiver.articles.rewrite import write_atomic  # noqa: E402
from archiver.articles.writers import _lease_refused, _proc_writer  # noqa: E402
from archiver.manifest.sqlite import Manifest  # noqa: E402
from archiver.model import ArticleReplacement  # noqa: E402

URL = "http://img.example.com/2024/05/picture-{i}.jpg"
NEW = "/archive/ab/cd/abcd{i:060d}.jpg"


def _article(i: int) -> tuple[bytes, bytes, list[ArticleReplacement]]:
    body = "---\ntitle: post\n---\n" + "Some text of the article, a paragraph long enough. " * 60 + "\n"
    old, new, spans = body, body, []
    for k in range(5):
        u, n = URL.format(i=i * 10 + k), NEW.format(i=i * 10 + k)
        start = len(old) + len("![x](")
        spans.append(ArticleReplacement(start, start + len(u), u, n, u))
        old += f"![x]({u})\n"
        new += f"![x]({n})\n"
    return old.encode(), new.encode(), spans


def _setup(folder: Path, n: int) -> list[tuple[Path, bytes, list[ArticleReplacement]]]:
    folder.mkdir(parents=True)
    out = []
    for i in range(n):
        old, new, spans = _article(i)
        path = folder / f"post-{i:05d}.md"
        path.write_bytes(old)
        out.append((path, new, spans))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    n = ap.parse_args().n
    work = Path(tempfile.mkdtemp(prefix="bench-writes-"))
    try:
        ways = ("write only", "write, then record (before)", "write_recorded (now)")
        copies = {way: _setup(work / str(k), n) for k, way in enumerate(ways)}
        manifests = {way: Manifest.open(work / str(k) / "manifest.sqlite3") for k, way in enumerate(ways)}
        spent = dict.fromkeys(ways, 0.0)
        for i in range(n):  # interleaved, so that the three see the same load on a shared machine
            for way in ways:
                path, new, spans = copies[way][i]
                m = manifests[way]
                started = time.perf_counter()
                article = load_article(path)
                if way == "write only":
                    write_atomic(path, new, expected=article.raw)
                elif way.startswith("write, then"):
                    write_atomic(path, new, expected=article.raw)
                    m.record_article(str(path), sha256(article.raw), sha256(new), spans)
                else:
                    write_recorded(m, article, new, [spans], "archive")
                spent[way] += time.perf_counter() - started
        for m in manifests.values():
            m.close()
        results = {way: total / n * 1000 for way, total in spent.items()}
        for way, ms in results.items():
            print(f"{way:30s} {ms:6.3f} ms per article")
        probe = work / "probe.md"
        probe.write_bytes(b"x")
        fd = os.open(probe, os.O_RDONLY)
        try:
            started = time.perf_counter()
            for _ in range(10_000):
                _lease_refused(fd)
            lease = (time.perf_counter() - started) / 10_000 * 1e6
            started = time.perf_counter()
            for _ in range(50):
                _proc_writer(fd)
            proc = (time.perf_counter() - started) / 50 * 1e3
        finally:
            os.close(fd)
        fds = sum(len(os.listdir(f"/proc/{p}/fd")) for p in os.listdir("/proc") if p.isdigit()
                  and os.access(f"/proc/{p}/fd", os.R_OK))
        print(f"lease probe {lease:.1f} us; /proc search {proc:.2f} ms over {fds} open file descriptors")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
