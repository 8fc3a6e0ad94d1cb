"""Benchmark: adding 1 000 assets to an archive of N, this tree's incremental near-duplicate search side by side
with another revision's (``--baseline``, e.g. the code before the on-disk variant index).

Usage: python bench/bench_dedupe_incremental.py [--n 100000] [--add 1000] [--distance 10] [--seed 1]
                                                [--baseline REV] [--check]

A manifest of N synthetic assets (signatures written straight into the assets table: random pHash/dHash variants
and grey thumbnails, a quarter of them near copies of earlier pictures with 0-8 bits flipped per variant, 1 %
identical "blank" images) is made once and copied for each implementation (the baseline's tree is extracted with
``git archive REV``). Each step then runs in a fresh child process per implementation (so peak RSS, VmHWM, is that
of a run doing only this step, interpreter and imports included):
  first    update_pairs over the whole archive (the first search; builds the on-disk index)
  add      update_pairs after ``--add`` new assets (half near copies of archived pictures): search + record;
           the figures include numba's start-up, which a long-running process pays once (startup_*: that part)
  group    groups from the recorded pairs (what `archiver dedupe` groups from): the code before groupable loads every
           signature; with groupable, only those of the assets that can be in a group; with stream_groups, those of
           one batch of whole connected components at a time
  rescan   update_pairs(rescan=True): every asset searched again
  command  `archiver dedupe` itself, once everything is searched (group + report: every asset's row, the groups,
           the report's pages and JSON export), on a local store folder; the synthetic assets get what the image
           stage records first: a colour (else the run would try to measure 370 000 missing thumbnails) and two
           thumbnail rows each (320 and 640 px; the files are not made: the report only links to them); and what a
           run records: an archived URL each (a second for 1 in 20) and ``--articles`` rewritten Markdown articles
           on disk (default N / 10; 10 archive URLs each, of assets drawn at random), which the report reads to
           say which articles use which copy
  again    the command again, nothing changed (what a second report costs: the articles' references found by the
           first are recorded since the sixth round of 2026-12-05)
           The report's digest (its JSON export without the date, as parsed) must be equal across implementations
           (checked); it is read by this process, so the figures are the command's alone (interpreter and imports
           included)
The recorded pairs between class heads after ``add`` and after ``rescan`` (since migration 18 a pair is recorded once
per pair of classes of identical signatures, between their heads; before, once per member pair, which includes those
rows), and the groups, must be equal across implementations (checked);
``--check`` also compares the groups with reference.build_groups from scratch (slow at 1 M).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, os.environ.get("BENCH_ARCHIVER_ROOT") or str(HERE.parent))

from peakmem import peak_mb  # noqa: E402

from archiver.dedupe.grouping import AssetInfo  # noqa: E402
from archiver.image.similarity import Signature  # noqa: E402
from archiver.manifest.sqlite import Manifest  # noqa: E402
from archiver.model import SIMILARITY_RULE_VERSION  # noqa: E402

PREFER = ("area", "lossless", "bytes", "first_seen")


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
                     float(start + i), pv, dv, grey[i].astype(np.uint8).tobytes().hex(), start + i + 1))
    has_id = any(c[1] == "id" for c in db.execute("PRAGMA table_info(assets)"))  # the explicit ids of schema 10
    cols = "sha256, format, mime, ext, bytes, width, height, phash, dhash, key, first_seen, phash_variants, " \
           "dhash_variants, grey" + (", id" if has_id else "")
    with db:
        db.executemany(f"INSERT INTO assets ({cols}) VALUES ({','.join('?' * cols.count(','))},?)",
                       [r if has_id else r[:-1] for r in rows])
        if has_id:
            db.execute("UPDATE counters SET value = ? WHERE name = 'assets'", (start + len(rows),))


def infos_of(rows: list) -> list[AssetInfo]:
    return [AssetInfo(sha, fmt, size, w, h, first, Signature(tuple(pv.split(",")), tuple(dv.split(",")), grey))
            for sha, fmt, _mime, _ext, size, w, h, first, _key, _p, _d, pv, dv, grey, *_colour in rows]


def load_infos(m: Manifest) -> list[AssetInfo]:
    return infos_of(m.asset_rows())


def child(step: str, path: Path, distance: int, check: bool) -> None:
    """One step in this process, its figures as one JSON line on stdout."""
    from archiver.dedupe.pairs import groups_from_pairs, update_pairs

    out: dict[str, object] = {}
    w, c = time.perf_counter(), time.process_time()
    if step in ("command", "again"):
        from archiver.cli import main as cli

        folder = path.parent / "command"
        folder.mkdir(exist_ok=True)
        config = folder / "archiver.toml"
        config.write_text(f'[articles]\nroot = "{path.parent.parent / "articles"}"\n[storage]\nbackend = "local"\n'
                          f'path = "{folder}/store"\n[manifest]\npath = "{path}"\n'
                          f'[dedupe]\nreport = "{folder}/report/dedupe.html"\nmax_distance = {distance}\n')
        code = cli(["dedupe", "--config", str(config), "-q"])
        out.update(code=code, wall=time.perf_counter() - w, cpu=time.process_time() - c, peak_mb=peak_mb())
        print(json.dumps(out), flush=True)  # the command alone: its export is read and compared by the parent
        return
    with Manifest.open(path) as m:
        if step in ("first", "add", "rescan"):
            prof = None
            if os.environ.get("BENCH_PROFILE") == step:  # where the time goes, on stderr
                import cProfile

                prof = cProfile.Profile()
                prof.enable()
            from archiver.dedupe import tables

            if step == "add" and hasattr(tables, "warm"):  # numba's start-up (once per process), of the total apart
                ws, cs = time.perf_counter(), time.process_time()
                tables.warm()
                out.update(startup_wall=round(time.perf_counter() - ws, 3), startup_cpu=round(time.process_time() - cs, 3))
            s = update_pairs(m, distance, rescan=step == "rescan")
            if prof is not None:
                import pstats

                prof.disable()
                pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
            out.update(searched=s.searched, archive=s.archive, pairs=s.pairs)
        else:
            from archiver.dedupe import pairs as pairs_module

            if hasattr(pairs_module, "stream_groups"):  # a batch of whole components at a time
                loaded: list[int] = []

                def batch_infos(keys: list) -> list[AssetInfo]:  # type: ignore[type-arg]
                    loaded.append(len(keys))  # asset ids (the code before group_batches gave sha256s), or sha256s
                    by_sha = keys and isinstance(keys[0], str)
                    return infos_of(m.asset_rows_by_sha(keys) if by_sha else m.asset_rows_of(keys))

                groups = pairs_module.stream_groups(m, distance, PREFER, batch_infos)
                out.update(loaded=sum(loaded), batches=len(loaded), groups=len(groups),
                           digest=hashlib.sha256(repr(groups).encode()).hexdigest()[:16])
            elif hasattr(pairs_module, "groupable"):  # only the assets that can be in a group are read
                pairs, ids = pairs_module.groupable(m, distance)
                infos = infos_of(m.asset_rows_of(ids))
            else:  # the code before it: every signature loaded
                infos = load_infos(m)
                pairs = m.recorded_pairs(distance, SIMILARITY_RULE_VERSION)
            if "digest" not in out:
                out["load_s"] = time.perf_counter() - w
                out["loaded"] = len(infos)
                groups = groups_from_pairs(infos, pairs, distance, PREFER)  # type: ignore[arg-type]
                out["groups"] = len(groups)
                out["digest"] = hashlib.sha256(repr(groups).encode()).hexdigest()[:16]
    out.update(wall=time.perf_counter() - w, cpu=time.process_time() - c, peak_mb=peak_mb())
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    if "RssFile" in status:  # of the peak, what is file pages (the index's memory-mapped arrays) at the end
        out["file_mb"] = round(int(status["RssFile"].split()[0]) / 1024)
    if step == "group" and check:
        from archiver.dedupe.reference import build_groups

        with Manifest.open(path) as m:
            everything = load_infos(m)
        assert build_groups(everything, distance, PREFER) == groups, "groups differ from the from-scratch computation"
        out["checked"] = True
    print(json.dumps(out), flush=True)


def pair_rows(path: Path) -> str:
    """A digest of the rows between class heads (each class of identical signatures' member with the smallest id),
    and how many rows there are: the code before migration 18 recorded a row per member pair, this one per class
    pair, and the rows between heads are the same in both."""
    db = sqlite3.connect(path)
    heads = {sha for (sha,) in db.execute(
        "SELECT sha256 FROM assets WHERE id IN (SELECT MIN(id) FROM assets WHERE phash_variants IS NOT NULL "
        "GROUP BY phash_variants, dhash_variants, COALESCE(grey, ''))")}
    rows = db.execute("SELECT a, b, phash_distance, dhash_distance, transform, min_distance FROM near_duplicates "
                      "ORDER BY a, b").fetchall()
    db.close()
    kept = [r for r in rows if r[0] in heads and r[1] in heads]
    return hashlib.sha256(repr(kept).encode()).hexdigest()[:16] + f" ({len(kept):,} between heads of {len(rows):,})"


def export_digest(path: Path) -> dict[str, object]:
    """The groups of a dedupe JSON export and a digest of its data (without its date; as parsed: the same data in
    another notation, e.g. ``1e-05`` / ``0.00001``, gives the same digest)."""
    export = json.loads(path.read_text(encoding="utf-8"))
    del export["generated"]
    return {"groups": len(export["groups"]),
            "digest": hashlib.sha256(json.dumps(export, sort_keys=True).encode()).hexdigest()[:16]}


def write_articles(folder: Path, n: int, count: int, seed: int) -> list[tuple[str, str, str]]:
    """``count`` Markdown articles as a run leaves them (front matter with a cover, then paragraphs and images), each
    using 10 archive URLs of assets drawn at random (``/archive/`` + the synthetic key, ``<sha256>.jpg``), under
    ``folder`` (100 files a folder); their (path, sha256, sha256) rows for the articles table."""
    rng = np.random.default_rng(seed + 1)
    picks = rng.integers(0, n, size=(count, 10))
    rows = []
    for a in range(count):
        shas = [hashlib.sha256(str(int(i)).encode()).hexdigest() for i in picks[a]]
        body = (f"---\ntitle: Post {a}\ncover: /archive/{shas[0]}.jpg\ntags: [photos]\n---\n\nSome text about post "
                f"{a}.\n\n" + "".join(f"![photo {k}](/archive/{sha}.jpg)\n\nA paragraph about photo {k}, with a "
                                      f"[link](https://example.com/{a}/{k}).\n\n" for k, sha in enumerate(shas[1:])))
        path = folder / f"{a // 100:05d}" / f"post-{a}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
        digest = hashlib.sha256(body.encode()).hexdigest()
        rows.append((str(path), digest, digest))
    return rows


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def new_manifest(root: Path, path: Path) -> None:
    """An empty manifest at ``path``, made by the code under ``root`` (its schema)."""
    subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
                    "from archiver.manifest.sqlite import Manifest; Manifest.open(Path(sys.argv[2])).close()",
                    str(root), str(path)], check=True)


def implementations(tmp: Path, baseline: str | None) -> dict[str, Path]:
    """The trees to run side by side: ``baseline``'s ``archiver/`` (extracted by ``git archive`` under ``tmp``), if
    asked, then this tree's."""
    impls = {"this tree": HERE.parent}
    if baseline:
        base = tmp / "baseline"
        base.mkdir()
        subprocess.run(f"git -C {HERE.parent} archive {baseline} archiver | tar -x -C {base}", shell=True, check=True)
        impls = {f"baseline {baseline}": base, **impls}
    return impls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--add", type=int, default=1_000)
    ap.add_argument("--distance", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--baseline", help="a git revision to run side by side (its archiver/ tree)")
    ap.add_argument("--check", action="store_true", help="compare the groups with build_groups from scratch")
    ap.add_argument("--steps", default="first,add,group,command,again,rescan")
    ap.add_argument("--articles", type=int, help="rewritten articles the command reads (default: N / 10)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.manifest, args.distance, args.check)
        return
    rng = np.random.default_rng(args.seed)
    steps = args.steps.split(",")
    args.articles = args.n // 10 if args.articles is None else args.articles
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        impls = implementations(Path(tmp), args.baseline)
        first_root = next(iter(impls.values()))
        seed_path = Path(tmp) / "seed.sqlite3"
        new_manifest(first_root, seed_path)
        print(f"archive of {args.n:,} assets, adding {args.add:,}, distance <= {args.distance}", flush=True)
        archive = synthetic(rng, args.n, None, 0.25)
        w = time.perf_counter()
        db = sqlite3.connect(seed_path)
        insert(db, 0, archive)
        db.close()
        print(f"  wrote {args.n:,} synthetic assets in {time.perf_counter() - w:.1f} s", flush=True)
        added = synthetic(rng, args.add, archive, 0.5)
        del archive
        paths = {}
        for name in impls:
            paths[name] = Path(tmp) / name.replace(" ", "-") / "manifest.sqlite3"
            paths[name].parent.mkdir()
            shutil.copy(seed_path, paths[name])
        seed_path.unlink()
        # numba's caches: a baseline's code is extracted fresh, without them, so its first timed step would also compile
        # its kernels (rule D's alone ~14 s, measured in the ninth round) where this tree's are usually cached (the first-search rows before
        # 2026-12-06 carry that bias). Each implementation first searches a small archive of the same shape (16-bit
        # chunks swept, memory-mapped, rule D), untimed, so the timed steps compare searches, not compilers.
        warm = synthetic(np.random.default_rng(99), 70_000, None, 0.25)
        for name, root in impls.items():
            folder = Path(tmp) / f"warm-{name.replace(' ', '-')}"
            folder.mkdir()
            new_manifest(root, folder / "manifest.sqlite3")
            db = sqlite3.connect(folder / "manifest.sqlite3")
            insert(db, 0, warm)
            db.close()
            subprocess.run([sys.executable, __file__, "--child", "first", "--manifest", str(folder / "manifest.sqlite3"),
                            "--distance", str(args.distance)], env={**os.environ, "BENCH_ARCHIVER_ROOT": str(root)},
                           capture_output=True, text=True, check=True)
            shutil.rmtree(folder)
        del warm
        results: dict[str, dict[str, dict[str, object]]] = {name: {} for name in impls}
        for step in steps:
            if step == "add":
                for path in paths.values():
                    db = sqlite3.connect(path)
                    insert(db, args.n, added)
                    db.close()
            if step == "command":  # what the image stage records: the colour, two thumbnails an image
                articles = write_articles(Path(tmp) / "articles", args.n, args.articles, args.seed)
                for path in paths.values():
                    with sqlite3.connect(path) as db:
                        db.execute("UPDATE assets SET colours = 0, chroma = 20.0 WHERE chroma IS NULL")
                        for w in (320, 640):
                            db.execute("INSERT OR IGNORE INTO renditions (asset, width, format, pixel_width, "
                                       "pixel_height, bytes, key) SELECT sha256, ?, 'webp', ?, ?, 9000, "
                                       "sha256 || '-' || ? || 'w.webp' FROM assets", (w, w, w * 3 // 4, w))
                        # and what a run records: the URLs images were archived from (one each, a second for 5 %),
                        # the articles it rewrote (their paths and hashes)
                        db.execute("INSERT OR IGNORE INTO urls (url, status, attempts, asset, first_seen, last_tried) "
                                   "SELECT 'https://cdn.example.com/img/' || sha256 || '.jpg', 'archived', 1, sha256, "
                                   "first_seen, first_seen FROM assets")
                        db.execute("INSERT OR IGNORE INTO urls (url, status, attempts, asset, first_seen, last_tried) "
                                   "SELECT 'https://mirror.example.org/p/' || sha256 || '.jpg', 'archived', 1, sha256, "
                                   "first_seen + 0.5, first_seen FROM assets WHERE abs(first_seen) % 20 = 7")
                        db.executemany("INSERT OR IGNORE INTO articles (path, sha256_before, sha256_after, "
                                       "rewritten_at) VALUES (?, ?, ?, 0)", articles)
            for name, root in impls.items():
                env = {**os.environ, "BENCH_ARCHIVER_ROOT": str(root)}
                proc = subprocess.run([sys.executable, __file__, "--child", step, "--manifest", str(paths[name]),
                                       "--distance", str(args.distance)] + (["--check"] if args.check else []),
                                      env=env, capture_output=True, text=True)
                if os.environ.get("BENCH_PROFILE") == step:
                    print(proc.stderr, flush=True)
                if proc.returncode:
                    print(f"  {step:<7} {name:<26} failed: {proc.stderr.strip().splitlines()[-1:]}", flush=True)
                    results[name][step] = {}
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                if step in ("command", "again"):  # what it wrote, read here: the figures are the command's own
                    r.update(export_digest(paths[name].parent / "command" / "report" / "dedupe.json"))
                results[name][step] = r
                size = du(paths[name].with_name(paths[name].name + ".index"))
                extra = "" if step != "add" else \
                    f", index on disk {size / 1e6:,.0f} MB ({size / 1e9 * 1e6 / (args.n + args.add):.2f} GB per million)"
                print(f"  {step:<7} {name:<26} {r['wall']:8.2f} s wall {r['cpu']:8.2f} s CPU {r['peak_mb']:7.0f} MB peak"
                      f"  {({k: v for k, v in r.items() if k not in ('wall', 'cpu', 'peak_mb')})}{extra}", flush=True)
                if step in ("add", "rescan"):
                    r["pairs_digest"] = pair_rows(paths[name])
            if step in ("add", "rescan", "group", "command", "again") and len(impls) > 1:
                key = "digest" if step in ("group", "command", "again") else "pairs_digest"
                seen = {str(results[n][step].get(key)).split(" (")[0] for n in impls}  # the digest, not the counts
                print(f"    {step}: {'equal' if len(seen) == 1 else 'DIFFERENT'} across implementations: {seen}",
                      flush=True)


if __name__ == "__main__":
    main()
