"""Probe tables of one segment's hashes (index format 4): a query costs what it reads, not what the segment holds.

A table splits the 64 bits of its values into ``m`` chunks (widths chosen from the table's size, see ``widths``)
and keeps, per chunk, the values sorted by that chunk's key (``values``), their positions (``order``) and where
each key's run starts (``offsets``, 2**bits + 1 entries). A query at distance ``k`` probes, in each chunk ``i``,
every key within radius ``r_i`` of its own (radii with ``sum(r_i + 1) >= k + 1``: by the pigeonhole principle a
value within ``k`` is within ``r_i`` of the query in some chunk), and compares the values of those runs with a
popcount; a pair is kept from the first chunk where it qualifies only, so nothing is reported twice.

Why it changed from format 3 (three chunks of 22/21/21 bits, an occupancy bitmap, two random reads per occupied
bucket): a memory read that misses the cache costs ~60–100 ns, comparing one more value of a run read in order
~1 ns. With 16-bit chunks a query reads ~430 runs of ``n / 65 536`` values each instead of ~3 600 single
buckets, and the offsets of a chunk (256 KB) stay in the cache. ``widths`` picks the widths from that cost model.

The compiled search does not probe query by query (except in a table of fewer values than keys, whose runs are
mostly empty: ``kernel.lookup_direct``): it orders a block of probes (query key XOR flip mask, those whose run is
not empty) by key first (``kernel.probe_order``, a counting sort), so a chunk's runs are read once, in ascending
order, for all the queries probing them (each value read once for up to 64 of them, ``kernel.lookup``), and the
hardware prefetcher streams them instead of each run being a cache miss: 2 000 queries against a table of 8 million
values took 0.28 s query by query and takes 0.15 s (in memory, 1 core). A chunk is swept in windows of keys (~8 MB
of values each, ``_WINDOW_BYTES``), each released once swept (below), and threads take a share of the windows.

Many queries at once (a first search of the archive, a rescan) are not ordered block by block: the queries are
sorted by the chunk's key once, and the table is read in key order, each run compared with the queries of every key
within the flip masks of its own while it is in the cache. Chunks of up to 17 bits are read key by key
(``kernel.sweep``: their query offsets, <= 1 MB, stay in the cache). Wider ones (from ~19 M values: 22/21/21 bits)
are read tile by tile of keys (``kernel.sweep_tiles``): the flip masks are grouped by their top bits, each tile of
the table is paired with the tiles of queries a group reaches, a tile of queries small enough to stay in the cache
(``_tile_bits``), and the queries of every key within the group's masks are gathered and compared with a run at
once. Key by key over 22-bit keys, each probe read its queries from 32 MB of offsets, a cache miss; ordered probes
read each run once per block of ~600 queries, a cache miss too (~70 ns a probe, 3 600 probes a query). One hash
kind's whole search at 10 M (10 M identity hashes against the 80 M variants) took ~1 340 s wall that way and takes
390 s by tiles. ``_sweeps`` chooses a sweep only where its fixed cost (a step per key and flip mask, whatever the
queries) is below the probes'.

In both, a run is compared with a query in two passes: a branch-free count of the values within the distance, which
the compiler turns into vector instructions, and, only when it is not zero, the pass that reports them (2x fewer
cycles a value than one pass with a branch per value).

Tables are searched one chunk at a time, and the pages of a memory-mapped chunk are handed back to the kernel
(``madvise(MADV_DONTNEED)``; they stay in the page cache) window by window as the sweep passes them, so the resident
size of a search is a window per thread, not a chunk (at 10 M images a chunk of the table of every variant is 960
MB) and not the segment.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import combinations
from math import comb

import numpy as np

from archiver.dedupe import kernel

_MISS_NS, _COMPARE_NS = 100.0, 3.0  # the cost model of ``widths``: a probed run, one more value compared in it
_PLAN_DISTANCE = 10  # the distance the widths are chosen for (the default; any distance <= 64 stays exact)
_MAX_BITS = 24  # offsets of 2**24 + 1 int32 (64 MB) at most
_THREADS_FROM = 1 << 17  # probes (queries x flip masks) from which a chunk's search is split over threads
_MAX_THREADS = 4
_PROBES = 1 << 21  # probes ordered at once (16 MB): a block of queries
_ORDER_BITS = 16  # probes are ordered by the top 16 bits of their key (a chunk of 24 bits: runs of 256 keys)
_WINDOW_BYTES = 8 << 20  # a chunk is swept in windows of keys of ~8 MB of values, each released once swept
_CAP = 1 << 16


def radii(widths: tuple[int, ...], k: int) -> tuple[int, ...]:
    """Probe radii of each chunk for distance ``k``: ``sum(r + 1) == k + 1``, spread evenly, wider chunks first
    (a radius of -1: the chunk is not probed)."""
    cover, m = k + 1, len(widths)
    r = [cover // m + (1 if i < cover % m else 0) - 1 for i in range(m)]
    return tuple(min(x, b) for x, b in zip(r, widths, strict=True))


def _split(m: int) -> tuple[int, ...]:
    return tuple(64 // m + (1 if i < 64 % m else 0) for i in range(m))


def _probes(bits: int, r: int) -> int:
    return sum(comb(bits, w) for w in range(r + 1))


def widths(n: int) -> tuple[int, ...]:
    """The chunk widths for a table of ``n`` values: the split into 3 or 4 chunks of the lowest modelled query cost
    (probed runs × a run's first read + values compared × a compare) at distance 10. Measured (1 core, 4 000
    random queries at distance 10): 4 chunks of 16 bits took 7.6 / 35 / 162 µs a query against 0.2 / 1.6 / 8 M
    values, 3 chunks 34 / 80 / 294 µs, 5, 6 or 8 chunks more than 4; 3 win again from ~19 M values."""
    best: tuple[float, tuple[int, ...]] | None = None
    for m in (3, 4):
        w = _split(m)
        if max(w) > _MAX_BITS:
            continue
        cost = sum(_probes(b, r) * (_MISS_NS + n / (1 << b) * _COMPARE_NS)
                   for b, r in zip(w, radii(w, _PLAN_DISTANCE), strict=True) if r >= 0)
        if best is None or cost < best[0]:
            best = (cost, w)
    assert best is not None
    return best[1]


def patterns(bits: int, r: int) -> np.ndarray:
    """Every flip mask of at most ``r`` of ``bits`` bits (int64), lightest first."""
    return np.array([sum(1 << b for b in c) for w in range(min(r, bits) + 1) for c in combinations(range(bits), w)],
                    dtype=np.int64)


@dataclass
class Chunk:
    shift: int
    bits: int
    offsets: np.ndarray  # int32 (2**bits + 1,): values of key x at offsets[x]:offsets[x + 1]
    values: np.ndarray  # uint64 sorted by key (stable)
    order: np.ndarray  # int32 position of each value in the table's input


@dataclass
class Table:
    """The probe table of ``size`` uint64 values (positions 0 .. size - 1)."""

    size: int
    chunks: tuple[Chunk, ...]

    @classmethod
    def build(cls, values: np.ndarray) -> Table:
        values = np.ascontiguousarray(values, dtype=np.uint64)
        chunks, shift = [], 0
        for bits in widths(values.size):
            # uint32 keys (a chunk is at most _MAX_BITS wide): the same stable order as int64 ones, ~40 % sooner
            keys = ((values >> np.uint64(shift)) & np.uint64((1 << bits) - 1)).astype(np.uint32)
            order = np.argsort(keys, kind="stable")
            counts = np.bincount(keys, minlength=1 << bits)
            offsets = np.zeros((1 << bits) + 1, dtype=np.int32)
            np.cumsum(counts, out=offsets[1:])
            parts = offsets, values[order], order.astype(np.int32)
            for a in parts:  # read-only like the memory-mapped ones: one compiled signature of kernel.lookup
                a.flags.writeable = False
            chunks.append(Chunk(shift, bits, *parts))
            shift += bits
        return cls(int(values.size), tuple(chunks))

    @classmethod
    def assemble(cls, size: int, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Table:
        """A table from its arrays as read back ((offsets, values, order) per chunk); ValueError when they do not
        describe one."""
        chunks, shift = [], 0
        for offsets, values, order in parts:
            bits = int(offsets.size - 1).bit_length() - 1
            if offsets.size != (1 << bits) + 1 or values.size != size or order.size != size:
                raise ValueError("probe table arrays of inconsistent sizes")
            # the compiled loops read runs where the offsets say, unchecked: offsets that do not end at the table's
            # size (a damaged or mismatched file) would read outside the values, a crash rather than a rebuild
            if int(offsets[0]) != 0 or int(offsets[-1]) != size:
                raise ValueError("probe table offsets do not span the table")
            chunks.append(Chunk(shift, bits, offsets, values, order))
            shift += bits
        if shift != 64:
            raise ValueError("probe table chunks do not cover 64 bits")
        return cls(size, tuple(chunks))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(query index, position) of every value within ``k`` bits of a query, each pair once."""
        queries = np.ascontiguousarray(queries, dtype=np.uint64)
        r = radii(tuple(c.bits for c in self.chunks), k)
        found = []
        for i, c in enumerate(self.chunks):
            if r[i] < 0 or not queries.size:
                continue
            earlier = [(self.chunks[j], r[j]) for j in range(i) if r[j] >= 0]
            em = np.array([((1 << e.bits) - 1) << e.shift for e, _ in earlier], dtype=np.uint64)
            er = np.array([x for _, x in earlier], dtype=np.int64)
            found.append(_search_chunk(c, patterns(c.bits, r[i]), queries, k, em, er))
            release(c.values, c.order, c.offsets)  # done with this chunk: its pages go back to the page cache
        if not found:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        q, p = (np.concatenate(x) for x in zip(*found, strict=True))
        return q, p


