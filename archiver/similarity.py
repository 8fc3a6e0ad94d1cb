"""Near-duplicate signals (pHash/dHash of the 8 dihedral transforms) and the decision rule for one candidate pair."""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class Signature:
    """pHash and dHash (16-hex-digit strings, imagehash's form) of the image under each of TRANSFORMS."""

    phash: tuple[str, ...]
    dhash: tuple[str, ...]
    _p: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _d: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.phash) != len(TRANSFORMS) or len(self.dhash) != len(TRANSFORMS):
            raise ValueError(f"a signature needs {len(TRANSFORMS)} pHash and dHash variants")
        object.__setattr__(self, "_p", tuple(int(h, 16) for h in self.phash))
        object.__setattr__(self, "_d", tuple(int(h, 16) for h in self.dhash))


@dataclass(frozen=True)
class Match:
    """A confirmed near-duplicate pair: ``b`` looks like ``transform`` applied to ``a``."""

    transform: str
    phash_distance: int
    dhash_distance: int


def _hex(bits: np.ndarray) -> str:
    """imagehash's stored form of a boolean array (row-major bits, most significant first)."""
    return f"{int(''.join('1' if b else '0' for b in bits.ravel()), 2):016x}"


def signature(im: Image.Image) -> Signature:
    """The signature of ``im`` (an oriented, flattened image; any mode): variant 0 equals imagehash's own hashes."""
    grey = im.convert("L")
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
    return Signature(phashes, tuple(dhashes))


def distances(a: Signature, b: Signature, t: int) -> tuple[int, int, int, int]:
    """(pHash a→b, pHash b→a, dHash a→b, dHash b→a) Hamming distances if ``b`` is TRANSFORMS[t] of ``a``."""
    inv = _INVERSE[t]
    return (
        (a._p[t] ^ b._p[0]).bit_count(),
        (b._p[inv] ^ a._p[0]).bit_count(),
        (a._d[t] ^ b._d[0]).bit_count(),
        (b._d[inv] ^ a._d[0]).bit_count(),
    )


def compare(a: Signature, b: Signature, max_distance: int) -> Match | None:
    """The decision for one candidate pair: a Match when ``b`` is a near-duplicate of ``a`` (or None)."""
    best = None
    for t in range(len(TRANSFORMS)):
        pa, pb, da, db = distances(a, b, t)
        key = (pa + pb, da + db, t)
        if best is None or key < best[0]:
            best = (key, pa, pb, da, db)
    assert best is not None
    (_, _, t), pa, pb, da, db = best
    pd, dd = max(pa, pb), max(da, db)
    if min(pa, pb) > max_distance or dd > max_distance + 4:
        return None
    return Match(TRANSFORMS[t], pd, dd)
