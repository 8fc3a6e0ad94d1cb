"""Near-duplicate detection over stored perceptual hashes (exact duplicates share a SHA-256 already)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def _to_array(hexes: Sequence[str]) -> np.ndarray:
    return np.array([int(h, 16) for h in hexes], dtype=np.uint64)


def near_duplicate_pairs(
    rows: Sequence[tuple[str, str, str]], new: Iterable[str], max_distance: int
) -> list[tuple[str, str, int, int]]:
    """Pairs (a, b, phash distance, dhash distance) between each ``new`` asset and every asset in ``rows``.

    ``rows`` are (sha256, phash hex, dhash hex). A pair needs both signals: pHash within
    ``max_distance`` and dHash within ``max_distance + 4`` (dHash is the independent check that keeps
    distinct photos with a chance pHash match apart). This is a linear scan per new asset, fine for
    the tens of thousands of assets one run adds; grouping a whole library at scale is `dedupe`'s job.
    """
    if not rows:
        return []
    shas = [r[0] for r in rows]
    index = {sha: i for i, sha in enumerate(shas)}
    ph = _to_array([r[1] for r in rows])
    dh = _to_array([r[2] for r in rows])
    pairs: dict[tuple[str, str], tuple[int, int]] = {}
    for sha in new:
        i = index.get(sha)
        if i is None:
            continue
        pd = np.bitwise_count(ph ^ ph[i])
        dd = np.bitwise_count(dh ^ dh[i])
        for j in np.nonzero((pd <= max_distance) & (dd <= max_distance + 4))[0]:
            if j == i:
                continue
            a, b = sorted((sha, shas[j]))
            pairs[(a, b)] = (int(pd[j]), int(dd[j]))
    return [(a, b, p, d) for (a, b), (p, d) in sorted(pairs.items())]
