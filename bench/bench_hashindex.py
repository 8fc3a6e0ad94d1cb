"""Benchmark of archiver.dedupe.index: brute force vs the index, 1 M uniform and real-derived hashes, incremental add.

Usage: python bench/bench_hashindex.py [--n 1000000] [--brute 100000] [--bases 2000] [--workers 0] [--cache F]
                                      [--engines compiled,numpy]

Everything runs in this one process, one step after the other, each search with both engines: the
compiled loop (numba) and the pure-numpy fallback. The numba JIT cost is measured first in two child
processes: a cold compile (empty cache dir) and a warm start (the on-disk cache the first one wrote). Wall and CPU seconds are printed (CPU
above wall means both cores worked); peak RSS is VmHWM, reset before each step via /proc/self/clear_refs.
Real-derived hashes: pHash (imagehash.phash, 64-bit) of BASES generated photo-like images plus the real
photos in /work/shared/corpus/images, expanded to N by flipping 0-12 random bits of a random base, plus
20 000 planted exact duplicates and 5 000 copies each of 0x0 and 0xffffffffffffffff (blank images).
Pairs there are counted from distinct-value pairs and group sizes, without materialising every id pair.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from peakmem import peak_mb, reset_peak  # noqa: E402

from archiver.dedupe.index import HashIndex, brute_force_pairs  # noqa: E402

CORPUS = Path("/work/shared/corpus/images")
U64_MAX = np.iinfo(np.uint64).max


def measure(fn: Callable[[], object]) -> tuple[object, float, float, float]:
    reset_peak()
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c, peak_mb()


def flip(rng: np.random.Generator, h: np.ndarray, max_bits: int) -> np.ndarray:
    """Each hash with 0..max_bits distinct random bits flipped (vectorised: random keys, take the smallest)."""
    n = rng.integers(0, max_bits + 1, h.size)
    ranks = np.argsort(rng.random((h.size, 64)), axis=1).argsort(axis=1)  # a random permutation per row
    bits = (ranks < n[:, None]).astype(np.uint64) << np.arange(64, dtype=np.uint64)
    return h ^ np.bitwise_or.reduce(bits, axis=1)


def uniform(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform hashes with 1 % planted near-duplicates (0-8 bits flipped)."""
    h = rng.integers(0, U64_MAX, n, dtype=np.uint64, endpoint=True)
    k = n // 100
    h[:k] = flip(rng, h[rng.integers(k, n, k)], 8)
    return rng.permutation(h)


def real_bases(count: int, cache: Path | None) -> np.ndarray:
    if cache and cache.exists():
        return np.load(cache)
    import imagehash
    from PIL import Image

    from tests.support.images import make_rgb

    hashes = []
    for path in sorted(CORPUS.glob("*")):
        if path.suffix.lower() in {".jpg", ".jpeg", ".png", ".gif", ".webp"}:
            with Image.open(path) as im:
                hashes.append(str(imagehash.phash(im.convert("RGB"))))
    for seed in range(count):
        hashes.append(str(imagehash.phash(make_rgb(192, 128, seed))))
    out = np.array([int(x, 16) for x in hashes], dtype=np.uint64)
    if cache:
        np.save(cache, out)
    return out


def real_derived(rng: np.random.Generator, bases: np.ndarray, n: int) -> np.ndarray:
    rest = n - 30_000
    h = flip(rng, bases[rng.integers(0, bases.size, rest)], 12)
    dups = h[rng.integers(0, rest, 20_000)]
    blank = np.r_[np.zeros(5000, np.uint64), np.full(5000, U64_MAX, np.uint64)]
    return rng.permutation(np.concatenate([h, dups, blank]))


JIT_PROBE = """
import time, numpy as np
t = time.perf_counter()
from archiver.dedupe.index import HashIndex
t1 = time.perf_counter()
HashIndex.build(np.arange(100, dtype=np.uint64), 10, engine="compiled").pairs()
t2 = time.perf_counter()
HashIndex.build(np.arange(100, dtype=np.uint64), 10, engine="compiled").pairs()
print(t1 - t, t2 - t1, time.perf_counter() - t2)
"""


def jit_cost() -> list[tuple[str, float, float, float]]:
    """(label, import s, first search s, second search s) in a child process: cold cache, then warm."""
    root = Path(__file__).resolve().parent.parent
    out = []
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(root)}
        for label in ("cold (compile)", "warm (cache)"):
            res = subprocess.run([sys.executable, "-c", JIT_PROBE], env=env, capture_output=True, text=True,
                                 check=True)
            imp, first, second = map(float, res.stdout.split())
            out.append((label, imp, first, second))
    return out


