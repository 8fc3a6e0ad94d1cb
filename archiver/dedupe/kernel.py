"""Compiled probe loop for archiver.dedupe.index (numba, optional): one chunk's buckets read 64 at a time.

A chunk key splits into a word index (high bits) and a bit (low 6 bits). Every occupied target bucket
within radius ``r`` of a source key is found by XOR-ing the word index with each high pattern of weight
``w <= r`` and AND-ing that occupancy word with ``LOWMASK[r - w, key & 63]`` (the low keys within
``r - w`` flipped bits): one read per 64 buckets instead of one per bucket, and only hits are visited.
Keys are cut into blocks; a source block and its target block stay in cache while every inner pattern
sweeps the source block. The GIL is released, so threads share the work; results are bounded parts.
``AVAILABLE`` is False when numba is not installed; the caller then uses its numpy path.
"""

from __future__ import annotations

import numpy as np

try:
    from llvmlite import ir
    from numba import njit, types
    from numba.core import cgutils
    from numba.extending import intrinsic
except ImportError:  # pragma: no cover - exercised where numba is absent
    AVAILABLE = False
else:
    AVAILABLE = True

_AHEAD = 8  # probes between the run ``lookup`` prefetches and the run it compares
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

    @intrinsic
    def _prefetch(typingctx, arr, idx):  # type: ignore[no-untyped-def]
        """Ask the CPU to start loading ``arr[idx]`` into its caches (LLVM's ``prefetch``: no fault, no result;
        ``idx`` must be within the array, as for a read)."""
        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            aryty = signature.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
            byte_ptr = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fn = builder.module.declare_intrinsic("llvm.prefetch", [byte_ptr],
                                                  ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32]))
            # read (0), keep in all levels (3), data cache (1)
            builder.call(fn, [builder.bitcast(ptr, byte_ptr), i32(0), i32(3), i32(1)])
            return context.get_dummy_value()
        return types.void(arr, idx), codegen

    @njit(cache=True, nogil=True, inline="always")
    def _found_earlier(x, masks, radii):  # type: ignore[no-untyped-def]
        """Whether a pair differing by ``x`` is reported by an earlier chunk: within ``radii[e]`` bits on the bits of
        ``masks[e]`` for some e (each pair is kept from the first chunk where it qualifies only)."""
        for e in range(masks.size):  # noqa: SIM110 (a loop: numba compiles no generator inside any())
            if _popcount(x & masks[e]) <= np.uint64(radii[e]):
                return True
        return False

    @njit(cache=True, nogil=True, inline="always")
    def _compare_run(q, qid, run, j0, order, kk, earlier_masks, earlier_radii, out_q, out_p, n):  # type: ignore[no-untyped-def]
        """Append (``qid``, ``order[j0 + j]``) for each value ``run[j]`` within ``kk`` bits of ``q`` that no earlier
        chunk finds; the new count, or -1 when ``out_*`` filled up (the caller drops this step's pairs and resumes
        there). Most runs hold no such value: a branch-free count first, which the compiler turns into vector
        instructions (~2x fewer cycles a value), and the run read again only on a hit. (``lookup`` and ``sweep``.)"""
        hits = 0
        for j in range(run.size):
            hits += _popcount(q ^ run[j]) <= kk
        if hits == 0:
            return n
        for j in range(run.size):
            x = q ^ run[j]
            if _popcount(x) > kk:
                continue
            if _found_earlier(x, earlier_masks, earlier_radii):
                continue
            if n == out_q.size:
                return -1
            out_q[n] = qid
            out_p[n] = order[j0 + j]
            n += 1
        return n

    @njit(cache=True, nogil=True)
    def probe(src_buckets, src_blocks, src_off, src_vals, src_order, dst_off, dst_vals, dst_order, dst_occ,
              inner, outer, outer_top,
              highs, radii, tops, lowmask, k, same, earlier_masks, earlier_radii,
              out_a, out_b, out_d, o0, p0, q0):  # type: ignore[no-untyped-def]
        """Fill ``out_*`` with pairs (``src_order[i]``, ``dst_order[j]``, distance) of one chunk.

        Keys split into [outer block | ``inner`` word bits | 6 low bits]. Source block ``o`` is paired
        with target block ``o ^ outer`` and, for each inner pattern ``highs[p]`` (remaining low radius
        ``radii[p]``, highest bit ``tops[p]``, -1 for 0), every source bucket of the block probes word
        ``word ^ (outer << inner | highs[p])``: both blocks stay in cache for all inner patterns.
        ``src_blocks[o]`` is the first index of ``src_buckets`` (ascending keys) in block ``o``; the values of
        source bucket ``q`` are at ``src_off[q]:src_off[q + 1]`` (compact: one entry per non-empty bucket).
        With ``same`` (sources are the targets) each pair is kept once: from the smaller key
        (``outer_top`` is the highest bit of ``outer``, -1 for 0), bucket-mates by position. A pair some
        earlier chunk finds (``popcount(x & mask) <= radius``) is skipped. Returns (count, o, p, q):
        when the buffers fill up, the unfinished source bucket is dropped and (o, p, q) says where to
        resume; o == number of blocks: done.
        """
        cap = out_a.size
        n = 0
        kk = np.uint64(k)
        one = np.uint64(1)
        nblocks = src_blocks.size - 1
        p, q = p0, q0
        for o in range(o0, nblocks):
            if same and outer_top >= 0 and (o >> outer_top) & 1:
                continue
            base = outer << inner
            while p < highs.size:
                hp = base | highs[p]
                top = tops[p] if outer_top < 0 else 64
                r = radii[p]
                if q < src_blocks[o]:
                    q = src_blocks[o]
                while q < src_blocks[o + 1]:
                    s = src_buckets[q]
                    sw = s >> LOW
                    if same and 0 <= top < 64 and (sw >> top) & 1:
                        q += 1
                        continue
                    w = sw ^ hp
                    sb = s & 63
                    m = dst_occ[w] & lowmask[r, sb]
                    if same and top < 0:  # only the bucket itself and larger keys in this word
                        m &= ~((one << np.uint64(sb)) - one)
                    i0, i1 = src_off[q], src_off[q + 1]
                    n0 = n
                    while m:
                        t = (w << LOW) | np.int64(_lowest_bit(m))
                        m &= m - one
                        j0, j1 = dst_off[t], dst_off[t + 1]
                        mates = same and t == s
                        for i in range(i0, i1):
                            vi = src_vals[i]
                            for j in range(i + 1 if mates else j0, j1):
                                x = vi ^ dst_vals[j]
                                d = _popcount(x)
                                if d > kk:
                                    continue
                                if _found_earlier(x, earlier_masks, earlier_radii):
                                    continue
                                if n == cap:
                                    return n0, o, p, q
                                out_a[n] = src_order[i]
                                out_b[n] = dst_order[j]
                                out_d[n] = d
                                n += 1
                    q += 1
                p += 1
                q = 0
            p = 0
        return n, nblocks, 0, 0


