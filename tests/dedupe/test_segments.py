"""The on-disk variant index (dedupe/segments.py): incremental segments equal a from-scratch search; a killed update
leaves the previous generation valid; an index that does not match the manifest is rebuilt, with one log line."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from archiver.dedupe import segments
from archiver.dedupe.pairs import groupable, groups_from_pairs, update_pairs
from archiver.dedupe.reference import build_groups
from archiver.dedupe.segments import VariantIndex
from archiver.image.similarity import Signature
from archiver.manifest.sqlite import Manifest
from archiver.model import SIMILARITY_RULE_VERSION
from tests.dedupe.test_pairs import PREFER, _infos, _record, _sig, synthetic_signatures
from tests.support.paths import ROOT_DIR


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Probe tables from 24 classes on, so a few hundred assets make several tiers and merges."""
    monkeypatch.setattr(segments, "LAYOUT_MIN", 24)


def _pairs(m: Manifest, n: int = 10) -> set[tuple[str, str, int, int]]:
    return set(m.recorded_pairs(n, SIMILARITY_RULE_VERSION))


def _rebuilt(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "rebuilding it" in r.getMessage()]


def test_segments_searched_batch_by_batch_give_the_from_scratch_pairs_and_groups(
        tmp_path: Path, small_segments: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "archiver")
    sigs = synthetic_signatures(150, seed=11)
    cuts = [0, 200, 230, 231, 245, 270, 300, 330, 345, 346, len(sigs)]
    most = 0
    with Manifest.open(tmp_path / "m.sqlite3") as m:
        for lo, hi in zip(cuts, cuts[1:], strict=False):
            _record(m, sigs[lo:hi], lo)
            assert update_pairs(m, 10).searched == hi - lo
            most = max(most, len(VariantIndex.open(m).segments))
        index = VariantIndex.open(m)
        assert index.assets == len(sigs) and most > 2 and len(index.segments) <= 6
        assert any(s.tables is not None for s in index.segments), "no segment kept probe tables"
        sizes = [s.classes for s in index.segments]
        assert all(b * segments.TIER < a for a, b in zip(sizes, sizes[1:], strict=False) if b >= 24), sizes
        incremental = _pairs(m)
        infos = _infos(m)
        for n in (4, 10):
            assert groups_from_pairs(infos, m.recorded_pairs(n, SIMILARITY_RULE_VERSION), n, PREFER) == \
                build_groups(infos, n, PREFER)
    with Manifest.open(None) as mem:  # the same archive searched at once, in memory (no index folder)
        _record(mem, sigs, 0)
        update_pairs(mem, 10)
        assert _pairs(mem) == incremental
    with Manifest.open(tmp_path / "m.sqlite3") as m:  # `dedupe --compact`: one segment, nothing searched again
        assert update_pairs(m, 10, compact=True).searched == 0
        assert len(VariantIndex.open(m).segments) == 1 and _pairs(m) == incremental
        _record(m, sigs[:3], 5000)  # other assets with the same signatures: members of existing classes
        assert update_pairs(m, 10).searched == 3 and VariantIndex.open(m).classes == index.classes
        incremental = _pairs(m)
        grown = VariantIndex.open(m)  # classes with members in two segments: the smallest id of either (-1: none)
        every = np.arange(grown.classes + 2)
        listed = grown.members(every)
        assert len(grown.segments) > 1 and sum(listed[c].size > 1 for c in every.tolist()) == 3
        assert grown.first_members(every).tolist() == \
            [int(listed[c].min()) if listed[c].size else -1 for c in every.tolist()]
    with Manifest.open(None) as mem:
        _record(mem, sigs, 0)
        _record(mem, sigs[:3], 5000)
        update_pairs(mem, 10)
        assert _pairs(mem) == incremental
    with Manifest.open(tmp_path / "m.sqlite3") as m:  # a rescan searches the segments as they are; compact merges
        segments = len(VariantIndex.open(m).segments)
        assert update_pairs(m, 10, rescan=True).searched == len(sigs) + 3
        assert _pairs(m) == incremental and len(VariantIndex.open(m).segments) == segments > 1
        assert update_pairs(m, 10, compact=True).searched == 0
        assert _pairs(m) == incremental and len(VariantIndex.open(m).segments) == 1
        assert update_pairs(m, 10, rescan=True).searched == len(sigs) + 3 and _pairs(m) == incremental
    assert _rebuilt(caplog) == []
    folder = tmp_path / "m.sqlite3.index" / "variants"  # merged segments are gone; only the live ones stay
    with Manifest.open(tmp_path / "m.sqlite3") as m:
        assert {p.name for p in folder.iterdir() if p.is_dir()} == {s.name for s in VariantIndex.open(m).segments}


