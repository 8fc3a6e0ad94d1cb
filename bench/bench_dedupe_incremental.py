"""Benchmark: adding 1 000 assets to an archive of N, incremental near-duplicate search vs full recomputation.

Usage: python bench/bench_dedupe_incremental.py [--n 100000] [--add 1000] [--distance 10] [--seed 1] [--no-old]

One process, side by side: a manifest of N synthetic assets (signatures written straight into the assets
table: random pHash/dHash variants and grey thumbnails, a quarter of them near copies of earlier pictures with
0-8 bits flipped per variant, 1 % identical "blank" images) is searched once (``update_pairs``), then ``--add``
assets are added (half near copies of archived pictures) and timed:
  incremental   dedupe.update_pairs: only the new assets, against the whole archive
  rescan        dedupe.update_pairs(rescan=True): every asset again (the new path's full recomputation)
  old dedupe    grouping.build_groups over every asset from scratch (what `archiver dedupe` did before)
  groups        dedupe.groups_from_pairs from the recorded pairs (what `archiver dedupe` does now)
The last two must give the same groups (checked). Signature loading is timed on its own (both dedupes pay it).
Wall and CPU seconds; peak RSS is VmHWM, reset before each step.
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from peakmem import peak_mb, reset_peak  # noqa: E402

from archiver.dedupe.grouping import AssetInfo  # noqa: E402
from archiver.dedupe.pairs import groups_from_pairs, update_pairs  # noqa: E402
from archiver.dedupe.reference import build_groups  # noqa: E402
from archiver.image.similarity import Signature  # noqa: E402
from archiver.manifest.sqlite import Manifest  # noqa: E402
from archiver.model import SIMILARITY_RULE_VERSION  # noqa: E402

PREFER = ("area", "lossless", "bytes", "first_seen")


def measure(label: str, fn: Callable[[], object]) -> object:
    reset_peak()
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    print(f"  {label:<44} {time.perf_counter() - w:8.2f} s wall {time.process_time() - c:8.2f} s CPU "
          f"{peak_mb():7.0f} MB peak", flush=True)
    return out


def _masks(rng: np.random.Generator, shape: tuple[int, ...], max_bits: int) -> np.ndarray:
    """Random uint64 masks of up to ``max_bits`` set bits."""
    out = np.zeros(shape, dtype=np.uint64)
    k = rng.integers(0, max_bits + 1, shape[0])
    for j in range(max_bits):
        bit = np.uint64(1) << rng.integers(0, 64, shape, dtype=np.uint64)
        out |= np.where((j < k)[:, None], bit, np.uint64(0))
    return out


def synthetic(rng: np.random.Generator, n: int, base: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
              copy_share: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n signatures as (n, 8) pHash, (n, 8) dHash, (n, 64) grey: fresh pictures, near copies of ``base`` or of
    earlier rows, and 1 % one blank picture."""
    ph = rng.integers(0, 2**63, (n, 8), dtype=np.int64).astype(np.uint64) << np.uint64(1)
    dh = rng.integers(0, 2**63, (n, 8), dtype=np.int64).astype(np.uint64) << np.uint64(1)
    grey = rng.integers(0, 256, (n, 64), dtype=np.int16)
    src = base or (ph, dh, grey)
    copies = np.flatnonzero(rng.random(n) < copy_share)
    of = rng.integers(0, max(1, src[0].shape[0] if base else n), copies.size)
    if base is None:
        of = np.minimum(of, np.maximum(copies - 1, 0))  # a copy of an earlier row
    ph[copies] = src[0][of] ^ _masks(rng, (copies.size, 8), 8)
    dh[copies] = src[1][of] ^ _masks(rng, (copies.size, 8), 8)
    grey[copies] = np.clip(src[2][of] + rng.integers(-2, 3, (copies.size, 64)), 0, 255)
    blank = np.flatnonzero(rng.random(n) < 0.01)
    ph[blank], dh[blank], grey[blank] = np.uint64(0x8000000000000000), np.uint64(0), 128
    return ph, dh, grey


def insert(db: sqlite3.Connection, start: int, sigs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    ph, dh, grey = sigs
    rows = []
    for i in range(ph.shape[0]):
        sha = hashlib.sha256(str(start + i).encode()).hexdigest()
        pv = ",".join(f"{int(v):016x}" for v in ph[i])
        dv = ",".join(f"{int(v):016x}" for v in dh[i])
        w = 200 + (start + i) % 1000
        rows.append((sha, "jpeg", "image/jpeg", "jpg", 1000 + i, w, w, pv[:16], dv[:16], f"{sha}.jpg",
                     float(start + i), pv, dv, grey[i].astype(np.uint8).tobytes().hex()))
    with db:
        db.executemany("INSERT INTO assets (sha256, format, mime, ext, bytes, width, height, phash, dhash, key, "
                       "first_seen, phash_variants, dhash_variants, grey) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)


def load_infos(m: Manifest) -> list[AssetInfo]:
    return [AssetInfo(sha, fmt, size, w, h, first, Signature(tuple(pv.split(",")), tuple(dv.split(",")), grey))
            for sha, fmt, _mime, _ext, size, w, h, first, _key, _p, _d, pv, dv, grey, _c, _ch in m.asset_rows()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--add", type=int, default=1_000)
    ap.add_argument("--distance", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-old", action="store_true", help="skip the from-scratch build_groups (slow at 1 M)")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "manifest.sqlite3"
        Manifest.open(path).close()
        db = sqlite3.connect(path)
        print(f"archive of {args.n:,} assets, adding {args.add:,}, distance <= {args.distance}")
        archive = synthetic(rng, args.n, None, 0.25)
        measure(f"write {args.n:,} synthetic assets", lambda: insert(db, 0, archive))
        with Manifest.open(path) as m:
            s = measure(f"first search of the archive ({args.n:,})", lambda: update_pairs(m, args.distance))
            print(f"    {s.pairs:,} pairs")  # type: ignore[attr-defined]
            insert(db, args.n, synthetic(rng, args.add, archive, 0.5))
            s = measure(f"incremental: update_pairs, {args.add:,} new", lambda: update_pairs(m, args.distance))
            print(f"    searched {s.searched:,} against {s.archive:,}: {s.pairs:,} pairs")  # type: ignore[attr-defined]
            infos = measure("load every signature (both dedupes)", lambda: load_infos(m))
            pairs = m.recorded_pairs(args.distance, SIMILARITY_RULE_VERSION)
            new = measure("groups from the recorded pairs (dedupe now)",
                          lambda: groups_from_pairs(infos, pairs, args.distance, PREFER))  # type: ignore[arg-type]
            s = measure(f"rescan: update_pairs over all {args.n + args.add:,}",
                        lambda: update_pairs(m, args.distance, rescan=True))
            assert set(m.recorded_pairs(args.distance, SIMILARITY_RULE_VERSION)) == set(pairs), "rescan found other pairs"
            if not args.no_old:
                old = measure("old dedupe: build_groups from scratch",
                              lambda: build_groups(infos, args.distance, PREFER))  # type: ignore[arg-type]
                assert old == new, "groups differ from the from-scratch computation"
            print(f"  {len(new):,} groups; identical to the full recomputation: "  # type: ignore[arg-type]
                  f"{'yes' if not args.no_old else 'not checked (--no-old)'}")


if __name__ == "__main__":
    main()
