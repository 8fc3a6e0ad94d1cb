"""Near duplicates in the manifest: the recorded pairs (searched incrementally) and the groups built from them.

Pairs: ``update_pairs`` searches only the assets not yet searched at the distance asked under the current
decision rule, against the whole archive, and records their confirmed pairs and "searched" marks in one
transaction. A pair is found when the later of its two assets is searched, so once every asset is marked at
>= N the recorded pairs accepted at N are complete, and ``groups_from_pairs`` builds from them exactly the
groups ``grouping.build_groups`` computes from scratch. Rewriting articles to a canonical copy: ``canonical``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from archiver.dedupe.grouping import AssetInfo, Group, greedy_groups, signature_classes
from archiver.dedupe.index import near
from archiver.image.similarity import TRANSFORMS, Match, Signature, compare
from archiver.manifest.sqlite import Manifest
from archiver.model import SIMILARITY_RULE_VERSION

log = logging.getLogger("archiver")


@dataclass(frozen=True)
class PairSearch:
    """What ``update_pairs`` did."""

    searched: int  # assets searched now
    archive: int  # assets with hash variants, searched against (0: nothing to search, not read)
    pairs: int  # confirmed pairs recorded
    widened: int  # of those searched, how many had been searched at a smaller distance before
    seconds: float


def update_pairs(manifest: Manifest, max_distance: int, *, rescan: bool = False) -> PairSearch:
    """Search the assets not yet searched at >= ``max_distance`` under ``SIMILARITY_RULE_VERSION`` (every asset
    with ``rescan``) against the whole archive; record their confirmed pairs and marks in one transaction.

    Assets with the same signature (a blank or templated image archived many times) are searched once and their
    pairs expanded; pairs between assets with the same hashes are not recorded (grouping joins them anyway)."""
    started = time.monotonic()
    widened = 0 if rescan else manifest.searched_below(max_distance, SIMILARITY_RULE_VERSION)
    todo = manifest.unsearched(max_distance, -1 if rescan else SIMILARITY_RULE_VERSION)  # no mark has rule -1
    if not todo:
        return PairSearch(0, 0, 0, 0, time.monotonic() - started)
    if widened:
        log.info("%d assets were searched for near-duplicates at a distance below %d: searching them again at %d",
                 widened, max_distance, max_distance)
    ids, phash, dhash, key = _variants(manifest)
    wanted = np.array([r for r, _ in todo], dtype=np.int64)
    q = np.searchsorted(ids, wanted)
    ok = (q < ids.size) & (ids[np.minimum(q, ids.size - 1)] == wanted)
    q = q[ok]
    searched = [sha for (_, sha), good in zip(todo, ok, strict=True) if good]
    if not searched:  # only assets whose stored variants do not parse: nothing to search
        return PairSearch(0, int(ids.size), 0, widened, time.monotonic() - started)
    _, first, cls = np.unique(key, return_index=True, return_inverse=True)  # classes of identical signatures
    del key
    cls = cls.ravel()
    qc = np.unique(cls[q])
    packed = np.unique(np.concatenate([_candidates(v[first], qc, max_distance) for v in (phash, dhash)]))
    del phash, dhash
    x, y = packed // first.size, packed % first.size
    members = _members(cls, np.unique(np.concatenate([x, y])))
    rows = {rid: (sha, pv, dv, grey) for rid, sha, pv, dv, grey in
            manifest.signature_rows(ids[np.concatenate(list(members.values()) or [np.zeros(0, np.int64)])].tolist())}
    is_searched = np.zeros(ids.size, dtype=bool)
    is_searched[q] = True
    sigs: dict[int, Signature] = {}

    def signature_of(c: int) -> Signature:
        if c not in sigs:
            _, pv, dv, grey = rows[int(ids[first[c]])]
            sigs[c] = Signature(tuple(pv.split(",")), tuple(dv.split(",")), grey or "")
        return sigs[c]

    pairs = []
    for c, d in zip(x.tolist(), y.tolist(), strict=True):
        a, b = signature_of(c), signature_of(d)
        if (a.phash, a.dhash) == (b.phash, b.dhash):  # the same hashes: one class for grouping, no pair needed
            continue
        m = compare(a, b, max_distance)
        if m is None:
            continue
        accepted_from, back = _accepted_from(a, b, m, max_distance), None
        for i in members[c].tolist():
            for j in members[d].tolist():
                if not (is_searched[i] or is_searched[j]):
                    continue  # recorded when the later of the two was searched
                sa, sb = rows[int(ids[i])][0], rows[int(ids[j])][0]
                if sa < sb:
                    pairs.append((sa, sb, m.phash_distance, m.dhash_distance, m.transform, m.grey_distance,
                                  accepted_from))
                else:
                    back = back or compare(b, a, max_distance)  # the rule is symmetric: never None here
                    if back is None:
                        continue
                    pairs.append((sb, sa, back.phash_distance, back.dhash_distance, back.transform,
                                  back.grey_distance, accepted_from))
    manifest.record_pair_search(pairs, searched, max_distance, SIMILARITY_RULE_VERSION, replace_all=rescan)
    return PairSearch(len(searched), int(ids.size), len(pairs), widened, time.monotonic() - started)


def _members(cls: np.ndarray, wanted: np.ndarray) -> dict[int, np.ndarray]:
    """Positions of the members of each wanted class."""
    order = np.argsort(cls, kind="stable")
    starts = np.searchsorted(cls[order], wanted)
    ends = np.searchsorted(cls[order], wanted, side="right")
    return {int(c): order[s:e] for c, s, e in zip(wanted, starts, ends, strict=True)}


def _variants(manifest: Manifest) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Asset ids (ascending), (n, 8) uint64 pHash and dHash variants of every asset that has them, and a key per
    asset equal for equal signatures (variants and grey)."""
    ids, ph, dh, keys = [], [], [], []
    width = 17 * len(TRANSFORMS) - 1  # "h0,h1,...": 16 hex digits each, comma-separated
    for rows in manifest.variant_batches():
        good = [r for r in rows if len(r[1]) == width and len(r[2]) == width and len(r[3] or "") in (0, 128)]
        ids.append(np.array([r[0] for r in good], dtype=np.int64))
        for col, out in ((1, ph), (2, dh)):
            raw = bytes.fromhex("".join(r[col] for r in good).replace(",", ""))
            out.append(np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, len(TRANSFORMS)))
        grey = np.frombuffer(bytes.fromhex("".join((r[3] or "0" * 128) + ("01" if r[3] else "00") for r in good)),
                             dtype=np.uint8).reshape(-1, 65)
        keys.append(np.concatenate([ph[-1].view(np.uint8), dh[-1].view(np.uint8), grey], axis=1))
    if not ids:
        empty = np.zeros((0, len(TRANSFORMS)), dtype=np.uint64)
        return np.zeros(0, dtype=np.int64), empty, empty, np.zeros(0, dtype="V1")
    key = np.ascontiguousarray(np.concatenate(keys))
    return np.concatenate(ids), np.concatenate(ph), np.concatenate(dh), key.view(f"V{key.shape[1]}").ravel()


