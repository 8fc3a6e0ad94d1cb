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
import hashlib
from collections import Counter
from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass, field, replace

from archiver.articles.rewrite import Replacement, splice
from archiver.find.markdown import line_starts
from archiver.model import ArticleReplacement

SECRET_KEPT_NOT = "the original URL held a secret (credentials, a token or a signature), which the manifest does not keep"
NO_LONGER_THERE = "no longer there (edited since); left as is"
ADDED_EDITED = "added by [rewrite] responsive and edited since; left as is"
AMBIGUOUS = "ambiguous after an edit; left pointing at the archive"
CONTEXT_CAP = 80  # characters of context kept (as a digest) on each side of a span, within its line


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


# -- identity evidence --------------------------------------------------------------------------
def _digest(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def span_context(text: str, start: int, end: int, prev_end: int = 0, next_start: int | None = None) -> str:
    """The text around ``text[start:end]`` (within its line, not past the neighbouring spans ``prev_end`` and
    ``next_start``, at most ``CONTEXT_CAP`` characters a side), as "length:digest:length:digest": what tells one
    copy of an archive URL from another once an edit has moved them (the alt text, the attribute, the key)."""
    left_from = max(text.rfind("\n", 0, start) + 1, prev_end, start - CONTEXT_CAP)
    line_end = text.find("\n", end)
    right_to = min(len(text) if line_end < 0 else line_end, len(text) if next_start is None else next_start,
                   end + CONTEXT_CAP)
    left, right = text[left_from:start], text[end:max(end, right_to)]
    return f"{len(left)}:{_digest(left)}:{len(right)}:{_digest(right)}"


def context_holds(text: str, at: int, written: str, context: str) -> bool:
    """Whether the text around ``written`` at ``at`` is what ``span_context`` recorded."""
    try:
        left_n, left, right_n, right = context.split(":")
        ln, rn = int(left_n), int(right_n)
    except ValueError:
        return False
    end = at + len(written)
    return (at - ln >= 0 and end + rn <= len(text) and _digest(text[at - ln : at]) == left
            and _digest(text[end : end + rn]) == right)


def with_contexts(text: str, generations: Sequence[Sequence[ArticleReplacement]]) -> list[list[ArticleReplacement]]:
    """The ``generations`` (each in the text the one before left, the first in ``text``) with each span's
    ``context`` in the text its generation wrote: what undo uses to tell spans holding the same URL apart."""
    out: list[list[ArticleReplacement]] = []
    for gen in generations:
        reps = sorted(gen, key=lambda r: (r.start, r.end))
        text = splice(text, [Replacement(r.start, r.end, r.replacement) for r in reps])
        where = spans_after(reps)
        out.append([replace(r, context=span_context(text, s, e, where[n - 1][1] if n else 0,
                                                    where[n + 1][0] if n + 1 < len(where) else None))
                    for n, (r, (s, e)) in enumerate(zip(reps, where, strict=True))])
    return out


def locate(text: str, written: Sequence[tuple[int, str]], unchanged: bool) -> list[int | None]:
    """``locate_spans`` without identity evidence: every span with the same string is interchangeable."""
    return locate_spans(text, written, unchanged)[0]


def locate_spans(
    text: str, written: Sequence[tuple[int, str]], unchanged: bool,
    contexts: Sequence[str] | None = None, keys: Sequence[Hashable] | None = None, eras: Sequence[int] | None = None,
) -> tuple[list[int | None], set[int]]:
    """Where each of our spans is in ``text`` now (``_locate_by_offsets``), and the spans left unattributed
    because the evidence does not tell which occurrence is theirs (the ambiguous ones).

    ``keys``: spans with the same string and the same key are interchangeable (putting back one for the other
    writes the same text); by default all spans with the same string are. Where spans with the same string are not
    interchangeable, an occurrence is attributed only with identity evidence (``_attribute``), never by order
    alone once the occurrences no longer match the spans one to one. ``eras``: spans of different eras were
    recorded on either side of an edit made outside archiver, so their recorded offsets do not order them."""
    found = _locate_by_offsets(text, written, unchanged)
    if unchanged:
        return found, set()
    groups: dict[str, list[int]] = {}
    for i, (_, w) in enumerate(written):
        groups.setdefault(w, []).append(i)
    anchors = [at - written[i][0] for i, at in _anchors(text, written, {w: len(ix) for w, ix in groups.items()})]
    ambiguous: set[int] = set()
    for w, idx in groups.items():
        if len(idx) < 2 or keys is None or len({keys[i] for i in idx}) == 1:
            continue
        pairs, unsure = _attribute(text, w, [written[i][0] for i in idx],
                                   [contexts[i] if contexts else "" for i in idx], anchors,
                                   [eras[i] if eras else 0 for i in idx])
        for n, i in enumerate(idx):
            found[i] = pairs.get(n)
        ambiguous |= {idx[n] for n in unsure}
    return found, ambiguous


def _occurrences(text: str, w: str) -> list[int]:
    out, at = [], text.find(w)
    while at >= 0:
        out.append(at)
        at = text.find(w, at + 1)
    return out


def _attribute(text: str, w: str, starts: Sequence[int], contexts: Sequence[str],
               shifts: Sequence[int], eras: Sequence[int]) -> tuple[dict[int, int], set[int]]:
    """Which occurrence of ``w`` in ``text`` each span (recorded at ``starts``, sorted) is: (span -> position, the
    spans that are there but cannot be told apart). Evidence, strongest first:

    1. its context (``span_context``) holds at exactly one occurrence, and no other span's context holds there;
    2. between two spans so attributed (or the ends of the text), the recorded offsets shifted by one of the
       edits' shifts (0 at the start of the text, an attributed span's, a unique URL's: ``shifts``) put every
       remaining span exactly on an occurrence, and only one such shift does;
    3. there, as many occurrences as spans: one to one, in order.

    2 and 3 only among spans of one era (their recorded offsets are comparable). Otherwise the spans there are
    ambiguous (if an occurrence is left for them) or gone (if none is)."""
    occ = _occurrences(text, w)
    holds = [[o for o in occ if ctx and context_holds(text, o, w, ctx)] for ctx in contexts]
    claimed = Counter(o for hs in holds for o in hs)
    pairs = {n: hs[0] for n, hs in enumerate(holds) if len(hs) == 1 and claimed[hs[0]] == 1}
    ordered = sorted(pairs.items())
    if any(a[1] >= b[1] for a, b in zip(ordered, ordered[1:], strict=False)):  # moved about: only identity holds
        rest = [n for n in range(len(starts)) if n not in pairs]
        return pairs, (set(rest) if len(occ) > len(pairs) else set())
    unsure: set[int] = set()
    bounds = [(-1, -1), *ordered, (len(starts), len(text) + 1)]
    for (n0, o0), (n1, o1) in zip(bounds, bounds[1:], strict=False):
        spans = list(range(n0 + 1, n1))
        free = [o for o in occ if o0 < o < o1 and o + len(w) <= len(text)]
        if not spans or not free:
            continue
        if len({eras[n] for n in spans}) > 1:
            unsure.update(spans)
            continue
        near = {0} | set(shifts) | {o - starts[n] for n, o in ordered}
        fits = [d for d in sorted(near) if all(starts[n] + d in free for n in spans)]
        if len({tuple(starts[n] + d for n in spans) for d in fits}) == 1:
            pairs.update((n, starts[n] + fits[0]) for n in spans)
        elif len(spans) == len(free):
            pairs.update(zip(spans, free, strict=True))
        else:
            unsure.update(spans)
    return pairs, unsure


def _locate_by_offsets(text: str, written: Sequence[tuple[int, str]], unchanged: bool) -> list[int | None]:
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
    edited_before: Collection[int] = (),
) -> Undone:
    """``text`` with the generations ``which`` (default: all) undone, newest first; the others stay.

    ``unchanged``: ``text`` is exactly what our last rewrite wrote (its hash matches the manifest's). Each chosen
    generation is undone on the text as the newer ones left it: its spans, and every other span of ours as
    landmarks, are carried to where they are in that text (through the newer generations that stay) and found
    there (``locate_spans``), so an edit the author made between two of our rewrites only shifts the search.

    ``edited_before``: the generations whose rewrite read an article edited outside archiver since the previous
    one (``Generation.edited_before``); a span older than one of them that is not found and of which the text holds
    no trace (no occurrence of what it wrote that is not another span's) was undone by that edit: it is moot, not
    reported and not counted."""
    gens = [sorted(g, key=lambda r: (r.start, r.end)) for g in generations]
    chosen = sorted(set(range(len(gens))) if which is None else set(which), reverse=True)
    ref_of = references(gens, chosen)
    oldest: dict[int, tuple[int, int]] = {}  # reference -> its span in the oldest chosen generation
    for span, rid in sorted(ref_of.items(), reverse=True):
        oldest[rid] = span
    # what we inserted (attributes, [rewrite] responsive) is removed like any span, but is not an image reference
    oldest_span = dict(oldest)
    oldest = {rid: (m, n) for rid, (m, n) in oldest.items() if not inserted(gens[m][n])}
    put_back: set[tuple[int, int]] = set()
    reported: set[int] = set()
    moot: set[int] = set()  # references an edit outside archiver undid before a newer rewrite of ours
    result = Undone(text, total=len(oldest))
    exact = unchanged
    for k in chosen:
        # the text as it should be now: generations up to k, and the newer ones that stay
        seq = [m for m in range(len(gens)) if m <= k or m not in chosen]
        holds: dict[int, str] = {}  # start -> what is written there (a newer generation may have taken it over)
        context: dict[int, str] = {}  # start -> the context its writer recorded
        era: dict[int, int] = {}  # start -> how many edits outside archiver came before its writer
        key: dict[int, Hashable] = {}  # start -> what undoing it writes (a landmark's: nothing, in this step)
        mine: list[tuple[int, int] | None] = []
        for x, m in enumerate(seq):
            later = [gens[y] for y in seq[x + 1 :]]
            for n, (s, e) in enumerate(spans_after(gens[m])):
                pos = map_span(s, e, later)
                if m == k:
                    mine.append(pos)
                if pos is not None:
                    holds[pos[0]] = gens[m][n].replacement
                    context[pos[0]] = gens[m][n].context
                    era[pos[0]] = sum(1 for j in edited_before if j <= m)
                    # spans of this step are interchangeable only if putting them back writes the same, now and
                    # when the older generations of their references are undone
                    first = oldest_span.get(ref_of[m, n]) if (m, n) in ref_of else None
                    key[pos[0]] = (("undo", gens[m][n].original, gens[first[0]][first[1]].original if first else "")
                                   if m == k else ("landmark",))
        written = sorted(holds.items())
        found, unsure = locate_spans(result.text, written, exact, [context[p] for p, _ in written],
                                     [key[p] for p, _ in written], [era[p] for p, _ in written])
        now = dict(zip((p for p, _ in written), found, strict=True))
        ambiguous = {written[i][0] for i in unsure}
        moot_possible = any(j > k for j in edited_before)
        exact = False
        starts = line_starts(result.text)
        step: list[ArticleReplacement] = []
        for n, (rep, pos) in enumerate(zip(gens[k], mine, strict=True)):
            rid = ref_of[k, n]
            here = now.get(pos[0]) if pos is not None else None
            problem: Unrestored | None = None
            if here is None or pos is None or result.text[here : here + pos[1] - pos[0]] != rep.replacement:
                guess = here if here is not None else _guess(pos, now, written)
                if pos is not None and pos[0] in ambiguous:
                    problem = Unrestored(_line(starts, guess, result.text), rep.replacement, _shown(rep), AMBIGUOUS, k)
                elif moot_possible and here is None and not _traced(result.text, rep.replacement, now, holds):
                    moot.add(rid)
                    reported.add(rid)
                elif inserted(rep):
                    problem = Unrestored(_line(starts, guess, result.text), rep.replacement.strip(), "nothing",
                                         ADDED_EDITED, k)
                else:
                    problem = Unrestored(_line(starts, guess, result.text), rep.replacement, _shown(rep),
                                         NO_LONGER_THERE, k)
            elif not rep.original and rep.end > rep.start:
                problem = Unrestored(_line(starts, here, result.text), rep.replacement, _shown(rep),
                                     SECRET_KEPT_NOT + "; left as is", k)
            else:
                step.append(ArticleReplacement(here, here + len(rep.replacement), rep.replacement, rep.original,
                                               rep.url))
                put_back.add((k, n))
            if problem is not None and rid not in reported:  # a reference is reported once, at its newest span
                reported.add(rid)
                result.problems.append(problem)
        if step:
            result.text = splice(result.text, [Replacement(r.start, r.end, r.replacement) for r in step])
            result.steps.append((k, step))
    result.restored = sum(1 for span in oldest.values() if span in put_back)
    result.total -= sum(1 for rid, span in oldest.items() if rid in moot and span not in put_back)
    return result


def _traced(text: str, written: str, now: dict[int, int | None], holds: dict[int, str]) -> bool:
    """Whether ``text`` holds an occurrence of ``written`` that is not one of our other spans found there."""
    others = sum(1 for p, at in now.items() if at is not None and holds[p] == written)
    return len(_occurrences(text, written)) > others


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
