"""The span engine (archiver.articles.spans): `restore` and `dedupe --undo` are one engine, and they agree."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.articles.rewrite import Replacement, splice
from archiver.articles.spans import AMBIGUOUS, NO_LONGER_THERE, map_span, spans_after, undo, with_contexts
from archiver.model import ArticleReplacement


def _apply(text: str, spans: list[tuple[int, int]], new: list[str]) -> tuple[str, list[ArticleReplacement]]:
    gen = [ArticleReplacement(a, b, text[a:b], n, text[a:b]) for (a, b), n in zip(spans, new, strict=True)]
    return splice(text, [Replacement(r.start, r.end, r.replacement) for r in gen]), gen


@st.composite
def _histories(draw: st.DrawFn) -> tuple:  # type: ignore[type-arg]
    """An article, a run's rewrite (archive URLs, some repeated), dedupe --apply taking over some of those spans
    with one canonical URL, and maybe an edit by the author afterwards (letters no URL of ours contains)."""
    text = draw(st.text(alphabet="ab \n<>\"'é", min_size=1, max_size=120))
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=10))))
    spans = [(a, b) for a, b in zip(cuts[::2], cuts[1::2], strict=False) if a < b]
    urls = [f"/archive/{draw(st.sampled_from('ABC'))}{'x' * draw(st.integers(0, 5))}.jpg" for _ in spans]
    picks = draw(st.lists(st.booleans(), min_size=len(spans), max_size=len(spans)))
    canonical = draw(st.sampled_from(["/archive/Z.png", "/archive/ZZZZZZZZZZ.png", "/a/Z.png"]))
    edit = draw(st.one_of(st.none(), st.tuples(st.integers(0, 10_000), st.text(alphabet="qk", min_size=1, max_size=9))))
    return text, spans, urls, picks, canonical, edit


@settings(max_examples=400, deadline=None)
@given(_histories())
def test_restore_and_dedupe_undo_agree(case: tuple) -> None:  # type: ignore[type-arg]
    text, spans, urls, picks, canonical, edit = case
    first, run = _apply(text, spans, urls)
    taken = [s for s, pick in zip(spans_after(run), picks, strict=True) if pick]
    second, dedupe = _apply(first, taken, [canonical] * len(taken))
    ours = [p for s, e in spans_after(run) if (p := map_span(s, e, [dedupe]))] + spans_after(dedupe)
    inserted = ""
    if edit is not None:  # the author inserts text somewhere outside every span of ours
        at = edit[0] % (len(second) + 1)
        if all(not a < at < b for a, b in ours):
            second, inserted = second[:at] + edit[1] + second[at:], edit[1]

    restored = undo(second, [run, dedupe])  # `archiver restore`
    undone = undo(second, [run, dedupe], [1])  # `archiver dedupe --undo`: recorded as a generation of its own
    recorded = [ArticleReplacement(r.start, r.end, r.original, r.replacement, r.original)
                for _, step in undone.steps for r in step]
    after = undo(undone.text, [run, dedupe, recorded])  # then `archiver restore`

    assert not restored.problems and not undone.problems and not after.problems
    assert restored.restored == restored.total == len(run)  # references: dedupe rewrites spans of the run's
    assert restored.text.replace(inserted, "", 1) == text  # every span back, the author's edit kept
    assert undone.text.replace(inserted, "", 1) == first  # dedupe's spans back to the run's URLs, nothing else
    assert after.text == restored.text  # the two ways agree


def test_only_the_chosen_generations_are_undone_and_unchanged_text_uses_exact_offsets() -> None:
    text = "a ![](http://o/1.jpg) b ![](http://o/2.jpg)"
    first, run = _apply(text, [(6, 20), (28, 42)], ["/archive/A.jpg", "/archive/A.jpg"])
    second, dedupe = _apply(first, [spans_after(run)[1]], ["/archive/C.png"])
    decoy = second + " /archive/C.png"  # a copy of dedupe's URL pasted by the author
    undone = undo(decoy, [run, dedupe], [1])
    assert undone.text == first + " /archive/C.png" and undone.steps[0][0] == 1
    assert undo(second, [run, dedupe], [1], unchanged=True).text == first


# -- identity, not order: spans holding the same archive URL after an edit ------------------------------------------
@st.composite
def _pieces(draw: st.DrawFn) -> tuple:  # type: ignore[type-arg]
    """An article of gaps and distinct original URLs; the run writes few archive URLs (many spans share one, each
    with its own original), dedupe takes some of them over with one canonical URL; then one occurrence of ours is
    deleted by the author."""
    n = draw(st.integers(2, 7))
    gaps = draw(st.lists(st.text(alphabet="ab \n<>é", max_size=6), min_size=n + 1, max_size=n + 1))
    originals = [f"http://o/{i}.jpg" for i in range(n)]
    urls = [f"/archive/{draw(st.sampled_from('AB'))}.jpg" for _ in range(n)]
    picks = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    deleted = draw(st.integers(0, n - 1))
    whole_line = draw(st.booleans())
    contexts = draw(st.booleans())  # recorded by this archiver, or by one that kept no context
    return gaps, originals, urls, picks, deleted, whole_line, contexts


def _parse(text: str, gaps: list[str], allowed: list[set[str]]) -> bool:
    """Whether ``text`` is gap 0, one of ``allowed[0]``, gap 1, ... (each span holding one of its own strings)."""
    def at(i: int, pos: int) -> bool:
        if not text.startswith(gaps[i], pos):
            return False
        pos += len(gaps[i])
        if i == len(allowed):
            return pos == len(text)
        return any(text.startswith(s, pos) and at(i + 1, pos + len(s)) for s in sorted(allowed[i]))
    return at(0, 0)


@settings(max_examples=500, deadline=None)
@given(_pieces())
def test_deleting_any_one_occurrence_never_gives_a_span_another_ones_original(case: tuple) -> None:  # type: ignore[type-arg]
    gaps, originals, urls, picks, deleted, whole_line, contexts = case
    text, spans = gaps[0], []
    for g, o in zip(gaps[1:], originals, strict=True):
        spans.append((len(text), len(text) + len(o)))
        text += o + g
    first, run = _apply(text, spans, urls)
    taken = [s for s, pick in zip(spans_after(run), picks, strict=True) if pick]
    second, dedupe = _apply(first, taken, ["/archive/Z.png"] * len(taken))
    if contexts:
        run, dedupe = with_contexts(text, [run, dedupe])
    finals = [("/archive/Z.png" if p else u) for u, p in zip(urls, picks, strict=True)]
    # the author deletes one occurrence of ours (or its whole line)
    starts = [s for s, _ in spans_after(run)]
    at = starts[deleted]
    cut_from, cut_to = at, at + len(finals[deleted])
    if whole_line:
        cut_from = second.rfind("\n", 0, at) + 1
        cut_to = len(second) if (e := second.find("\n", cut_to)) < 0 else e + 1
    edited = second[:cut_from] + second[cut_to:]
    # the spans the line held are gone, the gaps around it become one
    gone = {i for i, s in enumerate(starts) if cut_from <= s and s + len(finals[i]) <= cut_to}
    keep = [i for i in range(len(originals)) if i not in gone]
    left_gaps, g = [], 0
    joined = edited
    # rebuild the gaps of the edited text: the text between the spans that are left
    bounds = [(starts[i], starts[i] + len(finals[i])) for i in keep]
    pos_now = [(s - (cut_to - cut_from) if s >= cut_to else s, e - (cut_to - cut_from) if s >= cut_to else e)
               for s, e in bounds]
    for s, e in pos_now:
        left_gaps.append(joined[g:s])
        g = e
    left_gaps.append(joined[g:])

    restored = undo(edited, [run, dedupe])  # `archiver restore`
    undone = undo(edited, [run, dedupe], [1])  # `archiver dedupe --undo`
    recorded = [ArticleReplacement(r.start, r.end, r.original, r.replacement, r.original)
                for _, step in undone.steps for r in step]
    if contexts:
        recorded = with_contexts(undone.text, [recorded])[0]
    # then `archiver restore`: the undo's generation read an edited article (recorded as such)
    # (a span of ours that edit removed without trace is moot then, not a failure)
    after = undo(undone.text, [run, dedupe, *([recorded] if recorded else [])], edited_before=[2] if recorded else [])

    for result, allowed, touched in (
        (restored, [{originals[i], urls[i], finals[i]} for i in keep], True),
        (undone, [{urls[i], finals[i]} for i in keep], picks[deleted]),
        (after, [{originals[i], urls[i], finals[i]} for i in keep], not recorded),
    ):
        assert _parse(result.text, left_gaps, allowed), (result.text, result.problems)
        assert bool(result.problems) >= touched  # the deleted one is reported, at least
    # every reference fully put back is counted, every other one reported
    fully = sum(1 for i in keep if _parse(restored.text, left_gaps,
                                          [{originals[j]} if j == i else {originals[j], urls[j], finals[j]}
                                           for j in keep]))
    assert restored.restored <= fully and restored.restored + len(restored.problems) == restored.total
    if not gone & set(range(len(originals))) - {deleted}:  # only the one occurrence went
        assert {p.reason for p in restored.problems} <= {NO_LONGER_THERE, AMBIGUOUS}


def test_three_near_duplicates_one_line_deleted_undo_never_moves_an_original() -> None:
    """Repro: one, two, three → dedupe writes the canonical into all three; "one" is deleted; undo must not give
    "two" the original of "one", nor touch "three", which dedupe never rewrote."""
    text = "![one](http://o/small.png)\n![two](http://o/small.jpg)\n![three](http://o/big.png)\n"
    spans = [(text.find(u), text.find(u) + len(u)) for u in ("http://o/small.png", "http://o/small.jpg", "http://o/big.png")]
    first, run = _apply(text, spans, ["/archive/S.png", "/archive/J.jpg", "/archive/B.png"])
    taken = spans_after(run)[:2]
    second, dedupe = _apply(first, taken, ["/archive/B.png"] * 2)
    edited = second.replace("![one](/archive/B.png)\n", "", 1)
    for with_context in (True, False):
        gens = with_contexts(text, [run, dedupe]) if with_context else [run, dedupe]
        undone = undo(edited, gens, [1])  # dedupe --undo
        restored = undo(edited, gens)  # restore
        assert "/archive/S.png" not in undone.text and "small.png" not in restored.text  # never the deleted one's
        assert undone.text.endswith("![three](/archive/B.png)\n")  # dedupe never wrote three
        assert restored.text.endswith("![three](http://o/big.png)\n") or restored.text.endswith(
            "![three](/archive/B.png)\n")
        if with_context:  # "two" is told apart by its alt text: restored; "one" is reported as gone
            assert undone.text == "![two](/archive/J.jpg)\n![three](/archive/B.png)\n"
            assert [p.reason for p in undone.problems] == [NO_LONGER_THERE]
            assert restored.text == "![two](http://o/small.jpg)\n![three](http://o/big.png)\n"
            assert [p.reason for p in restored.problems] == [NO_LONGER_THERE]
        else:  # no evidence which occurrence is which: left pointing at the archive, and said so
            assert undone.text == edited and AMBIGUOUS in {p.reason for p in undone.problems}
            assert "small.jpg" not in restored.text and AMBIGUOUS in {p.reason for p in restored.problems}