def _candidates(variants: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Packed position pairs x * n + y (x < y) within ``k`` under some transform, each involving a searched
    position of ``q``: some variant of any asset near a searched asset's identity hash, and some variant of a
    searched asset near the identity hash of an asset not searched (the rest: among searched ones, both
    directions are covered by the first query)."""
    n, t = variants.shape
    qi, e, _ = near(variants.ravel(), variants[q, 0], k)
    found = [(e // t, q[qi])]
    rest = np.setdiff1d(np.arange(n), q, assume_unique=True)
    if rest.size and t > 1:
        qi, e, _ = near(variants[rest, 0], variants[q, 1:].ravel(), k)
        found.append((q[qi // (t - 1)], rest[e]))
    a, b = (np.concatenate(z) for z in zip(*found, strict=True))
    keep = a != b
    return np.minimum(a[keep], b[keep]) * n + np.maximum(a[keep], b[keep])


def _accepted_from(a: Signature, b: Signature, m: Match, max_distance: int) -> int:
    """The smallest max_distance at which ``compare`` accepts the pair (bisection: it is monotone in it). From 0:
    a pair accepted in its own orientation (rule D) may also be accepted under another transform at a smaller
    distance than the one the Match reports, and the other way round."""
    lo, hi = 0, max_distance  # accepted at hi
    while lo < hi:
        mid = (lo + hi) // 2
        if compare(a, b, mid) is None:
            lo = mid + 1
        else:
            hi = mid
    return hi


def groups_from_pairs(
    assets: Sequence[AssetInfo],
    pairs: Iterable[tuple[str, str, int, int]],
    max_distance: int,
    prefer: Sequence[str],
    pinned: Iterable[str] = (),
    excluded: Iterable[str] = (),
) -> list[Group]:
    """``grouping.build_groups(assets in sha256 order, ...)`` with the candidate search replaced by the recorded
    pairs (a, b, pHash distance, dHash distance) accepted at ``max_distance``, which must be complete.

    The same steps: assets with identical hashes are one class (its first asset by sha256 speaks for it); a
    class's neighbours are the recorded pairs between class heads; the greedy complete-linkage pass is the same,
    and each member's match to its canonical is computed again by ``compare`` (a few pairs only).
    """
    excluded_set = set(excluded)
    usable = sorted((a for a in assets if a.signature is not None and a.sha256 not in excluded_set),
                    key=lambda a: a.sha256)
    classes = signature_classes(usable)
    sigs = classes.sigs
    near: dict[int, list[tuple[int, int, int]]] = {}
    linked_pairs: set[tuple[int, int]] = set()
    for a_sha, b_sha, pd, dd in pairs:
        ca, cb = classes.heads.get(a_sha), classes.heads.get(b_sha)
        if ca is None or cb is None or ca == cb:
            continue
        near.setdefault(ca, []).append((pd, dd, cb))
        near.setdefault(cb, []).append((pd, dd, ca))
        linked_pairs.add((min(ca, cb), max(ca, cb)))

    def linked(a: int, b: int) -> bool:
        return a == b or (min(a, b), max(a, b)) in linked_pairs

    def match(a: int, b: int) -> Match | None:
        return compare(sigs[a], sigs[b], max_distance) or compare(sigs[min(a, b)], sigs[max(a, b)], max_distance)

    return greedy_groups(usable, classes, near, linked, match, prefer, set(pinned))
