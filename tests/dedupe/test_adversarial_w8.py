"""Adversarial cases for the array decision (similarity.JudgedMany) and the grouping by sha256 (pairs.group_batches,
pair_groups, stream_groups): each equals the from-scratch reference.build_groups."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from archiver.dedupe.pairs import groups_from_pairs, infos_from_rows, stream_groups, update_pairs
from archiver.dedupe.reference import build_groups
from archiver.image.similarity import Signature, compare
from archiver.manifest.sqlite import Manifest
from archiver.model import SIMILARITY_RULE_VERSION, Asset
from tests.dedupe.test_pairs import JPEG, PREFER

# X is H mirrored with another tone: under flip-h its hashes are closest (pHash 2, dHash 9), but the thumbnails are
# 30 grey levels apart, so rules A and B refuse it there; rule C (tone) accepts it under flip-h from distance 7,
# and below that only rule D does, in the identity orientation (pHash 2, dHash 11). Y is a near copy of H (2, 10)
# that X is not near at 3.
H = Signature(
    ("233b97551b803a01", "ab3b97555b903a01", "2b3b95551b903a09", "232b97551b903a01", "2b3b955519903a01",
     "2b3b97551b983a09", "6b3b97551b903201", "2b3b97551b98ba01"),
    ("69f4f6634523e3a6", "aa78f252c46fe18c", "7be07340c8236188", "6bf0fe476423e7ed", "eff0b3c2252bc18c",
     "6ad0f2115527e58c", "6950f260442ba58f", "6af0b2426e22499c"),
    "aadb88d7d788dbaadbe9bd6767bde9db88bda27878a2bd88d7677883837867d7d7677883837867d788bda27878a2bd88dbe9bd6767bde9db"
    "aadb88d7d788dbaa")
X = Signature(
    ("2b3b97551b903a01",) * 8,
    ("6bf0f2024423e0ac", "ebf073424423e18c", "6af0f04244a3e18c", "63f0f3424423e08c", "69f0e2624423e18c",
     "6bf0f0424c27e18c", "63f0f2425423e18e", "6b70f2424423e08d"),
    "88b06dadad6db088b0bb98535398bbb06d9883616183986dad536169696153adad536169696153ad6d9883616183986db0bb98535398bbb0"
    "88b06dadad6db088")
Y = Signature(
    ("233b97543b803a01", "44e1e14d6b3fce52", "2a34a61d68a54ca4", "64eb3b5439f16a85", "26cf16920fdc8ca2",
     "3a0c38060fed0617", "11284740fd0b4105", "339934d2b1105aae"),
    ("694476634129a2a4", "1a0ad24273b212aa", "21937bc94049fef6", "600bf31882898b79", "23e46f2687f04ba2",
     "3e1abce3bfc67e3b", "7d88cbeb8ef7d326", "7b17953a5fe29a80"),
    "a9dc87d7d887dca9daeabd6766bce9db88bea27879a3bd87d8677983837767d7d8687783847767d888bda37879a3bc87dbeabc6868beeada"
    "aadc88d6d787daab")


def _store(m: Manifest, sigs: list[tuple[str, Signature, int]]) -> None:
    for name, sig, width in sigs:
        sha = hashlib.sha256(name.encode()).hexdigest()
        m.record_asset(Asset(sha, JPEG, 1000, width, width, sig.phash[0], sig.dhash[0], phash_variants=sig.phash,
                             dhash_variants=sig.dhash, grey=sig.grey), f"{sha}.jpg", [])


def test_rows_searched_at_a_larger_distance_order_the_candidates_as_compare_does_at_the_smaller_one(
        tmp_path: Path) -> None:
    """A row stores the match at the distance searched (10: X under flip-h, 2 + 9); grouping at 3 must order H's
    candidates by the match at 3 (X only by rule D, identity, 2 + 11), as the reference does: Y (2 + 10) comes
    first and, X not being near Y at 3, X stays out. Ordered by the stored distances, X joins and Y stays out."""
    assert compare(H, X, 10) is not None and (compare(H, X, 10).transform, compare(H, X, 3).transform) == (  # type: ignore[union-attr]
        "flip-h", "identity")
    assert compare(X, Y, 3) is None and compare(X, Y, 10) is not None
    with Manifest.open(tmp_path / "m.sqlite3") as m:
        _store(m, [("h", H, 400), ("x", X, 300), ("y", Y, 200)])
        update_pairs(m, 10)
        infos = infos_from_rows(m, [hashlib.sha256(n.encode()).hexdigest() for n in "hxy"])
        expected = build_groups(infos, 3, PREFER)
        assert [len(g.members) for g in expected] == [2]
        assert groups_from_pairs(infos, m.recorded_pairs(3, SIMILARITY_RULE_VERSION), 3, PREFER) == expected
        for batch in (1, 1_000_000):
            assert stream_groups(m, 3, PREFER, lambda shas: infos_from_rows(m, shas), batch=batch) == expected


def test_signature_without_grey_given_as_none() -> None:
    """A grey read as NULL (None) is an unknown grey, as before the lazy parsing (tests' _infos pass it so)."""
    sig = Signature(H.phash, H.dhash, None)  # type: ignore[arg-type]
    assert compare(sig, X, 10) == compare(Signature(H.phash, H.dhash), X, 10)





def test_stored_variants_the_index_read_but_signature_refuses_are_left_out_not_a_crash(tmp_path: Path) -> None:
    """Variant fields of the right length the index used to read while Signature (which now checks each hash is 16 hex
    digits, for the array path) refuses them: a 15- and a 17-digit hash, a grey that is not hex, a hash padded with
    spaces. update_pairs crashed on them (ValueError); they are left out of the index, as of the groups."""
    good = [("h", H, 400), ("x", X, 300), ("y", Y, 200)]
    bad = [
        ("split", ("0" * 15, "0" * 17, *H.phash[2:]), H.dhash, H.grey),
        ("grey", H.phash, H.dhash, "zz" * 64),
        ("spaces", (" " + H.phash[0][1:15] + " ", *H.phash[1:]), H.dhash, H.grey),
    ]
    for _name, pv, dv, grey in bad:
        with pytest.raises(ValueError):
            Signature(pv, dv, grey)
    with Manifest.open(tmp_path / "m.sqlite3") as m:
        _store(m, good)
        for name, pv, dv, grey in bad:
            sha = hashlib.sha256(name.encode()).hexdigest()
            m.record_asset(Asset(sha, JPEG, 1000, 500, 500, pv[0], dv[0], phash_variants=pv, dhash_variants=dv,
                                 grey=grey), f"{sha}.jpg", [])
        assert update_pairs(m, 10).searched == len(good)
        infos = infos_from_rows(m, [r.sha256 for r in m.asset_rows()])
        assert sum(a.signature is None for a in infos) == len(bad)
        expected = build_groups(infos, 10, PREFER)
        assert expected and stream_groups(m, 10, PREFER, lambda shas: infos_from_rows(m, shas)) == expected


def test_pairs_measured_a_chunk_at_a_time_record_the_same_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """update_pairs measures its candidates a chunk at a time (bounded memory: JudgedMany's arrays are ~1.6 KB a pair,
    and a first search of a large archive has millions of candidates): the rows are those measured all at once."""
    import sqlite3

    from archiver.dedupe import pairs as dedupe
    from tests.dedupe.test_pairs import _record, synthetic_signatures

    sigs = synthetic_signatures(80, seed=8)
    rows = []
    for name, chunk in (("all", 1 << 30), ("chunked", 7)):
        monkeypatch.setattr(dedupe, "MEASURED_AT_ONCE", chunk)
        with Manifest.open(tmp_path / f"{name}.sqlite3") as m:
            _record(m, sigs[:150], 0)
            update_pairs(m, 10)
            _record(m, sigs[150:], 150)
            update_pairs(m, 12)
        with sqlite3.connect(tmp_path / f"{name}.sqlite3") as db:
            rows.append(sorted(db.execute("SELECT * FROM near_duplicates").fetchall()))
    assert len(rows[0]) > 30 and rows[0] == rows[1]


def test_stream_groups_at_every_distance_below_the_search_on_each_backend(manifest_target: Path | str) -> None:
    """Searched at 12, grouped at every distance up to 12 with pins and exclusions (on either side of two-asset
    components too), a batch at a time, on SQLite and PostgreSQL (asset_rows_by_sha): the from-scratch groups."""
    import numpy as np

    from tests.dedupe.test_pairs import _flip, _record, _sig, synthetic_signatures

    rng = np.random.default_rng(17)
    sigs = synthetic_signatures(70, seed=17)
    for _ in range(12):  # symmetric pictures (every transform tied) and their copies, some without a grey
        g = rng.integers(0, 256, (8, 8))
        g = (g + g[::-1] + g[:, ::-1] + g[::-1, ::-1] + g.T + g.T[::-1] + g.T[:, ::-1] + g.T[::-1, ::-1]) // 8
        p, d = [int(rng.integers(0, 2**63))] * 8, [int(rng.integers(0, 2**63))] * 8
        sigs.append(_sig(p, d, g))
        copy = _sig([_flip(v, int(rng.integers(0, 9)), rng) for v in p], [_flip(v, int(rng.integers(0, 9)), rng)
                                                                           for v in d], g * 0.8 + 20)
        sigs.append(copy if rng.random() < 0.7 else Signature(copy.phash, copy.dhash))
    with Manifest.open(manifest_target) as m:
        _record(m, [sigs[i] for i in rng.permutation(len(sigs))], 0)
        update_pairs(m, 12)
        infos = infos_from_rows(m, [r.sha256 for r in m.asset_rows()])
        shas = [a.sha256 for a in infos]
        ends = [s for r in m.recorded_pairs(12, SIMILARITY_RULE_VERSION) for s in (r.a, r.b)]
        for n in range(0, 13, 2):
            pinned = [shas[int(i)] for i in rng.choice(len(shas), 6, replace=False)] + ends[n:n + 4]
            excluded = [shas[int(i)] for i in rng.choice(len(shas), 6, replace=False)] + ends[n + 5:n + 7]
            expected = build_groups(infos, n, PREFER, pinned, excluded)
            for batch in (1, 7, 1_000_000):
                assert stream_groups(m, n, PREFER, lambda s: infos_from_rows(m, s), pinned, excluded,
                                     batch=batch) == expected, (n, batch)


# rot90 and rot270 tie (pHash + dHash) with equal grey distances (here: no grey, -1.0 for every transform) and split
# the distance differently: under rule 2, A onto B picked rot90 (pHash 1, dHash 6: max 6 > 3 + 2, refused at 3) and B
# onto A its rot90, which is A's rot270 (4, 3: accepted at 3 by rule B). Rule 3 breaks the tie alike from both sides.
A = Signature(
    ("0af68d49e7df617c", "1e4fce8296f7e9fe", "3770b41daa859483", "1e4fcec2d6f6e9da", "0e8cce04042f207f",
     "3213c3edb9df494e", "42248ad471a43ff6", "371ed1a835c64c88"),
    ("669029639736f61b", "6a84e994ef430792", "2577df9def43cc86", "4284411cef430393", "263202e2f8d12f36",
     "2830b17d11d37b99", "7223969e858460b3", "4ae69e84d4d22d0e"))
B = Signature(
    ("1e4fce8296f7e9fa", "3c53e0071f518973", "62fabdb5985d28b9", "03e260c33cbbbd9a", "5a7dd50ea090ab3f",
     "2fe738d0c2859b93", "0ba10fcca07770af", "548b44264de6b69b"),
    ("4a84491cef430392", "773a3524c296535c", "1a853d7d76c6b913", "50a6cbb0cdd8016a", "262a35499fbbec4e",
     "5ef1e2053e6025fc", "5c6fe57ca570f32f", "1bfeddf5d3aec3ad"))


@pytest.mark.parametrize("searched", [3, 10])
@pytest.mark.parametrize("first", ["A", "B"])
def test_a_pair_whose_transforms_tie_is_decided_alike_from_both_sides_and_grouped_as_the_reference_does(
        tmp_path: Path, searched: int, first: str) -> None:
    """Whichever of A and B is archived first (the search measures the later onto the earlier; the reference measures
    in sha256 order), and searched at 3 or 10, the pair is recorded from 3 and grouped at 3 as the reference groups it.
    Under rule 2 (a840d78 and before) compare accepted A onto B from 4 and B onto A from 3, so one archive order lost
    the group (no row at 3, a row "from 4" at 10) and the other made one the reference did not."""
    assert [compare(A, B, k) is None for k in range(13)] == [compare(B, A, k) is None for k in range(13)]
    assert compare(A, B, 2) is None and compare(A, B, 3) is not None
    pa, pb = compare(A, B, 3), compare(B, A, 3)
    assert pa is not None and pb is not None
    assert (pa.phash_distance, pa.dhash_distance, pa.grey_distance) == (pb.phash_distance, pb.dhash_distance,
                                                                       pb.grey_distance)
    older, newer = (A, B) if first == "A" else (B, A)
    with Manifest.open(tmp_path / "m.sqlite3") as m:
        _store(m, [("first", older, 300), ("second", newer, 200)])  # sha256("second") < sha256("first")
        update_pairs(m, searched)
        assert [r[0] for r in m._db.execute("SELECT min_distance FROM near_duplicates")] == [3]
        infos = infos_from_rows(m, [r.sha256 for r in m.asset_rows()])
        expected = build_groups(infos, 3, PREFER)
        assert len(expected) == 1
        assert groups_from_pairs(infos, m.recorded_pairs(3, SIMILARITY_RULE_VERSION), 3, PREFER) == expected
        assert stream_groups(m, 3, PREFER, lambda shas: infos_from_rows(m, shas)) == expected