if AVAILABLE:
    @njit(cache=True, nogil=True)
    def brute(queries, targets, k, out_q, out_t):  # type: ignore[no-untyped-def]
        """Every (query index, target index) within ``k`` bits, comparing all pairs: for a few thousand targets
        this beats any index. Returns the count, or -1 when ``out_*`` are too small (call again with larger)."""
        n = 0
        cap = out_q.size
        kk = np.uint64(k)
        for i in range(queries.size):
            q = queries[i]
            for j in range(targets.size):
                if _popcount(q ^ targets[j]) <= kk:
                    if n == cap:
                        return -1
                    out_q[n] = i
                    out_t[n] = j
                    n += 1
        return n


if AVAILABLE:
    @njit(cache=True, nogil=True)
    def probe_order(keys, pats, lo, hi, bits, drop, offsets, key_lo, key_hi):  # type: ignore[no-untyped-def]
        """The probes of ``keys[lo:hi]`` (``bits``-bit keys, each XOR each flip mask of ``pats``) that fall in
        ``[key_lo, key_hi)`` and whose run of values is not empty (``offsets``), as ``probe key << 32 | query
        index``, ordered by ``probe key >> drop`` (a counting sort over ``2 ** (bits - drop)`` buckets): ``lookup``
        then reads a chunk's runs in ascending order, each run once for all the queries probing it, and a small
        table's empty keys are not visited twice."""
        buckets = 1 << (bits - drop)
        start = np.zeros(buckets + 1, np.int64)
        n = 0
        for i in range(lo, hi):
            for p in range(pats.size):
                x = keys[i] ^ pats[p]
                if key_lo <= x < key_hi and offsets[x + 1] > offsets[x]:
                    start[(x >> drop) + 1] += 1
                    n += 1
        for b in range(buckets):
            start[b + 1] += start[b]
        out = np.empty(n, np.int64)
        for i in range(lo, hi):
            for p in range(pats.size):
                x = keys[i] ^ pats[p]
                if key_lo <= x < key_hi and offsets[x + 1] > offsets[x]:
                    b = x >> drop
                    out[start[b]] = (x << 32) | i
                    start[b] += 1
        return out

    @njit(cache=True, nogil=True)
    def lookup(queries, probes, start, stop, offsets, values, order, k, earlier_masks, earlier_radii,
               out_q, out_p):  # type: ignore[no-untyped-def]
        """Probe one chunk of a ``tables.Table``: for each of ``probes[start:stop]`` (``key << 32 | query index``,
        from ``probe_order``), compare the query with the run of values under that key; a pair some earlier chunk
        finds (``popcount(x & mask) <= radius``) is skipped. Consecutive probes of one key (up to 64) are compared
        together (the run stays in the cache between them). Fills ``out_*`` with (query index, ``order`` of
        the value) a whole group of probes at a time; returns (count, the first probe not done)."""
        n = 0
        kk = np.uint64(k)
        low = np.int64(0xFFFFFFFF)
        group = 64
        qv = np.empty(group, np.uint64)
        qi = np.empty(group, np.int64)
        i = start
        while i < stop:
            # the run a few probes ahead starts loading now: the runs are read in ascending order but with gaps the
            # hardware prefetcher does not bridge, so each would be a cache miss (~100 ns) on its own
            if i + _AHEAD < stop:
                s0 = offsets[probes[i + _AHEAD] >> 32]
                if 0 <= s0 < values.size:
                    _prefetch(values, s0)
                    if s0 + 8 < values.size:  # its second cache line: most runs of a large table span two or three
                        _prefetch(values, s0 + 8)
            key = probes[i] >> 32
            m = 0
            e = i
            while e < stop and m < group and (probes[e] >> 32) == key:
                qi[m] = probes[e] & low
                qv[m] = queries[qi[m]]
                m += 1
                e += 1
            n0 = n
            j0, j1 = max(offsets[key], 0), min(offsets[key + 1], values.size)  # clamped: see lookup_direct
            run = values[j0:j1]
            for t in range(m):
                q = qv[t]
                n = _compare_run(q, qi[t], run, j0, order, kk, earlier_masks, earlier_radii, out_q, out_p, n)
                if n < 0:
                    return n0, i
            i = e
        return n, stop


