"""Benchmark: adding 1 000 images to an archive of 10 M, this tree's near-duplicate search + record side by side with
another revision's, on one copy of the archive.

Usage: python bench/bench_dedupe_add_at_scale.py --dir DIR [--n 10000000] [--add 1000] [--batches 2] [--rounds 2]
                                                  [--baseline REV] [--check]

The archive is bench_dedupe_incremental's synthetic signatures (seed 1: random pHash/dHash variants and grey
thumbnails, a quarter near copies of earlier pictures, 1 % one blank picture), written once into DIR/m.sqlite3 and
kept there between invocations (10 M: ~18 min to write, 9 GB; its index ~4 min, 8 GB). Every archived asset is
marked searched at distance 10 under the current rule WITHOUT being searched: the pairs among the archived images
are not computed (the first search of 10 M would take hours on this machine). A run adding k images searches those k
against the on-disk index and records their rows; it neither reads nor depends on the older rows, so what it costs
is what this benchmark measures. The index is built once from the manifest (time, peak and size reported).

Then, per batch of ``--add`` new images (half near copies of archived pictures): the batch is inserted; per round,
per implementation (this tree, and ``--baseline``'s ``archiver/`` extracted by ``git archive``, which must read the
same index format): the batch is marked unsearched and its rows deleted, and ``update_pairs`` runs in a fresh child
process (numba's start-up, ``tables.warm``, measured apart). The first run after inserting a batch also appends it to
the index. The batch's rows must be equal across implementations (checked). ``--check`` also compares the batch's
candidate class pairs (``VariantIndex.candidates``) with comparing every variant by the compiled brute force.
``--sample N`` times the candidate search of N archived classes drawn at random against the whole index (this tree
only), for an estimate of what searching all of them (a first search, a rescan) would cost through the tables.

``--rescan`` runs ``archiver dedupe --rescan``'s search (``update_pairs(rescan=True)``: every asset searched against
the whole archive, every pair confirmed and recorded) on this tree, in a child process: its wall and CPU time per
stage, peak RSS, the rows recorded and their digest. The archive then holds every pair, which the batches above do
not read. ``--whole-sample N`` times, for this tree and ``--baseline`` side by side, the search of the identity
pHashes of N archived classes drawn at random against the largest segment's table of every pHash variant
(``Table.search``: what a whole-archive search asks of it, for one hash kind), and scales it to all of them: exact
for the baseline, whose probes cost the same per query whatever their number; this tree sweeps its tables for that
many queries (``kernel.sweep``), at a cost that does not scale down with fewer queries: this tree's is timed on all of them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, os.environ.get("BENCH_ARCHIVER_ROOT") or str(HERE.parent))

from bench_dedupe_incremental import du, implementations, insert, synthetic  # noqa: E402
from peakmem import peak_mb  # noqa: E402

from archiver.manifest.sqlite import Manifest  # noqa: E402

DISTANCE = 10


def _batch(db: sqlite3.Connection, n: int, add: int, b: int) -> list[str]:
    return [r[0] for r in db.execute("SELECT sha256 FROM assets WHERE id > ? AND id <= ?",
                                     (n + b * add, n + (b + 1) * add))]


def child(path: Path, shas_file: Path) -> None:
    """update_pairs in this process; its figures and the digest of the batch's rows as one JSON line."""
    from archiver.dedupe import tables
    from archiver.dedupe.pairs import update_pairs

    out: dict[str, object] = {}
    w, c = time.perf_counter(), time.process_time()
    if hasattr(tables, "warm"):
        tables.warm()
    out.update(startup_wall=round(time.perf_counter() - w, 3), startup_cpu=round(time.process_time() - c, 3))
    w, c = time.perf_counter(), time.process_time()
    with Manifest.open(path) as m:
        s = update_pairs(m, DISTANCE)
    out.update(wall=time.perf_counter() - w, cpu=time.process_time() - c, peak_mb=peak_mb(), searched=s.searched,
               archive=s.archive, pairs=s.pairs)
    shas = json.loads(shas_file.read_text())
    db = sqlite3.connect(path)
    rows = sorted(r for part in range(0, len(shas), 500) for r in db.execute(
        "SELECT a, b, phash_distance, dhash_distance, transform, min_distance FROM near_duplicates "
        f"WHERE a IN ({','.join('?' * len(shas[part:part + 500]))}) OR b IN ({','.join('?' * len(shas[part:part + 500]))})",
        shas[part:part + 500] * 2))
    db.close()
    out["rows_digest"] = hashlib.sha256(repr(sorted(set(rows))).encode()).hexdigest()[:16]
    print(json.dumps(out), flush=True)