def test_identical_signatures_are_one_class(tmp_path: Path, small_segments: None) -> None:
    """3 000 copies of one blank image (and 40 of a near-blank one) among other pictures: one class each in the
    index, searched once; pairs and groups equal the from-scratch computation."""
    rng = np.random.default_rng(2)
    blank = _sig([0] * 8, [0] * 8, np.full((8, 8), 128))
    near_blank = _sig([1 << 40] * 8, [3] * 8, np.full((8, 8), 129))
    other_grey = _sig([0] * 8, [0] * 8, np.full((8, 8), 140))  # the blank's hashes, another grey: one class to group
    others = synthetic_signatures(120, seed=4)
    sigs = [blank] * 3000 + [near_blank] * 40 + [other_grey] * 2 + others
    order = rng.permutation(len(sigs))
    sigs = [sigs[i] for i in order]
    with Manifest.open(tmp_path / "m.sqlite3") as m:
        _record(m, sigs[:2000], 0)
        update_pairs(m, 10)
        _record(m, sigs[2000:], 2000)
        update_pairs(m, 10)
        index = VariantIndex.open(m)
        assert index.classes <= len(others) + 3 and index.assets == len(sigs)
        blank_class = index.classes_of(np.array([1], dtype=np.int64))  # rowid 1: the first recorded asset
        assert index.members(blank_class)[int(blank_class[0])].size == sum(1 for s in sigs if s == sigs[0])
        infos = _infos(m)
        assert groups_from_pairs(infos, m.recorded_pairs(10, SIMILARITY_RULE_VERSION), 10, PREFER) == \
            build_groups(infos, 10, PREFER)
        # grouping reads only the assets that can be in a group: the pairs' ends and the classes of shared hashes
        pairs, ids = groupable(m, 10)
        wanted = {r.sha256 for r in m.asset_rows_of(ids)}
        some = [a for a in infos if a.sha256 in wanted]
        assert len(some) == len(ids) < len(infos)
        grey_sha = next(a.sha256 for a in infos if a.signature == other_grey)
        assert grey_sha in {a.sha256 for a in some}
        by_sig = {a.signature: a.sha256 for a in infos}
        for pinned, excluded in (((), ()), ((by_sig[near_blank], grey_sha), (by_sig[blank],))):
            assert groups_from_pairs(some, pairs, 10, PREFER, pinned, excluded) == \
                build_groups(infos, 10, PREFER, pinned, excluded)


_KILLER = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from archiver.dedupe import segments
from archiver.dedupe.pairs import update_pairs
from archiver.manifest.sqlite import Manifest
from tests.dedupe.test_pairs import _record, synthetic_signatures
segments.LAYOUT_MIN = 24
point = sys.argv[2]
real_replace, real_record = os.replace, Manifest.record_hash_index_state
def replace(a, b):
    if point == "before-switch":
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(a, b)
def record(self, *args):
    if point == "after-switch":
        os.kill(os.getpid(), signal.SIGKILL)
    real_record(self, *args)
segments.os.replace = replace
Manifest.record_hash_index_state = record
with Manifest.open(Path(sys.argv[1])) as m:
    _record(m, synthetic_signatures(80, seed=9)[40:], 1000)
    update_pairs(m, 10)