SLOTS = 8  # query values sweep_tiles copies for a key at once, whatever its count (fewer: the rest are ignored)


if AVAILABLE:
    @njit(cache=True, nogil=True, inline="always")
    def _gathered(qoff, qidx, qbase, x, lows, first, bstart, cnt, i):  # type: ignore[no-untyped-def]
        """The index of the query at position ``i`` of ``sweep``'s gathered values: the queries of mask
        ``first + e`` start at ``bstart[e]`` (e < ``cnt``; the last such e, as masks without queries share the next
        one's start)."""
        lo, hi = 0, cnt
        while hi - lo > 1:
            mid = (lo + hi) >> 1
            if bstart[mid] <= i:
                lo = mid
            else:
                hi = mid
        qk = qbase | (x ^ lows[first + lo])
        return qidx[qoff[qk] + i - bstart[lo]]

    @njit(cache=True, nogil=True, inline="always")
    def _compare_gathered(bv, m, run, j0, order, kk, earlier_masks, earlier_radii, qoff, qidx, qbase, x, lows, first,
                          bstart, cnt, out_q, out_p, n):  # type: ignore[no-untyped-def]
        """Report the pairs of the ``m`` query values gathered in ``bv`` and a run; -1 when ``out_*`` filled up.
        The whole block is counted first, branch-free, the inner loop over the longer side (the one the compiler
        turns into vector instructions, ~0.3 ns a pair); only a block whose count is not zero (rarely: a hit) is
        counted again value by value of the shorter side, and only a value whose count is not zero is looked at
        pair by pair, its query found from its position (``_gathered``)."""
        hits = 0  # the whole block first, one branch-free count: most blocks hold no pair
        if m > run.size:
            for j in range(run.size):
                v = run[j]
                for i in range(m):
                    hits += _popcount(bv[i] ^ v) <= kk
        else:
            for i in range(m):
                q = bv[i]
                for j in range(run.size):
                    hits += _popcount(q ^ run[j]) <= kk
        if hits == 0:
            return n
        if m > run.size:
            for j in range(run.size):
                v = run[j]
                hits = 0
                for i in range(m):
                    hits += _popcount(bv[i] ^ v) <= kk
                if hits == 0:
                    continue
                for i in range(m):
                    y = bv[i] ^ v
                    if _popcount(y) > kk or _found_earlier(y, earlier_masks, earlier_radii):
                        continue
                    if n == out_q.size:
                        return -1
                    out_q[n] = _gathered(qoff, qidx, qbase, x, lows, first, bstart, cnt, i)
                    out_p[n] = order[j0 + j]
                    n += 1
        else:
            for i in range(m):
                q = bv[i]
                hits = 0
                for j in range(run.size):
                    hits += _popcount(q ^ run[j]) <= kk
                if hits == 0:
                    continue
                n = _compare_run(q, _gathered(qoff, qidx, qbase, x, lows, first, bstart, cnt, i), run, j0, order, kk,
                                 earlier_masks, earlier_radii, out_q, out_p, n)
                if n < 0:
                    return -1
        return n

    @njit(cache=True, nogil=True)
    def sweep_tiles(qoff, qvals, qidx, tile_bits, highs, gstart, lows, offsets, values, order, k, earlier_masks,
              earlier_radii, start, stop, bv, bstart, out_q, out_p):  # type: ignore[no-untyped-def]
        """Probe one chunk of a ``tables.Table`` for many queries at once, tile by tile of the table's keys.

        ``qoff``: where the queries of each key start in ``qvals`` (their values, followed by ``SLOTS`` of padding)
        and ``qidx`` (their indexes), sorted by key. A key is [tile | ``tile_bits`` low bits]; the flip masks are
        grouped by their tile bits: group g flips the tile bits by ``highs[g]`` and the low bits by each of
        ``lows[gstart[g]:gstart[g + 1]]``. Step ``h * groups + g`` pairs the table's tile h with the queries' tile
        ``h ^ highs[g]``: for each key x of tile h, the values of the queries of every key ``x ^ mask`` of the group
        are gathered in ``bv`` (``SLOTS`` copied for each key without a branch on its count; ``bstart``: where each
        mask's start) and compared with x's run of values at once (``_compare_gathered``). The queries' tile stays
        in the cache for all the keys and masks of a step, and the table's tile is read in order, so 22-bit keys
        (4 M keys, 32 MB of query offsets, a cache miss a probe when swept key by key) cost about what 16-bit ones
        do. A key of more than ``SLOTS`` queries is compared on its own, query by query. A pair some earlier chunk
        finds is skipped. Fills ``out_*`` with (query index, ``order`` of the value) a whole step at a time; returns
        (count, the first step not done)."""
        n = 0
        kk = np.uint64(k)
        groups = highs.size
        tile = np.int64(1) << tile_bits
        cap = bv.size - SLOTS
        pos = start
        while pos < stop:
            h = pos // groups
            g = pos - h * groups
            tbase = h << tile_bits
            qbase = (h ^ highs[g]) << tile_bits
            if qoff[qbase + tile] <= qoff[qbase]:  # no query in that tile
                pos += 1
                continue
            n0 = n
            g0, g1 = gstart[g], gstart[g + 1]
            for x in range(tile):
                t = tbase | x
                j0, j1 = max(offsets[t], 0), min(offsets[t + 1], values.size)  # clamped: see lookup_direct
                if j1 <= j0:
                    continue
                run = values[j0:j1]
                m = 0
                first = g0  # the first mask whose queries are in bv
                for p in range(g0, g1):
                    qk = qbase | (x ^ lows[p])
                    a = qoff[qk]
                    c = qoff[qk + 1] - a
                    if c <= SLOTS:
                        bstart[p - first] = m
                        for u in range(SLOTS):
                            bv[m + u] = qvals[a + u]
                        m += c
                        if m <= cap:
                            continue
                        last = p + 1
                    else:  # many queries of one key: compared with the run on their own, after those gathered
                        last = p
                    if m:
                        n = _compare_gathered(bv, m, run, j0, order, kk, earlier_masks, earlier_radii, qoff, qidx,
                                              qbase, x, lows, first, bstart, last - first, out_q, out_p, n)
                        if n < 0:
                            return n0, pos
                    if last == p:
                        for i in range(a, a + c):
                            n = _compare_run(qvals[i], qidx[i], run, j0, order, kk, earlier_masks, earlier_radii,
                                             out_q, out_p, n)
                            if n < 0:
                                return n0, pos
                    m = 0
                    first = p + 1
                if m:
                    n = _compare_gathered(bv, m, run, j0, order, kk, earlier_masks, earlier_radii, qoff, qidx, qbase,
                                          x, lows, first, bstart, g1 - first, out_q, out_p, n)
                    if n < 0:
                        return n0, pos
            pos += 1
        return n, stop


