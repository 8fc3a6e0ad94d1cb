"""Near duplicates in the manifest: the recorded pairs (searched incrementally) and the groups built from them.

Pairs: ``update_pairs`` searches only the assets not yet searched at the distance asked under the current
decision rule, against the whole archive, and records their confirmed pairs and "searched" marks in one
transaction. A pair is found when the later of its two assets is searched, so once every asset is marked at
>= N the recorded pairs accepted at N are complete, and ``groups_from_pairs`` builds from them exactly the
groups ``grouping.build_groups`` computes from scratch. Rewriting articles to a canonical copy: ``canonical``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from archiver.dedupe.grouping import (
    AssetInfo,
    Group,
    Member,
    greedy_class_groups,
    preference_key,
    signature_classes,
)
from archiver.dedupe.segments import _COMMAS, VARIANTS_WIDTH, T, VariantIndex, _hex
from archiver.image.similarity import JudgedMany, Match, Signature, _parsed, compare, compare_many
from archiver.manifest.rows import PairRow, SignatureRow
from archiver.manifest.sqlite import Manifest
from archiver.model import SIMILARITY_RULE_VERSION

log = logging.getLogger("archiver")

@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a pass that makes a few small objects per asset, millions at a
    million images (rows, signatures, groups), none of them in a reference cycle: every collection walks the live
    objects, and at 1 M they cost a quarter of grouping's time. On again at the end (when it was on), the objects made
    meanwhile counted as old ones: a cycle made during the pass (none is expected) is collected by the next full
    collection, not by the next young one."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            if not gc.get_freeze_count():  # (nobody else froze objects: freezing is theirs to undo)
                # the objects made meanwhile moved to the oldest generation at once (freeze, then unfreeze: two list
                # splices), as if they had lived through the young collections: else the first allocation after
                # enabling walks all of them (~1 s at a million images). A full collection still visits them.
                gc.freeze()
                gc.unfreeze()
            gc.enable()


MEASURED_AT_ONCE = 65_536  # candidate pairs JudgedMany measures at once in update_pairs (its arrays: ~1.6 KB a pair)


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
    ``compact`` merges its segments into one (a rescan does not: it searches each segment's tables as they are)."""
    started = time.monotonic()
    if compact:
        index = VariantIndex.open(manifest)
        n = len(index.segments)
        index.compact(manifest)
        log.info("near-duplicate index: %s merged into one (%d assets)", "1 segment" if n == 1 else f"{n} segments",
                 index.assets)
    widened = 0 if rescan else manifest.searched_below(max_distance, SIMILARITY_RULE_VERSION)
    todo = manifest.unsearched_ids(max_distance, -1 if rescan else SIMILARITY_RULE_VERSION)  # no mark has rule -1
    if not todo:
        return PairSearch(0, 0, 0, 0, time.monotonic() - started)
    if widened:
        log.info("%d assets were searched for near-duplicates at a distance below %d: searching them again at %d",
                 widened, max_distance, max_distance)
    index = VariantIndex.open(manifest)  # (a rescan searches the segments as they are: merging them is --compact's)
    wanted = np.array(todo, dtype=np.int64)
    del todo
    qcls = index.classes_of(wanted)
    ok = qcls >= 0
    searched_ids = wanted[ok].tolist()  # ascending (the ids are), Python ints
    if not searched_ids:  # only assets whose stored variants do not parse: nothing to search
        return PairSearch(0, index.assets, 0, widened, time.monotonic() - started)
    searched_classes = np.unique(qcls[ok])
    x, y = index.candidates(searched_classes, max_distance)
    involved = np.unique(np.concatenate([x, y]))
    # one row per pair of classes, between their heads (each class's member with the smallest asset id: it stays
    # the head while the class gains members; gc deleting it clears its class's marks, see forget_assets)
    heads = class_heads(manifest, index, involved)
    del involved
    px, py = _to_measure(x, y, heads, searched_classes, lambda ids: {
        r[0]: (r[2], r[3]) for r in manifest.signature_rows(ids)})
    del x, y
    pairs = []
    for lo in range(0, px.size, MEASURED_AT_ONCE):  # bounded memory: ~1.6 KB a pair while measured
        ia, ib = px[lo:lo + MEASURED_AT_ONCE], py[lo:lo + MEASURED_AT_ONCE]
        judged = JudgedMany.of_arrays(heads.parsed(ia), heads.parsed(ib))
        accepted_from = judged.accepted_from(max_distance)  # -1: not accepted
        kept = np.flatnonzero(accepted_from >= 0)
        forward = judged.decide(max_distance)
        # rows are oriented by sha256: the pairs found the other way round are measured in that orientation (the rule
        # is symmetric, so it accepts them too)
        turned = kept[heads.sha[ia[kept]] > heads.sha[ib[kept]]]
        backward = dict(zip(turned.tolist(), JudgedMany.of_arrays(heads.parsed(ib[turned]), heads.parsed(
            ia[turned])).decide(max_distance), strict=True))
        for i, a, b, k in zip(kept.tolist(), ia[kept].tolist(), ib[kept].tolist(), accepted_from[kept].tolist(),
                              strict=True):
            sa, sb = heads.sha[a].decode(), heads.sha[b].decode()
            m = forward[i]
            if sa > sb:
                m = backward[i]
                sa, sb = sb, sa
            if m is None:
                continue
            pairs.append((sa, sb, m.phash_distance, m.dhash_distance, m.transform, m.grey_distance, k))
    manifest.record_pair_search(pairs, (), max_distance, SIMILARITY_RULE_VERSION, replace_all=rescan,
                                searched_ids=searched_ids)
    return PairSearch(len(searched_ids), index.assets, len(pairs), widened, time.monotonic() - started)


