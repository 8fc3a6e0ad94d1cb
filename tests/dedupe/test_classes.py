"""Degenerate clusters: ten thousand copies of one blank image store one pair row per neighbouring class, not one per
member; groups equal the from-scratch computation; gc removing a class's head and the migration of member-level rows
keep the pairs complete."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from archiver.dedupe.grouping import AssetInfo
from archiver.dedupe.pairs import groupable, groups_from_pairs, infos_from_rows, stream_groups, update_pairs
from archiver.dedupe.reference import build_groups
from archiver.image.similarity import Signature, compare
from archiver.manifest.gc import GcAsset
from archiver.manifest.sqlite import Manifest
from archiver.model import SIMILARITY_RULE_VERSION
from tests.dedupe.test_pairs import PREFER, _flip, _infos, _record, _sig, synthetic_signatures

BLANKS = 10_000


def _archive() -> tuple[list[Signature], Signature, list[Signature]]:
    """10 000 identical blank signatures, 6 near copies of it (one of them archived 3 times), the blank's hashes
    with another grey (twice), and other pictures with their copies, shuffled."""
    rng = np.random.default_rng(7)
    blank = _sig([0] * 8, [0] * 8, np.full((8, 8), 128))
    near = [_sig([_flip(0, 2 + k % 5, rng) for _ in range(8)], [_flip(0, 1 + k % 4, rng) for _ in range(8)],
                 np.full((8, 8), 128 + k % 2)) for k in range(6)]
    other_grey = _sig([0] * 8, [0] * 8, np.full((8, 8), 141))
    sigs = [blank] * BLANKS + near + [near[0]] * 2 + [other_grey] * 2 + synthetic_signatures(60, seed=9)
    order = rng.permutation(len(sigs))
    return [sigs[i] for i in order], blank, near


def _groups_equal(m: Manifest, pinned: tuple[str, ...] = (), excluded: tuple[str, ...] = ()) -> None:
    infos = _infos(m)
    pairs, ids = groupable(m, 10)
    wanted = {r.sha256 for r in m.asset_rows_of(ids)}
    some = [a for a in infos if a.sha256 in wanted]
    expected = build_groups(infos, 10, PREFER, pinned, excluded)
    assert groups_from_pairs(some, pairs, 10, PREFER, pinned, excluded) == expected
    for batch in (1, 7, 1_000_000):  # a component at a time, a few together, everything at once
        seen: list[str] = []

        def infos_of(shas: list[str], seen: list[str] = seen) -> list:  # type: ignore[type-arg]
            seen.extend(shas)
            return infos_from_rows(m, shas)

        assert stream_groups(m, 10, PREFER, infos_of, pinned, excluded, batch=batch) == expected, batch
        assert sorted(seen) == sorted(wanted)  # each asset that can be in a group read once, no other


def _heads(m: Manifest) -> dict[Signature, str]:
    """The head of each class: its member with the smallest id."""
    out: dict[Signature, str] = {}
    for _rid, sha, pv, dv, grey in sorted(m.signature_rows(range(1, 100_000))):
        out.setdefault(Signature(tuple(pv.split(",")), tuple(dv.split(",")), grey or ""), sha)
    return out


def test_ten_thousand_identical_signatures_store_one_row_per_neighbouring_class(tmp_path: Path) -> None:
    sigs, blank, near = _archive()
    with Manifest.open(tmp_path / "m.sqlite3") as m:
        _record(m, sigs[:6000], 0)
        update_pairs(m, 10)
        _record(m, sigs[6000:], 6000)
        update_pairs(m, 10)
        rows = m.recorded_pairs(10, SIMILARITY_RULE_VERSION)
        heads = _heads(m)
        blank_head = heads[blank]
        to_blank = [r for r in rows if blank_head in (r.a, r.b)]
        assert 0 < len(to_blank) <= len(near) and len(rows) < 200, len(rows)  # not 10 000 per near copy
        assert {r.a for r in rows} | {r.b for r in rows} <= set(heads.values())  # only class heads
        _groups_equal(m)
        # the blank's head excluded, a near copy pinned, another blank pinned: grouped from the heads' rows still
        other_blank = next(a.sha256 for a in _infos(m) if a.signature == blank and a.sha256 != blank_head)
        _groups_equal(m, pinned=(heads[near[1]], other_blank), excluded=(blank_head, heads[near[0]]))
        # 1 000 more blanks and a new near copy: a row per neighbouring class, not per member
        before = m.counts()["near_duplicate_pairs"]
        rng = np.random.default_rng(3)
        late = _sig([_flip(0, 3, rng) for _ in range(8)], [_flip(0, 2, rng) for _ in range(8)], np.full((8, 8), 128))
        _record(m, [blank] * 1000 + [late], 50_000)
        assert update_pairs(m, 10).searched == 1001
        assert m.counts()["near_duplicate_pairs"] - before <= len(near) + 2
        _groups_equal(m)


def test_gc_removing_a_class_head_has_the_rest_of_its_class_searched_again(tmp_path: Path) -> None:
    sigs, blank, near = _archive()
    with Manifest.open(tmp_path / "m.sqlite3") as m:
        _record(m, sigs, 0)
        update_pairs(m, 10)
        heads = _heads(m)
        rows = m.recorded_pairs(10, SIMILARITY_RULE_VERSION)
        assert any(heads[blank] in (r.a, r.b) for r in rows)
        # the blank's head and a near copy's head (whose class has other members) go; a lone picture's too
        lone = next(sha for s, sha in heads.items() if s not in (blank, near[0]) and
                    any(sha in (r.a, r.b) for r in rows) and sigs.count(s) == 1)
        m.forget_assets([GcAsset(heads[blank], (), 0.0), GcAsset(heads[near[0]], (), 0.0), GcAsset(lone, (), 0.0)])
        assert update_pairs(m, 10).searched == BLANKS - 1 + 2  # the two classes' other members
        after = _heads(m)
        assert after[blank] != heads[blank]
        assert any(after[blank] in (r.a, r.b) for r in m.recorded_pairs(10, SIMILARITY_RULE_VERSION))
        _groups_equal(m)
        # a member that is not a head goes: nothing to search again, the groups still equal
        member = next(a.sha256 for a in _infos(m) if a.signature == blank and a.sha256 != after[blank])
        m.forget_assets([GcAsset(member, (), 0.0)])
        assert update_pairs(m, 10).searched == 0
        _groups_equal(m)


def test_migration_18_keeps_the_rows_between_class_heads(tmp_path: Path) -> None:
    """Rows recorded per member pair (schema 17) become the rows between class heads this version records."""
    sigs, blank, near = _archive()
    sigs = [s for s in sigs if s != blank][:40] + [blank] * 30 + [near[0]] * 3 + near[1:]
    path = tmp_path / "m.sqlite3"
    with Manifest.open(path) as m:
        _record(m, sigs, 0)
        update_pairs(m, 10)
        expected = sorted(m.recorded_pairs(10, SIMILARITY_RULE_VERSION))
        groups_before = groups_from_pairs(_infos(m), expected, 10, PREFER)
        members: dict[Signature, list[str]] = {}
        for a in _infos(m):
            members.setdefault(a.signature, []).append(a.sha256)  # type: ignore[arg-type]
        by_sha = {a.sha256: a.signature for a in _infos(m)}
    legacy = []  # what schema 17 recorded: every member pair of two neighbouring classes
    with sqlite3.connect(path) as db:
        for a, b, *_ in db.execute("SELECT * FROM near_duplicates").fetchall():
            for i in members[by_sha[a]]:
                for j in members[by_sha[b]]:
                    x, y = min(i, j), max(i, j)
                    match = compare(by_sha[x], by_sha[y], 10)  # type: ignore[arg-type]
                    assert match is not None
                    legacy.append((x, y, match.phash_distance, match.dhash_distance, match.transform,
                                   match.grey_distance, 0, SIMILARITY_RULE_VERSION))
        assert len(legacy) > 3 * len(expected)
        db.execute("DELETE FROM near_duplicates")
        db.executemany("INSERT INTO near_duplicates (a, b, phash_distance, dhash_distance, transform, "
                       "grey_distance, min_distance, rule) VALUES (?,?,?,?,?,?,?,?)", legacy)
        db.execute("DROP INDEX assets_identity_phash")
        db.execute("ALTER TABLE assets DROP COLUMN content")  # migration 19's, applied again after 18
        db.execute("DROP TABLE article_refs")  # and migration 20's
        db.execute("PRAGMA user_version = 17")  # schema 17: migration 18 (index 17) runs again
    with Manifest.open(path) as m:
        assert sorted(m.recorded_pairs(10, SIMILARITY_RULE_VERSION)) == expected
        assert groups_from_pairs(_infos(m), expected, 10, PREFER) == groups_before
        assert update_pairs(m, 10).searched == 0


def test_class_rows_and_gc_of_a_head_on_each_backend(manifest_target: Path | str) -> None:
    """The same on PostgreSQL (migration 18's index and gc's query of a class's other members are portable SQL)."""
    rng = np.random.default_rng(5)
    blank = _sig([0] * 8, [0] * 8, np.full((8, 8), 128))
    near = [_sig([_flip(0, 3, rng) for _ in range(8)], [_flip(0, 2, rng) for _ in range(8)], np.full((8, 8), 128))
            for _ in range(3)]
    sigs = [blank] * 40 + near + synthetic_signatures(10, seed=2)
    with Manifest.open(manifest_target) as m:
        _record(m, sigs, 0)
        update_pairs(m, 10)
        heads = _heads(m)
        rows = m.recorded_pairs(10, SIMILARITY_RULE_VERSION)
        assert sum(heads[blank] in (r.a, r.b) for r in rows) == len(near)  # not 40 per near copy
        _groups_equal(m)
        m.forget_assets([GcAsset(heads[blank], (), 0.0)])
        assert update_pairs(m, 10).searched == 39
        assert sum(_heads(m)[blank] in (r.a, r.b) for r in m.recorded_pairs(10, SIMILARITY_RULE_VERSION)) == 3
        _groups_equal(m)


def test_two_asset_components_grouped_by_the_pair_path_equal_the_from_scratch_groups(tmp_path: Path) -> None:
    """Most components are two assets joined by one pair (pairs.pair_groups groups them without the general pass):
    with the worse or the better of a pair pinned, both pinned, one excluded, or one whose signature the caller
    could not give, the groups equal the from-scratch computation, at every batch size."""
    from archiver.dedupe.pairs import group_batches

    rng = np.random.default_rng(11)
    sigs = []
    for _ in range(40):  # a picture and one near copy: a two-asset component each
        p = [int(v) for v in rng.integers(0, 2**63, 8)]
        d = [int(v) for v in rng.integers(0, 2**63, 8)]
        grey = rng.integers(0, 256, (8, 8))
        sigs += [_sig(p, d, grey), _sig([_flip(v, 3, rng) for v in p], [_flip(v, 2, rng) for v in d],
                                        np.clip(grey + rng.integers(-2, 3, (8, 8)), 0, 255))]
    sigs += synthetic_signatures(30, seed=4)  # and components of every other shape
    with Manifest.open(tmp_path / "m.sqlite3") as m:
        _record(m, sigs, 0)
        update_pairs(m, 10)
        batches = list(group_batches(m, 10))
        paired = [r for _ids, rows, two in batches if two for r in rows]
        assert len(paired) >= 35 and any(not two for *_, two in batches)
        a, b = zip(*((r.a, r.b) for r in paired), strict=True)
        _groups_equal(m)
        _groups_equal(m, pinned=a[:6] + b[6:12] + a[12:15] + b[12:15], excluded=a[20:23] + b[23:26])
        everything = _infos(m)
        unsigned = set(a[30:33])  # the caller has no signature for these (it could not read them)
        infos = [a_ if a_.sha256 not in unsigned else AssetInfo(a_.sha256, a_.format, a_.bytes, a_.width, a_.height,
                                                                   a_.first_seen, None) for a_ in everything]
        expected = build_groups(infos, 10, PREFER)
        assert not any(m_.sha256 in unsigned for g in expected for m_ in g.members)
        for batch in (1, 7, 1_000_000):
            def infos_of(shas: list[str]) -> list[AssetInfo]:
                return [x if x.sha256 not in unsigned else AssetInfo(x.sha256, x.format, x.bytes, x.width, x.height,
                                                                     x.first_seen, None)
                        for x in infos_from_rows(m, shas)]

            assert stream_groups(m, 10, PREFER, infos_of, batch=batch) == expected, batch