def _search_chunk(c: Chunk, pats: np.ndarray, queries: np.ndarray, k: int, em: np.ndarray, er: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    if not kernel.AVAILABLE:
        return _search_chunk_numpy(c, pats, queries, k, em, er)
    if c.values.size < 1 << c.bits:  # most runs empty: nothing to stream, probing query by query costs less
        return _search_chunk_direct(c, pats, queries, k, em, er)
    keys = ((queries >> np.uint64(c.shift)) & np.uint64((1 << c.bits) - 1)).astype(np.int64)
    block = max(1, _PROBES // pats.size)
    if queries.size > block and _sweeps(c, queries.size, pats.size):
        return _search_chunk_sweep(c, pats, queries, keys, k, em, er)
    drop = max(0, c.bits - _ORDER_BITS)
    parts = _threads(queries.size * pats.size)
    # windows of keys (whole buckets of the probe order), ~_WINDOW_BYTES of values each, a share of them per thread
    buckets = 1 << (c.bits - drop)
    windows = max(parts, min(buckets, c.values.nbytes // _WINDOW_BYTES))
    edges = [(buckets * i // windows) << drop for i in range(windows + 1)]

    # one block of queries (a run adding images): each window's pages are handed back once swept, so the search holds
    # a window per thread, and the threads share the windows; several blocks sweep the chunk once each, so mapping
    # its pages again for every block would cost more than the search (~1.4 GB/s): they stay until the chunk is
    # done, and the threads share the blocks instead (each ordering only its own probes)
    blocks = list(range(0, queries.size, block))
    single = len(blocks) == 1

    def part(w0: int, w1: int, b0: int = 0, b1: int = len(blocks)) -> tuple[np.ndarray, np.ndarray]:
        found = _Found()
        for b in blocks[b0:b1]:
            probes = kernel.probe_order(keys, pats, b, min(b + block, queries.size), c.bits, drop, c.offsets,
                                        edges[w0], edges[w1])
            cut = np.searchsorted(probes >> (32 + drop), [e >> drop for e in edges[w0:w1 + 1]]).tolist()
            for w in range(w1 - w0):
                found.collect(lambda start, stop, out_q, out_p, probes=probes: kernel.lookup(
                    queries, probes, start, stop, c.offsets, c.values, c.order, k, em, er, out_q, out_p),
                    cut[w], cut[w + 1])
                if single:  # this window is done
                    release_range(c, edges[w0 + w], edges[w0 + w + 1])
        return found.arrays()

    if parts == 1:
        return part(0, windows)
    if single:
        bounds = [windows * i // parts for i in range(parts + 1)]
        found = list(_pool().map(part, bounds[:-1], bounds[1:]))
    else:
        bounds = [len(blocks) * i // parts for i in range(parts + 1)]
        found = list(_pool().map(lambda b0, b1: part(0, windows, b0, b1), bounds[:-1], bounds[1:]))
    return np.concatenate([x[0] for x in found]), np.concatenate([x[1] for x in found])


_STEP_NS = (3.0, 10.0)  # a step of kernel.sweep (<= _TILES_FROM bits: its query offsets in the cache) or of
                        # kernel.sweep_tiles (wider keys), apart from the compares, which ordered probes make too
_PROBE_NS = 10.0  # an ordered probe: its share of ordering the block's probes and of sweeping the chunk per block
_TILES_FROM = 18  # chunks of this many bits or more are swept tile by tile (kernel.sweep_tiles)
_TILE_BYTES = 192 << 10  # the queries' tile kernel.sweep_tiles keeps in the cache (their offsets and values)
_GATHER = 4_096  # queries kernel.sweep_tiles gathers for one run at most before comparing them


def _sweeps(c: Chunk, queries: int, pats: int) -> bool:
    """Whether sweeping costs less than ordered probes for ``queries``: it takes a step for every key of the
    table and flip mask, whatever the queries, so only a search of about as many queries as keys gains from it (a
    rescan: yes; a run adding 1 200 images to 10 M, whose 22-bit chunks would take 7.5 billion steps: no)."""
    step = _STEP_NS[0] if c.bits < _TILES_FROM else _STEP_NS[1]
    return (1 << c.bits) * pats * step < queries * pats * _PROBE_NS


def _tile_bits(bits: int, queries: int) -> int:
    """The low key bits of a tile of ``kernel.sweep_tiles``: the most whose queries' tile (8 bytes of offsets a key, 16 of
    value and index a query) fits in ``_TILE_BYTES``."""
    per_key = 8 + 16 * queries / (1 << bits)
    s = 0
    while s < bits and (1 << (s + 1)) * per_key <= _TILE_BYTES:
        s += 1
    return s


def _search_chunk_sweep(c: Chunk, pats: np.ndarray, queries: np.ndarray, keys: np.ndarray, k: int, em: np.ndarray,
                        er: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_search_chunk`` for many queries: the queries sorted by their key once, then the table read in key order,
    each run compared with the queries of every key within the flip masks of its own. The ordered probes would sort
    the block's probes again for every block of queries, and sweep the chunk once per block. Chunks of fewer than
    ``_TILES_FROM`` bits are read key by key (``kernel.sweep``); wider ones tile by tile of keys
    (``kernel.sweep_tiles``), a tile of queries at a time (``_tile_bits``: it stays in the cache): key by key over
    22-bit keys (a 10 M archive), each probe read its queries from 32 MB of offsets, a cache miss. The threads share
    the table's keys or tiles."""
    order = np.argsort(keys, kind="stable")
    qoff = np.zeros((1 << c.bits) + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=1 << c.bits), out=qoff[1:])
    qvals = np.zeros(queries.size + kernel.SLOTS, np.uint64)  # padded: sweep_tiles copies SLOTS values a key
    qvals[:queries.size] = queries[order]
    qidx = order.astype(np.int64)
    del order
    parts = _threads(queries.size * pats.size)
    if c.bits < _TILES_FROM:
        return _sweep_keys(c, pats, qoff, qvals, qidx, k, em, er, parts)
    s = _tile_bits(c.bits, queries.size)
    hi, lo = pats >> s, pats & ((1 << s) - 1)
    by = np.lexsort((lo, hi))
    highs, gstart = np.unique(hi[by], return_index=True)
    gstart = np.append(gstart, pats.size).astype(np.int64)
    lows = np.ascontiguousarray(lo[by])
    groups = highs.size
    # windows of tiles, ~_WINDOW_BYTES of values each, a share of them per thread, each released once swept
    tiles = 1 << (c.bits - s)
    windows = max(parts, min(tiles, c.values.nbytes // _WINDOW_BYTES))
    edges = [tiles * i // windows for i in range(windows + 1)]

    def part(w0: int, w1: int) -> tuple[np.ndarray, np.ndarray]:
        found = _Found()
        bv = np.empty(_GATHER + kernel.SLOTS, np.uint64)
        bstart = np.empty(pats.size + 1, np.int64)
        for w in range(w0, w1):
            found.collect(lambda start, stop, out_q, out_p: kernel.sweep_tiles(
                qoff, qvals, qidx, s, highs, gstart, lows, c.offsets, c.values, c.order, k, em, er, start, stop, bv,
                bstart, out_q, out_p), edges[w] * groups, edges[w + 1] * groups)
            release_range(c, edges[w] << s, edges[w + 1] << s)
        return found.arrays()

    return _in_parts(part, windows, parts)


def _sweep_keys(c: Chunk, pats: np.ndarray, qoff: np.ndarray, qvals: np.ndarray, qidx: np.ndarray, k: int,
                em: np.ndarray, er: np.ndarray, parts: int) -> tuple[np.ndarray, np.ndarray]:
    """``_search_chunk_sweep`` over a chunk of fewer than ``_TILES_FROM`` bits, key by key (``kernel.sweep``): its
    query offsets stay in the cache whatever the probe. The threads share windows of keys, each released once
    swept."""
    nkeys = 1 << c.bits
    windows = max(parts, min(nkeys, c.values.nbytes // _WINDOW_BYTES))
    edges = [nkeys * i // windows for i in range(windows + 1)]

    def part(w0: int, w1: int) -> tuple[np.ndarray, np.ndarray]:
        found = _Found()
        for w in range(w0, w1):
            found.collect(lambda start, stop, out_q, out_p: kernel.sweep(
                qoff, qvals, qidx, pats, c.offsets, c.values, c.order, k, em, er, start, stop, out_q, out_p),
                edges[w] * pats.size, edges[w + 1] * pats.size)
            release_range(c, edges[w], edges[w + 1])
        return found.arrays()

    return _in_parts(part, windows, parts)


def _in_parts(part: Callable[[int, int], tuple[np.ndarray, np.ndarray]], windows: int, parts: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of ``part(w0, w1)`` over ``windows`` windows, a share of them per thread (``parts``)."""
    if parts == 1:
        return part(0, windows)
    bounds = [windows * i // parts for i in range(parts + 1)]
    found = list(_pool().map(part, bounds[:-1], bounds[1:]))
    return np.concatenate([x[0] for x in found]), np.concatenate([x[1] for x in found])


def _search_chunk_direct(c: Chunk, pats: np.ndarray, queries: np.ndarray, k: int, em: np.ndarray, er: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    found = _Found()
    found.collect(lambda start, stop, out_q, out_p: kernel.lookup_direct(
        queries, start, stop, c.shift, c.bits, pats, c.offsets, c.values, c.order, k, em, er, out_q, out_p),
        0, queries.size)
    return found.arrays()


class _Found:
    """The pairs a compiled loop finds, gathered through one pair of result buffers (reused: only the hits are
    copied out; a view of a few hits would keep a whole buffer alive), which grow when one step's hits do not fit."""

    def __init__(self) -> None:
        self.parts = [(np.zeros(0, np.int64), np.zeros(0, np.int64))]
        self.out_q, self.out_p = np.empty(_CAP, np.int64), np.empty(_CAP, np.int64)

    def collect(self, loop: Callable[[int, int, np.ndarray, np.ndarray], tuple[int, int]], start: int,
                stop: int) -> None:
        """Run ``loop(start, stop, out_q, out_p) -> (hits, where it stopped)`` until it reaches ``stop``."""
        while start < stop:
            got, start = loop(start, stop, self.out_q, self.out_p)
            if got:
                self.parts.append((self.out_q[:got].copy(), self.out_p[:got].copy()))
            elif start < stop:  # one step's hits (a query's, a group of probes') do not fit
                self.out_q, self.out_p = (np.empty(self.out_q.size * 4, np.int64) for _ in range(2))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate([q for q, _ in self.parts]), np.concatenate([p for _, p in self.parts])


def _threads(probes: int) -> int:
    return min(os.cpu_count() or 1, _MAX_THREADS) if probes >= _THREADS_FROM else 1


_pool_of: tuple[int, ThreadPoolExecutor] | None = None


def _pool() -> ThreadPoolExecutor:
    """The threads a search's parts run in: made once per process (starting threads for each chunk of each search
    cost ~1.5 ms each), again in a forked child (which has none of its parent's threads)."""
    global _pool_of
    if _pool_of is None or _pool_of[0] != os.getpid():
        _pool_of = (os.getpid(), ThreadPoolExecutor(_MAX_THREADS, thread_name_prefix="archiver-probe"))
    return _pool_of[1]


def _search_chunk_numpy(c: Chunk, pats: np.ndarray, queries: np.ndarray, k: int, em: np.ndarray, er: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The same search without numba: the runs of a block of queries gathered at once."""
    mask = np.uint64((1 << c.bits) - 1)
    per = max(1.0, pats.size * (1 + c.values.size / (1 << c.bits)))
    block = max(1, int((1 << 21) / per))
    qs, ps = [], []
    for lo in range(0, queries.size, block):
        q = queries[lo:lo + block]
        keys = ((q >> np.uint64(c.shift)) & mask).astype(np.int64)
        probe = (keys[:, None] ^ pats[None, :]).ravel()
        start = np.asarray(c.offsets[probe], dtype=np.int64)
        count = np.asarray(c.offsets[probe + 1], dtype=np.int64) - start
        owner = np.repeat(np.arange(probe.size) // pats.size, count)
        pos = np.repeat(start - np.cumsum(count) + count, count) + np.arange(int(count.sum()))
        x = q[owner] ^ np.asarray(c.values[pos])
        keep = np.bitwise_count(x) <= k
        for m, r in zip(em, er, strict=True):
            keep &= np.bitwise_count(x & m) > r
        qs.append(owner[keep] + lo)
        ps.append(np.asarray(c.order[pos[keep]], dtype=np.int64))
    if not qs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(qs), np.concatenate(ps)


def release(*arrays: np.ndarray) -> None:
    """Hand the resident pages of memory-mapped arrays back to the kernel (they stay in the page cache; a later
    read maps them again). Arrays in memory are left alone."""
    for a in arrays:
        mm = getattr(a, "_mmap", None)
        if mm is not None and hasattr(mmap, "MADV_DONTNEED"):
            with contextlib.suppress(OSError, ValueError):  # closed, or not supported: only memory is at stake
                mm.madvise(mmap.MADV_DONTNEED)


def release_range(c: Chunk, key_lo: int, key_hi: int) -> None:
    """``release`` the pages holding only the values and positions of keys ``[key_lo, key_hi)`` of a memory-mapped
    chunk (whole pages inside the range: a page shared with a neighbouring range is left to the chunk's release)."""
    lo, hi = int(c.offsets[key_lo]), int(c.offsets[key_hi])
    for a in (c.values, c.order):
        mm = getattr(a, "_mmap", None)
        if mm is None or hi <= lo or not hasattr(mmap, "MADV_DONTNEED"):
            continue
        base = int(getattr(a, "offset", 0)) % mmap.ALLOCATIONGRANULARITY  # where the array starts in its mapping
        first = -(-(base + lo * a.itemsize) // mmap.PAGESIZE) * mmap.PAGESIZE
        last = (base + hi * a.itemsize) // mmap.PAGESIZE * mmap.PAGESIZE
        if last > first:
            with contextlib.suppress(OSError, ValueError):
                mm.madvise(mmap.MADV_DONTNEED, first, last - first)


def warm() -> None:
    """Load the compiled probe loop now rather than in the first search: numba reads it from its cache and sets up
    its target once per process (~0.5 s of CPU). A long-running process (``archiver worker``, ``run --watch``) pays
    it once; the incremental-search benchmark measures it apart from the search itself."""
    Table.build(np.arange(2, dtype=np.uint64)).search(np.zeros(1, dtype=np.uint64), 10)  # kernel.lookup_direct
    # and the ordered probes (kernel.probe_order, kernel.lookup), which a table that small does not reach: a chunk of
    # 1 bit holding 2 values, its arrays read-only like a table's
    parts = np.array([0, 1, 2], np.int32), np.arange(2, dtype=np.uint64), np.arange(2, dtype=np.int32)
    for a in parts:
        a.flags.writeable = False
    _search_chunk(Chunk(0, 1, *parts), patterns(1, 1), np.zeros(1, dtype=np.uint64), 10, np.zeros(1, np.uint64),
                  np.zeros(1, np.int64))
