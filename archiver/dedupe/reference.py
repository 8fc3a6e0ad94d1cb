"""The from-scratch near-duplicate grouping: every candidate pair searched, confirmed and grouped in one go.

Not used by the CLI (``pairs.update_pairs`` searches incrementally and ``pairs.groups_from_pairs`` groups from the
recorded pairs): kept as the reference those must equal, which the tests and ``bench/`` check on samples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from archiver.dedupe.grouping import AssetInfo, Group, greedy_groups, signature_classes
from archiver.dedupe.index import HashIndex, hex_to_uint64
from archiver.image.similarity import Match, Signature, compare


def candidate_pairs(
    signatures: Sequence[Signature], max_distance: int, queries: Sequence[int] | None = None
) -> list[tuple[int, int]]:
    """Index pairs (i < j) whose pHashes OR dHashes are within ``max_distance`` under some dihedral transform.

    ``compare`` accepts a pair when either hash is that close (an overlay can move pHash far while dHash
    stays close), so both are searched: an index of all 8 variants, queried with the identity hashes of
    ``queries`` (default: every signature; a run passes only the assets it added, which is how a new image
    finds its near-duplicates in a large archive without a full search).
    """
    n = len(signatures)
    if n < 2:
        return []
    q_idx = np.arange(n, dtype=np.int64) if queries is None else np.asarray(list(queries), dtype=np.int64)
    if q_idx.size == 0:
        return []
    found = []
    for which in ("phash", "dhash"):
        # the variants indexed, the identities queried: the same pairs as the other way round, and
        # measured 3x faster (N queries into an 8N index rather than 8N queries into an N index)
        variants = [h for s in signatures for h in getattr(s, which)]
        index = HashIndex.build(hex_to_uint64(variants), max_distance)
        query, existing, _dist = index.query(
            hex_to_uint64([getattr(signatures[i], which)[0] for i in q_idx]), max_distance
        )
        a = np.asarray(existing, dtype=np.int64) // (len(variants) // n)
        b = q_idx[np.asarray(query, dtype=np.int64)]
        keep = a != b
        found.append(np.minimum(a[keep], b[keep]) * n + np.maximum(a[keep], b[keep]))
    packed = np.unique(np.concatenate(found))
    return [(int(p // n), int(p % n)) for p in packed]


class _Confirmer:
    """``compare`` with a cache over unordered pairs (the complete-link check asks about the same pairs again)."""

    def __init__(self, signatures: Sequence[Signature | None], max_distance: int,
                 rule: Callable[[Signature, Signature, int], Match | None]) -> None:
        self._sigs = signatures
        self._max = max_distance
        self._rule = rule
        self._cache: dict[tuple[int, int], Match | None] = {}

    def __call__(self, i: int, j: int) -> Match | None:
        """The match of j seen from i (transform maps i onto j)."""
        key = (i, j)
        if key not in self._cache:
            a, b = self._sigs[i], self._sigs[j]
            self._cache[key] = None if a is None or b is None else self._rule(a, b, self._max)
        return self._cache[key]


def build_groups(
    assets: Sequence[AssetInfo],
    max_distance: int,
    prefer: Sequence[str],
    pinned: Iterable[str] = (),
    excluded: Iterable[str] = (),
    rule: Callable[[Signature, Signature, int], Match | None] = compare,
) -> list[Group]:
    """Near-duplicate groups of two or more assets, canonical first, in the order they were formed.

    Assets with identical signatures (a blank or templated image archived many times) are one node for
    the search and the checks, so a cluster of n identical hashes costs O(n), not n² pairs.
    """
    pinned_set, excluded_set = set(pinned), set(excluded)
    usable = [a for a in assets if a.signature is not None and a.sha256 not in excluded_set]
    classes = signature_classes(usable)
    confirm = _Confirmer(classes.sigs, max_distance, rule)
    near: dict[int, list[tuple[int, int, int]]] = {}  # class -> [(phash d, dhash d, class)]
    for i, j in candidate_pairs(classes.sigs, max_distance):
        m = confirm(i, j)
        if m is not None:
            near.setdefault(i, []).append((m.phash_distance, m.dhash_distance, j))
            near.setdefault(j, []).append((m.phash_distance, m.dhash_distance, i))

    def linked(a: int, b: int) -> bool:  # one orientation per class pair, the one candidates were confirmed in
        return a == b or confirm(min(a, b), max(a, b)) is not None

    def match(a: int, b: int) -> Match | None:
        return confirm(a, b) or confirm(min(a, b), max(a, b))

    return greedy_groups(usable, classes, near, linked, match, prefer, pinned_set)