def _to_measure(x: np.ndarray, y: np.ndarray, heads: Heads, searched: np.ndarray,
                texts: Callable[[list[int]], dict[int, tuple[str, str]]]) -> tuple[np.ndarray, np.ndarray]:
    """The candidate class pairs (x[i], y[i]) to measure, as positions in ``heads``: both classes still have a head,
    one of them was searched now (a pair is recorded when the later of its classes is searched), and their hashes
    differ (the same 8 pHash and 8 dHash variants, another grey: one class for grouping, no pair needed). Worked on
    arrays: a first search or a rescan has tens of millions of candidates.

    "The same hashes" is the same text, as the index's classes and grouping tell them: the parsed values are compared
    first, and the few pairs whose values are equal (or whose row did not parse) are told by their stored text
    (``texts``: head asset id -> the two variants columns), so ``0A…`` and ``0a…`` are different hashes here too."""
    known = heads.cls
    if not known.size:  # no class has a head left (gc removed every member meanwhile): nothing to measure
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    px = np.minimum(np.searchsorted(known, x), known.size - 1)
    py = np.minimum(np.searchsorted(known, y), known.size - 1)
    keep = (known[px] == x) & (known[py] == y)
    keep &= np.isin(x, searched) | np.isin(y, searched)
    px, py = px[keep], py[keep]
    differ = np.empty(px.size, dtype=bool)
    for lo in range(0, px.size, 1 << 20):  # the hashes compared a block of pairs at a time (bounded memory)
        a, b = px[lo:lo + (1 << 20)], py[lo:lo + (1 << 20)]
        differ[lo:lo + a.size] = ((heads.ph[a] != heads.ph[b]).any(axis=1) | (heads.dh[a] != heads.dh[b]).any(axis=1)) \
            & ~heads.bad[a] & ~heads.bad[b]
    told = np.flatnonzero(~differ)
    if told.size:
        text = texts(np.unique(heads.head[np.concatenate([px[told], py[told]])]).tolist())
        for i, a, b in zip(told.tolist(), heads.head[px[told]].tolist(), heads.head[py[told]].tolist(), strict=True):
            differ[i] = text.get(a) != text.get(b)
    return px[differ], py[differ]


