"""zf compiled (numba, optional): rule D's distance for many pairs of grey grids, ``similarity._framed_many``.

Rule D compares one grid's inner cells with each of 625 windows of the other grid (``similarity._windows``), in three
rounds of tone normalisation and selection of the closest cells (``similarity._tone_free``): on arrays that is ~80
passes over 22 500 cells per pair and side, ~2.3 ms a pair, and a rescan of ten million images has hundreds of
thousands of such pairs (look-alikes whose identity pHashes are close).

Here the windows are worked side by side, one lane each: every array is (36 cells, lanes), a block of
``_KINDS_AT_ONCE`` x 25 windows (~36 KB an array, in the core's cache), and every loop runs over the lanes
innermost, so the compiler turns it into vector instructions. The k-th smallest difference of each window is kept
in six registers by a branch-free insertion (a compare and exchange per slot), not a sort. A window's tone is
measured in two passes over its cells that form the products as they go, and the last pass writes the differences
the next step reads, so no intermediate array is stored. ~0.33 ms a pair on one core (1.5 ms cell by cell before).

The arithmetic is the array path's, operation for operation, so the numbers are the same bit for bit (tested on
every pair measured): a window cell is a sum of products taken in a fixed order from 0.0; a sum over the cells is
numpy's pairwise summation of a contiguous row (eight running sums combined as a tree, then the rest: ``_sums``); a
mean divides by the count of cells taken; the k-th smallest difference is exact however it is found. Each lane does
exactly that sequence, so working them side by side changes no number. No fused multiply-add (numba's default
without fastmath); ``error_model="numpy"`` only drops Python's division-by-zero check (which kept the divisions
scalar): every divisor here is at least TONE_FLOOR or 31 cells. ``AVAILABLE`` is False without numba: the caller
then uses its array path.

Compiled once an install (numba's cache): ~14 s and ~280 MB here (the cell-by-cell loop before: ~6 s). The helpers
are compiled as functions of their own and the compiler inlines what it chooses; only ``_toned`` (into its three
uses, each fixing its flags) and ``_insert6`` (six times into ``_closest``, whose lanes need the insertions written
out) are inlined by numba. Inlining every helper everywhere made one function that took 4.5 minutes and 4.8 GB to
compile, for no speed.
"""

from __future__ import annotations

import numpy as np

try:
    from numba import njit
except ImportError:  # pragma: no cover - exercised where numba is absent
    AVAILABLE = False
else:
    AVAILABLE = True

_SIDE = 8  # the grids' side (similarity._GREY_SIDE)
_N = 36  # cells compared: the inner 6 x 6
_TOP = 6  # _N - keep + 1: the keep-th smallest of 36 is the 6th largest (keep = similarity._FRAMED_KEEP = 31)
_KINDS_AT_ONCE = 5  # row crops per block: 5 x 25 windows side by side

