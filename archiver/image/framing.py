"""zf compiled (numba, optional): rule D's distance for many pairs of grey grids, ``similarity._framed_many``.

Rule D compares one grid's inner cells with each of 625 windows of the other grid (``similarity._windows``), in three
rounds of tone normalisation and selection of the closest cells (``similarity._tone_free``): on arrays that is ~80
passes over 22 500 cells per pair and side, ~2.3 ms a pair, and a first search or a rescan of a million images has
thousands of such pairs. Here each window is worked in one go, its 36 cells in registers and cache.

The arithmetic is the array path's, operation for operation, so the numbers are the same bit for bit (tested on
every pair measured): a window cell is a sum of products taken in a fixed order from 0.0; a row's sum is numpy's
pairwise summation of a contiguous row (eight running sums combined as a tree, then the rest: ``_row_sum``); a mean
divides by the count of cells taken; the k-th smallest difference is exact however it is found. No fused multiply-add
(numba's default without fastmath). ``AVAILABLE`` is False without numba: the caller then uses its array path.
"""

from __future__ import annotations

import numpy as np

try:
    from numba import njit
except ImportError:  # pragma: no cover - exercised where numba is absent
    AVAILABLE = False
else:
    AVAILABLE = True


if AVAILABLE:
    @njit(cache=True, nogil=True, inline="always")
    def _row_sum(a, n):  # type: ignore[no-untyped-def]
        """``np.add.reduce`` of a contiguous row of n (< 128) doubles: numpy's pairwise sum, added to its identity."""
        if n < 8:
            res = 0.0
            for i in range(n):
                res += a[i]
            return 0.0 + res
        r0, r1, r2, r3, r4, r5, r6, r7 = a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]
        i = 8
        while i < n - n % 8:
            r0 += a[i]
            r1 += a[i + 1]
            r2 += a[i + 2]
            r3 += a[i + 3]
            r4 += a[i + 4]
            r5 += a[i + 5]
            r6 += a[i + 6]
            r7 += a[i + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n:
            res += a[i]
            i += 1
        return 0.0 + res

    @njit(cache=True, nogil=True)
    def _toned(g, w, taken, out, buf, floor):  # type: ignore[no-untyped-def]
        """``similarity._toned`` of one row: ``out`` = g shifted to mean 0 and scaled to rms 1 on the cells where
        ``w`` (1.0 or 0.0; ``taken`` of them), or divided by ``floor`` when flatter."""
        n = g.size
        for i in range(n):
            buf[i] = g[i] * w[i]
        mean = _row_sum(buf, n) / taken
        for i in range(n):
            out[i] = g[i] - mean
            buf[i] = out[i] * out[i] * w[i]
        rms = np.sqrt(_row_sum(buf, n) / taken)
        scale = rms if rms >= floor else floor
        for i in range(n):
            out[i] = out[i] / scale

    @njit(cache=True, nogil=True)
    def _kth_smallest(a, keep, top):  # type: ignore[no-untyped-def]
        """The keep-th smallest of ``a`` (``np.partition(a, keep - 1)[keep - 1]``): the (n - keep + 1)-th largest,
        kept in ``top`` (descending) as the values go by; a few compares each when keep is most of n."""
        m = top.size
        filled = 0
        for i in range(a.size):
            v = a[i]
            if filled == m and v <= top[m - 1]:
                continue
            j = filled if filled < m else m - 1
            while j > 0 and top[j - 1] < v:
                top[j] = top[j - 1]
                j -= 1
            top[j] = v
            if filled < m:
                filled += 1
        return top[m - 1]

    @njit(cache=True, nogil=True)
    def _tone_free(x, y, y_toned, keep, floor, w, tx, ty, diff, buf, top):  # type: ignore[no-untyped-def]
        """``similarity._tone_free`` of one row ``x`` against ``y`` (``y_toned``: y toned on all its cells, the
        same for every window)."""
        n = x.size
        for i in range(n):
            w[i] = 1.0
        taken = float(n)
        for round_ in range(2):
            _toned(x, w, taken, tx, buf, floor)
            if round_ == 0:
                ty[:] = y_toned
            else:
                _toned(y, w, taken, ty, buf, floor)
            for i in range(n):
                diff[i] = abs(tx[i] - ty[i])
            kth = _kth_smallest(diff, keep, top)
            taken = 0.0
            for i in range(n):
                w[i] = 1.0 if diff[i] <= kth else 0.0
                taken += w[i]
        _toned(x, w, taken, tx, buf, floor)
        _toned(y, w, taken, ty, buf, floor)
        for i in range(n):
            buf[i] = abs(tx[i] - ty[i]) * w[i]
        return _row_sum(buf, n) / taken

    @njit(cache=True, nogil=True)
    def framed_many(ga, gb, crops, keep, floor, out):  # type: ignore[no-untyped-def]
        """``out[p]`` = zf of grids ``ga[p]`` and ``gb[p]`` ((n, side * side) each): the smallest ``_tone_free`` of
        one grid's inner cells against a window of the other, both ways; ``crops``: ``similarity._CROPS``."""
        kinds, side = crops.shape[0], crops.shape[1]
        cells = (side - 2) * (side - 2)
        rows = np.empty((kinds, side, side))
        window, inner, inner_toned = np.empty(cells), np.empty(cells), np.empty(cells)
        w, tx, ty, diff, buf = np.empty(cells), np.empty(cells), np.empty(cells), np.empty(cells), np.empty(cells)
        top = np.empty(cells - keep + 1)
        for p in range(ga.shape[0]):
            best = np.inf
            for way in range(2):
                x = ga[p] if way == 0 else gb[p]
                y = gb[p] if way == 0 else ga[p]
                for r in range(1, side - 1):
                    for c in range(1, side - 1):
                        inner[(r - 1) * (side - 2) + c - 1] = float(y[r * side + c])
                w[:] = 1.0
                _toned(inner, w, float(cells), inner_toned, buf, floor)
                for k in range(kinds):  # rows[k, r, j]: the window's row r of column j, sum over i in order
                    for r in range(side):
                        for j in range(side):
                            s = 0.0
                            for i in range(side):
                                s += crops[k, r, i] * float(x[i * side + j])
                            rows[k, r, j] = s
                for k in range(kinds):
                    for m in range(kinds):  # window (k, m): cell (r, c) = sum over j of rows[k, r, j] * crops[m, c, j]
                        for r in range(1, side - 1):
                            for c in range(1, side - 1):
                                s = 0.0
                                for j in range(side):
                                    s += rows[k, r, j] * crops[m, c, j]
                                window[(r - 1) * (side - 2) + c - 1] = s
                        z = _tone_free(window, inner, inner_toned, keep, floor, w, tx, ty, diff, buf, top)
                        if z < best:
                            best = z
            out[p] = best
