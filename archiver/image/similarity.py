"""Near-duplicate signals (pHash/dHash of the 8 dihedral transforms, an 8x8 grey thumbnail) and the pair decision.

Every signal is taken inside the flat bands a republished copy adds around a picture (a frame, letterbox or
pillarbox bars: ``content_box``), so such a copy is signed like the picture itself (bench: recall on borders
0.22 -> 0.99, on letterboxes 0.13 -> 1.00, nothing else changed).

The decision rule (``compare``, rule version 3), measured by bench/bench_dedupe_accuracy.py (README has the
table): for a candidate pair, the transform t is the one with the smallest pHash + dHash distances (both
directions, so compare(a, b) and compare(b, a) agree); under t, p and d are the pHash and dHash distances, m is
how far the 8x8 grey thumbnails are apart (mean absolute grey-level difference over the 55 closest of the 64
cells: up to 9 cells (14 %) may differ at will, which is what a caption strip or a corner watermark changes) and
z the same with the tone taken out (``_tone_free``: each grid shifted to mean 0 and scaled to unit
root-mean-square on the compared cells, which are picked again once normalised; a brightness, contrast, gamma or
colour-balance change moves the grey level of every cell, not the picture). A pair is a near-duplicate when
min(p, d) <= max_distance (it is a candidate) and
  A. m <= 2.0 (pixel-confirmed: the pictures agree cell by cell outside at most 9 cells); or
  B. max(p, d) <= max_distance + 2 and m <= 5.0 (hash-confirmed: BOTH hashes agree, and the thumbnails
     differ by a few grey levels at most, as a 1-5 % crop shifts them); or
  C. max(p, d) <= max_distance + 2 and z <= 0.15 (B with the tone taken out: 0.15 of the picture's contrast);
or, as a plain pHash decides it, in the picture's own orientation:
  D. the identity pHash distance p0 <= max_distance and zf <= 0.06, where zf is z between one grid and the best
     window of the other (insets of 0-12.5 % per side, compared on the inner 6x6 cells, the 31 closest): a crop,
     a border or bars added, once the framing is found, must agree as closely as a re-toned copy does.
Rule 1 (A and B) was tuned on a set without tone changes and refused most brightness and gamma changes that a
plain pHash finds. Measured for rule 2 (bench, seed 7): tone edits, sharpening, blur, chroma subsampling and
screenshots at another scale have z <= 0.1 (gamma up to 0.2) against ~0.8 for unrelated pictures; crops,
borders and letterboxing move z up to 0.4-0.8 while zf stays under 0.1 for most. Unrelated pictures with small
z or zf are look-alike layouts (generated head-and-shoulders portraits, landscapes with one horizon, page
templates): zf from 0.06 (0.10 let 8 such pairs through on seed 7), which is where D stops; two mirror-image
quarters or windows of one retina photo (p 0-2, z 0.06) remain false pairs, as under rule 1. Borders, bars and
crops of 5-10 % that only zf could confirm stay below a plain pHash's recall: a larger stored thumbnail would
separate them from look-alikes; the 8x8 grid cannot (README, Deduplication).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.fftpack
from PIL import Image

# The 8 dihedral transforms, in the stored order (index = position in Signature.phash / .dhash).
# Each is named as Pillow's Image.transpose() does it: "rot90" is ROTATE_90 (counter-clockwise).
TRANSFORMS: tuple[str, ...] = (
    "identity", "rot90", "rot180", "rot270", "flip-h", "flip-v", "transpose", "transverse",
)
_INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)  # rot90 undoes rot270 and back; the others undo themselves
_SWAPS_AXES = (False, True, False, True, False, False, True, True)
_APPLY = (  # on a numpy (rows, cols) array: equal to Image.transpose() on the image
    lambda a: a,
    lambda a: np.rot90(a, 1),
    lambda a: np.rot90(a, 2),
    lambda a: np.rot90(a, 3),
    lambda a: a[:, ::-1],
    lambda a: a[::-1, :],
    lambda a: a.T,
    lambda a: np.rot90(a, 2).T,
)
_PHASH_SIDE = 32  # imagehash.phash: hash_size 8 x highfreq_factor 4
_LANCZOS = Image.Resampling.LANCZOS  # imagehash's ANTIALIAS
_GREY_SIDE = 8  # the stored grey thumbnail: 8x8 box averages, 64 bytes
_GREY_KEEP = 55  # cells compared in m: the 55 closest of 64
PIXEL_CONFIRMED = 2.0  # rule A: m at most this (grey levels)
HASH_CONFIRMED = 5.0  # rule B: m at most this, with both hashes within max_distance + 2
HASH_SLACK = 2
TONE_FLOOR = 4.0  # grey levels: _toned divides by the grid's contrast, but never by less than this
CROP_INSETS = (0.0, 1 / 32, 2 / 32, 3 / 32, 4 / 32)  # window insets tried per side by _framed_distance
_FRAMED_KEEP = 31  # cells compared in zf: the 31 closest of the inner 36
TONE_CONFIRMED = 0.15  # rule C: z at most this (a fraction of the pictures' contrast)
FRAMED_CONFIRMED = 0.06  # rule D: zf at most this
# ``compare`` must stay monotone in max_distance (a pair accepted at N is accepted at every larger N): recorded
# pairs are filtered by the smallest distance that accepts them. Changing its decision: bump
# model.SIMILARITY_RULE_VERSION.


_LENGTHS = (16,) * len(TRANSFORMS)  # the length of each hash's text
_VARIANTS_TEXT = re.compile(rf"[0-9a-fA-F]{{16}}(?:,[0-9a-fA-F]{{16}}){{{len(TRANSFORMS) - 1}}}")  # Signature.from_columns
_GREY_TEXT = re.compile(rf"[0-9a-fA-F]{{{2 * _GREY_SIDE * _GREY_SIDE}}}")


@dataclass(frozen=True)
class Signature:
    """pHash and dHash (16-hex-digit strings, imagehash's form) of the image under each of TRANSFORMS,
    and ``grey``: its 8x8 grey thumbnail as 128 hex digits (row-major bytes; "" when unknown).

    Checked when made (ValueError: not 8 + 8 hashes of 16 hex digits, or a grey of another length or not hex); the
    integers and the grid ``compare`` reads are parsed on first use (``__getattr__``), so the many signatures that
    grouping reads and never compares one by one (``compare_many`` works from their text) cost no parsing."""

    phash: tuple[str, ...]
    dhash: tuple[str, ...]
    grey: str = ""

    def __post_init__(self) -> None:
        if self.grey is None:  # a NULL column read as is: unknown, as ""
            object.__setattr__(self, "grey", "")
        n = len(TRANSFORMS)
        if len(self.phash) != n or len(self.dhash) != n:
            raise ValueError(f"a signature needs {n} pHash and dHash variants")
        if tuple(map(len, self.phash)) != _LENGTHS or tuple(map(len, self.dhash)) != _LENGTHS:
            raise ValueError("a hash is 16 hex digits")
        if self.grey and len(self.grey) != 2 * _GREY_SIDE * _GREY_SIDE:
            raise ValueError(f"grey thumbnail must be {2 * _GREY_SIDE * _GREY_SIDE} hex digits")
        text = "".join(self.phash) + "".join(self.dhash) + self.grey
        if len(bytes.fromhex(text)) * 2 != len(text):  # ValueError when not hex; fromhex alone skips whitespace
            raise ValueError("a hash or the grey thumbnail is not hex digits")

    @classmethod
    def from_columns(cls, phash: str | None, dhash: str | None, grey: str | None) -> Signature | None:
        """The signature a manifest row stores (each set of 8 hashes comma-separated, the grey as is or NULL), or
        None when it is missing or does not parse: the same check as making one, on the columns' text at once (a
        third of the time: grouping a million images reads ~400 000)."""
        if not phash or not dhash or not _VARIANTS_TEXT.fullmatch(phash) or not _VARIANTS_TEXT.fullmatch(dhash) \
                or (grey and not _GREY_TEXT.fullmatch(grey)):
            return None
        sig = object.__new__(cls)
        object.__setattr__(sig, "phash", tuple(phash.split(",")))
        object.__setattr__(sig, "dhash", tuple(dhash.split(",")))
        object.__setattr__(sig, "grey", grey or "")
        return sig

    def __getattr__(self, name: str) -> object:
        """``_p``, ``_d`` (the hashes as ints) and ``_g`` (the grey grid, int16, or None), parsed once when first
        read and then plain attributes."""
        if name == "_p":
            value: object = tuple(int(h, 16) for h in self.phash)
        elif name == "_d":
            value = tuple(int(h, 16) for h in self.dhash)
        elif name == "_g":
            value = None if not self.grey else \
                np.frombuffer(bytes.fromhex(self.grey), np.uint8).reshape(_GREY_SIDE, _GREY_SIDE).astype(np.int16)
        else:
            raise AttributeError(name)
        object.__setattr__(self, name, value)
        return value


@dataclass(frozen=True)
class Match:
    """A confirmed near-duplicate pair: ``b`` looks like ``transform`` applied to ``a``.

    ``phash_distance``/``dhash_distance`` are the Hamming distances under that transform (the smaller of
    the two directions); ``grey_distance`` is m (see the module docstring), -1.0 when a grey is unknown.
    """

    transform: str
    phash_distance: int
    dhash_distance: int
    grey_distance: float


def _hex(bits: np.ndarray) -> str:
    """imagehash's stored form of a boolean array (row-major bits, most significant first)."""
    return f"{int(''.join('1' if b else '0' for b in bits.ravel()), 2):016x}"


