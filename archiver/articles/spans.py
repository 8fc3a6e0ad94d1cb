"""Where the spans our rewrites replaced are now, and putting back what they held: the one engine behind
`archiver restore` (every generation) and `archiver dedupe --undo` (the generations dedupe wrote).

An article's rewrite generations are recorded oldest first, each as the spans it replaced in the text it read
(``ArticleReplacement``: start, end, what was there, what we wrote). Undoing some of them takes three steps:

The chosen generations are undone newest first, each on the text the newer ones left:

1. its spans, and every other span of ours as a landmark, are carried to that text (``spans_after`` gives where a
   span ended up in its own generation's text, ``map_span`` carries it through the newer generations that stay;
   one that replaced exactly that span takes it over, one that cut into it loses it);
2. those positions are found in the text (``locate``): unchanged since our last write, they are exact; edited
   since, spans are aligned with the occurrences of what we wrote the way a diff aligns two texts, so a copy of the
   same URL pasted elsewhere is never taken for ours, and a span the author removed is reported, not taken from
   the next copy;
3. a span is restored only if the text still holds exactly what that generation wrote; everything else is
   reported with its line and left as it is.

Counts are of references, not of spans: a span that replaces exactly what an older generation wrote there (dedupe
rewriting an archive URL, its undo rewriting it back) continues that reference (``references``), so an article
with two image references restores "2 of 2" however many generations rewrote them, and a reference that cannot be
put back is reported once.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from archiver.articles.rewrite import Replacement, splice
from archiver.find.markdown import line_starts
from archiver.model import ArticleReplacement

SECRET_KEPT_NOT = "the original URL held a secret (credentials, a token or a signature), which the manifest does not keep"
NO_LONGER_THERE = "no longer there (edited since); left as is"
ADDED_EDITED = "added by [rewrite] responsive and edited since; left as is"


@dataclass(frozen=True)
class Unrestored:
    """A recorded span that could not be put back; ``line`` is 1-based in the article as it is now."""

    line: int
    ours: str  # the URL we wrote there
    original: str  # what was there before, as the manifest shows it (a URL with secrets is redacted)
    reason: str
    generation: int = 0


@dataclass
class Undone:
    text: str
    restored: int = 0  # references whose oldest undone span was put back
    total: int = 0  # references the undone generations made (a span continuing an older one's is not a new one)
    problems: list[Unrestored] = field(default_factory=list)  # one per reference not put back
    # per undone generation, newest first: (generation, the replacements made, in the text each was applied to)
    steps: list[tuple[int, list[ArticleReplacement]]] = field(default_factory=list)


def inserted(r: ArticleReplacement) -> bool:
    """Whether the span is an insertion of ours (text added where there was none: responsive attributes), not a URL."""
    return r.start == r.end and not r.original


def spans_after(reps: Sequence[ArticleReplacement]) -> list[tuple[int, int]]:
    """Where each replaced span (sorted by start) ended up in the text that generation wrote."""
    out, shift = [], 0
    for r in reps:
        out.append((r.start + shift, r.start + shift + len(r.replacement)))
        shift += len(r.replacement) - (r.end - r.start)
    return out


def map_span(start: int, end: int, later: Sequence[Sequence[ArticleReplacement]]) -> tuple[int, int] | None:
    """The span carried through ``later`` generations (each sorted by start; one replacing exactly this span
    takes it over); None if one of them replaced text inside or across it."""
    for reps in later:
        shift, moved = 0, None
        for r in reps:
            if r.end <= start:
                shift += len(r.replacement) - (r.end - r.start)
            elif r.start == start and r.end == end:
                moved = (start + shift, start + shift + len(r.replacement))
                break
            elif r.start < end:
                return None
            else:
                break
        start, end = moved or (start + shift, end + shift)
    return start, end


def references(gens: Sequence[Sequence[ArticleReplacement]], chosen: Collection[int]) -> dict[tuple[int, int], int]:
    """The reference each span ``(generation, index)`` of the ``chosen`` generations (each sorted by start) belongs
    to: a span that replaces exactly what an older chosen generation wrote there continues its reference (through
    generations between them, chosen or not); any other span starts a new one. References are numbered from 0."""
    ref_of: dict[tuple[int, int], int] = {}
    live: dict[tuple[int, int], int] = {}  # where each reference is in the text the generations so far wrote
    for m, reps in enumerate(gens):
        taken = {(r.start, r.end) for r in reps}
        carried: dict[tuple[int, int], int] = {}
        for (s, e), rid in live.items():
            if (s, e) not in taken and (moved := map_span(s, e, [reps])) is not None:
                carried[moved] = rid
        for n, (r, out) in enumerate(zip(reps, spans_after(reps), strict=True)):
            rid = live.get((r.start, r.end))
            if m in chosen:
                rid = len(set(ref_of.values())) if rid is None else rid
                ref_of[m, n] = rid
            if rid is not None:
                carried[out] = rid
        live = carried
    return ref_of


def locate(text: str, written: Sequence[tuple[int, str]], unchanged: bool) -> list[int | None]:
    """Where each of our spans (``written``: its start in the text of our last write and what it holds there,
    sorted by start) is in ``text`` now; None for one that is gone. ``unchanged``: the article is byte for byte
    what we last wrote, so the recorded offsets are exact.

    Edited since, the way a diff aligns two texts: spans whose string occurs once among ours and once in the text
    are anchors (the longest run of them in order); between two anchors, a user edit has moved the text by the
    left anchor's offset, then by the right one's, so each span is taken where one of those offsets puts it
    exactly, else at the nearest occurrence, unless that occurrence is exactly where a later span of the same
    string belongs (then this span was removed). A copy of our URL pasted elsewhere is never taken for ours while
    the recorded offsets hold, and a removed span is reported, not taken from the next copy."""
    if unchanged:
        return [pos if text.startswith(w, pos) else None for pos, w in written]
    counts: dict[str, int] = {}
    for _, w in written:
        counts[w] = counts.get(w, 0) + 1
    anchors = _anchors(text, written, counts)
    found: list[int | None] = [None] * len(written)
    for i, at in anchors:
        found[i] = at
    drift, cursor, first = 0, 0, 0
    for a, at in [*anchors, (len(written), len(text))]:
        right = at - written[a][0] if a < len(written) else drift
        _fill_gap(text, written, first, a, cursor, at, (drift, right), found)
        if a < len(written):
            drift, cursor, first = right, at + len(written[a][1]), a + 1
    return found


def _anchors(text: str, written: Sequence[tuple[int, str]], counts: dict[str, int]) -> list[tuple[int, int]]:
    """(span, position now) of the spans whose string is unique among ours and in the text, the longest
    subsequence of them that is in order in both."""
    unique: list[tuple[int, int]] = []
    for i, (_, w) in enumerate(written):
        if counts[w] == 1:
            at = text.find(w)
            if at >= 0 and text.find(w, at + 1) < 0:
                unique.append((i, at))
    # longest increasing subsequence by position (spans are already in order)
    tails: list[int] = []  # tails[k]: index into unique of the smallest last position of a run of length k + 1
    tail_at: list[int] = []  # their positions
    back: list[int] = [-1] * len(unique)
    for u, (_, at) in enumerate(unique):
        k = bisect.bisect_left(tail_at, at)
        back[u] = tails[k - 1] if k else -1
        if k == len(tails):
            tails.append(u)
            tail_at.append(at)
        else:
            tails[k] = u
            tail_at[k] = at
    out: list[tuple[int, int]] = []
    u = tails[-1] if tails else -1
    while u >= 0:
        out.append(unique[u])
        u = back[u]
    return out[::-1]


def _fill_gap(text: str, written: Sequence[tuple[int, str]], first: int, stop: int, cursor: int, limit: int,
              drifts: tuple[int, int], found: list[int | None]) -> None:
    """Spans ``first`` to ``stop`` (exclusive), between ``cursor`` and ``limit`` in ``text``; ``drifts``: how far
    the text had moved at the anchor before them and at the one after."""
    drift, right = drifts
    # where the later spans of the gap belong if the right anchor's offset holds (what each occurrence is claimed by)
    claimed = Counter((w, pos + right) for pos, w in written[first:stop])
    next_same: dict[int, int] = {}
    last: dict[str, int] = {}
    for i in range(stop - 1, first - 1, -1):
        if written[i][1] in last:
            next_same[i] = last[written[i][1]]
        last[written[i][1]] = i
    for i in range(first, stop):
        pos, w = written[i]
        claimed[w, pos + right] -= 1
        at: int | None = None
        for d in (drift, right):
            if cursor <= pos + d and pos + d + len(w) <= limit and text.startswith(w, pos + d):
                at = pos + d
                break
        if at is None:
            at = _find(text, w, pos + drift, cursor)
            j = next_same.get(i)
            if at is not None and at + len(w) > limit:
                at = None  # past the next anchor
            elif at is not None and (claimed[w, at] > 0 or (j is not None and at == written[j][0] + drift)):
                # exactly where a later span of ours belongs: this one was removed, unless taking it here lets as
                # many of the spans after it match (an edit before both moved them all: more spans found so)
                taken = 1 + _matching(text, written, i + 1, stop, at - pos, limit)
                left = max(_matching(text, written, i + 1, stop, d, limit) for d in (drift, right))
                if taken <= left:
                    at = None
        if at is not None:
            found[i] = at
            drift, cursor = at - pos, at + len(w)


def _matching(text: str, written: Sequence[tuple[int, str]], first: int, stop: int, drift: int, limit: int,
              ahead: int = 16) -> int:
    """How many of the next ``ahead`` spans from ``first`` are exactly where ``drift`` puts them."""
    return sum(1 for pos, w in written[first : min(stop, first + ahead)]
               if pos + drift >= 0 and pos + drift + len(w) <= limit and text.startswith(w, pos + drift))


def _find(text: str, needle: str, want: int, cursor: int) -> int | None:
    """The occurrence of ``needle`` at or after ``cursor`` nearest to ``want``."""
    if want >= cursor and text.startswith(needle, want):
        return want
    after = text.find(needle, max(cursor, want))
    before = text.rfind(needle, cursor, want + len(needle) - 1) if want > cursor else -1
    candidates = [p for p in (before, after) if p >= 0]
    return min(candidates, key=lambda p: abs(p - want)) if candidates else None


def undo(
    text: str,
    generations: Sequence[Sequence[ArticleReplacement]],
    which: Collection[int] | None = None,
    *,
    unchanged: bool = False,
    current: Callable[[str], str] | None = None,
) -> Undone:
    """``text`` with the generations ``which`` (default: all) undone, newest first; the others stay.

    ``unchanged``: ``text`` is exactly what our last rewrite wrote (its hash matches the manifest's). Each chosen
    generation is undone on the text as the newer ones left it: its spans, and every other span of ours as
    landmarks, are carried to where they are in that text (through the newer generations that stay) and found
    there (``locate``), so an edit the author made between two of our rewrites only shifts the search.

    ``current``: an archive URL as it is now (`archiver rekey` moved its object to another key and re-pointed the
    article: what a generation wrote is found under its new URL, and what it put back is the new URL too, never the
    URL of a deleted object)."""
    now_url = current or (lambda url: url)
    gens = [sorted(g, key=lambda r: (r.start, r.end)) for g in generations]
    chosen = sorted(set(range(len(gens))) if which is None else set(which), reverse=True)
    ref_of = references(gens, chosen)
    oldest: dict[int, tuple[int, int]] = {}  # reference -> its span in the oldest chosen generation
    for span, rid in sorted(ref_of.items(), reverse=True):
        oldest[rid] = span
    # what we inserted (attributes, [rewrite] responsive) is removed like any span, but is not an image reference
    oldest = {rid: (m, n) for rid, (m, n) in oldest.items() if not inserted(gens[m][n])}
    put_back: set[tuple[int, int]] = set()
    reported: set[int] = set()
    result = Undone(text, total=len(oldest))
    exact = unchanged
    for k in chosen:
        # the text as it should be now: generations up to k, and the newer ones that stay
        seq = [m for m in range(len(gens)) if m <= k or m not in chosen]
        holds: dict[int, str] = {}  # start -> what is written there (a newer generation may have taken it over)
        mine: list[tuple[int, int] | None] = []
        for x, m in enumerate(seq):
            later = [gens[y] for y in seq[x + 1 :]]
            for n, (s, e) in enumerate(spans_after(gens[m])):
                pos = map_span(s, e, later)
                if m == k:
                    mine.append(pos)
                if pos is not None:
                    holds[pos[0]] = now_url(gens[m][n].replacement)
        written = sorted(holds.items())
        now = dict(zip((p for p, _ in written), locate(result.text, written, exact), strict=True))
        exact = False
        starts = line_starts(result.text)
        step: list[ArticleReplacement] = []
        for n, (rep, pos) in enumerate(zip(gens[k], mine, strict=True)):
            rid = ref_of[k, n]
            here = now.get(pos[0]) if pos is not None else None
            problem: Unrestored | None = None
            wrote = now_url(rep.replacement)
            if here is None or pos is None or result.text[here : here + len(wrote)] != wrote:
                guess = here if here is not None else _guess(pos, now, written)
                if inserted(rep):
                    problem = Unrestored(_line(starts, guess, result.text), rep.replacement.strip(), "nothing",
                                         ADDED_EDITED, k)
                else:
                    problem = Unrestored(_line(starts, guess, result.text), rep.replacement, _shown(rep),
                                         NO_LONGER_THERE, k)
            elif not rep.original and rep.end > rep.start:
                problem = Unrestored(_line(starts, here, result.text), rep.replacement, _shown(rep),
                                     SECRET_KEPT_NOT + "; left as is", k)
            else:
                step.append(ArticleReplacement(here, here + len(wrote), wrote, now_url(rep.original), rep.url))
                put_back.add((k, n))
            if problem is not None and rid not in reported:  # a reference is reported once, at its newest span
                reported.add(rid)
                result.problems.append(problem)
        if step:
            result.text = splice(result.text, [Replacement(r.start, r.end, r.replacement) for r in step])
            result.steps.append((k, step))
    result.restored = sum(1 for span in oldest.values() if span in put_back)
    return result


def _guess(pos: tuple[int, int] | None, now: dict[int, int | None], written: Sequence[tuple[int, str]]) -> int:
    """Where a span not found would be now: shifted like the nearest span before it that was found (else the
    nearest after it, by its end, since that shift also counts this span's own edit)."""
    if pos is None:
        return 0
    starts = [p for p, _ in written]
    i = bisect.bisect_left(starts, pos[0])
    for j in range(i - 1, -1, -1):
        at = now.get(starts[j])
        if at is not None:
            return pos[0] + at - starts[j]
    for j in range(i + 1, len(starts)):
        at = now.get(starts[j])
        if at is not None:
            return pos[1] - 1 + at - starts[j]
    return pos[0]


def _line(starts: list[int], offset: int, text: str) -> int:
    return bisect.bisect_right(starts, min(max(offset, 0), len(text)))


def _shown(r: ArticleReplacement) -> str:
    """The original as a report may show it: as written, or the manifest's redacted URL when it held a secret."""
    return r.original or r.url.split("#sha256=", 1)[0]
