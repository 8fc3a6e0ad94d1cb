"""Near-duplicate groups without chaining, and the canonical copy of each group.

Candidate pairs, confirmed by ``similarity.compare``, come from ``pairs`` (recorded by the incremental search;
``reference`` computes them from scratch). Groups are built greedily with complete linkage: assets are taken in canonical-preference order (pinned ones first);
an asset not yet in a group starts one as its canonical, and its confirmed neighbours join, closest
first, only if each also passes ``compare`` with EVERY member already in the group. So A~B and B~C
never put A and C together unless A~C passes too. Excluded assets never join or start a group.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from archiver.image.similarity import Match, Signature
from archiver.model import GREY_CHROMA

LOSSLESS_FORMATS = frozenset({"png", "gif", "bmp", "tiff"})
# A palette image using more colours than this is a photo reduced to a palette (a GIF of a photo), not flat art
# drawn in a few colours: its format is lossless, its picture is not.
FLAT_ART_COLOURS = 64


@dataclass(frozen=True)
class AssetInfo:
    """What grouping and the canonical choice need to know about one asset."""

    sha256: str
    format: str
    bytes: int
    width: int | None
    height: int | None
    first_seen: float
    signature: Signature | None  # None: not a raster image (SVG), never grouped
    colours: int | None = None  # palette colours used (0: not a palette image; None: unknown)
    chroma: float | None = None  # mean chroma (below GREY_CHROMA: greyscale; None: unknown)
    content: float | None = None  # the share of the area inside a frame or bars added around it (None: 1.0)

    @property
    def area(self) -> int:
        """The picture's area: an added frame or bars (``content``) do not make a copy larger. Measured inside a
        frame within a pixel or two, a framed copy's picture counts 2 % smaller: it never wins a tie against the same
        picture unframed, only by being larger."""
        whole = (self.width or 0) * (self.height or 0)
        if self.content is None or self.content >= 0.999:
            return whole
        return int(whole * self.content * 0.98)

    @property
    def greyscale(self) -> bool:
        return self.chroma is not None and self.chroma < GREY_CHROMA

    @property
    def quantised(self) -> bool:
        """A colour picture reduced to a palette of more than FLAT_ART_COLOURS colours (a GIF of a photo)."""
        return (self.colours or 0) > FLAT_ART_COLOURS and not self.greyscale

    @property
    def fidelity(self) -> int:
        """The "lossless" criterion: 0 a lossless full-colour (or flat-art palette, or greyscale) image, 1 a photo
        format (JPEG, WebP, ...), 2 a photo quantised to a palette, whatever its format: a lossless format does not
        make a 256-colour GIF of a photo better than the full-colour JPEG it was made from."""
        if self.quantised:
            return 2
        return 0 if self.format in LOSSLESS_FORMATS else 1


@dataclass(frozen=True)
class Member:
    sha256: str
    match: Match | None  # how it matches the canonical; None for the canonical itself


@dataclass(frozen=True)
class Group:
    """A near-duplicate group; ``members[0]`` is the canonical."""

    members: tuple[Member, ...]

    @property
    def canonical(self) -> str:
        return self.members[0].sha256


def preference_key(asset: AssetInfo, prefer: Sequence[str]) -> tuple[object, ...]:
    """Sort key: smaller is the better canonical. Criteria as in ``[dedupe] prefer``; sha256 breaks ties.
    "colour" puts a colour copy before a greyscale one; "lossless" ranks by ``AssetInfo.fidelity``."""
    parts: list[object] = []
    for criterion in prefer:
        if criterion == "colour":
            parts.append(1 if asset.greyscale else 0)
        elif criterion == "area":
            parts.append(-asset.area)
        elif criterion == "lossless":
            parts.append(asset.fidelity)
        elif criterion == "bytes":
            parts.append(-asset.bytes)
        elif criterion == "first_seen":
            parts.append(asset.first_seen)
        else:
            raise ValueError(f"unknown canonical criterion {criterion!r}")
    parts.append(asset.sha256)
    return tuple(parts)


@dataclass(frozen=True)
class Classes:
    """Assets with identical hashes form one class: a cluster of n identical hashes costs O(n), not n² pairs."""

    cls: list[int]  # asset index -> class
    sigs: list[Signature]  # class -> signature
    by_class: dict[int, list[int]]  # class -> asset indexes
    heads: dict[str, int]  # sha256 of each class's first asset -> class


def signature_classes(usable: Sequence[AssetInfo]) -> Classes:
    class_of: dict[tuple[tuple[str, ...], tuple[str, ...]], int] = {}
    cls: list[int] = []
    sigs: list[Signature] = []
    heads: dict[str, int] = {}
    for a in usable:
        sig: Signature = a.signature  # type: ignore[assignment]
        c = class_of.setdefault((sig.phash, sig.dhash), len(sigs))
        if c == len(sigs):
            sigs.append(sig)
            heads[a.sha256] = c
        cls.append(c)
    by_class: dict[int, list[int]] = {}
    for k, c in enumerate(cls):
        by_class.setdefault(c, []).append(k)
    return Classes(cls, sigs, by_class, heads)


def greedy_groups(
    usable: Sequence[AssetInfo],
    classes: Classes,
    near: dict[int, list[tuple[int, int, int]]],
    linked: Callable[[int, int], bool],
    match: Callable[[int, int], Match | None],
    prefer: Sequence[str],
    pinned: set[str],
) -> list[Group]:
    """The complete-linkage pass: the best-ranked unassigned asset heads a group and takes, closest first,
    every unassigned, unpinned asset linked to all members so far (``near``: class -> confirmed neighbours)."""
    cls, by_class = classes.cls, classes.by_class
    rank = sorted(
        range(len(usable)),
        key=lambda k: (usable[k].sha256 not in pinned, preference_key(usable[k], prefer)),
    )
    position = {k: r for r, k in enumerate(rank)}
    assigned: set[int] = set()
    groups: list[Group] = []
    for head in rank:
        if head in assigned:
            continue
        hc = cls[head]
        candidates = [(0, 0, j) for j in by_class[hc] if j != head]
        candidates += [(pd, dd, j) for pd, dd, c in near.get(hc, ()) for j in by_class[c]]
        members, member_classes = [head], {hc}
        for _pd, _dd, j in sorted(candidates, key=lambda n: (n[0], n[1], position[n[2]])):
            if j in assigned or usable[j].sha256 in pinned:
                continue
            if all(linked(c, cls[j]) for c in member_classes):
                members.append(j)
                member_classes.add(cls[j])
        if len(members) > 1:
            assigned.update(members)
            groups.append(Group(tuple(
                Member(usable[k].sha256, None if k == head else match(hc, cls[k])) for k in members
            )))
    return groups


def greedy_class_groups(
    usable: Sequence[AssetInfo],
    classes: Classes,
    near: dict[int, list[tuple[int, int, int]]],
    linked: Callable[[int, int], bool],
    match: Callable[[int, int], Match | None],
    prefer: Sequence[str],
    pinned: set[str],
    match_many: Callable[[list[tuple[int, int]]], list[Match | None]] | None = None,
) -> list[Group]:
    """``greedy_groups`` (the same groups, members in the same order) worked class by class: a class of n
    identical signatures is one step, not n candidates, so a head near a class of ten thousand copies costs O(1),
    not a sort of ten thousand members, however many heads are near it. ``match_many`` (optional) gives the matches
    of many (head class, member class) pairs at once, ``[match(a, b) for a, b in pairs]``, measured once the groups
    are formed.

    Why it is the same: within one head's pass, the candidates of one class share their distances and the
    complete-linkage test (the members so far only grow, and a class is linked to itself), so the first eligible
    member of a class (by rank) passes exactly when every eligible member of that class passes; the members that
    joined are then listed in ``greedy_groups``' order (distances, then rank)."""
    cls, by_class = classes.cls, classes.by_class
    rank = sorted(
        range(len(usable)),
        key=lambda k: (usable[k].sha256 not in pinned, preference_key(usable[k], prefer)),
    )
    position = {k: r for r, k in enumerate(rank)}
    free = {c: sorted((k for k in ks if usable[k].sha256 not in pinned), key=position.__getitem__)
            for c, ks in by_class.items()}  # each class's members that may still join a group, by rank
    assigned: set[int] = set()
    formed: list[list[int]] = []
    for head in rank:
        if head in assigned:
            continue
        hc = cls[head]
        steps = []
        for pd, dd, c in [(0, 0, hc), *near.get(hc, ())]:
            first = next((k for k in free[c] if k != head), None)
            if first is not None:
                steps.append((pd, dd, position[first], c))
        member_classes, joined = {hc}, []
        for pd, dd, _, c in sorted(steps):
            if all(linked(m, c) for m in member_classes):
                member_classes.add(c)
                joined += [(pd, dd, position[k], k) for k in free[c] if k != head]
        if joined:
            members = [head] + [k for *_, k in sorted(joined)]
            assigned.update(members)
            for c in member_classes:
                free[c] = [k for k in free[c] if k not in assigned]
            formed.append(members)
    wanted = list(dict.fromkeys((cls[ks[0]], cls[k]) for ks in formed for k in ks[1:]))
    found = match_many(wanted) if match_many is not None else [match(a, b) for a, b in wanted]
    matches = dict(zip(wanted, found, strict=True))
    return [Group(tuple(Member(usable[k].sha256, None if k == ks[0] else matches[cls[ks[0]], cls[k]]) for k in ks))
            for ks in formed]