@dataclass
class Heads:
    """The head of each class asked (its member with the smallest asset id still in the manifest) and its stored
    signature, as arrays in ascending class order: a whole-archive search at 10 M holds ~280 bytes a class, where
    the rows' text and a Signature object per class held ~2.5 KB (25 GB)."""

    cls: np.ndarray  # int64 class ids with a head, ascending
    head: np.ndarray  # int64 the head's asset id
    sha: np.ndarray  # bytes (S64): the head's sha256
    ph: np.ndarray  # (n, T) uint64 pHash variants
    dh: np.ndarray  # (n, T) uint64 dHash variants
    grey: np.ndarray  # (n, 64) uint8 grey cells (0 where unknown)
    has: np.ndarray  # bool: has a grey thumbnail
    bad: np.ndarray  # bool: its row does not parse (changed by hand since it was indexed): zeros above
    rows: dict[int, SignatureRow]  # position -> the row, of those that do not parse

    _FIELDS = ("cls", "head", "sha", "ph", "dh", "grey", "has", "bad")

    def parsed(self, i: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The signatures of positions ``i`` as ``JudgedMany.of_arrays`` takes them; a row that does not parse
        raises ``Signature``'s ValueError (as measuring it did when signatures were objects)."""
        if self.rows:
            for p in np.flatnonzero(self.bad[i]).tolist():
                r = self.rows[int(i[p])]
                Signature(tuple((r[2] or "").split(",")), tuple((r[3] or "").split(",")), r[4] or "")
        return self.ph[i], self.dh[i], self.grey[i].astype(np.int16), self.has[i]

    @classmethod
    def of(cls, classes: Sequence[int], rows: Sequence[SignatureRow]) -> Heads:
        """From the head row (id, sha256, pHash variants, dHash variants, grey) of each class. A row that does not
        parse is kept as zeros and flagged (``bad``): its variants parsed when it was indexed, so it was changed
        since; measuring it raises (``parsed``), as before."""
        n = len(rows)
        greys = [r[4] or "" for r in rows]
        ok = all(len(r[2] or "") == VARIANTS_WIDTH and len(r[3] or "") == VARIANTS_WIDTH and len(g) in (0, 128)
                 and r[2][16::17] == _COMMAS and r[3][16::17] == _COMMAS for r, g in zip(rows, greys, strict=True))
        text = [_hex("".join(r[c] for r in rows).replace(",", "")) if ok else None for c in (2, 3)]
        gtext = _hex("".join(greys)) if ok else None
        bad = np.zeros(n, dtype=bool)
        if ok and text[0] is not None and text[1] is not None and gtext is not None:
            ph, dh = (np.frombuffer(t, ">u8").astype(np.uint64).reshape(n, T) for t in text)  # type: ignore[arg-type]
            has = np.array([bool(g) for g in greys], dtype=bool)
            grey = np.zeros((n, 64), np.uint8)
            grey[has] = np.frombuffer(gtext, np.uint8).reshape(-1, 64)
        else:  # a row that does not parse: row by row, as Signature reads them
            ph, dh = np.zeros((n, T), np.uint64), np.zeros((n, T), np.uint64)
            grey, has = np.zeros((n, 64), np.uint8), np.zeros(n, dtype=bool)
            for i, r in enumerate(rows):
                try:
                    sig = Signature.from_columns(r[2], r[3], r[4]) or Signature(
                        tuple((r[2] or "").split(",")), tuple((r[3] or "").split(",")), r[4] or "")
                except ValueError:
                    bad[i] = True
                    continue
                p, d, g, h = _parsed([sig])
                ph[i], dh[i], grey[i], has[i] = p[0], d[0], g[0], h[0]
        sha = np.array([r[1].encode() for r in rows], dtype="S64") if n else np.zeros(0, "S64")
        return cls(np.asarray(classes, dtype=np.int64), np.array([r[0] for r in rows], dtype=np.int64), sha, ph, dh,
                   grey, has, bad, {i: rows[i] for i in np.flatnonzero(bad).tolist()})

    @classmethod
    def concat(cls, parts: list[Heads]) -> Heads:
        if not parts:
            return cls.of([], [])
        joined = [np.concatenate([getattr(p, f) for p in parts]) for f in cls._FIELDS]
        order = np.argsort(joined[0], kind="stable")
        where = np.empty_like(order)
        where[order] = np.arange(order.size)  # a joined position's place once sorted
        rows, base = {}, 0
        for p in parts:
            rows.update({int(where[base + i]): r for i, r in p.rows.items()})
            base += p.cls.size
        return cls(*(a[order] for a in joined), rows)


HEADS_AT_ONCE = 65_536  # head rows read and parsed at once (class_heads)


def class_heads(manifest: Manifest, index: VariantIndex, classes: np.ndarray) -> Heads:
    """The head of each class (its member with the smallest asset id still in the manifest: gc may have removed
    members the index still lists) with its sha256 and stored signature, as arrays (``Heads``), read a batch of
    classes at a time. Classes with no member left are left out."""
    first = index.first_members(classes)
    parts, gone = [], []
    for lo in range(0, classes.size, HEADS_AT_ONCE):
        c, f = classes[lo:lo + HEADS_AT_ONCE].tolist(), first[lo:lo + HEADS_AT_ONCE].tolist()
        found = {r[0]: r for r in manifest.signature_rows([i for i in f if i >= 0])}
        have = [(cl, found[i]) for cl, i in zip(c, f, strict=True) if i in found]
        gone += [cl for cl, i in zip(c, f, strict=True) if i >= 0 and i not in found]  # its first member is gone
        parts.append(Heads.of([cl for cl, _ in have], [r for _, r in have]))
    if gone:
        left = []
        for cl, ids in index.members(np.array(gone, dtype=np.int64)).items():  # the smallest member left
            live = {r[0]: r for r in manifest.signature_rows(ids.tolist())}
            if live:
                left.append((cl, live[min(live)]))
        parts.append(Heads.of([cl for cl, _ in left], [r for _, r in left]))
    return Heads.concat(parts)


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

    A recorded pair is one row per pair of classes of identical signatures, between their heads (``update_pairs``):
    an end stands for every asset with its signature, excluded or not, so ``assets`` must hold each end with its
    signature. A row counts for the pair of grouping classes whose first usable assets have exactly those
    signatures. Its distances are not used: a row holds the match at the distance it was searched at, in its heads'
    sha256 order, and the reference orders candidates by ``compare`` at ``max_distance`` in the classes' order (the
    first class's signature onto the second's), which is measured again for every row (``compare_many``).
    """
    excluded_set = set(excluded)
    usable = sorted((a for a in assets if a.signature is not None and a.sha256 not in excluded_set),
                    key=lambda a: a.sha256)
    classes = signature_classes(usable)
    sigs = classes.sigs
    signature_of = {a.sha256: a.signature for a in assets if a.signature is not None}
    class_of = {(sig.phash, sig.dhash): c for c, sig in enumerate(sigs)}
    near: dict[int, list[tuple[int, int, int]]] = {}
    linked_pairs: set[tuple[int, int]] = set()  # (low, high) classes joined by a recorded row
    for a_sha, b_sha, _pd, _dd in pairs:
        sa, sb = signature_of.get(a_sha), signature_of.get(b_sha)
        if sa is None or sb is None:
            continue
        ca, cb = class_of.get((sa.phash, sa.dhash)), class_of.get((sb.phash, sb.dhash))
        if ca is None or cb is None or ca == cb or sigs[ca] != sa or sigs[cb] != sb:
            continue  # not between two grouping classes' own signatures (another grey with the same hashes)
        linked_pairs.add((min(ca, cb), max(ca, cb)))
    # the distances that order a head's candidates are compare's in the classes' order AT max_distance, measured
    # again for every row: a row holds the match at the distance it was searched at, which can differ below it (a
    # pair accepted under its best transform at 10 may be accepted only by rule D, in its own orientation, at 3), as
    # can the match of a row recorded the other way round (its heads' sha256 order is not the classes')
    keys = sorted(linked_pairs)
    measured = dict(zip(keys, compare_many([sigs[lo] for lo, _ in keys], [sigs[hi] for _, hi in keys], max_distance),
                        strict=True))
    for (lo, hi), m in measured.items():
        if m is None:  # (not expected: the row is accepted at max_distance, and the rule is symmetric)
            linked_pairs.discard((lo, hi))
            continue
        near.setdefault(lo, []).append((m.phash_distance, m.dhash_distance, hi))
        near.setdefault(hi, []).append((m.phash_distance, m.dhash_distance, lo))

    def linked(a: int, b: int) -> bool:
        return a == b or (min(a, b), max(a, b)) in linked_pairs

    def match(a: int, b: int) -> Match | None:
        return compare(sigs[a], sigs[b], max_distance) or compare(sigs[min(a, b)], sigs[max(a, b)], max_distance)

    def match_many(wanted: list[tuple[int, int]]) -> list[Match | None]:
        # a (head, member) pair in the classes' order is a row measured above: compare(sigs[a], sigs[b]) already
        other = [(a, b) for a, b in wanted if (a, b) not in measured]
        found = dict(zip(other, compare_many([sigs[a] for a, _ in other], [sigs[b] for _, b in other], max_distance),
                         strict=True))
        return [measured.get(w) or found.get(w) or match(*w) for w in wanted]

    return greedy_class_groups(usable, classes, near, linked, match, prefer, set(pinned), match_many)


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


GROUP_BATCH = 10_000  # assets whose signatures are held at once while grouping (whole components: at least one)


def group_batches(manifest: Manifest, max_distance: int, batch: int = GROUP_BATCH
                  ) -> Iterator[tuple[list[str], list[PairRow], bool]]:
    """``groupable``'s assets (as sha256s) and pairs cut into batches of whole connected components (assets joined
    by a recorded pair, by being in one class of identical signatures, or by sharing their hashes with another
    grey): no group and no candidate crosses a component, so each batch is grouped alone, with the signatures of
    its assets only. Batches hold about ``batch`` assets (a bigger component is a batch of its own). The third
    item is True for a batch of "pair" components only: two assets joined by one recorded pair, nothing else (most
    of an archive's components), which ``pair_groups`` groups without the general pass. Read from the index and the
    pair rows; no signature is read here, and an asset is looked up only if its class has other members (a pair's
    ends are their classes' heads: alone in their class unless the index lists the class as shared)."""
    pairs = manifest.recorded_pairs(max_distance, SIMILARITY_RULE_VERSION)
    index = VariantIndex.open(manifest)
    several = index.shared_hash_classes()  # classes of several members, or sharing their hashes with another class
    members = index.members(several)
    sha_of = manifest.asset_shas(np.concatenate([*members.values(), np.zeros(0, np.int64)]).tolist())
    shared = [(c, sha_of[i]) for c, ids in members.items() for i in ids.tolist() if i in sha_of]
    ends = [sha for p in pairs for sha in (p[0], p[1])]
    shas = np.array([sha for _, sha in shared] + ends, dtype="S64")  # hex: 64 ASCII bytes, a quarter of str's
    if not shas.size:
        return
    # nodes: the shared classes (several.size of them), then every other asset on its own
    keys, node = np.unique(shas, return_inverse=True)
    node = node.ravel()
    cls_pos = np.searchsorted(several, np.array([c for c, _ in shared], dtype=np.int64))
    own = np.full(keys.size, -1, dtype=np.int64)
    own[node[:len(shared)]] = cls_pos  # an asset of a shared class is its class's node
    alone = own < 0
    own[alone] = several.size + np.arange(int(alone.sum()))
    asset_node = own[node]  # per entry of ``shas``
    end_nodes = asset_node[len(shared):]
    edges = [end_nodes[0::2], end_nodes[1::2]]
    if several.size:  # classes with the same hashes (another grey) are one grouping class
        v = np.concatenate([index.variants("ph", several), index.variants("dh", several)], axis=1)
        _, same = np.unique(v, axis=0, return_inverse=True)
        same = same.ravel()
        firsts = np.full(same.max() + 1, -1, dtype=np.int64)
        firsts[same[::-1]] = np.arange(same.size)[::-1]  # the first class of each set of equal hashes
        edges = [np.concatenate([edges[0], np.arange(several.size)]), np.concatenate([edges[1], firsts[same]])]
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = several.size + int(alone.sum())
    graph = coo_matrix((np.ones(edges[0].size, dtype=np.int8), (edges[0], edges[1])), shape=(n, n))
    count, label = connected_components(graph, directed=False)
    comp = label[own]  # the component of each asset (each of ``keys``)
    row_comp = label[end_nodes[0::2]]
    # pair components: two assets, one row, neither in a shared class
    paired = (np.bincount(comp, minlength=count) == 2) & (np.bincount(row_comp, minlength=count) == 1)
    paired[label[:several.size]] = False
    simple = [p for p, c in zip(pairs, paired[row_comp].tolist(), strict=True) if c]
    step = max(1, batch // 2)
    for lo in range(0, len(simple), step):
        rows = simple[lo:lo + step]
        yield sorted(sha for p in rows for sha in (p[0], p[1])), rows, True
    rest = ~paired[comp]
    keys, comp = keys[rest], comp[rest]
    if not keys.size:
        return
    order = np.argsort(comp, kind="stable")
    comp_sorted = comp[order]
    cuts = np.flatnonzero(np.diff(comp_sorted)) + 1
    rows_of: dict[int, list[PairRow]] = {}
    for p, c in zip(pairs, row_comp.tolist(), strict=True):
        if not paired[c]:
            rows_of.setdefault(c, []).append(p)
    start, bounds = 0, [*cuts.tolist(), order.size]
    for i, hi in enumerate(bounds):  # whole components, until a batch holds ``batch`` assets
        if hi - start >= batch or i == len(bounds) - 1:
            rows = [p for c in np.unique(comp_sorted[start:hi]).tolist() for p in rows_of.get(c, ())]
            yield sorted(k.decode() for k in keys[order[start:hi]].tolist()), rows, False
            start = hi


def pair_groups(assets: Sequence[AssetInfo], rows: Iterable[PairRow], max_distance: int, prefer: Sequence[str],
                pinned: set[str], excluded: set[str], ranks: dict[str, tuple[object, ...]] | None = None
                ) -> list[Group]:
    """``groups_from_pairs`` for components of two assets joined by one recorded pair (``group_batches``' pair
    batches), without the general pass: the better-ranked of the two (pinned first, then ``preference_key``) is
    the canonical and the other joins it, unless that one is pinned too; an excluded asset, or one without a
    signature, is in no group. The matches are measured all at once (``compare_many``). ``ranks`` (optional) gets
    each canonical's rank, the key ``stream_groups`` orders the groups by."""
    usable = {a.sha256: a for a in assets if a.signature is not None and a.sha256 not in excluded}
    formed: list[tuple[AssetInfo, AssetInfo, PairRow]] = []
    out: list[Group] = []
    for r in rows:
        a, b = usable.get(r.a), usable.get(r.b)
        if a is None or b is None:
            continue
        sa, sb = a.signature, b.signature
        assert sa is not None and sb is not None
        if r.a > r.b or (sa.phash, sa.dhash) == (sb.phash, sb.dhash):  # not as recorded: the general pass decides
            out += groups_from_pairs([a, b], [r], max_distance, prefer, pinned, excluded)
            continue
        ka = (a.sha256 not in pinned, *preference_key(a, prefer))
        kb = (b.sha256 not in pinned, *preference_key(b, prefer))
        head, other = (a, b) if ka < kb else (b, a)
        if other.sha256 not in pinned:
            formed.append((head, other, r))
            if ranks is not None:
                ranks[head.sha256] = min(ka, kb)
    found = compare_many([h.signature for h, _, _ in formed], [o.signature for _, o, _ in formed],  # type: ignore[misc]
                         max_distance)
    for (head, other, r), m in zip(formed, found, strict=True):
        if m is None:  # (the rule is symmetric: not expected) as ``match`` in groups_from_pairs
            m = compare(usable[r.a].signature, usable[r.b].signature, max_distance)  # type: ignore[arg-type]
        out.append(Group((Member(head.sha256, None), Member(other.sha256, m))))
    return out


def stream_groups(manifest: Manifest, max_distance: int, prefer: Sequence[str],
                  infos_of: Callable[[list[str]], Sequence[AssetInfo]], pinned: Iterable[str] = (),
                  excluded: Iterable[str] = (), batch: int = GROUP_BATCH) -> list[Group]:
    """``groups_from_pairs`` over ``groupable``'s assets, a batch of whole components at a time
    (``group_batches``; batches of two-asset components by ``pair_groups``): ``infos_of(shas)`` gives the assets of
    a batch with their signatures, dropped once it is grouped, so the signatures held are those of one batch. The same
    groups, in the same order: the greedy pass forms groups in the order of their canonical's rank (pinned first,
    then ``preference_key``), which is how they are put back together."""
    with gc_paused():
        return _stream_groups(manifest, max_distance, prefer, infos_of, set(pinned), set(excluded), batch)


def _stream_groups(manifest: Manifest, max_distance: int, prefer: Sequence[str],
                   infos_of: Callable[[list[str]], Sequence[AssetInfo]], pinned_set: set[str],
                   excluded_set: set[str], batch: int) -> list[Group]:
    out: list[tuple[tuple[object, ...], Group]] = []
    for shas, rows, paired in group_batches(manifest, max_distance, batch):
        infos = infos_of(shas)
        by_sha = {a.sha256: a for a in infos}
        ranks: dict[str, tuple[object, ...]] = {}
        grouped = pair_groups(infos, rows, max_distance, prefer, pinned_set, excluded_set, ranks) if paired else \
            groups_from_pairs(infos, rows, max_distance, prefer, pinned_set, excluded_set)
        for g in grouped:
            rank = ranks.get(g.canonical)
            if rank is None:
                head = by_sha[g.canonical]
                rank = (head.sha256 not in pinned_set, *preference_key(head, prefer))
            out.append((rank, g))
    out.sort(key=lambda x: x[0])
    return [g for _, g in out]


def infos_from_rows(manifest: Manifest, shas: list[str]) -> list[AssetInfo]:
    """The assets of ``shas`` with their signatures (those whose stored signature does not parse: without)."""
    out = []
    for r in manifest.asset_rows_by_sha(shas):
        sig = Signature.from_columns(r.phash_variants, r.dhash_variants, r.grey)
        out.append(AssetInfo(r.sha256, r.format, r.bytes, r.width, r.height, r.first_seen, sig, r.colours,
                             r.chroma, r.content))
    return out
