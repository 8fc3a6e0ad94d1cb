"""HashIndex: exact equality with brute force on random, clustered and duplicated hashes; query, add, save/load.

Every search test runs both engines: the compiled loop (numba) and the pure-numpy fallback.
"""

from __future__ import annotations

import numpy as np
import pytest

from archiver.dedupe import index as hashindex
from archiver.dedupe import kernel as hashkernel
from archiver.dedupe.index import HashIndex, brute_force_pairs, hex_to_uint64, plan

ENGINES = ["compiled", "numpy"]

U64_MAX = np.iinfo(np.uint64).max


def _flip(rng: np.random.Generator, h: np.ndarray, max_bits: int) -> np.ndarray:
    """Each hash with 0..max_bits distinct random bits flipped."""
    out = h.copy()
    for i, n in enumerate(rng.integers(0, max_bits + 1, h.size)):
        for b in rng.choice(64, n, replace=False):
            out[i] ^= np.uint64(1) << np.uint64(b)
    return out


def _mixed(n: int, seed: int) -> np.ndarray:
    """Uniform hashes, families of near-duplicates around a few bases, exact duplicates, a blank block."""
    rng = np.random.default_rng(seed)
    h = rng.integers(0, U64_MAX, n, dtype=np.uint64, endpoint=True)
    fam = n * 2 // 5
    bases = rng.integers(0, U64_MAX, 150, dtype=np.uint64, endpoint=True)
    h[:fam] = _flip(rng, bases[rng.integers(0, bases.size, fam)], 12)
    h[fam:fam + 300] = 0  # blank images
    h[fam + 300:fam + 400] = U64_MAX
    h[fam + 400:fam + 600] = h[rng.integers(0, fam, 200)]  # planted exact duplicates
    h[fam + 600:fam + 900] = _flip(rng, np.zeros(300, np.uint64), 10)  # near-blank
    return rng.permutation(h)


@pytest.fixture(scope="module")
def mixed() -> np.ndarray:
    return _mixed(20_000, seed=7)


@pytest.fixture(scope="module")
def reference(mixed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return brute_force_pairs(mixed, 10)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("k", [0, 4, 8, 10])
def test_pairs_equal_brute_force(mixed: np.ndarray, reference: tuple[np.ndarray, np.ndarray], k: int,
                                 engine: str) -> None:
    got, dist = HashIndex.build(mixed, k, engine=engine).pairs()
    within = reference[1] <= k
    want, want_dist = reference[0][within], reference[1][within]
    assert len(want) > 10_000  # the data really has duplicates and near-duplicates at every k
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(dist, want_dist)


@pytest.mark.parametrize("engine", ENGINES)
def test_single_thread_and_streamed_pairs_match(mixed: np.ndarray, engine: str) -> None:
    sub = mixed[:5000]
    want, want_dist = brute_force_pairs(sub, 10)
    index = HashIndex.build(sub, 10, workers=1, engine=engine)
    got, dist = index.pairs()
    np.testing.assert_array_equal(got, want)
    streamed = np.concatenate([p for p, _ in index.iter_pairs()])
    assert len(streamed) == len(want)
    assert set(map(tuple, streamed.tolist())) == set(map(tuple, want.tolist()))


@pytest.mark.parametrize("engine", ENGINES)
def test_value_pairs_collapse_identical_hashes(engine: str) -> None:
    h = np.zeros(3000, dtype=np.uint64)
    h[-1] = 0b111
    index = HashIndex.build(h, 4, engine=engine)
    pairs, dist = index.value_pairs()
    assert pairs.tolist() == [[0, 1]] and dist.tolist() == [3]
    assert index.ids_of(0).size == 2999
    assert sum(len(p) for p, _ in index.iter_pairs()) == 3000 * 2999 // 2


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("k", [3, 8, 10])
def test_query_equals_brute_force(mixed: np.ndarray, k: int, engine: str) -> None:
    rng = np.random.default_rng(3)
    existing = mixed[:12_000]
    new = np.concatenate([_flip(rng, existing[rng.integers(0, existing.size, 1500)], 12), mixed[12_000:13_000]])
    q, e, d = HashIndex.build(existing, 10, engine=engine).query(new, k)
    full = np.bitwise_count(new[:, None] ^ existing[None, :])
    wq, we = np.nonzero(full <= k)
    assert len(wq) > 1000
    np.testing.assert_array_equal(q, wq)
    np.testing.assert_array_equal(e, we)
    np.testing.assert_array_equal(d, full[wq, we])


def test_query_beyond_build_distance_is_refused(mixed: np.ndarray) -> None:
    with pytest.raises(ValueError, match="built for distance <= 4"):
        HashIndex.build(mixed[:10], 4).query(mixed[:3], 5)


@pytest.mark.parametrize("engine", ENGINES)
def test_add_finds_every_pair_involving_new_hashes(mixed: np.ndarray, reference: tuple[np.ndarray, np.ndarray],
                                                   engine: str) -> None:
    old, new = mixed[:15_000], mixed[15_000:16_000]
    grown, pairs, dist = HashIndex.build(old, 8, engine=engine).add(new)
    assert grown.engine == engine
    keep = (reference[1] <= 8) & (reference[0][:, 1] < 16_000)
    want, want_dist = reference[0][keep], reference[1][keep]
    involving = want[:, 1] >= 15_000
    assert involving.sum() > 100
    np.testing.assert_array_equal(pairs, want[involving])
    np.testing.assert_array_equal(dist, want_dist[involving])
    np.testing.assert_array_equal(grown.hashes(), mixed[:16_000])
    np.testing.assert_array_equal(grown.pairs()[0], want)


def test_save_load_round_trip(tmp_path, mixed: np.ndarray) -> None:
    index = HashIndex.build(mixed[:5000], 6)
    index.save(tmp_path / "index.npz")
    loaded = HashIndex.load(tmp_path / "index.npz")
    assert loaded.max_distance == 6
    np.testing.assert_array_equal(loaded.hashes(), mixed[:5000])
    np.testing.assert_array_equal(loaded.pairs()[0], index.pairs()[0])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("hashes", [[], [5], [0, 7], [U64_MAX, U64_MAX - 1], [42] * 50])
def test_edge_cases(hashes: list[int], engine: str) -> None:
    h = np.array(hashes, dtype=np.uint64)
    got, dist = HashIndex.build(h, 10, engine=engine).pairs()
    want, want_dist = brute_force_pairs(h, 10)
    assert got.shape == want.shape and got.dtype == np.int64
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(dist, want_dist)
    q, e, d = HashIndex.build(h, 10, engine=engine).query(np.array([0], dtype=np.uint64))
    assert len(q) == int((np.bitwise_count(h) <= 10).sum())


def test_plan_is_pigeonhole_exact() -> None:
    for k in range(0, 17):
        chunks = plan(k)
        assert sum(c.bits for c in chunks) == 64
        assert sum(c.radius + 1 for c in chunks) == k + 1


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="uint64"):
        HashIndex.build(np.array([1, 2], dtype=np.int64))
    with pytest.raises(ValueError, match="max_distance"):
        HashIndex.build(np.zeros(2, np.uint64), 64)


