"""Compiled probe loop for archiver.hashindex (numba, optional): one chunk's buckets read 64 at a time.

A chunk key splits into a word index (high bits) and a bit (low 6 bits). Every occupied target bucket
within radius ``r`` of a source key is found by XOR-ing the word index with each high pattern of weight
``w <= r`` and AND-ing that occupancy word with ``LOWMASK[r - w, key & 63]`` (the low keys within
``r - w`` flipped bits): one read per 64 buckets instead of one per bucket, and only hits are visited.
Loops run pattern by pattern over the ascending source keys, so the targets of a run of sources stay in
one aligned block of the tables (cache-friendly), with the GIL released so threads share the chunks.
``AVAILABLE`` is False when numba is not installed; the caller then uses its numpy path.
"""

from __future__ import annotations

import numpy as np

try:
    from numba import njit, types
    from numba.extending import intrinsic
except ImportError:  # pragma: no cover - exercised where numba is absent
    AVAILABLE = False
else:
    AVAILABLE = True

LOW = 6  # low key bits resolved inside one 64-bit occupancy word


def low_masks(max_radius: int) -> np.ndarray:
    """(max_radius + 1, 64) uint64: bit t of [r, s] is set when popcount(s ^ t) <= r."""
    t = np.arange(64)
    dist = np.bitwise_count(t[:, None] ^ t[None, :])  # [s, t]
    weights = np.uint64(1) << t.astype(np.uint64)
    return np.stack([np.bitwise_or.reduce(np.where(dist <= r, weights, np.uint64(0)), axis=1)
                     for r in range(max_radius + 1)]).astype(np.uint64)


def occupancy_words(counts: np.ndarray) -> np.ndarray:
    """Bit ``key & 63`` of word ``key >> 6`` is set when bucket ``key`` holds a value."""
    return np.packbits(counts > 0, bitorder="little").view("<u8").astype(np.uint64, copy=False)


if AVAILABLE:
    @intrinsic
    def _popcount(typingctx, x):  # type: ignore[no-untyped-def]
        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            return builder.ctpop(args[0])
        return types.uint64(types.uint64), codegen

    @intrinsic
    def _lowest_bit(typingctx, x):  # type: ignore[no-untyped-def]
        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            return builder.cttz(args[0], context.get_constant(types.boolean, True))
        return types.uint64(types.uint64), codegen

    @njit(cache=True, nogil=True)
    def _grow(a, n):  # type: ignore[no-untyped-def]
        b = np.empty(a.size * 2, a.dtype)
        b[:n] = a[:n]
        return b

    @njit(cache=True, nogil=True)
    def probe(src_buckets, src_off, src_vals, dst_off, dst_vals, dst_occ, highs, radii, tops,
              lowmask, k, same, earlier_masks, earlier_radii):  # type: ignore[no-untyped-def]
        """Pairs (source position, target position, distance) over the given high patterns of one chunk.

        ``highs[p]`` XORs the word index, ``radii[p]`` is the radius left for the low bits and ``tops[p]``
        the highest bit of ``highs[p]`` (-1 for 0). With ``same`` (sources are the targets) a pair is
        kept once: from the smaller key, and bucket-mates by position. A pair some earlier chunk finds
        (``popcount(x & mask) <= radius``) is skipped.
        """
        cap = 1 << 16
        out_a = np.empty(cap, np.int64)
        out_b = np.empty(cap, np.int64)
        out_d = np.empty(cap, np.int8)
        n = 0
        kk = np.uint64(k)
        ne = earlier_masks.size
        one = np.uint64(1)
        for p in range(highs.size):
            hp = np.int64(highs[p])
            top = tops[p]
            rows = lowmask[radii[p]]
            for q in range(src_buckets.size):
                s = src_buckets[q]
                sw = s >> LOW
                if same and top >= 0 and (sw >> top) & 1:
                    continue
                w = sw ^ hp
                sb = s & 63
                m = dst_occ[w] & rows[sb]
                if same and top < 0:
                    m &= ~((one << np.uint64(sb + 1)) - one) if sb < 63 else np.uint64(0)
                i0, i1 = src_off[s], src_off[s + 1]
                if same and top < 0:  # bucket-mates
                    for i in range(i0, i1):
                        vi = src_vals[i]
                        for j in range(i + 1, i1):
                            x = vi ^ src_vals[j]
                            d = _popcount(x)
                            if d <= kk:
                                ok = True
                                for e in range(ne):
                                    if _popcount(x & earlier_masks[e]) <= earlier_radii[e]:
                                        ok = False
                                        break
                                if ok:
                                    if n == out_a.size:
                                        out_a, out_b, out_d = _grow(out_a, n), _grow(out_b, n), _grow(out_d, n)
                                    out_a[n], out_b[n], out_d[n] = i, j, d
                                    n += 1
                while m:
                    t = (w << LOW) | np.int64(_lowest_bit(m))
                    m &= m - one
                    j0, j1 = dst_off[t], dst_off[t + 1]
                    for i in range(i0, i1):
                        vi = src_vals[i]
                        for j in range(j0, j1):
                            x = vi ^ dst_vals[j]
                            d = _popcount(x)
                            if d <= kk:
                                ok = True
                                for e in range(ne):
                                    if _popcount(x & earlier_masks[e]) <= earlier_radii[e]:
                                        ok = False
                                        break
                                if ok:
                                    if n == out_a.size:
                                        out_a, out_b, out_d = _grow(out_a, n), _grow(out_b, n), _grow(out_d, n)
                                    out_a[n], out_b[n], out_d[n] = i, j, d
                                    n += 1
        return out_a[:n], out_b[:n], out_d[:n]
