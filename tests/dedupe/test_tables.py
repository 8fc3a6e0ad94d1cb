"""The probe tables of index format 4 (dedupe/tables.py): every value within k of a query, each once, as comparing
every pair finds them — with the compiled loop and without numba, in memory and memory-mapped from disk (with the
pages of each chunk handed back once searched)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from archiver.dedupe import kernel, tables
from archiver.dedupe.tables import Table


def _brute(q: np.ndarray, v: np.ndarray, k: int) -> set[tuple[int, int]]:
    d = np.bitwise_count(q[:, None] ^ v[None, :])
    a, b = np.nonzero(d <= k)
    return set(zip(a.tolist(), b.tolist(), strict=True))


def _mapped(table: Table, folder: Path) -> Table:
    """``table`` saved under ``folder`` and read back memory-mapped."""
    for i, c in enumerate(table.chunks):
        for part in ("offsets", "values", "order"):
            np.save(folder / f"c{i}-{part}.npy", getattr(c, part))
    return Table.assemble(table.size, [tuple(np.load(folder / f"c{i}-{p}.npy", mmap_mode="r")
                                             for p in ("offsets", "values", "order")) for i in range(len(table.chunks))])


def _values(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64) << np.uint64(1)


@pytest.mark.parametrize("engine", ["compiled", "numpy"])
@pytest.mark.parametrize("n", [1, 700, 20_000])
def test_a_table_finds_what_comparing_every_pair_finds(n: int, engine: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if engine == "compiled" and not kernel.AVAILABLE:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(kernel, "AVAILABLE", engine == "compiled")
    rng = np.random.default_rng(n)
    v = _values(rng, n)
    v[n // 2:] = v[: n - n // 2]  # duplicated values: each position is its own answer
    flips = np.zeros(300, dtype=np.uint64)
    for _ in range(12):  # near copies of 0-12 flipped bits
        flips |= np.where(rng.random(300) < 0.5, np.uint64(1) << rng.integers(0, 64, 300).astype(np.uint64),
                          np.uint64(0))
    q = np.concatenate([v[rng.integers(0, n, 300)] ^ flips, _values(rng, 100), v[:5]])
    built = Table.build(v)
    for i, c in enumerate(built.chunks):
        for part in ("offsets", "values", "order"):
            np.save(tmp_path / f"c{i}-{part}.npy", getattr(c, part))
    mapped = Table.assemble(n, [tuple(np.load(tmp_path / f"c{i}-{p}.npy", mmap_mode="r")
                                      for p in ("offsets", "values", "order")) for i in range(len(built.chunks))])
    for k in (0, 1, 4, 10, 16):
        want = _brute(q, v, k)
        for table in (built, mapped, mapped):  # the second search of the mapped table reads released pages again
            qi, pos = table.search(q, k)
            got = list(zip(qi.tolist(), pos.tolist(), strict=True))
            assert len(got) == len(set(got)), "a pair reported twice"
            assert set(got) == want, (k, len(got), len(want))


def test_the_widths_cover_64_bits_and_probes_stay_exact_at_every_radius() -> None:
    for n in (1, 4_096, 10**6, 10**8):
        w = tables.widths(n)
        assert sum(w) == 64 and len(w) in (3, 4)
        for k in range(0, 17):
            r = tables.radii(w, k)
            assert sum(x + 1 for x in r) >= k + 1


def test_arrays_that_do_not_describe_a_table_are_refused() -> None:
    t = Table.build(np.arange(100, dtype=np.uint64))
    parts = [(c.offsets, c.values, c.order) for c in t.chunks]
    with pytest.raises(ValueError):
        Table.assemble(100, parts[:-1])
    with pytest.raises(ValueError):
        Table.assemble(99, parts)
    with pytest.raises(ValueError):
        Table.assemble(100, [(c.offsets[:-1], c.values, c.order) for c in t.chunks])


@pytest.mark.parametrize("split", [(1 << 21, 1 << 17, 1 << 16, 8 << 20, 16), (7, 50, 3, 8192, 6)])
@pytest.mark.parametrize("widths", [(16, 16, 16, 16), (22, 21, 21), (8,) * 8, (12, 12, 10, 10, 10, 10)])
def test_ordered_probes_find_every_pair_once_in_blocks_windows_threads_and_small_buffers(
        split: tuple[int, int, int, int, int], widths: tuple[int, ...], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled search orders each block of probes by key (the top bits of a wider key) where a chunk holds more
    values than keys (8- and 10-bit chunks of these 3 000 values; wider ones are probed query by query), sweeps it in
    windows of keys, releasing each, and gives threads a share of the windows; blocks of a few queries, windows of
    8 KB of values (their pages released, read again by the next block), a split from 50 probes and
    room for 3 hits at a time (fewer than one run of duplicates holds) must find the same pairs, each once, in
    memory and memory-mapped."""
    if not kernel.AVAILABLE:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(tables, "_PROBES", split[0])
    monkeypatch.setattr(tables, "_THREADS_FROM", split[1])
    monkeypatch.setattr(tables, "_CAP", split[2])
    monkeypatch.setattr(tables, "_WINDOW_BYTES", split[3])
    monkeypatch.setattr(tables, "_ORDER_BITS", split[4])  # 6: probes of 8-bit keys ordered by their top 6 bits
    monkeypatch.setattr(tables, "widths", lambda n: widths)
    rng = np.random.default_rng(5)
    v = _values(rng, 3_000)
    v[2_000:2_010] = v[7]  # a run of ten equal values: more hits for one probe than the buffer holds
    q = np.concatenate([v[rng.integers(0, v.size, 200)] ^ (np.uint64(1) << rng.integers(0, 64, 200).astype(np.uint64)),
                        _values(rng, 50), v[[7, 7]]])
    built = Table.build(v)
    assert tuple(c.bits for c in built.chunks) == widths
    mapped = _mapped(built, tmp_path)
    for k in (0, 3, 10):
        for table in (built, mapped, mapped):
            qi, pos = table.search(q, k)
            got = list(zip(qi.tolist(), pos.tolist(), strict=True))
            assert len(got) == len(set(got)), "a pair reported twice"
            assert set(got) == _brute(q, v, k)