def count_pairs(index: HashIndex) -> tuple[int, int, int]:
    """(distinct-value pairs, id pairs, largest group of identical hashes) without listing id pairs."""
    sizes = np.diff(index.starts)
    values = ids = 0
    for u, v, _ in index.iter_value_pairs():
        values += u.size
        ids += int((sizes[u] * sizes[v]).sum())
    ids += int((sizes * (sizes - 1) // 2).sum())
    return values, ids, int(sizes.max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--brute", type=int, default=100_000)
    ap.add_argument("--bases", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=None, help="npy file caching the real-derived base pHashes")
    ap.add_argument("--engines", default="compiled,numpy", help="comma-separated: compiled, numpy")
    args = ap.parse_args()
    engines = args.engines.split(",")
    if "compiled" in engines:
        for label, imp, first, second in jit_cost():
            print(f"numba JIT {label:<15} import {imp:.2f} s, first search {first:.2f} s, "
                  f"second {second:.3f} s (100 hashes)", flush=True)
    rng = np.random.default_rng(2026)
    rows: list[tuple[str, str, float, float, float, str]] = []

    def row(name: str, k: int | str, fn: Callable[[], object], note: Callable[[object], str]) -> object:
        out, wall, cpu, peak = measure(fn)
        rows.append((name, str(k), wall, cpu, peak, note(out)))
        print(f"{name:<44} k={k!s:<3} {wall:8.2f} s wall {cpu:8.2f} s cpu {peak:8.0f} MB  {note(out)}", flush=True)
        return out

    small = uniform(rng, args.brute)
    bf = row(f"brute force numpy, {args.brute:,} uniform", 10, lambda: brute_force_pairs(small, 10),
             lambda r: f"{len(r[0]):,} pairs")
    for engine in engines:
        ix = row(f"HashIndex build+pairs, {args.brute:,} uniform [{engine}]", 10,
                 lambda e=engine: HashIndex.build(small, 10, args.workers, e).pairs(),
                 lambda r: f"{len(r[0]):,} pairs")
        assert np.array_equal(bf[0], ix[0]) and np.array_equal(bf[1], ix[1]), "index disagrees with brute force"
        print(f"  speed-up over brute force [{engine}]: {rows[0][2] / rows[-1][2]:.1f}x (wall)")

    big = uniform(rng, args.n)
    bases = real_bases(args.bases, args.cache)
    real = real_derived(rng, bases, args.n)
    del bf, ix
    for label, data in ((f"{args.n:,} uniform + 1% near-dups", big), (f"{args.n:,} real-derived", real)):
        for k in (8, 10):
            for engine in engines:
                index = None
                index = row(f"build {label} [{engine}]", k,
                            lambda d=data, k=k, e=engine: HashIndex.build(d, k, args.workers, e),
                            lambda r: f"{r.values.size:,} distinct")
                row(f"all pairs {label} [{engine}]", k, lambda i=index: count_pairs(i),
                    lambda r: f"{r[0]:,} value pairs, {r[1]:,} id pairs, biggest identical group {r[2]:,}")
    del big, index
    new = flip(rng, real[rng.integers(0, real.size, 1000)], 12)
    index = HashIndex.build(real, 10, args.workers, engines[0])
    print(f"incremental steps below use the {engines[0]} engine")
    row("query 1,000 new vs index (real-derived)", 10, lambda: index.query(new), lambda r: f"{len(r[0]):,} pairs")
    row("add 1,000: query + pairs among new + rebuild", 10, lambda: index.add(new),
        lambda r: f"{len(r[1]):,} pairs involving new ids")
    row("rebuild index from scratch", 10, lambda: HashIndex.build(real, 10, args.workers, engines[0]),
        lambda r: "")
    path = Path("/tmp/bench_hashindex.npz")
    row("save (npz of hashes)", 10, lambda: index.save(path), lambda r: f"{path.stat().st_size / 1e6:.0f} MB")
    row("load (rebuilds layouts)", 10, lambda: HashIndex.load(path, engine=engines[0]), lambda r: "")
    path.unlink()

    print("\n| step | k | wall s | cpu s | peak RSS MB | result |\n|---|---|---|---|---|---|")
    for name, k, wall, cpu, peak, note in rows:
        print(f"| {name} | {k} | {wall:.2f} | {cpu:.2f} | {peak:.0f} | {note} |")


if __name__ == "__main__":
    main()
