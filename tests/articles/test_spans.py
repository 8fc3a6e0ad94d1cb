"""The span engine (archiver.articles.spans): `restore` and `dedupe --undo` are one engine, and they agree."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.articles.rewrite import Replacement, splice
from archiver.articles.spans import map_span, spans_after, undo
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