_BAND_TOLERANCE = 8  # grey levels: a pixel of a border line is this close to the line's edge colour ...
_BAND_SHARE = 0.99  # ... for this share of the line's pixels (JPEG noise, a stray pixel)
_BAND_FLAT = 2.0  # and the line's mean is this close to the edge colour (a gradient is no border)
_BAND_STEP = 0.3  # the picture starts: this share of one of the next lines is off the edge colour
_BAND_MAX = 0.35  # a band reaching this share of the side is a flat region of the picture, not a border


def _band(lines: np.ndarray) -> int:
    """How many leading lines (rows of ``lines``) are an added border or bar: lines of one flat colour (the first
    line's) followed by a step into the picture; 0 when there is none."""
    limit = int(len(lines) * _BAND_MAX)
    if limit < 1:
        return 0
    c = float(np.median(lines[0]))
    near = np.abs(lines[: limit + 8].astype(np.float32) - c)
    flat = ((near <= _BAND_TOLERANCE).mean(axis=1) >= _BAND_SHARE) & (np.abs(lines[: limit + 8].mean(axis=1) - c)
                                                                        <= _BAND_FLAT)
    d = int(np.argmin(flat)) if not flat.all() else len(flat)
    if d == 0 or d >= limit:
        return 0
    # the picture starts at the first of the next lines (past a JPEG block's ringing, which belongs to the band)
    # with a good share off the band's colour, not a caption's letters on a bar
    off = np.flatnonzero((near[d : d + 8] > _BAND_TOLERANCE).mean(axis=1) >= _BAND_STEP)
    return d + int(off[0]) if off.size and d + int(off[0]) < limit else 0


