"""Incremental near-duplicate search: recorded pairs + "searched" marks give exactly the from-scratch groups."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from archiver.cli import main
from archiver.dedupe.grouping import AssetInfo
from archiver.dedupe.pairs import groups_from_pairs, update_pairs
from archiver.dedupe.reference import build_groups
from archiver.image.similarity import _APPLY, Signature
from archiver.manifest.sqlite import Manifest
from archiver.model import SIMILARITY_RULE_VERSION, Asset, ImageFormat
from tests.support.images import make_rgb
from tests.support.origin import Server
from tests.support.paths import ROOT_DIR
from tests.support.site import write_config

ROOT = ROOT_DIR
PREFER = ("area", "lossless", "bytes", "first_seen")
JPEG = ImageFormat("jpeg", "image/jpeg", "jpg")
U64 = np.uint64


def _flip(value: int, bits: int, rng: np.random.Generator) -> int:
    for b in rng.choice(64, size=bits, replace=False):
        value ^= 1 << int(b)
    return value


def _sig(p: list[int], d: list[int], grey: np.ndarray) -> Signature:
    return Signature(tuple(f"{v:016x}" for v in p), tuple(f"{v:016x}" for v in d),
                     np.clip(grey, 0, 255).astype(np.uint8).tobytes().hex())


def synthetic_signatures(n_pictures: int, seed: int) -> list[Signature]:
    """Pictures with random hashes and greys, each with 0-3 copies: hashes a few bits off (0-14), under a random
    transform; some copies match in ONE direction only (the copy's other variants are unrelated), greys from
    identical to far (so the rule both accepts and refuses), and identical-hash copies with another grey."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_pictures):
        p = [int(v) for v in rng.integers(0, 2**63, 8)]
        d = [int(v) for v in rng.integers(0, 2**63, 8)]
        grey = rng.integers(0, 256, (8, 8)).astype(np.int16)
        out.append(_sig(p, d, grey))
        for _ in range(int(rng.integers(0, 4))):
            t = int(rng.integers(0, 8)) if rng.random() < 0.4 else 0
            kp, kd = int(rng.integers(0, 15)), int(rng.integers(0, 15))
            noise = float(rng.choice([0.0, 1.0, 3.0, 12.0]))
            g = _APPLY[t](grey) + rng.normal(0, noise, (8, 8)) if noise else _APPLY[t](grey)
            if rng.random() < 0.15:  # the same hashes, another grey: one class for grouping
                out.append(_sig(p, d, g + rng.normal(0, 5, (8, 8))))
                continue
            if t == 0:
                cp = [_flip(v, kp, rng) for v in p]
                cd = [_flip(v, kd, rng) for v in d]
            else:  # only the copy's identity relates to the original: found from one side only
                cp = [_flip(p[t], kp, rng)] + [int(v) for v in rng.integers(0, 2**63, 7)]
                cd = [_flip(d[t], kd, rng)] + [int(v) for v in rng.integers(0, 2**63, 7)]
            out.append(_sig(cp, cd, g))
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def _record(m: Manifest, sigs: list[Signature], start: int) -> None:
    for i, sig in enumerate(sigs, start):
        sha = hashlib.sha256(str(i).encode()).hexdigest()
        w = 100 + (i * 37) % 400
        m.record_asset(Asset(sha, JPEG, 1000 + i, w, w, sig.phash[0], sig.dhash[0], phash_variants=sig.phash,
                             dhash_variants=sig.dhash, grey=sig.grey), f"{sha}.jpg", [])


def _infos(m: Manifest) -> list[AssetInfo]:
    return [AssetInfo(sha, fmt, size, w, h, first, Signature(tuple(pv.split(",")), tuple(dv.split(",")), grey))
            for sha, fmt, _mime, _ext, size, w, h, first, _key, _p, _d, pv, dv, grey, *_ in m.asset_rows()]


def test_incremental_pairs_give_the_from_scratch_groups_at_every_distance(tmp_path: Path) -> None:
    sigs = synthetic_signatures(300, seed=3)
    cut = [0, len(sigs) // 3, 2 * len(sigs) // 3, len(sigs) - 40, len(sigs)]
    with Manifest.open(tmp_path / "m.sqlite3") as m:
        for b, distance in enumerate((10, 6, 6)):  # later batches searched at a smaller distance
            _record(m, sigs[cut[b]:cut[b + 1]], cut[b])
            stats = update_pairs(m, distance)
            assert stats.searched == cut[b + 1] - cut[b] and stats.archive == cut[b + 1]
        infos = _infos(m)  # every asset searched at >= 6: the pairs at <= 6 are complete
        assert groups_from_pairs(infos, m.recorded_pairs(6, SIMILARITY_RULE_VERSION), 6, PREFER) == build_groups(infos, 6, PREFER)
        _record(m, sigs[cut[3]:], cut[3])  # a run killed after storing, before its search
        stats = update_pairs(m, 10)
        assert (stats.searched, stats.widened) == (cut[3] - cut[1] + 40, cut[3] - cut[1])
        assert update_pairs(m, 10).searched == 0 and update_pairs(m, 4).searched == 0
        infos = _infos(m)
        shas = [a.sha256 for a in infos]
        pinned, excluded = shas[5:8], shas[20:25]
        grouped = 0
        for n in (0, 3, 6, 8, 10):
            pairs = m.recorded_pairs(n, SIMILARITY_RULE_VERSION)
            expected = build_groups(infos, n, PREFER, pinned, excluded)
            assert groups_from_pairs(infos, pairs, n, PREFER, pinned, excluded) == expected, n
            assert groups_from_pairs(infos, pairs, n, PREFER) == build_groups(infos, n, PREFER), n
            grouped = max(grouped, len(expected))
        assert grouped > 40 and any(g.members[1].match.transform != "identity" for g in expected)  # type: ignore[union-attr]
        assert any(len(g.members) > 2 for g in expected)
        recorded = set(m.recorded_pairs(10, SIMILARITY_RULE_VERSION))
        assert update_pairs(m, 10, rescan=True).searched == len(sigs)
        assert set(m.recorded_pairs(10, SIMILARITY_RULE_VERSION)) == recorded
        assert update_pairs(m, 12).widened == len(sigs)  # a larger distance searches everything again
        assert groups_from_pairs(infos, m.recorded_pairs(12, SIMILARITY_RULE_VERSION), 12, PREFER) == build_groups(
            infos, 12, PREFER)


def test_a_new_rule_version_drops_old_pairs_and_searches_everything(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from archiver.dedupe import pairs as dedupe

    with Manifest.open(tmp_path / "m.sqlite3") as m:
        _record(m, synthetic_signatures(60, seed=5), 0)
        update_pairs(m, 10)
        before = set(m.recorded_pairs(10, SIMILARITY_RULE_VERSION))
        assert before
        monkeypatch.setattr(dedupe, "SIMILARITY_RULE_VERSION", SIMILARITY_RULE_VERSION + 1)
        assert update_pairs(m, 10).searched == m.counts()["assets"]
        assert m.recorded_pairs(10, SIMILARITY_RULE_VERSION) == []
        assert set(m.recorded_pairs(10, SIMILARITY_RULE_VERSION + 1)) == before
        assert m.counts()["near_duplicate_pairs"] == len(before)


def _encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def _run(cfg: Path, crash_at: str = "") -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ARCHIVER_CRASH_AT", None)
    if crash_at:
        env["ARCHIVER_CRASH_AT"] = crash_at
    with open(cfg.with_name("stderr.txt"), "wb") as err:  # a file: pool workers of a killed run may hold a pipe
        proc = subprocess.Popen([sys.executable, "-m", "archiver", "run", "--config", str(cfg), "-q"], cwd=ROOT,
                                env=env, stdout=subprocess.DEVNULL, stderr=err)
        return proc.wait(120)


def test_three_runs_one_killed_then_dedupe_equals_a_full_recomputation(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    pics = [make_rgb(360, 270, seed=900 + i) for i in range(7)]
    runs = [
        {"p0.png": _encode(pics[0], "PNG"), "p1.jpg": _encode(pics[1], "JPEG", quality=90),
         "p2.jpg": _encode(pics[2], "JPEG", quality=90), "p3.jpg": _encode(pics[3], "JPEG", quality=90)},
        {"p0-small.jpg": _encode(pics[0].resize((180, 135)), "JPEG", quality=70),
         "p1-rot.jpg": _encode(pics[1].transpose(Image.Transpose.ROTATE_90), "JPEG", quality=85),
         "p4.png": _encode(pics[4], "PNG"), "p4-q40.jpg": _encode(pics[4], "JPEG", quality=40)},
        {"p2-mirror.jpg": _encode(pics[2].transpose(Image.Transpose.FLIP_LEFT_RIGHT), "JPEG", quality=85),
         "p4-webp.webp": _encode(pics[4].resize((300, 225)), "WEBP", quality=80),
         "p5.jpg": _encode(pics[5], "JPEG"), "p6.jpg": _encode(pics[6], "JPEG"),
         "p0-again.png": _encode(pics[0], "PNG")},  # same bytes as p0.png under another URL: an exact duplicate
    ]
    site = tmp_path / "site"
    site.mkdir()
    cfg = write_config(tmp_path, origin)
    db = tmp_path / ".archiver" / "manifest.sqlite3"
    for r, images in enumerate(runs):
        for name, body in images.items():
            origin.add(f"/i/{name}", body, "image/png")
        (site / f"run{r}.md").write_text("".join(f"![x](http://photos.test/i/{n})\n" for n in images))
        if r == 1:  # killed once every image of the run is stored, before any pair is searched
            assert _run(cfg, crash_at=f"recorded-asset:{len(images)}") == -signal.SIGKILL
            with sqlite3.connect(db) as c:
                assert c.execute("SELECT COUNT(*) FROM assets WHERE search_mark IS NULL").fetchone()[0] == len(images)
        assert _run(cfg) == 0
    with sqlite3.connect(db) as c:  # run 3 searched what the killed run left
        assert c.execute("SELECT COUNT(*) FROM assets WHERE search_mark IS NULL").fetchone()[0] == 0

    def dedupe(*flags: str) -> dict:  # type: ignore[type-arg]
        assert main(["dedupe", "--config", str(cfg), *flags]) == 0
        report = json.loads((tmp_path / "report" / "dedupe.json").read_text(encoding="utf-8"))
        report.pop("generated")
        return report

    incremental = dedupe("-v")
    assert "every image was already searched for near-duplicates at distance 10" in capsys.readouterr().err  # the runs searched everything already
    assert incremental == dedupe("--rescan")
    near = [g for g in incremental["groups"] if g["kind"] == "near"]
    assert sorted(len(g["members"]) for g in near) == [2, 2, 2, 3]
    transforms = {m["transform"] for g in near for m in g["members"][1:]}
    assert {"identity", "rot90", "flip-h"} <= transforms
    assert [g["kind"] for g in incremental["groups"]].count("exact") == 0  # p0's two URLs sit in its near group

    with Manifest.open(db) as m:  # the from-scratch computation: grouping.build_groups over every asset
        infos = _infos(m)
    for n in (10, 4, 12):
        got = dedupe("--max-distance", str(n), "-v")
        expected = build_groups(infos, n, PREFER)
        assert sorted((g.canonical, tuple((x.sha256, x.match and x.match.transform,
                                           x.match and x.match.phash_distance) for x in g.members[1:]))
                      for g in expected) == sorted(
            (g["canonical"], tuple((x["sha256"], x["transform"], x["phash_distance"]) for x in g["members"][1:]))
            for g in got["groups"] if g["kind"] == "near"), n
        assert got == dedupe("--max-distance", str(n), "--rescan"), n
    assert "searching them again at 12" in capsys.readouterr().err


def test_pairs_measured_at_once_decide_as_compare_at_every_distance(monkeypatch: pytest.MonkeyPatch) -> None:
    """similarity.Judged (one pair, each measurement made once) and JudgedMany (many pairs as arrays, what the
    search and grouping use) decide as compare at every distance, and the smallest accepting distance recorded with a
    pair is the first distance at which compare accepts it. The pairs include the hard cases of the array path: a
    picture whose variants are all equal (every transform tied, the grey thumbnails break the tie), signatures
    without a grey thumbnail, identical signatures, and pairs only rules C (tone) or D (framing) accept."""
    import numpy as np

    from archiver.dedupe.reference import candidate_pairs
    from archiver.image.similarity import Judged, JudgedMany, Signature, compare

    sigs = synthetic_signatures(60, seed=21)
    xs, ys = [], []
    for i, j in candidate_pairs(sigs, 14)[:80]:
        xs += [sigs[i], sigs[j]]
        ys += [sigs[j], sigs[i]]
    rng = np.random.default_rng(5)
    for n in range(300):
        grid = rng.integers(0, 256, 64)
        p, d = rng.integers(0, 2**63, 8), rng.integers(0, 2**63, 8)
        if n % 4 == 0:  # a symmetric picture: all its variants alike
            p, d = np.full(8, p[0]), np.full(8, d[0])
        flips = [np.bitwise_or.reduce(1 << rng.integers(0, 63, (8, int(rng.integers(1, 9)))), axis=1) for _ in "pd"]
        near = np.clip(grid * (1 + rng.normal(0, 0.08)) + rng.integers(-int(n % 30), int(n % 30) + 1, 64), 0, 255)

        def sig(h: np.ndarray, g: np.ndarray | None, e: np.ndarray) -> Signature:
            return Signature(tuple(f"{int(v):016x}" for v in h), tuple(f"{int(v):016x}" for v in e),
                             "" if g is None else bytes(g.astype(np.uint8)).hex())

        a = sig(p, None if n % 7 == 3 else grid, d)
        xs += [a, a, a]
        ys += [sig(p ^ flips[0], near, d ^ flips[1]), a, sig(rng.integers(0, 2**63, 8), grid, d)]
    many = JudgedMany(xs, ys)
    seen = 0
    for k in range(13):
        decisions = [compare(x, y, k) for x, y in zip(xs, ys, strict=True)]
        assert many.decide(k) == decisions
        assert [Judged(x, y).decide(k) for x, y in zip(xs, ys, strict=True)] == decisions
        turned = [compare(y, x, k) for x, y in zip(xs, ys, strict=True)]  # symmetric: the same decision, distances
        assert [(d.phash_distance, d.dhash_distance, d.grey_distance) if d else None for d in decisions] == \
            [(d.phash_distance, d.dhash_distance, d.grey_distance) if d else None for d in turned]
        seen = sum(d is not None for d in decisions)
    first = [next((k for k in range(13) if compare(x, y, k) is not None), -1) for x, y in zip(xs, ys, strict=True)]
    assert many.accepted_from(12).tolist() == first
    assert seen >= 300
    decided = many.decide(12)
    rule_c = [i for i in np.flatnonzero(~np.isnan(many._tone)).tolist() if decided[i] is not None]
    rule_d = [i for i in np.flatnonzero(~np.isnan(many._framed)).tolist() if decided[i] is not None]
    assert len(rule_c) >= 5 and len(rule_d) >= 5, (len(rule_c), len(rule_d))  # the array measurements ran
    every = np.arange(len(xs))  # every pair measured array-wise is what Judged measures, bit for bit
    tones, framed = many.tones(every).tolist(), many.framed(every).tolist()
    assert tones == [Judged(x, y).tone() for x, y in zip(xs, ys, strict=True)]
    assert framed == [Judged(x, y).framed() for x, y in zip(xs, ys, strict=True)]
    from archiver.image import framing, similarity

    ga, gb, both = many._grids  # rule D's distance compiled (threads) and on arrays: the same numbers
    compiled = similarity._framed_many(ga[both], gb[both])
    assert framing.AVAILABLE and len(compiled) > 500
    special = [np.full(64, 128), np.full(64, 0), np.full(64, 255), np.tile([0, 255], 32), np.tile([10, 10, 11], 22)[:64],
               np.arange(64) % 3, np.r_[np.full(32, 40), np.full(32, 41)], rng.integers(0, 2, 64) * 255]
    sa = np.array([x for x in special for _ in special], dtype=np.int16)  # flat grids, ties, extremes: every pair
    sb = np.array([y for _ in special for y in special], dtype=np.int16)
    flat = similarity._framed_many(sa, sb)
    monkeypatch.setattr(framing, "AVAILABLE", False)
    assert similarity._framed_many(ga[both], gb[both]).tolist() == compiled.tolist()
    assert similarity._framed_many(sa, sb).tolist() == flat.tolist()
    for a, b in ((sa, sb[:-1]), (sa[:, :63], sb[:, :63])):  # the compiled loop checks no bounds: refused before it
        with pytest.raises(ValueError, match="grids of 64 cells"):
            similarity._framed_many(a, b)