def test_hex_to_uint64() -> None:
    assert hex_to_uint64(["ffffffffffffffff", "0000000000000001", "c3c3"]).tolist() == [U64_MAX, 1, 0xC3C3]


def test_compiled_loop_resumes_and_grows_small_buffers(monkeypatch: pytest.MonkeyPatch, mixed: np.ndarray,
                                                       reference: tuple[np.ndarray, np.ndarray]) -> None:
    """Parts of 8 pairs: the loop stops mid-task and resumes, and grows for buckets with more pairs."""
    monkeypatch.setattr(hashindex, "_PART", 8)
    rng = np.random.default_rng(5)
    crowd = np.uint64(0x3FFFFF) ^ (rng.integers(0, 1 << 42, 400, dtype=np.uint64) << np.uint64(22))
    crowd &= rng.integers(0, 1 << 63, 400, dtype=np.uint64) | np.uint64(0x3FFFFF)  # 400 values, one chunk-0 key
    h = np.concatenate([mixed[:4000], crowd, crowd[:50] ^ np.uint64(1)])
    got, dist = HashIndex.build(h, 10, engine="compiled").pairs()
    want, want_dist = brute_force_pairs(h, 10)
    assert len(want) > 5000
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(dist, want_dist)


def test_stopping_a_stream_early_stops_the_threads(mixed: np.ndarray) -> None:
    index = HashIndex.build(mixed, 10, workers=2)
    stream = index.iter_value_pairs()
    next(stream)
    stream.close()  # would hang here if a worker stayed blocked on the full queue
    assert len(index.value_pairs()[0]) > 10_000


def test_engine_auto_falls_back_to_numpy_without_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    h = np.array([0, 1, 3], dtype=np.uint64)
    assert HashIndex.build(h).engine == "compiled"  # numba is a dependency: installed here
    monkeypatch.setattr(hashkernel, "AVAILABLE", False)
    index = HashIndex.build(h)
    assert index.engine == "numpy"
    assert index.pairs()[0].tolist() == [[0, 1], [0, 2], [1, 2]]
    with pytest.raises(ValueError, match="needs numba"):
        HashIndex.build(h, engine="compiled")
    with pytest.raises(ValueError, match="engine must be"):
        HashIndex.build(h, engine="fast")


@pytest.mark.parametrize("k", [0, 6, 10])
def test_near_scans_small_searches_and_indexes_large_ones_with_equal_results(
    mixed: np.ndarray, k: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    targets, queries = mixed[:8_000], np.concatenate([mixed[7_000:9_000], mixed[:50]])
    expected = HashIndex.build(targets, k).query(queries, k)
    assert expected[0].size > queries.size  # the clustered data has real neighbours at every k
    for work in (10**12, 0):  # flat scan, then the index
        monkeypatch.setattr(hashindex, "BRUTE_FORCE_WORK", work)
        got = hashindex.near(targets, queries, k)
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_array_equal(g, e)
        q, t, d = hashindex.near(targets, queries, k, ordered=False)  # the same hits, in some order
        order = np.lexsort((t, q))
        for g, e in zip((q[order], t[order], d[order]), expected, strict=True):
            np.testing.assert_array_equal(g, e)


def test_layouts_made_on_threads_are_those_made_in_turn(monkeypatch: pytest.MonkeyPatch, mixed: np.ndarray,
                                                        reference: tuple[np.ndarray, np.ndarray]) -> None:
    """From _THREADED_BUILD distinct values (a rescan's ~8 M) each chunk's layout is made on a thread: the same
    arrays, the same pairs."""
    one = HashIndex.build(mixed, 10)
    monkeypatch.setattr(hashindex, "_THREADED_BUILD", 1)
    many = HashIndex.build(mixed, 10)
    assert len(one.layouts) == len(many.layouts) > 1
    for a, b in zip(one.layouts, many.layouts, strict=True):
        for name in ("order", "sorted_values", "item_keys", "offsets", "buckets"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name
    got, dist = many.pairs()
    np.testing.assert_array_equal(got, reference[0])
    np.testing.assert_array_equal(dist, reference[1])
