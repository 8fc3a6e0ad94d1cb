"""Benchmark: the near-duplicate search of a run on a PostgreSQL manifest, this tree side by side with another revision
(``--baseline``, e.g. the code whose searcher built its index in memory from every variant at each search).

Usage: python bench/bench_dedupe_postgres.py [--n 200000] [--add 500] [--runs 2] --baseline REV

An archive of N synthetic assets (bench_dedupe_incremental's: random variants and greys, a quarter near copies, 1 %
one blank picture) is searched once in a SQLite file, then copied by ``archiver migrate-manifest`` into one database
per implementation of a PostgreSQL server the script starts (Debian's binaries, as the tests do:
tests/support/postgres.py). Then ``--runs`` times, for each implementation: ``--add`` more assets (half near copies)
are recorded and ``update_pairs`` searches them, in a fresh child process (peak RSS is that process's), with its own
XDG_CACHE_HOME (where this tree keeps the index of a PostgreSQL manifest). The first run of this tree builds its
index folder; the later ones append to it. The pairs found must be equal (checked).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def child(url: str, added: Path, lo: int, hi: int) -> None:
    from peakmem import peak_mb

    from archiver.dedupe.pairs import update_pairs
    from archiver.manifest.sqlite import Manifest
    from archiver.model import Asset, ImageFormat

    ph, dh, grey = pickle.loads(added.read_bytes())
    with Manifest.open(url) as m:
        for i in range(lo, hi):
            sha = hashlib.sha256(f"added {i}".encode()).hexdigest()
            pv, dv = tuple(f"{int(v):016x}" for v in ph[i]), tuple(f"{int(v):016x}" for v in dh[i])
            m.record_asset(Asset(sha, ImageFormat("jpeg", "image/jpeg", "jpg"), 1000 + i, 300, 300, pv[0], dv[0],
                                 phash_variants=pv, dhash_variants=dv, grey=grey[i].astype(np.uint8).tobytes().hex()),
                           f"{sha}.jpg", [])
        w, c = time.perf_counter(), time.process_time()
        s = update_pairs(m, 10)
        out = dict(wall=time.perf_counter() - w, cpu=time.process_time() - c, peak_mb=peak_mb(), searched=s.searched,
                   pairs=s.pairs)
        rows = m._db.execute("SELECT a, b, phash_distance, dhash_distance FROM near_duplicates ORDER BY a, b").fetchall()
    out["digest"] = hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()[:16]
    print(json.dumps(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--add", type=int, default=500)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--baseline", help="a git revision to run side by side (its archiver/ tree); required")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        sys.path.insert(0, os.environ["BENCH_ARCHIVER_ROOT"])
        sys.path.insert(1, str(HERE))
        url, added, lo, hi = args.child
        child(url, Path(added), int(lo), int(hi))
        return
    if not args.baseline:
        ap.error("--baseline is required")
    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(1, str(HERE))
    import pytest  # noqa: F401 - the test support module's failures are pytest's
    from bench_dedupe_incremental import implementations, insert, synthetic

    from archiver.dedupe.pairs import update_pairs
    from archiver.manifest.sqlite import Manifest
    from tests.support.postgres import PostgresServer

    tmp = Path(tempfile.mkdtemp(prefix="archiver-bench-pg-", dir=os.environ.get("BENCH_TMP")))
    pg_base = Path(tempfile.mkdtemp(prefix="archiver-pg-"))  # (its own: the server's user must reach it)
    server = PostgresServer(pg_base)
    server.start()
    try:
        impls = implementations(tmp, args.baseline)
        rng = np.random.default_rng(1)
        lite = tmp / "seed.sqlite3"
        Manifest.open(lite).close()
        archive = synthetic(rng, args.n, None, 0.25)
        db = sqlite3.connect(lite)
        insert(db, 0, archive)
        db.close()
        added = tmp / "added.pkl"
        added.write_bytes(pickle.dumps(synthetic(rng, args.add * args.runs, archive, 0.5)))
        del archive
        with Manifest.open(lite) as m:
            update_pairs(m, 10)
        urls = {}
        for name in impls:
            urls[name] = server.new_database()
            subprocess.run([sys.executable, "-m", "archiver", "migrate-manifest", "--from", str(lite), "--to",
                            urls[name], "-q"], check=True, cwd=HERE.parent, stdout=subprocess.DEVNULL)
        shutil.rmtree(lite.with_name(lite.name + ".index"), ignore_errors=True)
        print(f"PostgreSQL manifest of {args.n:,} assets (searched), adding {args.add:,} per run, distance <= 10",
              flush=True)
        for run in range(args.runs):
            digests = set()
            for name, root in impls.items():
                env = {**os.environ, "BENCH_ARCHIVER_ROOT": str(root),
                       "XDG_CACHE_HOME": str(tmp / ("cache-" + name.split()[0]))}
                proc = subprocess.run([sys.executable, __file__, "--child", urls[name], str(added),
                                       str(run * args.add), str((run + 1) * args.add)],
                                      env=env, capture_output=True, text=True)
                if proc.returncode:
                    print(f"  run {run + 1} {name:<22} failed: {proc.stderr.strip().splitlines()[-1:]}", flush=True)
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                digests.add(r["digest"])
                print(f"  run {run + 1} {name:<22} {r['wall']:7.2f} s wall {r['cpu']:7.2f} s CPU "
                      f"{r['peak_mb']:6.0f} MB peak  searched {r['searched']}, {r['pairs']} pairs", flush=True)
            if digests:
                print(f"    pairs: {'equal' if len(digests) == 1 else 'DIFFERENT'} across implementations", flush=True)
    finally:
        server.stop("immediate")
        shutil.rmtree(pg_base, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