if AVAILABLE:
    @njit(cache=True, nogil=True)
    def sweep(qoff, qvals, qidx, pats, offsets, values, order, k, earlier_masks, earlier_radii, start, stop,
              out_q, out_p):  # type: ignore[no-untyped-def]
        """Probe one chunk of a ``tables.Table`` for many queries at once, key by key of the table: for each key t in
        order, its run of values is compared with the queries whose own key is ``t ^ pats[p]``, for every flip mask
        p (the run stays in the cache for all of them, and the values are read once, in order). ``qoff``: where the
        queries of each key start in ``qvals`` (their values) and ``qidx`` (their indexes), sorted by key. Positions
        ``start:stop`` count (key, mask) steps: ``t * pats.size + p``. A pair some earlier chunk finds is skipped.
        Fills ``out_*`` with (query index, ``order`` of the value) a whole step at a time; returns (count, the first
        step not done). For chunks of up to 17 bits, whose query offsets (<= 1 MB) stay in the cache; wider ones:
        ``sweep_tiles`` (on these it costs more: its gathering does not pay where the offsets are in the cache)."""
        n = 0
        kk = np.uint64(k)
        npats = pats.size
        pos = start
        while pos < stop:
            t = pos // npats
            j0, j1 = max(offsets[t], 0), min(offsets[t + 1], values.size)  # clamped: see lookup_direct
            if j1 <= j0:
                pos = (t + 1) * npats  # an empty run: no step of this key finds anything
                continue
            run = values[j0:j1]
            last = min(stop, (t + 1) * npats)
            while pos < last:
                qk = t ^ pats[pos - t * npats]
                n0 = n
                for i in range(qoff[qk], qoff[qk + 1]):
                    n = _compare_run(qvals[i], qidx[i], run, j0, order, kk, earlier_masks, earlier_radii, out_q,
                                     out_p, n)
                    if n < 0:
                        return n0, pos
                pos += 1
        return n, stop