def test_many_queries_sweep_the_table_only_where_that_costs_less(monkeypatch: pytest.MonkeyPatch) -> None:
    """``kernel.sweep`` takes a step for every key and flip mask of a chunk whatever the queries: a search of about
    as many queries as keys (a rescan's 16-bit chunks) sweeps, and finds what comparing every pair finds; a hundred
    queries against 22-bit chunks, more than one block of probes (like a run adding 1 200 images to 10 M, where it
    would take ~7.5 billion steps), keep to the ordered probes, block by block."""
    if not kernel.AVAILABLE:
        pytest.skip("numba is not installed")
    swept: list[int] = []
    sweep, sweep_tiles = kernel.sweep, kernel.sweep_tiles

    def spy(*args):  # type: ignore[no-untyped-def]
        swept.append(1)
        return sweep(*args)

    def spy_tiles(*args):  # type: ignore[no-untyped-def]
        swept.append(2)
        return sweep_tiles(*args)

    monkeypatch.setattr(kernel, "sweep", spy)
    monkeypatch.setattr(kernel, "sweep_tiles", spy_tiles)
    rng = np.random.default_rng(3)
    v = _values(rng, 70_000)
    many = np.concatenate([v[rng.integers(0, v.size, 30_000)] ^ np.uint64(5), _values(rng, 40_000), v[:3]])
    table = Table.build(v)
    assert [c.bits for c in table.chunks] == [16] * 4
    qi, pos = table.search(many, 10)  # 137 flip masks a chunk: 15 307 queries a block
    assert swept and set(swept) == {1}  # 16-bit chunks: key by key
    got = set(zip(qi.tolist(), pos.tolist(), strict=True))
    assert len(got) == qi.size and {(a, b) for a, b in got if a < 1_000} == _brute(many[:1_000], v, 10)
    assert {(a, b) for a, b in got if a >= many.size - 3} == {(many.size - 3 + i, i) for i in range(3)}

    swept.clear()
    monkeypatch.setattr(tables, "widths", lambda n: (22, 21, 21))
    monkeypatch.setattr(tables, "_PROBES", 1 << 9)  # at distance 4, 22 queries a block of 23 flip masks: 5 blocks
    w = _values(rng, (1 << 22) + 1_000)
    few = np.concatenate([w[:50] ^ np.uint64(0b1011), _values(rng, 50)])
    qi, pos = Table.build(w).search(few, 4)
    assert not swept
    brute = {(i, int(j)) for i, x in enumerate(few) for j in np.flatnonzero(np.bitwise_count(w ^ x) <= 4)}
    assert sorted(zip(qi.tolist(), pos.tolist(), strict=True)) == sorted(brute) and len(brute) >= 50


