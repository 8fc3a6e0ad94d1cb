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

from archiver.dedupe.grouping import AssetInfo, Group, greedy_class_groups, signature_classes
from archiver.dedupe.segments import VariantIndex
from archiver.image.similarity import Judged, Match, Signature, compare
from archiver.manifest.rows import PairRow
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


def update_pairs(manifest: Manifest, max_distance: int, *, rescan: bool = False, compact: bool = False) -> PairSearch:
    """Search the assets not yet searched at >= ``max_distance`` under ``SIMILARITY_RULE_VERSION`` (every asset
    with ``rescan``) against the whole archive; record their confirmed pairs and marks in one transaction.

    Assets with the same signature (a blank or templated image archived many times) are searched once and their
    pairs expanded; pairs between assets with the same hashes are not recorded (grouping joins them anyway).
    The candidates come from the on-disk variant index (``segments.VariantIndex``), brought up to date first;
    ``compact`` (and ``rescan``) merge its segments into one."""
    started = time.monotonic()
    if compact:
        index = VariantIndex.open(manifest)
        n = len(index.segments)
        index.compact(manifest)
        log.info("near-duplicate index: %d segments merged into one (%d assets)", n, index.assets)
    widened = 0 if rescan else manifest.searched_below(max_distance, SIMILARITY_RULE_VERSION)
    todo = manifest.unsearched(max_distance, -1 if rescan else SIMILARITY_RULE_VERSION)  # no mark has rule -1
    if not todo:
        return PairSearch(0, 0, 0, 0, time.monotonic() - started)
    if widened:
        log.info("%d assets were searched for near-duplicates at a distance below %d: searching them again at %d",
                 widened, max_distance, max_distance)
    index = VariantIndex.open(manifest)
    if rescan:
        index.compact(manifest)
    wanted = np.array([r for r, _ in todo], dtype=np.int64)
    qcls = index.classes_of(wanted)
    ok = qcls >= 0
    searched = [sha for (_, sha), good in zip(todo, ok, strict=True) if good]
    if not searched:  # only assets whose stored variants do not parse: nothing to search
        return PairSearch(0, index.assets, 0, widened, time.monotonic() - started)
    x, y = index.candidates(np.unique(qcls[ok]), max_distance)
    involved = np.unique(np.concatenate([x, y]))
    members = index.members(involved)
    reps = dict(zip(involved.tolist(), index.reps(involved).tolist(), strict=True))
    rows = {rid: (pv, dv, grey) for rid, _sha, pv, dv, grey in manifest.signature_rows(reps.values())}
    is_searched = set(wanted[ok].tolist())
    shas = manifest.asset_shas(np.concatenate([members[c] for c in involved.tolist()]).tolist()
                               if involved.size else [])
    sigs: dict[int, Signature] = {}

    def signature_of(c: int) -> Signature:
        if c not in sigs:
            pv, dv, grey = rows[reps[c]]
            sigs[c] = Signature(tuple(pv.split(",")), tuple(dv.split(",")), grey or "")
        return sigs[c]

    pairs = []
    for c, d in zip(x.tolist(), y.tolist(), strict=True):
        a, b = signature_of(c), signature_of(d)
        if (a.phash, a.dhash) == (b.phash, b.dhash):  # the same hashes: one class for grouping, no pair needed
            continue
        judged = Judged(a, b)
        m = judged.decide(max_distance)
        if m is None:
            continue
        accepted_from, back = _accepted_from(judged, max_distance), None
        for i in members[c].tolist():
            for j in members[d].tolist():
                if not (i in is_searched or j in is_searched):
                    continue  # recorded when the later of the two was searched
                sa, sb = shas[i], shas[j]
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
    return PairSearch(len(searched), index.assets, len(pairs), widened, time.monotonic() - started)


def _accepted_from(judged: Judged, max_distance: int) -> int:
    """The smallest max_distance at which the pair is accepted (bisection: the decision is monotone in it; each
    measurement made once, by ``judged``). From 0: a pair accepted in its own orientation (rule D) may also be
    accepted under another transform at a smaller distance than the one the Match reports, and the other way round."""
    lo, hi = 0, max_distance  # accepted at hi
    while lo < hi:
        mid = (lo + hi) // 2
        if judged.decide(mid) is None:
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
    class's neighbours are the recorded pairs between class heads; the greedy complete-linkage pass is the same
    (worked class by class: ``grouping.greedy_class_groups``), and each member's match to its canonical is computed
    again by ``compare`` (a few pairs only). ``assets`` may be only those ``groupable`` names: the others can be in
    no group.
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

    return greedy_class_groups(usable, classes, near, linked, match, prefer, set(pinned))


def groupable(manifest: Manifest, max_distance: int) -> tuple[list[PairRow], list[int]]:
    """The recorded pairs accepted at ``max_distance`` (under the current rule) and the ids of every asset that can
    be in a group: an end of one of those pairs, or a member of a class of identical hashes of two assets or more.
    The others (nearly all of an archive) form no group whatever the settings, so ``groups_from_pairs`` needs the
    signatures of these only: memory grows with the pairs and the copies, not with the archive. The classes come
    from the on-disk index (read a segment block at a time), brought up to date first."""
    pairs = manifest.recorded_pairs(max_distance, SIMILARITY_RULE_VERSION)
    index = VariantIndex.open(manifest)
    several = index.shared_hash_classes()
    ids = np.concatenate([v for v in index.members(several).values()] or [np.zeros(0, np.int64)])
    ends = manifest.asset_ids({sha for p in pairs for sha in (p[0], p[1])})
    return pairs, sorted(set(ids.tolist()) | set(ends.values()))