if AVAILABLE:
    @njit(cache=True, nogil=True)
    def lookup_direct(queries, start, stop, shift, bits, pats, offsets, values, order, k, earlier_masks,
                      earlier_radii, out_q, out_p):  # type: ignore[no-untyped-def]
        """Probe one chunk of a ``tables.Table`` for ``queries[start:stop]`` query by query (``lookup``'s ordered
        probes do not pay where most runs are empty): for each query, every key within the flip masks ``pats`` of its
        own, comparing the run of values under it; a pair some earlier chunk finds
        (``popcount(x & mask) <= radius``) is skipped. Fills ``out_*`` with (query index, ``order`` of the value)
        a whole query at a time; returns (count, the first query not done)."""
        cap = out_q.size
        n = 0
        kk = np.uint64(k)
        mask = (np.uint64(1) << np.uint64(bits)) - np.uint64(1)
        sh = np.uint64(shift)
        for i in range(start, stop):
            q = queries[i]
            key = np.int64((q >> sh) & mask)
            n0 = n
            for p in range(pats.size):
                x0 = key ^ pats[p]
                # clamped to the values: offsets read back damaged (the ends are checked on assembly, not each
                # one) give wrong runs, never a read outside the arrays (a crash)
                for j in range(max(offsets[x0], 0), min(offsets[x0 + 1], values.size)):
                    x = q ^ values[j]
                    if _popcount(x) > kk:
                        continue
                    if _found_earlier(x, earlier_masks, earlier_radii):
                        continue
                    if n == cap:
                        return n0, i
                    out_q[n] = i
                    out_p[n] = order[j]
                    n += 1
        return n, stop


def all_near(queries: np.ndarray, targets: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(query index, target index) of every pair within ``k`` bits, by comparing them all (compiled loop)."""
    cap = 1 << 16
    while True:
        out_q, out_t = np.empty(cap, np.int64), np.empty(cap, np.int64)
        n = brute(queries, targets, k, out_q, out_t)
        if n >= 0:
            return out_q[:n], out_t[:n]
        cap *= 4
