"""Exact all-pairs and query search over 64-bit perceptual hashes within a Hamming distance (multi-index hashing).

How it stays exact without comparing every pair: the 64 bits are cut into three chunks (22, 21 and 21
bits) with probe radii ``t`` such that ``sum(t + 1) >= max_distance + 1`` (for 10: radii 3, 3, 2; for 8:
2, 2, 2). If two hashes differ in at most ``max_distance`` bits, some chunk differs in at most its
radius (generalised pigeonhole), so probing every bucket within that radius of each bucket finds the
pair. A pair is kept only from the FIRST chunk where it qualifies, so nothing is reported twice, and
every candidate is verified with a vectorised popcount of the 64-bit XOR.

Identical hashes are collapsed first: the search runs over distinct values, and id pairs are expanded
from them at the end. A block of n identical hashes therefore costs O(n) to search, but still yields
n·(n-1)/2 id pairs; use ``iter_pairs`` to stream them, or ``value_pairs`` + ``ids_of`` to work per group.
Work is split over threads (numpy releases the GIL in the bulk array operations). Two engines do the probing:
the compiled loop (``kernel``, numba) and the pure-numpy fallback (``index_numpy``, which also holds
the chunk layouts both share).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from archiver.dedupe import kernel
from archiver.dedupe.index_numpy import Chunk, _expand, _Join, _Layout
from archiver.model import DISTANCE_LIMIT

DEFAULT_DISTANCE = 10
LIMIT = DISTANCE_LIMIT  # largest supported distance: the probes grow like C(22, k/3) per hash beyond that
_CHUNK_BITS = (22, 21, 21)
_THREADED_BUILD = 1 << 20  # distinct values from which the chunks' layouts are made on threads


def plan(max_distance: int) -> tuple[Chunk, ...]:
    """The chunks and radii: radii + 1 add up to ``max_distance + 1``, spread evenly, larger chunks first."""
    if not 0 <= max_distance <= LIMIT:
        raise ValueError(f"max_distance must be in 0..{LIMIT}, got {max_distance}")
    cover, n = max_distance + 1, len(_CHUNK_BITS)
    shifts = np.concatenate([[0], np.cumsum(_CHUNK_BITS)[:-1]])
    return tuple(
        Chunk(int(s), b, cover // n + (1 if i < cover % n else 0) - 1)
        for i, (s, b) in enumerate(zip(shifts, _CHUNK_BITS, strict=True))
    )


class _CompiledJoin(_Join):
    """The same search with the compiled loop (``kernel.probe``); work items are
    (chunk, outer pattern, slice of inner patterns), see ``kernel``."""

    def __init__(self, a: Sequence[_Layout], b: Sequence[_Layout], chunks: Sequence[Chunk], k: int) -> None:
        self.a, self.b, self.chunks, self.k, self.same = a, b, chunks, k, a is b
        self.lowmask = kernel.low_masks(LIMIT)
        for layout, chunk in zip(b, chunks, strict=True):
            if chunk.radius >= 0:
                layout.words  # noqa: B018
        self.blocks = [np.searchsorted(la.buckets, np.arange((1 << _outer_bits(c)) + 1) << (c.bits - _outer_bits(c)))
                       for la, c in zip(a, chunks, strict=True)]

    def tasks(self) -> list:  # type: ignore[override]
        out = []
        for ci, chunk in enumerate(self.chunks):
            if chunk.radius < 0:
                continue
            outer = _outer_bits(chunk)
            inner = chunk.bits - kernel.LOW - outer
            earlier = [c for c in self.chunks[:ci] if c.radius >= 0]
            em = np.array([c.mask for c in earlier], dtype=np.uint64)
            er = np.array([c.radius for c in earlier], dtype=np.uint64)
            for ho, ho_w, ho_top in _subsets(outer, chunk.radius):
                pats = _subsets(inner, chunk.radius - ho_w)
                for lo in range(0, len(pats), _INNER_PER_TASK):
                    part = pats[lo:lo + _INNER_PER_TASK]
                    highs, weights, tops = (np.array(x, dtype=np.int64) for x in zip(*part, strict=True))
                    out.append((ci, inner, ho, ho_top, highs, chunk.radius - ho_w - weights, tops, em, er))
        return sorted(out, key=lambda t: -t[4].size)

    def run(self, task: tuple) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:  # type: ignore[override]
        ci, inner, ho, ho_top, highs, radii, tops, em, er = task
        la, lb = self.a[ci], self.b[ci]
        cap, state = _PART, (0, 0, 0)
        while state[0] < self.blocks[ci].size - 1:
            buf = np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.int8)
            n, *state = kernel.probe(
                la.buckets, self.blocks[ci], la.bucket_starts, la.sorted_values, la.order, lb.offsets, lb.sorted_values,
                lb.order, lb.words, inner, ho, ho_top, highs, radii, tops, self.lowmask, self.k, self.same,
                em, er, *buf, *state)
            if n:
                yield buf[0][:n], buf[1][:n], buf[2][:n]
            cap = cap * 2 if n < cap // 2 else _PART  # less than half full: one source bucket did not fit


_DONE = object()  # a worker thread has finished
_PART = 1 << 18  # pairs per part handed over by the compiled loop (bounds memory in flight)
_INNER_BITS = 10  # word-index bits inside one block: a source and a target block stay in cache together
_INNER_PER_TASK = 40  # inner patterns per work item (balance between threads)


def _outer_bits(chunk: Chunk) -> int:
    return max(0, chunk.bits - kernel.LOW - _INNER_BITS)


def _subsets(bits: int, max_weight: int) -> list[tuple[int, int, int]]:
    """(mask, weight, highest bit or -1) of every subset of ``bits`` bits with at most ``max_weight`` set."""
    return [(sum(1 << b for b in combo), w, combo[-1] if combo else -1)
            for w in range(min(bits, max_weight) + 1) for combo in combinations(range(bits), w)]


def _groups(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct values, ids grouped by value (stable), and group offsets."""
    ids = np.argsort(hashes, kind="stable")
    s = hashes[ids]
    first = np.flatnonzero(np.r_[True, s[1:] != s[:-1]]) if s.size else np.zeros(0, dtype=np.int64)
    return s[first], ids, np.r_[first, s.size].astype(np.int64)