if AVAILABLE:
    @njit(cache=True, nogil=True, error_model="numpy")
    def _cell(g, i, lane, one_column):  # type: ignore[no-untyped-def]
        """Cell i of a lane: g[i, lane], or g[i, 0] when the same cells serve every lane."""
        return g[i, 0] if one_column else g[i, lane]

    @njit(cache=True, nogil=True, error_model="numpy")
    def _sums(a, lanes, out, r):  # type: ignore[no-untyped-def]
        """out[l] = ``np.add.reduce`` of the 36 cells a[:, l], lane by lane: numpy's pairwise sum (eight running
        sums over the first 32 combined as a tree, then the last 4), added to its identity; r: (8, lanes)."""
        for j in range(8):
            for lane in range(lanes):
                r[j, lane] = a[j, lane]
        for i in range(8, 32, 8):
            for j in range(8):
                for lane in range(lanes):
                    r[j, lane] += a[i + j, lane]
        for lane in range(lanes):
            res = ((r[0, lane] + r[1, lane]) + (r[2, lane] + r[3, lane])) + \
                ((r[4, lane] + r[5, lane]) + (r[6, lane] + r[7, lane]))
            res += a[32, lane]
            res += a[33, lane]
            res += a[34, lane]
            res += a[35, lane]
            out[lane] = 0.0 + res

    @njit(cache=True, nogil=True, error_model="numpy", inline="always")
    def _toned(g, w, taken, out, mean, scale, floor, lanes, r, one_column, tx, mode):  # type: ignore[no-untyped-def]
        """``similarity._toned`` of each lane's cells g (one column: the same cells in every lane) on the cells
        where ``w`` (1.0 or 0.0; ``taken`` of them): shifted to mean 0, scaled to rms 1 or divided by ``floor``
        when flatter. ``mode`` 0 writes them to ``out``; 1 writes |tx - them|; 2 writes |tx - them| * w. The sums
        are ``_sums`` of g * w and of (g - mean) ** 2 * w, each product formed as it is summed."""
        for j in range(8):
            for lane in range(lanes):
                r[j, lane] = _cell(g, j, lane, one_column) * w[j, lane]
        for i in range(8, 32, 8):
            for j in range(8):
                for lane in range(lanes):
                    r[j, lane] += _cell(g, i + j, lane, one_column) * w[i + j, lane]
        for lane in range(lanes):
            res = ((r[0, lane] + r[1, lane]) + (r[2, lane] + r[3, lane])) + \
                ((r[4, lane] + r[5, lane]) + (r[6, lane] + r[7, lane]))
            for i in range(32, _N):
                res += _cell(g, i, lane, one_column) * w[i, lane]
            mean[lane] = (0.0 + res) / taken[lane]
        for j in range(8):
            for lane in range(lanes):
                o = _cell(g, j, lane, one_column) - mean[lane]
                r[j, lane] = o * o * w[j, lane]
        for i in range(8, 32, 8):
            for j in range(8):
                for lane in range(lanes):
                    o = _cell(g, i + j, lane, one_column) - mean[lane]
                    r[j, lane] += o * o * w[i + j, lane]
        for lane in range(lanes):
            res = ((r[0, lane] + r[1, lane]) + (r[2, lane] + r[3, lane])) + \
                ((r[4, lane] + r[5, lane]) + (r[6, lane] + r[7, lane]))
            for i in range(32, _N):
                o = _cell(g, i, lane, one_column) - mean[lane]
                res += o * o * w[i, lane]
            rms = np.sqrt((0.0 + res) / taken[lane])
            scale[lane] = rms if rms >= floor else floor
        for i in range(_N):
            for lane in range(lanes):
                t = (_cell(g, i, lane, one_column) - mean[lane]) / scale[lane]
                if mode == 0:
                    out[i, lane] = t
                elif mode == 1:
                    out[i, lane] = abs(tx[i, lane] - t)
                else:
                    out[i, lane] = abs(tx[i, lane] - t) * w[i, lane]

    @njit(cache=True, nogil=True, error_model="numpy")
    def _toned_windows(win, w, taken, tx, mean, scale, floor, lanes, r):  # type: ignore[no-untyped-def]
        """tx = ``_toned`` of each window's cells."""
        _toned(win, w, taken, tx, mean, scale, floor, lanes, r, False, tx, 0)

    @njit(cache=True, nogil=True, error_model="numpy")
    def _inner_apart(inner, w, taken, tx, diff, mean, scale, floor, lanes, r):  # type: ignore[no-untyped-def]
        """diff = |tx - ``_toned`` of the inner cells|, lane by lane."""
        _toned(inner, w, taken, diff, mean, scale, floor, lanes, r, True, tx, 1)

    @njit(cache=True, nogil=True, error_model="numpy")
    def _inner_apart_taken(inner, w, taken, tx, diff, mean, scale, floor, lanes, r):  # type: ignore[no-untyped-def]
        """diff = |tx - ``_toned`` of the inner cells| * w, lane by lane."""
        _toned(inner, w, taken, diff, mean, scale, floor, lanes, r, True, tx, 2)

    @njit(cache=True, nogil=True, error_model="numpy")
    def _toned_all(g, out, mean, scale, floor, lanes, r, against):  # type: ignore[no-untyped-def]
        """out = |``_toned`` of g on all its cells - against| (one column), lane by lane: w 1.0 left out of the
        products (g * 1.0 is g, bit for bit)."""
        _sums(g, lanes, mean, r)
        for lane in range(lanes):
            mean[lane] = mean[lane] / _N
        for j in range(8):
            for lane in range(lanes):
                o = g[j, lane] - mean[lane]
                r[j, lane] = o * o
        for i in range(8, 32, 8):
            for j in range(8):
                for lane in range(lanes):
                    o = g[i + j, lane] - mean[lane]
                    r[j, lane] += o * o
        for lane in range(lanes):
            res = ((r[0, lane] + r[1, lane]) + (r[2, lane] + r[3, lane])) + \
                ((r[4, lane] + r[5, lane]) + (r[6, lane] + r[7, lane]))
            for i in range(32, _N):
                o = g[i, lane] - mean[lane]
                res += o * o
            rms = np.sqrt((0.0 + res) / _N)
            scale[lane] = rms if rms >= floor else floor
        for i in range(_N):
            a = against[i, 0]
            for lane in range(lanes):
                out[i, lane] = abs((g[i, lane] - mean[lane]) / scale[lane] - a)

    @njit(cache=True, nogil=True, error_model="numpy")
    def _exchange(t, c):  # type: ignore[no-untyped-def]
        """(the larger, the smaller) of a slot t and a value c, without a branch."""
        return (t if t > c else c), (c if t > c else t)

    @njit(cache=True, nogil=True, error_model="numpy")
    def _insert(t0, t1, t2, t3, t4, t5, c):  # type: ignore[no-untyped-def]
        """The six largest (t0 >= ... >= t5) with c put among them: a compare and exchange per slot, no branch."""
        t0, c = _exchange(t0, c)
        t1, c = _exchange(t1, c)
        t2, c = _exchange(t2, c)
        t3, c = _exchange(t3, c)
        t4, c = _exchange(t4, c)
        return t0, t1, t2, t3, t4, _exchange(t5, c)[0]

    @njit(cache=True, nogil=True, error_model="numpy", inline="always")
    def _insert6(t0, t1, t2, t3, t4, t5, diff, i, lane):  # type: ignore[no-untyped-def]
        """``_insert`` of cells i to i + 5 of a lane."""
        t0, t1, t2, t3, t4, t5 = _insert(t0, t1, t2, t3, t4, t5, diff[i, lane])
        t0, t1, t2, t3, t4, t5 = _insert(t0, t1, t2, t3, t4, t5, diff[i + 1, lane])
        t0, t1, t2, t3, t4, t5 = _insert(t0, t1, t2, t3, t4, t5, diff[i + 2, lane])
        t0, t1, t2, t3, t4, t5 = _insert(t0, t1, t2, t3, t4, t5, diff[i + 3, lane])
        t0, t1, t2, t3, t4, t5 = _insert(t0, t1, t2, t3, t4, t5, diff[i + 4, lane])
        return _insert(t0, t1, t2, t3, t4, t5, diff[i + 5, lane])

    @njit(cache=True, nogil=True, error_model="numpy")
    def _closest(diff, w, taken, kth, lanes):  # type: ignore[no-untyped-def]
        """w = 1.0 on each lane's cells within its keep-th smallest difference (ties: a few more), taken = how
        many. The 36 insertions are written out: a loop over them would keep the compiler from running the lanes
        side by side."""
        inf = np.inf
        for lane in range(lanes):
            t0, t1, t2, t3, t4, t5 = -inf, -inf, -inf, -inf, -inf, -inf
            t0, t1, t2, t3, t4, t5 = _insert6(t0, t1, t2, t3, t4, t5, diff, 0, lane)
            t0, t1, t2, t3, t4, t5 = _insert6(t0, t1, t2, t3, t4, t5, diff, 6, lane)
            t0, t1, t2, t3, t4, t5 = _insert6(t0, t1, t2, t3, t4, t5, diff, 12, lane)
            t0, t1, t2, t3, t4, t5 = _insert6(t0, t1, t2, t3, t4, t5, diff, 18, lane)
            t0, t1, t2, t3, t4, t5 = _insert6(t0, t1, t2, t3, t4, t5, diff, 24, lane)
            t0, t1, t2, t3, t4, t5 = _insert6(t0, t1, t2, t3, t4, t5, diff, 30, lane)
            kth[lane] = t5
            taken[lane] = 0.0
        for i in range(_N):
            for lane in range(lanes):
                v = 1.0 if diff[i, lane] <= kth[lane] else 0.0
                w[i, lane] = v
                taken[lane] += v

    @njit(cache=True, nogil=True, error_model="numpy")
    def framed_many(ga, gb, crops, keep, floor, out):  # type: ignore[no-untyped-def]
        """``out[p]`` = zf of grids ``ga[p]`` and ``gb[p]`` ((n, 64) each): the smallest ``_tone_free`` of one
        grid's inner cells against a window of the other, both ways; ``crops``: ``similarity._CROPS``
        ((kinds, 8, 8)), ``keep``: 31."""
        kinds = crops.shape[0]
        if crops.shape[1] != _SIDE or crops.shape[2] != _SIDE or keep != _N - _TOP + 1 \
                or ga.shape[1] != _SIDE * _SIDE or gb.shape[1] != _SIDE * _SIDE or gb.shape[0] < ga.shape[0] \
                or out.shape[0] < ga.shape[0] or not floor > 0.0:
            raise ValueError("framed_many: 8x8 crops, keep 31, a floor above 0 and pairs of 64-cell grids expected")
        most = _KINDS_AT_ONCE * kinds
        rows = np.empty((kinds, _SIDE, _SIDE))
        by_column = np.empty((_SIDE, _SIDE, kinds))  # by_column[c, j, m] = crops[m, c, j]: m runs in the lanes
        for m in range(kinds):
            for c in range(_SIDE):
                for j in range(_SIDE):
                    by_column[c, j, m] = crops[m, c, j]
        win, w, tx, diff = np.empty((_N, most)), np.empty((_N, most)), np.empty((_N, most)), np.empty((_N, most))
        taken, mean, scale, kth, r = np.empty(most), np.empty(most), np.empty(most), np.empty(most), np.empty((8, most))
        inner, inner_toned = np.empty((_N, 1)), np.empty((_N, 1))
        ones, all_taken, one_mean, one_scale, one_r = np.ones((_N, 1)), np.full(1, float(_N)), np.empty(1), \
            np.empty(1), np.empty((8, 1))
        for p in range(ga.shape[0]):
            best = np.inf
            for way in range(2):
                x = ga[p] if way == 0 else gb[p]
                y = gb[p] if way == 0 else ga[p]
                for r_ in range(1, _SIDE - 1):
                    for c in range(1, _SIDE - 1):
                        inner[(r_ - 1) * (_SIDE - 2) + c - 1, 0] = float(y[r_ * _SIDE + c])
                _toned_windows(inner, ones, all_taken, inner_toned, one_mean, one_scale, floor, 1, one_r)
                for k in range(kinds):  # rows[k, r, j]: the window's row r of column j, sum over i in order
                    for r_ in range(_SIDE):
                        for j in range(_SIDE):
                            s = 0.0
                            for i in range(_SIDE):
                                s += crops[k, r_, i] * float(x[i * _SIDE + j])
                            rows[k, r_, j] = s
                for k0 in range(0, kinds, _KINDS_AT_ONCE):
                    k1 = min(k0 + _KINDS_AT_ONCE, kinds)
                    lanes = (k1 - k0) * kinds
                    for k in range(k0, k1):  # lane (k - k0) * kinds + m: window (k, m), its cell (r, c) the sum
                        base = (k - k0) * kinds  # over j of rows[k, r, j] * crops[m, c, j], in order from 0.0
                        for r_ in range(1, _SIDE - 1):
                            a0, a1, a2, a3 = rows[k, r_, 0], rows[k, r_, 1], rows[k, r_, 2], rows[k, r_, 3]
                            a4, a5, a6, a7 = rows[k, r_, 4], rows[k, r_, 5], rows[k, r_, 6], rows[k, r_, 7]
                            for c in range(1, _SIDE - 1):
                                cell = (r_ - 1) * (_SIDE - 2) + c - 1
                                for m in range(kinds):
                                    s = 0.0
                                    s += a0 * by_column[c, 0, m]
                                    s += a1 * by_column[c, 1, m]
                                    s += a2 * by_column[c, 2, m]
                                    s += a3 * by_column[c, 3, m]
                                    s += a4 * by_column[c, 4, m]
                                    s += a5 * by_column[c, 5, m]
                                    s += a6 * by_column[c, 6, m]
                                    s += a7 * by_column[c, 7, m]
                                    win[cell, base + m] = s
                    # _tone_free's rounds: on all cells (the inner grid's tone the same for every window), then
                    # twice on the closest; the last round's differences summed
                    _toned_all(win, diff, mean, scale, floor, lanes, r, inner_toned)
                    _closest(diff, w, taken, kth, lanes)
                    _toned_windows(win, w, taken, tx, mean, scale, floor, lanes, r)
                    _inner_apart(inner, w, taken, tx, diff, mean, scale, floor, lanes, r)
                    _closest(diff, w, taken, kth, lanes)
                    _toned_windows(win, w, taken, tx, mean, scale, floor, lanes, r)
                    _inner_apart_taken(inner, w, taken, tx, diff, mean, scale, floor, lanes, r)
                    _sums(diff, lanes, mean, r)
                    for lane in range(lanes):
                        z = mean[lane] / taken[lane]
                        if z < best:
                            best = z
            out[p] = best