@pytest.mark.parametrize("tile_bytes", [64, 2 << 10, 192 << 10])
@pytest.mark.parametrize("widths", [(8,) * 8, (12, 12, 10, 10, 10, 10)])
def test_a_sweep_tile_by_tile_finds_every_pair_once(tile_bytes: int, widths: tuple[int, ...], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """``kernel.sweep_tiles`` pairs a tile of the table's keys with a tile of the queries' keys per group of flip masks
    (the tile's size from ``_TILE_BYTES``: a single key, a few, the whole chunk), gathering the queries of a run in a
    buffer compared whenever it fills: with tiles of every size, a buffer of 3 queries (fewer than one key's
    duplicates), room for 5 hits at a time, windows of 4 KB released as they are swept and threads, it finds what
    comparing every pair finds, each pair once, in memory and memory-mapped."""
    if not kernel.AVAILABLE:
        pytest.skip("numba is not installed")
    tiles: list[int] = []
    sweep = kernel.sweep_tiles

    def spy(*args):  # type: ignore[no-untyped-def]
        tiles.append(int(args[3]))
        return sweep(*args)

    monkeypatch.setattr(kernel, "sweep_tiles", spy)
    monkeypatch.setattr(tables, "_TILES_FROM", 0)  # these narrow chunks swept tile by tile too
    monkeypatch.setattr(tables, "_STEP_NS", (3.0, 3.0))  # (and swept for 3 000 queries)
    monkeypatch.setattr(tables, "_TILE_BYTES", tile_bytes)
    monkeypatch.setattr(tables, "_GATHER", 3)
    monkeypatch.setattr(tables, "_CAP", 5)
    monkeypatch.setattr(tables, "_WINDOW_BYTES", 4 << 10)
    monkeypatch.setattr(tables, "_THREADS_FROM", 1_000)
    monkeypatch.setattr(tables, "_PROBES", 1 << 10)  # more than one block of probes: the sweep is considered
    monkeypatch.setattr(tables, "widths", lambda n: widths)
    rng = np.random.default_rng(11)
    v = _values(rng, 5_000)
    v[100:110] = v[7]  # ten equal values in one run
    flips = np.uint64(1) << rng.integers(0, 64, 2_500).astype(np.uint64)
    q = np.concatenate([v[rng.integers(0, v.size, 2_500)] ^ flips, _values(rng, 500), v[[7] * 6]])
    built = Table.build(v)
    mapped = _mapped(built, tmp_path)
    for k in (0, 3, 10):
        want = _brute(q, v, k)
        for table in (built, mapped):
            tiles.clear()
            qi, pos = table.search(q, k)
            got = list(zip(qi.tolist(), pos.tolist(), strict=True))
            assert tiles, "the sweep was not taken"
            assert len(got) == len(set(got)), "a pair reported twice"
            assert set(got) == want
    if tile_bytes == 64:  # a tile of one key
        assert min(tiles) == 0
    elif tile_bytes == 2 << 10:  # a few keys
        assert 0 < min(tiles) < min(widths)
    else:  # the whole chunk one tile (every flip mask in one group)
        assert set(tiles) <= set(widths)
