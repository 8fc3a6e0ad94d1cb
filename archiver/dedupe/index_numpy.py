"""The numpy search engine of archiver.dedupe.index: hash chunks, bucket layouts, pair expansion, the probe join.

``_Join`` is the pure-numpy fallback (used when numba is absent, and tested against the compiled loop in
``index._CompiledJoin``); the layouts and ``_expand`` serve both engines.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import combinations

import numpy as np

from archiver.dedupe import kernel

_BATCH = 1 << 21  # candidate probes / pairs handled per work item (bounds memory per thread)
_U64 = np.uint64


@dataclass(frozen=True)
class Chunk:
    """Bits ``[shift, shift + bits)`` of the hash, probed up to ``radius`` flipped bits (-1: not used)."""

    shift: int
    bits: int
    radius: int

    @property
    def mask(self) -> np.uint64:
        return _U64(((1 << self.bits) - 1) << self.shift)

    def keys(self, values: np.ndarray) -> np.ndarray:
        return ((values >> _U64(self.shift)) & _U64((1 << self.bits) - 1)).astype(np.int64)


def _patterns(bits: int, radius: int) -> list[np.ndarray]:
    """Flip masks of popcount 1..radius grouped by their highest bit (index = that bit)."""
    groups: list[list[int]] = [[] for _ in range(bits)]
    for r in range(1, radius + 1):
        for combo in combinations(range(bits), r):
            groups[combo[-1]].append(sum(1 << b for b in combo))
    return [np.array(g, dtype=np.int32) for g in groups]


@dataclass(frozen=True)
class _Layout:
    """Distinct values sorted by one chunk's key: bucket ``k`` holds positions ``offsets[k]:offsets[k+1]``.

    The probed side's tables are made on first use: ``occupied`` (0, 1, 2 = several) and ``single`` (the
    value of a one-value bucket) let the numpy probe loop test a bucket and fetch its value with one small
    random read each; ``words`` (one occupancy bit per bucket) serves the compiled loop.
    """

    order: np.ndarray  # int64 positions in the values array
    sorted_values: np.ndarray  # values[order]
    item_keys: np.ndarray  # int32 chunk key of each sorted value (ascending)
    offsets: np.ndarray  # int64, 2**bits + 1
    buckets: np.ndarray  # int64 keys of the non-empty buckets, ascending

    @classmethod
    def build(cls, values: np.ndarray, chunk: Chunk) -> _Layout:
        keys = chunk.keys(values).astype(np.int32)
        order = np.argsort(keys)
        item_keys, sorted_values = keys[order], values[order]
        counts = np.bincount(item_keys, minlength=1 << chunk.bits)
        offsets = np.zeros(counts.size + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls(order, sorted_values, item_keys, offsets, np.flatnonzero(counts))

    @classmethod
    def sparse(cls, values: np.ndarray, chunk: Chunk) -> _Layout:
        """A layout for the searching side only (its buckets and where each starts, no table of every bucket):
        O(n) to make, where ``build`` pays for 2**bits offsets however few the values."""
        keys = chunk.keys(values).astype(np.int32)
        order = np.argsort(keys, kind="stable")
        item_keys = keys[order]
        buckets, first = np.unique(item_keys, return_index=True)
        layout = cls(order, values[order], item_keys, None, buckets.astype(np.int64))  # type: ignore[arg-type]
        layout.__dict__["bucket_starts"] = np.r_[first, order.size].astype(np.int64)
        return layout

    @cached_property
    def bucket_starts(self) -> np.ndarray:
        """Where each non-empty bucket's values start (``buckets`` order), then the number of values."""
        return np.r_[self.offsets[self.buckets], self.order.size].astype(np.int64)

    @cached_property
    def occupied(self) -> np.ndarray:
        return np.minimum(np.diff(self.offsets), 2).astype(np.uint8)

    @cached_property
    def single(self) -> np.ndarray:
        single = np.zeros(self.offsets.size - 1, dtype=np.uint64)
        single[self.item_keys] = self.sorted_values  # right for one-value buckets, never read for the others
        return single

    @cached_property
    def words(self) -> np.ndarray:
        return kernel.occupancy_words(np.diff(self.offsets))