def check(path: Path, shas_file: Path) -> None:
    """The batch's candidate class pairs from the index against comparing every variant (compiled brute force)."""
    from concurrent.futures import ThreadPoolExecutor

    from archiver.dedupe import kernel
    from archiver.dedupe.segments import T, VariantIndex

    shas = json.loads(shas_file.read_text())
    with Manifest.open(path) as m:
        index = VariantIndex.open(m)
        ids = np.array(sorted(m.asset_ids(set(shas)).values()), dtype=np.int64)
        q = np.unique(index.classes_of(ids))
        x, y = index.candidates(q, DISTANCE)
        want: set[tuple[int, int]] = set()
        every = np.arange(index.classes)
        for kind in ("ph", "dh"):
            v = index.variants(kind, every)
            flat, identity, vq = np.ascontiguousarray(v.ravel()), np.ascontiguousarray(v[:, 0]), v[q]
            del v
            parts = np.array_split(np.arange(q.size), 2)
            jobs = [(np.ascontiguousarray(vq[p, 0]), flat) for p in parts] + \
                   [(np.ascontiguousarray(vq[p, 1:]).ravel(), identity) for p in parts]
            with ThreadPoolExecutor(2) as pool:  # the compiled loop releases the GIL
                found = list(pool.map(lambda job: kernel.all_near(job[0], job[1], DISTANCE), jobs))
            for part, (qi, e) in zip(parts, found[:2], strict=True):
                want |= set(zip(q[part][qi].tolist(), (e // T).tolist(), strict=True))
            for part, (qi, e) in zip(parts, found[2:], strict=True):
                want |= set(zip(q[part][qi // (T - 1)].tolist(), e.tolist(), strict=True))
    want = {(min(a, b), max(a, b)) for a, b in want if a != b}
    got = set(zip(x.tolist(), y.tolist(), strict=True))
    print(json.dumps({"equal": got == want, "candidates": len(got), "brute_force": len(want)}), flush=True)


def rescan(path: Path) -> None:
    """update_pairs(rescan=True) in this process, its stages timed; one JSON line."""
    from archiver.dedupe import pairs, segments, tables

    tables.warm()
    stages: dict[str, list[float]] = {}

    def timed(name: str, f):  # type: ignore[no-untyped-def]
        def g(*a, **k):  # type: ignore[no-untyped-def]
            w, c = time.perf_counter(), time.process_time()
            try:
                return f(*a, **k)
            finally:
                s = stages.setdefault(name, [0.0, 0.0])
                s[0] += time.perf_counter() - w
                s[1] += time.process_time() - c
        return g

    segments.VariantIndex.candidates = timed("candidates", segments.VariantIndex.candidates)  # type: ignore[method-assign]
    Manifest.record_pair_search = timed("record", Manifest.record_pair_search)  # type: ignore[method-assign]
    Manifest.unsearched = timed("unsearched", Manifest.unsearched)  # type: ignore[method-assign]
    if hasattr(Manifest, "unsearched_ids"):  # what update_pairs reads since 2026-12-06 (the ids alone)
        Manifest.unsearched_ids = timed("unsearched", Manifest.unsearched_ids)  # type: ignore[method-assign]
    pairs.class_heads = timed("heads", pairs.class_heads)
    w, c = time.perf_counter(), time.process_time()
    with Manifest.open(path) as m:
        s = pairs.update_pairs(m, DISTANCE, rescan=True)
    out: dict[str, object] = {"wall": time.perf_counter() - w, "cpu": time.process_time() - c, "peak_mb": peak_mb(),
                              "searched": s.searched, "pairs": s.pairs,
                              "stages": {k: [round(v[0], 1), round(v[1], 1)] for k, v in stages.items()}}
    db = sqlite3.connect(path)
    h = hashlib.sha256()
    for row in db.execute("SELECT a, b, phash_distance, dhash_distance, transform, min_distance FROM near_duplicates "
                          "ORDER BY a, b"):
        h.update(repr(row).encode())
    db.close()
    out["rows_digest"] = h.hexdigest()[:16]
    print(json.dumps(out), flush=True)


def whole(path: Path, n: int) -> None:
    """The identity pHashes of n archived classes against the largest segment's table of every pHash variant."""
    from archiver.dedupe import tables
    from archiver.dedupe.segments import VariantIndex

    tables.warm()
    with Manifest.open(path) as m:
        index = VariantIndex.open(m)
        seg = max(index.segments, key=lambda s: s.classes)
        q = np.sort(np.random.default_rng(1).choice(seg.classes, min(n, seg.classes), replace=False))
        ident = np.ascontiguousarray(np.asarray(seg.phash)[q, 0])
        w, c = time.perf_counter(), time.process_time()
        qi, p = seg.tables["ph"].search(ident, DISTANCE)
        wall, cpu = time.perf_counter() - w, time.process_time() - c
    key = np.unique(q[qi] * np.int64(1 << 32) + p)
    print(json.dumps({"queries": int(q.size), "of": seg.classes, "wall": wall, "cpu": cpu, "hits": int(qi.size),
                      "digest": hashlib.sha256(key.tobytes()).hexdigest()[:16], "peak_mb": peak_mb()}))


def make(folder: Path, n: int, add: int, batches: int) -> None:
    rng = np.random.default_rng(1)
    path = folder / "m.sqlite3"
    Manifest.open(path).close()
    w = time.perf_counter()
    archive = synthetic(rng, n, None, 0.25)
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    for lo in range(0, n, 500_000):
        insert(db, lo, tuple(a[lo:lo + 500_000] for a in archive))  # type: ignore[arg-type]
    added = [synthetic(rng, add, archive, 0.5) for _ in range(batches)]
    del archive
    from archiver.manifest.sqlite import _mark
    from archiver.model import SIMILARITY_RULE_VERSION

    with db:
        db.execute("UPDATE assets SET search_mark = ?", (_mark(SIMILARITY_RULE_VERSION, DISTANCE),))
    db.close()
    (folder / "added.pkl").write_bytes(pickle.dumps(added))
    print(f"  wrote {n:,} synthetic assets, marked searched, in {time.perf_counter() - w:.0f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, required=True, help="where the archive is made once and kept")
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--add", type=int, default=1_000)
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--baseline", help="a git revision to run side by side (its archiver/ tree)")
    ap.add_argument("--check", action="store_true", help="compare each batch's candidates with brute force")
    ap.add_argument("--sample", type=int, default=0, help="time the candidate search of N archived classes")
    ap.add_argument("--rescan", action="store_true", help="time a rescan of the whole archive (this tree)")
    ap.add_argument("--whole-sample", type=int, default=0,
                    help="time the table search of N identity hashes, this tree and the baseline, scaled to all")
    ap.add_argument("--child", choices=("add", "check", "index", "sample", "rescan", "whole"), help=argparse.SUPPRESS)
    ap.add_argument("--shas", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    path = args.dir / "m.sqlite3"
    if args.child == "add":
        child(path, args.shas)
        return
    if args.child == "check":
        check(path, args.shas)
        return
    if args.child == "sample":
        from archiver.dedupe import tables
        from archiver.dedupe.segments import VariantIndex

        tables.warm()
        with Manifest.open(path) as m:
            index = VariantIndex.open(m)
            q = np.unique(np.random.default_rng(2).integers(0, index.classes, args.sample))
            w, c = time.perf_counter(), time.process_time()
            x, _ = index.candidates(q, DISTANCE)
            wall, cpu = time.perf_counter() - w, time.process_time() - c
        print(json.dumps({"classes": int(q.size), "of": index.classes, "wall": wall, "cpu": cpu,
                          "candidates": int(x.size), "peak_mb": peak_mb()}))
        return
    if args.child == "rescan":
        rescan(path)
        return
    if args.child == "whole":
        whole(path, args.whole_sample)
        return
    if args.child == "index":
        from archiver.dedupe.segments import VariantIndex

        w, c = time.perf_counter(), time.process_time()
        with Manifest.open(path) as m:
            VariantIndex.open(m)
        print(json.dumps({"wall": time.perf_counter() - w, "cpu": time.process_time() - c, "peak_mb": peak_mb()}))
        return
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"archive of {args.n:,} assets (marked searched, pairs not computed), adding {args.add:,} per batch",
          flush=True)
    if not (args.dir / "added.pkl").exists():
        make(args.dir, args.n, args.add, args.batches)
    added = pickle.loads((args.dir / "added.pkl").read_bytes())
    db = sqlite3.connect(path)
    (count,) = db.execute("SELECT COUNT(*) FROM assets").fetchone()
    db.close()
    n = count - args.add * sum(1 for b in range(len(added)) if count >= args.n + (b + 1) * args.add)
    if n != args.n:
        raise SystemExit(f"{path} holds {count:,} assets, not an archive of {args.n:,} plus whole batches")
    r = json.loads(subprocess.run([sys.executable, __file__, "--dir", str(args.dir), "--child", "index"],
                                  check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    size = du(path.with_name(path.name + ".index"))
    print(f"  index   {r['wall']:8.1f} s wall {r['cpu']:8.1f} s CPU {r['peak_mb']:7.0f} MB peak  (built, or found up to "
          f"date) {size / 1e6:,.0f} MB on disk, {size / 1e9 * 1e6 / count:.2f} GB per million", flush=True)
    if args.sample:
        r = json.loads(subprocess.run([sys.executable, __file__, "--dir", str(args.dir), "--child", "sample", "--sample",
                                       str(args.sample)], check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        per = r["cpu"] / r["classes"]
        print(f"  sample  {r['classes']:,} classes of {r['of']:,} searched in {r['wall']:.1f} s wall {r['cpu']:.1f} s CPU "
              f"{r['peak_mb']:.0f} MB peak, {r['candidates']:,} candidate pairs: {per * 1e3:.2f} ms of CPU a class, "
              f"all {r['of']:,} ~{per * r['of'] / 3600:.1f} h of CPU through the tables", flush=True)
    if args.whole_sample:
        with tempfile.TemporaryDirectory() as tmp:
            for name, root in implementations(Path(tmp), args.baseline).items():
                env = {**os.environ, "BENCH_ARCHIVER_ROOT": str(root)}
                n = args.whole_sample if name != "this tree" else count  # this tree: all of them (see above)
                r = json.loads(subprocess.run([sys.executable, __file__, "--dir", str(args.dir), "--child", "whole",
                                               "--whole-sample", str(n)], env=env, check=True,
                                              capture_output=True, text=True).stdout.splitlines()[-1])
                scale = r["of"] / r["queries"]
                print(f"  whole-sample {name:<24} {r['queries']:,} of {r['of']:,} identity pHashes against every "
                      f"pHash variant: {r['wall']:.1f} s wall {r['cpu']:.1f} s CPU, {r['hits']:,} pairs "
                      f"({r['digest']}); x{scale:.0f}: {r['wall'] * scale:,.0f} s wall {r['cpu'] * scale:,.0f} s CPU",
                      flush=True)
    if args.rescan:
        r = json.loads(subprocess.run([sys.executable, __file__, "--dir", str(args.dir), "--child", "rescan"],
                                      check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        stages = ", ".join(f"{k} {v[0]:.0f} s wall {v[1]:.0f} s CPU" for k, v in r["stages"].items())
        print(f"  rescan  {r['wall']:8.1f} s wall {r['cpu']:8.1f} s CPU {r['peak_mb']:7.0f} MB peak  "
              f"{r['searched']:,} searched, {r['pairs']:,} rows ({r['rows_digest']}); {stages}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        impls = implementations(Path(tmp), args.baseline)
        shas_file = Path(tmp) / "batch.json"
        for b in range(min(args.batches, len(added))):
            db = sqlite3.connect(path)
            if count < args.n + (b + 1) * args.add:
                insert(db, args.n + b * args.add, added[b])
                count += args.add
            shas = _batch(db, args.n, args.add, b)
            db.close()
            shas_file.write_text(json.dumps(shas))
            digests = set()
            for rnd in range(args.rounds):
                for name, root in impls.items():
                    db = sqlite3.connect(path)
                    # (a table of schemas before 21, which a baseline's run may still write)
                    searches = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'pair_searches'").fetchone()
                    with db:  # the batch unsearched, its rows gone: each run does the same work
                        for part in range(0, len(shas), 500):
                            ps = shas[part:part + 500]
                            marks = ",".join("?" * len(ps))
                            db.execute(f"UPDATE assets SET search_mark = NULL WHERE sha256 IN ({marks})", ps)
                            if searches:
                                db.execute(f"DELETE FROM pair_searches WHERE asset IN ({marks})", ps)
                            db.execute(f"DELETE FROM near_duplicates WHERE a IN ({marks}) OR b IN ({marks})", ps * 2)
                    db.close()
                    env = {**os.environ, "BENCH_ARCHIVER_ROOT": str(root)}
                    proc = subprocess.run([sys.executable, __file__, "--dir", str(args.dir), "--child", "add",
                                           "--shas", str(shas_file)], env=env, capture_output=True, text=True)
                    if proc.returncode:
                        print(f"  batch {b} {name:<26} failed: {proc.stderr.strip().splitlines()[-1:]}", flush=True)
                        continue
                    r = json.loads(proc.stdout.strip().splitlines()[-1])
                    digests.add(r["rows_digest"])
                    print(f"  batch {b} round {rnd} {name:<24} {r['wall']:6.2f} s wall {r['cpu']:6.2f} s CPU "
                          f"{r['peak_mb']:6.0f} MB peak  start-up apart {r['startup_wall']:.2f} s wall  "
                          f"{r['searched']:,} searched of {r['archive']:,}, {r['pairs']:,} rows ({r['rows_digest']})",
                          flush=True)
            print(f"    batch {b}: rows {'equal' if len(digests) == 1 else 'DIFFERENT'} across runs: {digests}",
                  flush=True)
            if args.check:
                proc = subprocess.run([sys.executable, __file__, "--dir", str(args.dir), "--child", "check",
                                       "--shas", str(shas_file)], capture_output=True, text=True)
                print(f"    batch {b}: candidates against brute force: "
                      f"{(proc.stdout.strip().splitlines() or [proc.stderr.strip()[-300:]])[-1]}", flush=True)


if __name__ == "__main__":
    main()
