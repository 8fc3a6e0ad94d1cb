"""Adversarial cases for the ordered probes of the probe tables (dedupe/tables.py ``_search_chunk``, kernel.probe_order
and kernel.lookup): what a search holds in memory while it sweeps a chunk in windows and blocks of probes, what
``tables.warm`` loads, and tables assembled from arrays read back that the compiled loops would read outside of.
(Fuzzing against brute force, with widths, blocks, windows, threads and buffers at their extremes, in memory and
memory-mapped, found no wrong, missing or repeated pair.)"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from archiver.dedupe import kernel, tables
from archiver.dedupe.tables import Table


def _brute(q: np.ndarray, v: np.ndarray, k: int) -> set[tuple[int, int]]:
    a, b = np.nonzero(np.bitwise_count(q[:, None] ^ v[None, :]) <= k)
    return set(zip(a.tolist(), b.tolist(), strict=True))


@pytest.mark.parametrize("threads_from", [1 << 62, 1])
def test_a_search_of_many_windows_and_blocks_holds_its_hits_not_a_result_buffer_per_window(
        threads_from: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each (block of probes, window of keys) is one kernel.lookup call into a fresh buffer of ``_CAP`` pairs (1 MB);
    keeping a view of its few hits kept the whole buffer alive until the chunk was done: memory grew with
    blocks x windows (~ queries x values / (2 M probes x 8 MB)), however few pairs were found (1 M values, 100 000
    queries, 8 KB windows: 6.8 GB traced, +335 MB resident for 1 022 pairs). Here 34 windows x 17 blocks per chunk
    held ~560 MB (traced) for 500 pairs; the buffers must be reused, only the hits kept (main's be14dac)."""
    if not kernel.AVAILABLE:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(tables, "_WINDOW_BYTES", 16 << 10)  # 70 000 values of 8 bytes: 34 windows a chunk
    monkeypatch.setattr(tables, "_PROBES", 1 << 13)  # 59 queries x 137 probes a block: 17 blocks of 1 000 queries
    monkeypatch.setattr(tables, "_THREADS_FROM", threads_from)
    rng = np.random.default_rng(9)
    v = rng.integers(0, 2**64 - 1, 70_000, dtype=np.uint64, endpoint=True)
    q = np.concatenate([v[:500] ^ (np.uint64(1) << rng.integers(0, 64, 500).astype(np.uint64)),
                        rng.integers(0, 2**64 - 1, 500, dtype=np.uint64, endpoint=True)])
    t = Table.build(v)
    assert [c.bits for c in t.chunks] == [16] * 4 and v.size >= 1 << 16  # the ordered path
    t.search(q[:3], 10)  # the compiled functions loaded before measuring
    tracemalloc.start()
    try:
        qi, pos = t.search(q, 10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    got = list(zip(qi.tolist(), pos.tolist(), strict=True))
    assert len(got) == len(set(got)) and set(got) == _brute(q, v, 10)
    assert peak < 32 << 20, f"{peak / 2**20:.0f} MB held for {qi.size} pairs"


_WARM_THEN_SEARCH = """
import json, sys, tempfile
from pathlib import Path
import numpy as np
from archiver.dedupe import kernel, tables
from archiver.dedupe.tables import Table
names = ("lookup_direct", "probe_order", "lookup")
tables.warm()
warmed = {f: len(getattr(kernel, f).signatures) for f in names}
v = np.random.default_rng(1).integers(0, 2**63, 70_000, dtype=np.int64).astype(np.uint64)
t = Table.build(v)
tmp = Path(sys.argv[1])
for i, c in enumerate(t.chunks):
    for p in ("offsets", "values", "order"):
        np.save(tmp / f"c{i}-{p}.npy", getattr(c, p))
mapped = Table.assemble(v.size, [tuple(np.load(tmp / f"c{i}-{p}.npy", mmap_mode="r")
                                       for p in ("offsets", "values", "order")) for i in range(len(t.chunks))])
for table in (t, mapped):
    table.search(v[:100], 10)
    Table.build(v[:1000]).search(v[:100], 10)
print(json.dumps([warmed, {f: len(getattr(kernel, f).signatures) for f in names}]))
"""


def test_warm_loads_every_compiled_function_a_search_calls(tmp_path: Path) -> None:
    """``tables.warm`` (what a long-running process and the benchmarks call so that the first search does not pay
    numba's loading) searched a table of 2 values, which only reaches kernel.lookup_direct: kernel.probe_order and
    kernel.lookup (every table of more values than keys: 16-bit chunks from 65 536 values) were still loaded by the
    first real search. In a fresh process, after warm, searching an ordered table in memory and memory-mapped and a
    small one must load nothing more."""
    if not kernel.AVAILABLE:
        pytest.skip("numba is not installed")
    out = subprocess.run([sys.executable, "-c", _WARM_THEN_SEARCH, str(tmp_path)], capture_output=True, text=True,
                         check=True, timeout=300)
    warmed, searched = json.loads(out.stdout.strip().splitlines()[-1])
    assert all(n >= 1 for n in warmed.values()), warmed
    assert searched == warmed


def test_offsets_read_back_that_do_not_span_the_table_are_refused_not_searched() -> None:
    """``Table.assemble`` checked only the sizes of the arrays read back: offsets that run past the values (a
    damaged or mismatched file) were searched, and the compiled loops, which do not check bounds, read outside the
    values: a segmentation fault (offsets[5:] + 2**30, 100 000 values, 2 000 queries) instead of a ValueError, which
    segments._read_segment turns into a rebuild of the index."""
    t = Table.build(np.arange(100_000, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    for corrupt in (lambda o: o.__setitem__(slice(5, None), o[5:] + (1 << 30)),
                    lambda o: o.__setitem__(0, 1), lambda o: o.__setitem__(-1, o[-1] - 1)):
        parts = [(c.offsets.copy(), c.values, c.order) for c in t.chunks]
        corrupt(parts[1][0])
        with pytest.raises(ValueError):
            Table.assemble(t.size, parts)
    assert Table.assemble(t.size, [(c.offsets, c.values, c.order) for c in t.chunks]).size == t.size


def test_an_interior_offset_damaged_with_the_ends_intact_is_searched_without_reading_outside_the_values() -> None:
    """The ends of the offsets are checked on assembly, not every offset (that would read all of them at each open):
    a run the damaged offsets describe past the values is clamped to them in the compiled loops, so the search of
    such a table answers (wrongly, for that damaged file) instead of crashing the process. Run in a child process:
    a read outside the arrays is a segmentation fault."""
    script = """
import numpy as np
from archiver.dedupe.tables import Table
t = Table.build(np.arange(100_000, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
parts = [(c.offsets.copy(), c.values, c.order) for c in t.chunks]
for offsets, _, _ in parts:
    offsets[5:-1] += 1 << 30  # every run but the last starts and ends far past the values
    offsets[7] = -(1 << 30)
table = Table.assemble(t.size, parts)
q = np.arange(2_000, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
for k in (0, 10):
    table.search(q, k)
print("searched")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "searched" in done.stdout, (done.returncode, done.stderr[-500:])