def _expand(a_start: np.ndarray, a_len: np.ndarray, b_start: np.ndarray, b_len: np.ndarray
            ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every (segment, a_start+x, b_start+y), x < a_len, y < b_len, in blocks of about ``_BATCH`` pairs."""
    weight = a_len * b_len
    single = np.flatnonzero(weight == 1)
    if single.size:
        yield single, a_start[single], b_start[single]
    for i in np.flatnonzero(weight > _BATCH):  # split a huge segment into row blocks
        rows = max(1, _BATCH // int(b_len[i]))
        for r0 in range(0, int(a_len[i]), rows):
            r = min(rows, int(a_len[i]) - r0)
            a = np.repeat(np.arange(a_start[i] + r0, a_start[i] + r0 + r), b_len[i])
            yield np.full(a.size, i), a, np.tile(np.arange(b_start[i], b_start[i] + b_len[i]), r)
    light = np.flatnonzero((weight > 1) & (weight <= _BATCH))
    if light.size == 0:
        return
    w_all = weight[light]
    ends = np.cumsum(w_all)
    cuts = np.searchsorted(ends, np.arange(_BATCH, int(ends[-1]), _BATCH), "right")
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, light.size], strict=True):
        if lo == hi:
            continue
        seg, w = light[lo:hi], w_all[lo:hi]
        rep = seg[np.repeat(np.arange(seg.size), w)]
        k = np.arange(int(w.sum())) - np.repeat(np.cumsum(w) - w, w)
        bl = b_len[rep]
        yield rep, a_start[rep] + k // bl, b_start[rep] + k % bl


class _Join:
    """Pairs of distinct values (from side A, from side B) within ``k``; A is B for the all-pairs search.

    Work items are (chunk, highest flipped bit): each A value probes the B buckets at its key XOR every
    flip pattern. For the all-pairs search only values whose key has that bit clear probe, so each
    unordered pair is met once; bucket-mates (pattern 0) are paired directly.
    """

    def __init__(self, a: Sequence[_Layout], b: Sequence[_Layout], chunks: Sequence[Chunk], k: int) -> None:
        self.a, self.b, self.chunks, self.k, self.same = a, b, chunks, k, a is b
        for layout, chunk in zip(b, chunks, strict=True):  # make the probe tables before threads share them
            if chunk.radius >= 0:
                layout.occupied, layout.single  # noqa: B018

    def tasks(self) -> list[tuple[int, int, np.ndarray]]:
        """(chunk index, highest flipped bit or -1 for pattern 0, patterns) work items, biggest first."""
        out: list[tuple[int, int, np.ndarray]] = []
        for ci, chunk in enumerate(self.chunks):
            if chunk.radius < 0:
                continue
            out.append((ci, -1, np.zeros(1, dtype=np.int32)))
            out.extend((ci, top, pats) for top, pats in enumerate(_patterns(chunk.bits, chunk.radius))
                       if pats.size)
        return sorted(out, key=lambda t: -t[2].size)

    def run(self, task: tuple[int, int, np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        yield self._run_task(task)

    def _run_task(self, task: tuple[int, int, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ci, top, pats = task
        la, lb = self.a[ci], self.b[ci]
        if top < 0 and self.same:
            return self._bucket_mates(ci)
        pos = np.arange(la.item_keys.size)
        if self.same:
            pos = np.flatnonzero((la.item_keys >> top) & 1 == 0)
        src_keys, src_vals = la.item_keys[pos], la.sorted_values[pos]
        parts = []
        step = max(1, _BATCH // max(1, pos.size))
        for i in range(0, pats.size, step):
            v = (src_keys[None, :] ^ pats[i:i + step, None]).ravel()
            occ = lb.occupied[v]  # type: ignore[index]
            hit = np.flatnonzero(occ)
            col = hit % pos.size
            vk = v[hit]
            one = occ[hit] == 1
            x = src_vals[col[one]] ^ lb.single[vk[one]]  # type: ignore[index]
            d = np.bitwise_count(x)
            ok = np.flatnonzero(d <= self.k)
            parts.append(self._keep(ci, pos[col[one][ok]], lb.offsets[vk[one][ok]], x[ok], d[ok]))
            many = ~one
            b0 = lb.offsets[vk[many]]
            parts.extend(self._verify(ci, a, b) for _, a, b in _expand(
                pos[col[many]], np.ones(b0.size, np.int64), b0, lb.offsets[vk[many] + 1] - b0))
        return _concat3(parts)

    def _bucket_mates(self, ci: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        la = self.a[ci]
        counts = np.diff(la.offsets)
        full = np.flatnonzero(counts > 1)
        s0, n = la.offsets[full], counts[full]
        parts = []
        for _, a, b in _expand(s0, n, s0, n):
            keep = a < b
            parts.append(self._verify(ci, a[keep], b[keep]))
        return _concat3(parts)

    def _verify(self, ci: int, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = self.a[ci].sorted_values[a] ^ self.b[ci].sorted_values[b]
        d = np.bitwise_count(x)
        ok = np.flatnonzero(d <= self.k)
        return self._keep(ci, a[ok], b[ok], x[ok], d[ok])

    def _keep(self, ci: int, a: np.ndarray, b: np.ndarray, x: np.ndarray, d: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Drop pairs an earlier chunk finds too; map sorted positions back to value indices."""
        ok = np.ones(a.size, dtype=bool)
        for earlier in self.chunks[:ci]:
            if earlier.radius >= 0:
                ok &= np.bitwise_count(x & earlier.mask) > earlier.radius
        return self.a[ci].order[a[ok]], self.b[ci].order[b[ok]], d[ok].astype(np.int8)


def _concat3(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = [p for p in parts if p[0].size]
    if not parts:
        return _empty3()
    return tuple(np.concatenate(x) for x in zip(*parts, strict=True))  # type: ignore[return-value]


def _empty3() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    e = np.zeros(0, dtype=np.int64)
    return e, e, np.zeros(0, dtype=np.int8)