"""


@pytest.mark.parametrize("point", ["before-switch", "after-switch"])
def test_a_run_killed_during_an_index_update_leaves_a_valid_index(
        tmp_path: Path, small_segments: None, caplog: pytest.LogCaptureFixture, point: str) -> None:
    caplog.set_level(logging.INFO, "archiver")
    path = tmp_path / "m.sqlite3"
    sigs = synthetic_signatures(80, seed=9)
    with Manifest.open(path) as m:
        _record(m, sigs[:40], 0)
        update_pairs(m, 10)
        before = VariantIndex.open(m).generation
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(path), point, str(ROOT_DIR)], cwd=ROOT_DIR,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    folder = tmp_path / "m.sqlite3.index" / "variants"
    assert (folder / "GENERATION").exists()
    with Manifest.open(path) as m:
        assert update_pairs(m, 10).searched == len(sigs) - 40 or point == "after-switch"
        index = VariantIndex.open(m)
        assert index.assets == len(sigs) and (index.generation > before or point == "after-switch")
        incremental = _pairs(m)
    # before the switch: the previous generation was whole and matched the manifest (no rebuild); after it, the
    # manifest never recorded the new generation: rebuilt, said once
    assert len(_rebuilt(caplog)) == (0 if point == "before-switch" else 1)
    assert all(segments._SEGMENT.fullmatch(p.name) for p in folder.iterdir() if p.is_dir())
    assert {p.name for p in folder.iterdir() if p.is_dir()} == {s.name for s in index.segments}
    with Manifest.open(None) as mem:
        _record(mem, sigs[:40], 0)
        _record(mem, sigs[40:], 1000)
        update_pairs(mem, 10)
        assert _pairs(mem) == incremental


def test_an_index_that_does_not_match_the_manifest_is_rebuilt_with_one_log_line(
        tmp_path: Path, small_segments: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "archiver")
    path = tmp_path / "m.sqlite3"
    sigs = synthetic_signatures(90, seed=21)
    with Manifest.open(path) as m:
        _record(m, sigs[:50], 0)
        update_pairs(m, 10)
    shutil.copy(path, tmp_path / "backup.sqlite3")  # an older manifest (a backup), restored behind the index
    with Manifest.open(path) as m:
        _record(m, sigs[50:], 50)
        update_pairs(m, 10)
    os.replace(tmp_path / "backup.sqlite3", path)
    with Manifest.open(path) as m:
        _record(m, sigs[50:70], 500)  # other assets at the same ids the index has seen
        assert update_pairs(m, 10).searched == 20
        assert len(_rebuilt(caplog)) == 1
        index = VariantIndex.open(m)
        assert index.assets == 70 and len(_rebuilt(caplog)) == 1
        got = _pairs(m)
    with Manifest.open(None) as mem:
        _record(mem, sigs[:50], 0)
        _record(mem, sigs[50:70], 500)
        update_pairs(mem, 10)
        assert _pairs(mem) == got
    # an index written by another version (another format): rebuilt, with a line naming the format
    gen = tmp_path / "m.sqlite3.index" / "variants" / "GENERATION"
    meta = json.loads(gen.read_text())
    gen.write_text(json.dumps({**meta, "format": 3}))
    caplog.clear()
    with Manifest.open(path) as m:
        assert VariantIndex.open(m).assets == 70
        assert _pairs(m) == got
    assert len(_rebuilt(caplog)) == 1 and "format 3" in _rebuilt(caplog)[0]
    # a corrupt segment file: rebuilt, never read wrong
    seg = next(p for p in (tmp_path / "m.sqlite3.index" / "variants").iterdir() if p.is_dir())
    (seg / "phash.npy").write_bytes(b"not an array")
    caplog.clear()
    with Manifest.open(path) as m:
        assert VariantIndex.open(m).assets == 70
    assert len(_rebuilt(caplog)) == 1
    # an empty segment file (a disk filled up, a copy cut short): rebuilt too, not an EOFError at every run
    seg = next(p for p in (tmp_path / "m.sqlite3.index" / "variants").iterdir() if p.is_dir())
    (seg / "dhash.npy").write_bytes(b"")
    caplog.clear()
    with Manifest.open(path) as m:
        assert VariantIndex.open(m).assets == 70
        assert _pairs(m) == got
    assert len(_rebuilt(caplog)) == 1


def test_variants_given_later_to_an_old_asset_make_the_index_again(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    from archiver.model import Asset, ImageFormat

    caplog.set_level(logging.INFO, "archiver")
    sigs = synthetic_signatures(20, seed=1)
    jpeg = ImageFormat("jpeg", "image/jpeg", "jpg")
    with Manifest.open(tmp_path / "m.sqlite3") as m:
        m.record_asset(Asset("f" * 64, jpeg, 10, 10, 10, "0" * 16, "0" * 16), "old.jpg", [])  # no variants yet
        _record(m, sigs, 0)
        update_pairs(m, 10)
        assert VariantIndex.open(m).assets == len(sigs)
        s: Signature = sigs[0]
        m.record_asset(Asset("f" * 64, jpeg, 10, 10, 10, s.phash[0], s.dhash[0], phash_variants=s.phash,
                             dhash_variants=s.dhash, grey=s.grey), "old.jpg", [])
        assert VariantIndex.open(m).assets == len(sigs) + 1


@pytest.mark.parametrize("share", [1, 3])
def test_a_whole_search_of_small_segments_the_other_way_round_finds_the_same_candidates(
        tmp_path: Path, small_segments: None, monkeypatch: pytest.MonkeyPatch, share: int) -> None:
    """A search of most classes probes each segment's tables with the searched identity hashes; a segment much smaller
    than that (a million queries against a few thousand classes cost 2-4 s a hash kind) is searched the other way
    round, its variants against every segment's identity hashes, keeping the pairs of searched classes. Both ways give
    the same candidate pairs, for every class searched and for a third of them, over flat and tabled segments."""
    sigs = synthetic_signatures(150, seed=5)
    with Manifest.open(tmp_path / "m.sqlite3") as m:
        for lo, hi in ((0, 300), (300, 330), (330, 331), (331, len(sigs))):
            _record(m, sigs[lo:hi], lo)
            update_pairs(m, 10)
        index = VariantIndex.open(m)
        assert len(index.segments) > 1
        q = np.arange(0, index.classes, share)
        monkeypatch.setattr(segments, "_REVERSE", 10**9)  # never the other way round
        forward = index._candidates_whole(q, 10)
        monkeypatch.setattr(segments, "_REVERSE", 0)  # always
        reverse = index._candidates_whole(q, 10)
        monkeypatch.setattr(segments, "_REVERSE", 4)
        mixed = index._candidates_whole(q, 10)
    assert forward[0].size > 0
    for got in (reverse, mixed):
        assert np.array_equal(got[0], forward[0]) and np.array_equal(got[1], forward[1])