def _pair(a: int, b: int) -> tuple[int, int]:
    """Bands on opposite sides, kept only as a frame or bars are added: on both sides, about as deep (one flat
    band alone is more often a caption strip or the picture's own background than something added)."""
    if a and b and abs(a - b) <= max(2, (a + b) // 8):
        return a, b
    return 0, 0


def _flat(line: np.ndarray) -> bool:
    """Whether an edge line (uint8 grey levels) is of one flat colour: _BAND_SHARE of it within _BAND_TOLERANCE of
    its median, read from a histogram (cheaper than a median)."""
    counts = np.bincount(line.ravel(), minlength=256)
    m = int(np.searchsorted(np.cumsum(counts), (counts.sum() + 1) // 2))  # the (lower) median grey level
    return bool(counts[max(0, m - _BAND_TOLERANCE) : m + _BAND_TOLERANCE + 1].sum() >= _BAND_SHARE * counts.sum())


def _opposite_flat(line: Callable[[int], np.ndarray]) -> bool:
    """Whether two opposite edge lines are flat (``line(i)``: 0 top, 1 bottom, 2 left, 3 right): bands count only
    in such pairs (``_pair``), so without one there is no frame to look for."""
    return (_flat(line(0)) and _flat(line(1))) or (_flat(line(2)) and _flat(line(3)))


def content_box(grey: Image.Image) -> tuple[int, int, int, int]:
    """The box of ``grey`` (mode L) inside borders and letterbox or pillarbox bars of one flat colour, which
    republished copies add: each side's band is found again after the others are cut (a white frame around a
    picture letterboxed in black), up to four passes; the whole image when there is none."""
    w, h = grey.size
    edges = ((0, 0, w, 1), (0, h - 1, w, h), (0, 0, 1, h), (w - 1, 0, w, h))
    if w < 16 or h < 16 or not _opposite_flat(lambda i: np.asarray(grey.crop(edges[i]))):
        return 0, 0, w, h  # most pictures: no two opposite edge lines flat, so no frame (and no copy of the pixels)
    a = np.asarray(grey)
    x0, y0, x1, y1 = 0, 0, w, h
    for _ in range(4):
        if x1 - x0 < 16 or y1 - y0 < 16:
            break
        view = a[y0:y1, x0:x1]
        if not _opposite_flat(lambda i, v=view: (v[0], v[-1], v[:, 0], v[:, -1])[i]):  # the first pass: checked
            break
        top, bottom = _pair(_band(view), _band(view[::-1]))
        left, right = _pair(_band(view.T), _band(view.T[::-1]))
        if not (top or bottom or left or right) or y1 - y0 - top - bottom < 16 or x1 - x0 - left - right < 16:
            break
        x0, y0, x1, y1 = x0 + left, y0 + top, x1 - right, y1 - bottom
    if (x0, y0, x1, y1) != (0, 0, w, h):
        # what is left must vary both ways: bars of colour on a plain ground (a chart, flat art) would leave rows
        # all alike once the ground is cut, and a pHash of that flips on noise; such a picture keeps its ground
        cells = np.asarray(grey.crop((x0, y0, x1, y1)).resize((8, 8), Image.Resampling.BOX), dtype=np.float32)
        if min(cells.std(axis=0).mean(), cells.std(axis=1).mean()) < 1.0:
            return 0, 0, w, h
    return x0, y0, x1, y1


def content_share(box: tuple[int, int, int, int], size: tuple[int, int]) -> float:
    """The share of an image of ``size`` inside ``box`` (``content_box``): what the canonical choice counts as picture."""
    x0, y0, x1, y1 = box
    return round((x1 - x0) * (y1 - y0) / (size[0] * size[1]), 4)


def signature(im: Image.Image, *, box: tuple[int, int, int, int] | None = None) -> Signature:
    """The signature of ``im`` (an oriented, flattened image; any mode) inside ``box``, by default its
    ``content_box`` (inside added borders and bars; a caller that has it already passes it, the whole frame is
    ``(0, 0, width, height)``): variant 0 equals imagehash's own hashes of that box (of the whole image for most).

    The variants transform the small images the hashes are computed from (32x32 for pHash, 9x8 and 8x9
    for dHash), not ``im``: the same values as hashing a transformed ``im``, give or take a bit of
    resampling rounding (measured: 0-2 bits on the corpus photos).
    """
    grey = im.convert("L")
    box = content_box(grey) if box is None else box
    if box != (0, 0, grey.width, grey.height):
        grey = grey.crop(box)
    small = np.asarray(grey.resize((_PHASH_SIDE, _PHASH_SIDE), _LANCZOS), dtype=np.float64)
    wide = np.asarray(grey.resize((9, 8), _LANCZOS), dtype=np.int16)  # dHash input, 8 rows x 9 cols
    tall = np.asarray(grey.resize((8, 9), _LANCZOS), dtype=np.int16)  # the same for axis-swapping transforms
    stack = np.stack([f(small) for f in _APPLY])
    dct = scipy.fftpack.dct(scipy.fftpack.dct(stack, axis=1), axis=2)[:, :8, :8]
    med = np.median(dct.reshape(len(TRANSFORMS), -1), axis=1)
    phashes = tuple(_hex(dct[i] > med[i]) for i in range(len(TRANSFORMS)))
    dhashes = []
    for f, swaps in zip(_APPLY, _SWAPS_AXES, strict=True):
        px = f(tall if swaps else wide)
        dhashes.append(_hex(px[:, 1:] > px[:, :-1]))
    thumb = grey.resize((_GREY_SIDE, _GREY_SIDE), Image.Resampling.BOX)
    return Signature(phashes, tuple(dhashes), thumb.tobytes().hex())


def _grey_distance(a: Signature, b: Signature, t: int) -> float:
    """m: mean absolute difference of the _GREY_KEEP closest cells of TRANSFORMS[t](a's grey) and b's grey."""
    if a._g is None or b._g is None:
        return -1.0
    diff = np.sort(np.abs(_APPLY[t](a._g) - b._g), axis=None)
    return float(diff[:_GREY_KEEP].mean())


def _toned(g: np.ndarray, w: np.ndarray | bool = True) -> np.ndarray:
    """Cells (..., n) with their tone taken out, measured on the cells where ``w``: shifted to mean 0 and scaled to
    root-mean-square 1, or divided by TONE_FLOOR when flatter than that (a near-flat picture keeps its small
    contrast instead of amplified noise)."""
    g, w = np.broadcast_arrays(g, w)
    n = w.sum(axis=-1, keepdims=True)
    c = g - (g * w).sum(axis=-1, keepdims=True) / n
    return c / np.maximum(np.sqrt((c * c * w).sum(axis=-1, keepdims=True) / n), TONE_FLOOR)


def _tone_free(x: np.ndarray, y: np.ndarray, keep: int) -> np.ndarray:
    """Mean absolute difference of the ``keep`` closest cells of x (..., n) and y (n,), the tone taken out of both
    on those cells only: measured on all cells, the closest picked, the tone measured again on them, the closest
    picked again; so a caption bar or a watermark, left out of the comparison, does not skew the normalisation."""
    w: np.ndarray | bool = True
    for _ in range(2):
        diff = np.abs(_toned(x, w) - _toned(y, w))
        w = diff <= np.partition(diff, keep - 1, axis=-1)[..., keep - 1:keep]  # the closest (ties: a few more)
    diff = np.abs(_toned(x, w) - _toned(y, w))
    return (diff * w).sum(axis=-1) / w.sum(axis=-1)


def _tone_distance(a: Signature, b: Signature, t: int) -> float:
    """z: like m, on grids with their tone taken out (_tone_free), so a brightness, contrast, gamma or
    colour-balance change barely moves it; in units of the pictures' own contrast: ~0.02 for a recompressed
    copy, 0.05-0.15 for a tone change, ~0.8 for unrelated pictures."""
    if a._g is None or b._g is None:
        return -1.0
    return float(_tone_free(_APPLY[t](a._g).ravel().astype(np.float64), b._g.ravel().astype(np.float64), _GREY_KEEP))


def _crop_matrices(insets: tuple[float, ...]) -> np.ndarray:
    """(k, 8, 8) linear maps taking an 8x8 grid's rows (or columns) to those of its window [u0, 1 - u1] for each
    pair of insets: box averages of the grid read as a piecewise-constant picture."""
    out = []
    for u0 in insets:
        for u1 in insets:
            edges = np.linspace(u0, 1 - u1, _GREY_SIDE + 1)
            r = np.zeros((_GREY_SIDE, _GREY_SIDE))
            for k in range(_GREY_SIDE):
                for i in range(_GREY_SIDE):
                    overlap = min(edges[k + 1], (i + 1) / _GREY_SIDE) - max(edges[k], i / _GREY_SIDE)
                    r[k, i] = max(0.0, overlap) / (edges[k + 1] - edges[k])
            out.append(r)
    return np.stack(out)


_CROPS = _crop_matrices(CROP_INSETS)


def _framed_distance(a: Signature, b: Signature) -> float:
    """zf: the smallest tone-free distance (identity orientation) between one grid and a window of the other, cut
    with insets of CROP_INSETS per side (0-12.5 %: a crop, a border or bars added), compared on the inner 6x6
    cells only (the outer ring of a grid mixes a border with the picture) over the _FRAMED_KEEP closest."""
    if a._g is None or b._g is None:
        return -1.0
    return float(_framed_many(a._g.reshape(1, -1), b._g.reshape(1, -1))[0])


def _framed_many(ga: np.ndarray, gb: np.ndarray) -> np.ndarray:
    """zf of each pair of grids (ga[i], gb[i]), (n, 64) each: compiled (``framing``, numba, on one thread per core
    for many pairs) when it is installed, else on arrays, _FRAMED_AT_ONCE pairs at a time; the same numbers either
    way (tested)."""
    from archiver.image import framing  # numba: loaded by the searches that need it, not by every run

    if ga.shape != gb.shape or ga.shape[1:] != (_GREY_SIDE * _GREY_SIDE,):  # the compiled loop checks no bounds
        raise ValueError(f"grids of {_GREY_SIDE * _GREY_SIDE} cells in pairs expected, got {ga.shape} and {gb.shape}")
    if framing.AVAILABLE:
        ga, gb = np.ascontiguousarray(ga), np.ascontiguousarray(gb)
        out = np.empty(len(ga))

        def span(lo: int) -> None:
            hi = lo + _FRAMED_SPAN
            framing.framed_many(ga[lo:hi], gb[lo:hi], _CROPS, _FRAMED_KEEP, TONE_FLOOR, out[lo:hi])

        # spans of ~0.1 s: Ctrl-C is seen between two (a compiled loop is not interrupted), the spans not started
        # are dropped, and the threads (the compiled loop releases the GIL) finish the one they are in
        starts = range(0, len(ga), _FRAMED_SPAN)
        workers = max(1, min(os.cpu_count() or 1, len(ga) // _FRAMED_PER_THREAD))
        if workers == 1:
            for lo in starts:
                span(lo)
            return out
        pool = ThreadPoolExecutor(workers)
        try:
            list(pool.map(span, starts))
        finally:
            pool.shutdown(cancel_futures=True)
        return out
    out = np.full(len(ga), np.inf)
    for x, y in ((ga, gb), (gb, ga)):
        inner = y.reshape(-1, _GREY_SIDE, _GREY_SIDE)[:, 1:-1, 1:-1].reshape(len(y), (_GREY_SIDE - 2) ** 2)
        inner = inner.astype(np.float64)  # (no pairs: an empty (0, 36), not a reshape of 0 cells to (0, -1))
        for lo in range(0, len(x), _FRAMED_AT_ONCE):
            part = range(lo, min(lo + _FRAMED_AT_ONCE, len(x)))
            windows = np.stack([_windows(x[i].reshape(_GREY_SIDE, _GREY_SIDE)) for i in part])
            z = _tone_free(windows, inner[part.start:part.stop, None], _FRAMED_KEEP).min(axis=1)
            out[part.start:part.stop] = np.minimum(out[part.start:part.stop], z)
    return out


def _windows(x: np.ndarray) -> np.ndarray:
    """Every (rows, columns) window of an 8x8 grid that _framed_distance compares, inner 6x6 cells raveled:
    (len(CROP_INSETS) ** 4, 36). ``_CROPS[k] @ x @ _CROPS[m].T``, its sums taken in a fixed order from 0.0
    (what ``framing`` does: a matrix product's order is BLAS's own)."""
    xf = x.astype(np.float64)
    rows = np.zeros((len(_CROPS), _GREY_SIDE, _GREY_SIDE))
    for i in range(_GREY_SIDE):  # rows[k, r, j] = sum over i of crops[k, r, i] * x[i, j]
        rows += _CROPS[:, :, i, None] * xf[i]
    win = np.zeros((len(_CROPS), len(_CROPS), _GREY_SIDE - 2, _GREY_SIDE - 2))
    for j in range(_GREY_SIDE):  # win[k, m, r, c] = sum over j of rows[k, r, j] * crops[m, c, j], inner r and c
        win += rows[:, None, 1:-1, j, None] * _CROPS[None, :, None, 1:-1, j]
    return win.reshape(-1, (_GREY_SIDE - 2) ** 2)


_FRAMED_PER_THREAD = 48  # pairs below which _framed_many's compiled loop runs on one thread (~15 ms of work)
_FRAMED_SPAN = 256  # pairs the compiled loop measures per call (~0.1 s)
_FRAMED_AT_ONCE = 4  # pairs whose windows _framed_many compares at once on arrays (180 KB a pair and side: in cache)


def compare(a: Signature, b: Signature, max_distance: int) -> Match | None:
    """The decision for one candidate pair: a Match when ``b`` is a near-duplicate of ``a`` (else None).

    Symmetric: compare(b, a) decides the same, with the same distances (the rule in the module docstring only uses
    quantities that are the same from both sides, and ties between transforms are broken alike: ``_tie_break``); it
    reports the inverse transform, or, when a transform and its inverse tie in everything, the same one.
    """
    return Judged(a, b).decide(max_distance)


_PAIRED = tuple(min(t, inv) for t, inv in enumerate(_INVERSE))  # a transform and its inverse: one number


def _tie_break(s: tuple[float, int, int, int]) -> tuple[float, int, int, int, int]:
    """The order among transforms tied on pHash + dHash, (m, p, d, t) each: the smaller grey distance m, then the
    smaller of the two hash distances' maximum, then the smaller pHash distance, then the transform. The same from
    both sides (rule 3): measuring b onto a under t's inverse gives the same m, p and d, and ``_PAIRED`` counts t and
    its inverse as one, so compare(a, b) and compare(b, a) pick matching transforms and decide alike. Rule 2 went from
    m to the transform's index, so when rot90 and rot270 tied with equal m (always, without a grey thumbnail) and
    split the distance differently (1 + 6 against 4 + 3), one side accepted at 3 and the other refused."""
    m, p, d, t = s
    return (m, max(p, d), p, _PAIRED[t], t)


class Judged:
    """What ``compare`` measures of one pair, each measured at most once (none depends on ``max_distance``), and the
    decision at any distance: ``decide(k)`` is ``compare(a, b, k)``, so the smallest accepting distance costs one
    measurement, not one per distance tried."""

    def __init__(self, a: Signature, b: Signature) -> None:
        self.a, self.b = a, b
        scored = []
        for t, inv in enumerate(_INVERSE):
            p = min((a._p[t] ^ b._p[0]).bit_count(), (b._p[inv] ^ a._p[0]).bit_count())
            d = min((a._d[t] ^ b._d[0]).bit_count(), (b._d[inv] ^ a._d[0]).bit_count())
            scored.append((p + d, p, d, t))
        low = min(s[0] for s in scored)
        tied = [s for s in scored if s[0] == low]  # symmetric pictures: let the thumbnails break the tie
        self.best = min(((_grey_distance(a, b, t), p, d, t) for _, p, d, t in tied), key=_tie_break)
        _, self.p0, self.d0, _ = scored[0]
        self._tone: float | None = None
        self._framed: float | None = None

    def tone(self) -> float:
        if self._tone is None:
            self._tone = _tone_distance(self.a, self.b, self.best[3])
        return self._tone

    def framed(self) -> float:
        if self._framed is None:
            self._framed = _framed_distance(self.a, self.b)
        return self._framed

    def decide(self, max_distance: int) -> Match | None:
        m, p, d, t = self.best
        if min(p, d) <= max_distance:
            if 0.0 <= m <= PIXEL_CONFIRMED:  # A
                return Match(TRANSFORMS[t], p, d, round(m, 2))
            if max(p, d) <= max_distance + HASH_SLACK and (m <= HASH_CONFIRMED or self.tone() <= TONE_CONFIRMED):
                return Match(TRANSFORMS[t], p, d, round(m, 2))  # B, and C: B with the tone taken out
        p0, d0 = self.p0, self.d0
        if p0 <= max_distance and 0.0 <= self.framed() <= FRAMED_CONFIRMED:  # D: the picture as plain pHash
            return Match(TRANSFORMS[0], p0, d0, round(_grey_distance(self.a, self.b, 0), 2))
        return None


# the cells of an 8x8 grid (raveled) under each transform: _APPLY[t](g).ravel() == g.ravel()[_PERM[t]]
_PERM = np.stack([_APPLY[t](np.arange(_GREY_SIDE * _GREY_SIDE).reshape(_GREY_SIDE, _GREY_SIDE)).ravel()
                  for t in range(len(TRANSFORMS))])


def _parsed(sigs: list[Signature]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(n, T) uint64 pHash and dHash variants, (n, 64) int16 grey cells (0 where unknown) and which have a grey, from
    the signatures' text at once."""
    n = len(sigs)
    ph = np.frombuffer(bytes.fromhex("".join("".join(s.phash) for s in sigs)), ">u8").astype(np.uint64).reshape(n, -1)
    dh = np.frombuffer(bytes.fromhex("".join("".join(s.dhash) for s in sigs)), ">u8").astype(np.uint64).reshape(n, -1)
    has = np.array([bool(s.grey) for s in sigs], dtype=bool)
    grey = np.zeros((n, _GREY_SIDE * _GREY_SIDE), dtype=np.int16)
    if has.any():
        cells = bytes.fromhex("".join(s.grey for s in sigs))
        grey[has] = np.frombuffer(cells, np.uint8).reshape(-1, _GREY_SIDE * _GREY_SIDE)
    return ph, dh, grey, has


class JudgedMany:
    """``Judged`` for many pairs (a[i], b[i]) at once: the hash distances under every transform, the tie-break by
    the grey thumbnails and m are whole-array integer arithmetic (m is a mean of integers, so bit for bit the
    float ``Judged`` computes); z and zf, which rules C and D need for a few pairs only, are measured for those pairs
    only, array-wise (``tones``, ``framed``: the numbers ``Judged`` measures, bit for bit). ``decide(k)[i]`` is
    ``compare(a[i], b[i], k)``, measured once for every k."""

    def __init__(self, a: list[Signature], b: list[Signature]) -> None:
        self._measure(_parsed(a) if a else None, _parsed(b) if b else None, len(a))

    @classmethod
    def of_arrays(cls, a: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                  b: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> JudgedMany:
        """The same, from signatures already parsed (``_parsed``'s arrays: (n, T) pHash and dHash variants, (n, 64)
        grey cells, which have a grey): a search of the whole archive keeps its signatures as arrays, not objects."""
        judged = object.__new__(cls)
        judged._measure(a, b, int(a[0].shape[0]))
        return judged

    def _measure(self, a: tuple[np.ndarray, ...] | None, b: tuple[np.ndarray, ...] | None, n: int) -> None:
        self.n = n
        if not n or a is None or b is None:
            self.p = self.d = self.t = self.p0 = self.d0 = np.zeros(0, np.int64)
            self.m = self._tone = self._framed = np.zeros(0)
            self._grids = np.zeros((0, _GREY_SIDE * _GREY_SIDE), np.int16), np.zeros((0, _GREY_SIDE * _GREY_SIDE),
                                                                                   np.int16), np.zeros(0, bool)
            return
        pa, da, ga, ha = a
        pb, db, gb, hb = b
        inv = np.array(_INVERSE)
        count = np.bitwise_count
        p = np.minimum(count(pa ^ pb[:, :1]), count(pb[:, inv] ^ pa[:, :1])).astype(np.int64)
        d = np.minimum(count(da ^ db[:, :1]), count(db[:, inv] ^ da[:, :1])).astype(np.int64)
        s = p + d
        rows, ts = np.nonzero(s == s.min(axis=1, keepdims=True))  # symmetric pictures: every tied transform
        m = np.full(rows.size, -1.0)
        grey = ha[rows] & hb[rows]
        if grey.any():
            r, t = rows[grey], ts[grey]
            # the _GREY_KEEP smallest differences, in no order: their mean is a sum of small integers, exact in
            # any order, so the same float as sorting them (half the time)
            diff = np.partition(np.abs(np.take_along_axis(ga[r], _PERM[t], axis=1) - gb[r]), _GREY_KEEP - 1, axis=1)
            m[grey] = diff[:, :_GREY_KEEP].mean(axis=1)
        tp, td = p[rows, ts], d[rows, ts]
        order = np.lexsort((ts, np.array(_PAIRED)[ts], tp, np.maximum(tp, td), m, rows))  # per pair: _tie_break
        first = order[np.r_[True, rows[order][1:] != rows[order][:-1]]]
        self.t = ts[first]
        self.m = m[first]
        self.p = p[np.arange(n), self.t]
        self.d = d[np.arange(n), self.t]
        self.p0, self.d0 = p[:, 0], d[:, 0]
        self._grids = ga, gb, ha & hb
        self._tone = np.full(n, np.nan)  # z and zf of each pair, measured when a rule first needs them (NaN: not yet)
        self._framed = np.full(n, np.nan)

    def tones(self, rows: np.ndarray) -> np.ndarray:
        """z (``Judged.tone``) of the pairs ``rows``, under their best transforms: ``_tone_free`` on all of them at
        once (row by row the same arithmetic, so the same numbers), each pair measured once."""
        ga, gb, _ = self._grids
        return self._once(self._tone, rows, lambda r: _tone_free(
            np.take_along_axis(ga[r], _PERM[self.t[r]], axis=1).astype(np.float64), gb[r].astype(np.float64),
            _GREY_KEEP))

    def framed(self, rows: np.ndarray) -> np.ndarray:
        """zf (``Judged.framed``) of the pairs ``rows`` (``_framed_many``), each pair measured once."""
        ga, gb, _ = self._grids
        return self._once(self._framed, rows, lambda r: _framed_many(ga[r], gb[r]))

    def _once(self, cache: np.ndarray, rows: np.ndarray, measure: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """``cache[rows]``, the pairs not measured yet (NaN) measured first: ``measure(pairs)`` for those where both
        have a grey thumbnail, -1.0 for the others (as ``Judged``)."""
        todo = rows[np.isnan(cache[rows])]
        if todo.size:
            both = self._grids[2][todo]
            values = np.full(todo.size, -1.0)
            if both.any():
                values[both] = measure(todo[both])
            cache[todo] = values
        return cache[rows]

    def accepted(self, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
        """(accepted, by_best): which pairs ``compare`` accepts at ``max_distance``, and of those which by rule A, B
        or C (reported under the best transform; the others by rule D, under the identity)."""
        k = max_distance
        m, p, d = self.m, self.p, self.d
        cand = np.minimum(p, d) <= k
        rule_a = cand & (m >= 0.0) & (m <= PIXEL_CONFIRMED)
        slack = cand & ~rule_a & (np.maximum(p, d) <= k + HASH_SLACK)
        rule_b = slack & (m <= HASH_CONFIRMED)
        by_best = rule_a | rule_b
        c = np.flatnonzero(slack & ~rule_b)  # rule C: z, measured for these only
        by_best[c] = self.tones(c) <= TONE_CONFIRMED
        accepted = by_best.copy()
        d = np.flatnonzero(~by_best & (self.p0 <= k))  # rule D: zf, for these only
        zf = self.framed(d)
        accepted[d] = (zf >= 0.0) & (zf <= FRAMED_CONFIRMED)
        return accepted, by_best

    def decide(self, max_distance: int) -> list[Match | None]:
        accepted, by_best = self.accepted(max_distance)
        out: list[Match | None] = [None] * self.n
        ts, ps, ds, ms = self.t.tolist(), self.p.tolist(), self.d.tolist(), self.m.tolist()
        for i in np.flatnonzero(accepted & by_best).tolist():
            out[i] = Match(TRANSFORMS[ts[i]], ps[i], ds[i], round(ms[i], 2))
        ga, gb, both = self._grids
        for i in np.flatnonzero(accepted & ~by_best).tolist():
            # _grey_distance under the identity, from the grids: the same cells sorted, the same mean
            m = float(np.sort(np.abs(ga[i] - gb[i]))[:_GREY_KEEP].mean()) if both[i] else -1.0
            out[i] = Match(TRANSFORMS[0], int(self.p0[i]), int(self.d0[i]), round(m, 2))
        return out

    def accepted_from(self, max_distance: int) -> np.ndarray:
        """The smallest distance at which each pair is accepted (the decision is monotone in it), -1 for a pair not
        accepted at ``max_distance``."""
        out = np.full(self.n, -1, dtype=np.int64)
        for k in range(max_distance, -1, -1):
            out[self.accepted(k)[0]] = k
        return out


def compare_many(a: list[Signature], b: list[Signature], max_distance: int) -> list[Match | None]:
    """[compare(a[i], b[i], max_distance) for each i], measured array-wise (``JudgedMany``)."""
    return JudgedMany(a, b).decide(max_distance)