@dataclass(frozen=True)
class HashIndex:
    """An exact index of N uint64 hashes (ids are positions) for pairs within ``max_distance``."""

    max_distance: int
    values: np.ndarray  # distinct hashes, ascending
    ids: np.ndarray  # hash ids grouped by value: value v owns ids[starts[v]:starts[v+1]]
    starts: np.ndarray
    layouts: tuple[_Layout, ...]
    workers: int = 0  # 0: os.cpu_count()
    engine: str = "auto"  # "compiled" (numba), "numpy", or "auto": compiled when numba is installed

    @classmethod
    def build(cls, hashes: np.ndarray, max_distance: int = DEFAULT_DISTANCE, workers: int = 0,
              engine: str = "auto") -> HashIndex:
        hashes = _as_hashes(hashes)
        chunks = plan(max_distance)
        values, ids, starts = _groups(hashes)
        threads = min(len(chunks), workers or os.cpu_count() or 1)
        if values.size < _THREADED_BUILD or threads < 2:
            layouts = tuple(_Layout.build(values, c) for c in chunks)
        else:  # a chunk's layout a thread (numpy sorts without the GIL): ~8 M values, a few seconds each
            with ThreadPoolExecutor(threads) as pool:
                layouts = tuple(pool.map(lambda c: _Layout.build(values, c), chunks))
        return cls(max_distance, values, ids, starts, layouts, workers, _engine(engine))

    @property
    def size(self) -> int:
        return int(self.ids.size)

    @property
    def chunks(self) -> tuple[Chunk, ...]:
        return plan(self.max_distance)

    def ids_of(self, value_index: int) -> np.ndarray:
        """Ids of the hashes equal to ``values[value_index]``."""
        return self.ids[self.starts[value_index]:self.starts[value_index + 1]]

    def _join(self, a: Sequence[_Layout], k: int) -> _Join:
        kind = _CompiledJoin if self.engine == "compiled" else _Join
        return kind(a, self.layouts, self.chunks, k)

    def _run(self, join: _Join) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The parts of every task, from ``workers`` threads through a small queue (memory stays flat)."""
        tasks = join.tasks()
        n = min(self.workers or os.cpu_count() or 1, max(1, len(tasks)))
        if n == 1:
            for task in tasks:
                yield from join.run(task)
            return
        parts: queue.Queue[object] = queue.Queue(maxsize=2 * n)
        todo, lock, stop = iter(tasks), threading.Lock(), threading.Event()

        def put(item: object) -> None:
            while not stop.is_set():
                with contextlib.suppress(queue.Full):
                    parts.put(item, timeout=0.05)
                    return

        def work() -> None:
            try:
                while not stop.is_set():
                    with lock:
                        task = next(todo, None)
                    if task is None:
                        break
                    for part in join.run(task):
                        put(part)
            except BaseException as exc:  # handed to the consumer, raised there
                put(exc)
            finally:
                put(_DONE)

        threads = [threading.Thread(target=work, daemon=True) for _ in range(n)]
        for t in threads:
            t.start()
        try:
            done = 0
            while done < n:
                item = parts.get()
                if item is _DONE:
                    done += 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item  # type: ignore[misc]
        finally:
            stop.set()
            for t in threads:
                t.join()

    def iter_value_pairs(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Batches (u, v, dist) of DISTINCT values within ``max_distance``; u < v index ``values``."""
        for a, b, d in self._run(self._join(self.layouts, self.max_distance)):
            if a.size:
                yield np.minimum(a, b), np.maximum(a, b), d

    def value_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """All distinct-value pairs as ((P, 2) int64 value indices u < v, distances (P,) int8)."""
        return _sorted_pairs(list(self.iter_value_pairs()))

    def iter_pairs(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Batches ((P, 2) id pairs i < j, distances) covering every pair within ``max_distance``.

        Ids sharing one value come first (distance 0), then the expansion of each value pair; a block of
        n identical hashes yields n·(n-1)/2 pairs in bounded batches.
        """
        sizes = np.diff(self.starts)
        multi = np.flatnonzero(sizes > 1)
        s0 = self.starts[multi]
        for _, a, b in _expand(s0, sizes[multi], s0, sizes[multi]):
            keep = a < b
            yield _id_pairs(self.ids[a[keep]], self.ids[b[keep]]), np.zeros(int(keep.sum()), np.int8)
        for u, v, d in self.iter_value_pairs():
            for seg, a, b in _expand(self.starts[u], sizes[u], self.starts[v], sizes[v]):
                yield _id_pairs(self.ids[a], self.ids[b]), d[seg]

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """All id pairs within ``max_distance``: ((P, 2) int64, i < j, lexicographic order; (P,) int8)."""
        return _sorted_pairs([(p[:, 0], p[:, 1], d) for p, d in self.iter_pairs()])

    def query(self, new: np.ndarray, max_distance: int | None = None, *, ordered: bool = True
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(new_idx, existing_id, dist) for every query hash and indexed hash within the distance, sorted by
        (new_idx, existing_id) unless not ``ordered`` (then in no particular order)."""
        k = self.max_distance if max_distance is None else max_distance
        if k > self.max_distance:
            raise ValueError(f"index built for distance <= {self.max_distance}, asked for {k}")
        new = _as_hashes(new)
        qvalues, qids, qstarts = _groups(new)
        qlayouts = tuple(_Layout.sparse(qvalues, c) for c in self.chunks)  # no bucket table: O(queries)
        qsizes = np.diff(qstarts)
        out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for qv, ev, d in self._run(self._join(qlayouts, k)):
            start = self.starts[ev].astype(np.int64)  # the sizes of the values hit only: no pass over the index
            for seg, a, b in _expand(qstarts[qv], qsizes[qv], start, self.starts[ev + 1] - start):
                out.append((qids[a], self.ids[b], d[seg]))
        if not out:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int8)
        q, e, dist = (np.concatenate(x) for x in zip(*out, strict=True))
        if not ordered:
            return q, e, dist
        order = np.lexsort((e, q))
        return q[order], e[order], dist[order]

    def hashes(self) -> np.ndarray:
        """The indexed hashes by id."""
        out = np.empty(self.size, dtype=np.uint64)
        out[self.ids] = np.repeat(self.values, np.diff(self.starts))
        return out

    def add(self, new: np.ndarray) -> tuple[HashIndex, np.ndarray, np.ndarray]:
        """Index with ``new`` appended (ids continue after the existing ones), and every pair involving a new id.

        Only the new hashes are searched: against the existing index, and among themselves.
        """
        new = _as_hashes(new)
        q, e, d = self.query(new)
        inner, inner_d = HashIndex.build(new, self.max_distance, self.workers, self.engine).pairs()
        pairs = np.concatenate([np.stack([e, q + self.size], axis=1), inner + self.size])
        dist = np.concatenate([d, inner_d])
        order = np.lexsort((pairs[:, 1], pairs[:, 0]))
        grown = HashIndex.build(np.concatenate([self.hashes(), new]), self.max_distance, self.workers, self.engine)
        return grown, pairs[order], dist[order]

    def save(self, path: Path) -> None:
        """One uncompressed .npz holding the hashes by id (the layouts are rebuilt on load: it is fast)."""
        with open(path, "wb") as fh:
            np.savez(fh, hashes=self.hashes(), max_distance=self.max_distance)

    @classmethod
    def load(cls, path: Path, workers: int = 0, engine: str = "auto") -> HashIndex:
        with np.load(path) as data:
            return cls.build(data["hashes"], int(data["max_distance"]), workers, engine)


