"""Rewriting articles to a near-duplicate group's canonical copy (``dedupe --apply``) and back (``dedupe --undo``).

Rewrites follow the rules of every rewrite: only spans holding one of our own archive URLs are
replaced, the file is written atomically and only if it still holds the bytes we read, and each
replaced span is recorded in the manifest (reason "dedupe") so that ``--undo`` can put the previous
URL back. Undo maps each recorded span through the later rewrite generations, then (if the author
edited the file since) realigns our references with the current text, and restores a span only if it
still holds exactly what dedupe wrote; the rest is reported.
An undo is itself recorded as a generation with reason "dedupe-undo", so apply → undo → apply works.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from archiver.articles import load_article
from archiver.errors import ArticleError
from archiver.manifest import ArticleReplacement, Manifest
from archiver.model import Article
from archiver.refs import find_refs
from archiver.rewrite import Replacement, render, splice, write_atomic

REASON_APPLY = "dedupe"
REASON_UNDO = "dedupe-undo"


@dataclass
class RewriteResult:
    articles: int = 0  # articles written
    spans: int = 0  # URL spans replaced
    problems: list[str] = field(default_factory=list)  # one line each: "path: reason"


@dataclass(frozen=True)
class _Generation:
    reason: str
    reps: tuple[ArticleReplacement, ...]


def apply_canonical(
    manifest: Manifest, articles: Iterable[str], mapping: Mapping[str, str], fields: Sequence[str]
) -> RewriteResult:
    """Replace every span that holds a key of ``mapping`` (an archive URL) by its value, in each article."""
    result = RewriteResult()
    for path in articles:
        try:
            article = load_article(Path(path))
            repls: list[Replacement] = []
            record: list[ArticleReplacement] = []
            for ref in find_refs(article.text, article.format, fields):
                span = article.text[ref.start : ref.end]
                new = mapping.get(span)
                if new is not None and new != span:
                    repls.append(Replacement(ref.start, ref.end, new))
                    record.append(ArticleReplacement(ref.start, ref.end, span, new, span))
            if not repls:
                continue
            data = render(article, repls)
            write_atomic(Path(path), data, expected=article.raw)
        except ArticleError as exc:
            result.problems.append(str(exc))
            continue
        manifest.record_article(path, _sha(article.raw), _sha(data), record, reason=REASON_APPLY)
        result.articles += 1
        result.spans += len(record)
    return result


def undo_canonical(manifest: Manifest, fields: Sequence[str]) -> RewriteResult:
    """Put back the URLs that ``apply_canonical`` replaced, in every article it rewrote and not yet undone."""
    result = RewriteResult()
    applied = manifest.articles_rewritten_for(REASON_APPLY)
    for path, _before, after in manifest.rewritten_articles():
        if path in applied:
            _undo_article(manifest, path, after, fields, result)
    return result


def _undo_article(manifest: Manifest, path: str, sha_after: str, fields: Sequence[str], result: RewriteResult) -> None:
    gens = _generations(manifest, path)
    last_undo = max((i for i, g in enumerate(gens) if g.reason == REASON_UNDO), default=-1)
    outstanding = [i for i in range(last_undo + 1, len(gens)) if gens[i].reason == REASON_APPLY]
    if not outstanding:
        return
    try:
        article = load_article(Path(path))
    except ArticleError as exc:
        result.problems.append(f"{exc} (not restored)")
        return
    # where every span we ever wrote is in the text of our last write, then in the text as it is now
    final: dict[tuple[int, int], tuple[int, int] | None] = {}
    written: dict[tuple[int, int], str] = {}
    for k, g in enumerate(gens):
        for n, (rep, (s, e)) in enumerate(zip(g.reps, _spans_after(g.reps), strict=True)):
            final[k, n] = pos = _map_span(s, e, [x.reps for x in gens[k + 1 :]])
            if pos is not None:
                written[pos] = rep.replacement
    now = _realign(article, sha_after, written, fields)
    text = article.text
    later: list[tuple[ArticleReplacement, ...]] = []  # undo steps made in memory, in order
    steps: list[list[ArticleReplacement]] = []
    for i in reversed(outstanding):
        step: list[ArticleReplacement] = []
        for n, rep in enumerate(gens[i].reps):
            pos = final[i, n]
            here = now.get(pos) if pos is not None else None
            mapped = _map_span(*here, later) if here is not None else None
            if mapped is None or text[mapped[0] : mapped[1]] != rep.replacement:
                result.problems.append(
                    f"{path}: {rep.replacement} (written by dedupe --apply) is no longer there; left as it is"
                )
                continue
            step.append(ArticleReplacement(mapped[0], mapped[1], rep.replacement, rep.original, rep.replacement))
        if step:
            text = splice(text, [Replacement(r.start, r.end, r.replacement) for r in step])
            later.append(tuple(step))
            steps.append(step)
    if not steps:
        return
    try:
        data = render(article, [Replacement(0, len(article.text), text)])
        write_atomic(Path(path), data, expected=article.raw)
    except ArticleError as exc:
        result.problems.append(f"{exc} (not restored)")
        return
    for step in steps:
        manifest.record_article(path, _sha(article.raw), _sha(data), step, reason=REASON_UNDO)
        result.spans += len(step)
    result.articles += 1


def _realign(
    article: Article, sha_after: str, written: dict[tuple[int, int], str], fields: Sequence[str]
) -> dict[tuple[int, int], tuple[int, int]]:
    """Spans of our last write -> the same spans in the article now. Unchanged since: the same offsets.
    Edited since: the URL references we wrote are matched, in order, with the references of the same URLs
    found in the current text (a longest-common-subsequence alignment), so edits elsewhere move them
    along and a reference the author removed or changed is simply not found."""
    if sha_after == _sha(article.raw):
        return {pos: pos for pos in written}
    expected = sorted(written)
    ours = set(written.values())
    found = [(r.start, r.end) for r in find_refs(article.text, article.format, fields)
             if article.text[r.start : r.end] in ours]
    matcher = difflib.SequenceMatcher(
        None, [written[p] for p in expected], [article.text[s:e] for s, e in found], autojunk=False
    )
    out: dict[tuple[int, int], tuple[int, int]] = {}
    for a, b, size in matcher.get_matching_blocks():
        for k in range(size):
            out[expected[a + k]] = found[b + k]
    return out


def _generations(manifest: Manifest, path: str) -> list[_Generation]:
    """Every rewrite generation of an article with its reason, oldest first."""
    return [_Generation(reason, tuple(reps)) for reason, reps in manifest.article_generations(path)]


def _spans_after(reps: Sequence[ArticleReplacement]) -> list[tuple[int, int]]:
    """Where each replaced span ended up in the text that generation wrote."""
    out, shift = [], 0
    for r in reps:  # sorted by start
        out.append((r.start + shift, r.start + shift + len(r.replacement)))
        shift += len(r.replacement) - (r.end - r.start)
    return out


def _map_span(start: int, end: int, later: Sequence[Sequence[ArticleReplacement]]) -> tuple[int, int] | None:
    """The span carried through later generations (one replacing exactly this span takes it over); None if
    one of them replaced text inside or across it."""
    for reps in later:
        shift, moved = 0, None
        for r in reps:  # sorted by start
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


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
