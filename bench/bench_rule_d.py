"""Benchmark: rule D's framed distance (zf, ``similarity._framed_many``), this tree side by side with another revision.

Usage: python bench/bench_rule_d.py [--pairs 5000] [--baseline REV] [--grids FILE.npz] [--seed 1]

Rule D is measured for every candidate pair whose identity pHashes are within the distance and that no other rule
accepts. In a rescan of the synthetic 10 M archive (``bench_dedupe_add_at_scale.py --rescan``) those are
look-alikes of unrelated random grey thumbnails: ~3 % of the candidates, and most of the confirming time before this
benchmark's round. The pairs measured here are the same kind by default: two grey thumbnails of 64 cells drawn at
random (``bench_dedupe_incremental.synthetic``'s grey), plus a quarter near copies (each cell moved by -2..2) so that
some pairs are accepted. ``--grids`` reads pairs saved from a real search instead (arrays ``ga`` and ``gb``, (n, 64)).

Each implementation (``--baseline``'s ``archiver/`` extracted by ``git archive``, then this tree's) runs in a child
process: numba's first call (compiling or loading its cache) is made apart, then every pair is measured on one
thread (``framing.framed_many``: CPU per pair) and through ``_framed_many`` (a thread per core: wall and CPU). The
numbers must be equal bit for bit across implementations (checked: a digest of their bytes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

CHILD = r"""
import hashlib, json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from archiver.image import framing, similarity as S
d = np.load(sys.argv[2])
ga, gb = d["ga"], d["gb"]
assert framing.AVAILABLE
S._framed_many(ga[:4], gb[:4])  # numba: compiled or loaded from its cache
out = np.empty(len(ga))
c = time.process_time()
framing.framed_many(ga, gb, S._CROPS, S._FRAMED_KEEP, S.TONE_FLOOR, out)
one = time.process_time() - c
t, c = time.perf_counter(), time.process_time()
zf = S._framed_many(ga, gb)
wall, cpu = time.perf_counter() - t, time.process_time() - c
assert np.array_equal(zf, out)
print(json.dumps({"one": one, "wall": wall, "cpu": cpu, "digest": hashlib.sha256(zf.tobytes()).hexdigest()[:16],
                  "accepted": int(((zf >= 0) & (zf <= S.FRAMED_CONFIRMED)).sum())}))
"""


def grids(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ga = rng.integers(0, 256, (n, 64), dtype=np.int16)
    gb = rng.integers(0, 256, (n, 64), dtype=np.int16)
    near = rng.random(n) < 0.25
    gb[near] = np.clip(ga[near] + rng.integers(-2, 3, (int(near.sum()), 64)), 0, 255)
    return ga, gb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=5000)
    ap.add_argument("--baseline")
    ap.add_argument("--grids", type=Path)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-rule-d-") as tmp_:
        tmp = Path(tmp_)
        if args.grids:
            d = np.load(args.grids)
            ga, gb = d["ga"][:args.pairs], d["gb"][:args.pairs]
        else:
            ga, gb = grids(args.pairs, args.seed)
        np.savez(tmp / "grids.npz", ga=ga, gb=gb)
        impls = {"this tree": HERE.parent}
        if args.baseline:
            base = tmp / "baseline"
            base.mkdir()
            subprocess.run(f"git -C {HERE.parent} archive {args.baseline} archiver | tar -x -C {base}", shell=True,
                           check=True)
            impls = {f"baseline {args.baseline}": base, **impls}
        print(f"{len(ga)} pairs ({'from ' + str(args.grids) if args.grids else 'random grids, a quarter near copies'})")
        digests = set()
        for name, root in impls.items():
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", CHILD, str(root), str(tmp / "grids.npz")], check=True,
                                 capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            digests.add(r["digest"])
            print(f"  {name:<22} one thread {r['one'] / len(ga) * 1e3:6.3f} ms CPU a pair;  a thread per core "
                  f"{r['wall']:6.2f} s wall {r['cpu']:6.2f} s CPU;  {r['accepted']} accepted, zf digest {r['digest']}"
                  f"  ({time.perf_counter() - t:.0f} s with start-up)", flush=True)
        if len(digests) > 1:
            sys.exit("the implementations' numbers differ")
        if len(impls) > 1:
            print("  the same numbers bit for bit")


if __name__ == "__main__":
    main()