def _id_pairs(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    return np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1)


def _sorted_pairs(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    if not parts:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int8)
    a, b, d = (np.concatenate(x) for x in zip(*parts, strict=True))
    order = np.lexsort((b, a))
    return np.stack([a[order], b[order]], axis=1).astype(np.int64), d[order]


def _engine(name: str) -> str:
    if name not in ("auto", "compiled", "numpy"):
        raise ValueError(f"engine must be auto, compiled or numpy, got {name!r}")
    if name == "compiled" and not kernel.AVAILABLE:
        raise ValueError("engine 'compiled' needs numba, which is not installed")
    return ("compiled" if kernel.AVAILABLE else "numpy") if name == "auto" else name


def _as_hashes(hashes: np.ndarray) -> np.ndarray:
    arr = np.asarray(hashes)
    if arr.ndim != 1 or (arr.size and arr.dtype != np.uint64):
        raise ValueError(f"hashes must be a 1-D uint64 array, got {arr.dtype} with shape {arr.shape}")
    return arr.astype(np.uint64, copy=False)


def hex_to_uint64(hexes: Sequence[str]) -> np.ndarray:
    """16-hex-digit hash strings (imagehash's ``str(hash)``) as a uint64 array."""
    return np.array([int(h, 16) for h in hexes], dtype=np.uint64)


def brute_force_pairs(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference all-pairs comparing every pair i < j, a block of rows at a time (about 32 MB per block)."""
    hashes = _as_hashes(hashes)
    block = max(1, (1 << 22) // max(1, hashes.size))
    parts = []
    for lo in range(0, hashes.size, block):
        d = np.bitwise_count(hashes[lo:lo + block, None] ^ hashes[None, lo:])
        i, j = np.nonzero(d <= max_distance)
        keep = i < j
        i, j = i[keep], j[keep]
        parts.append((i + lo, j + lo, d[i, j].astype(np.int8)))
    return _sorted_pairs(parts)


BRUTE_FORCE_WORK = 300_000_000  # query x target comparisons below which a flat scan beats building an index


def near(targets: np.ndarray, queries: np.ndarray, max_distance: int, *, ordered: bool = True
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``HashIndex.build(targets).query(queries)``: (query_idx, target_id, dist) sorted by (query, target), or in
    no particular order when not ``ordered`` (a caller that sorts them its own way).

    Small searches (a first run over a few thousand images) compare every pair instead, a block at a time:
    as fast there (0.4 s for 4 400 x 35 000), without the index's fixed-size bucket tables (~150 MB) or the
    compiled kernel."""
    targets, queries = _as_hashes(targets), _as_hashes(queries)
    if queries.size * targets.size > BRUTE_FORCE_WORK:
        return HashIndex.build(targets, max_distance).query(queries, max_distance, ordered=ordered)
    block = max(1, (1 << 22) // max(1, targets.size))
    parts = []
    for lo in range(0, queries.size, block):
        d = np.bitwise_count(queries[lo:lo + block, None] ^ targets[None, :])
        q, e = np.nonzero(d <= max_distance)
        parts.append((q + lo, e, d[q, e].astype(np.int8)))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int8)
    q, e, dist = (np.concatenate(x) for x in zip(*parts, strict=True))
    return q.astype(np.int64), e.astype(np.int64), dist
