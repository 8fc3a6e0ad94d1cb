"""Near duplicates in articles and the manifest: pairs found during `run`, and rewriting articles to a
group's canonical copy (``dedupe --apply``) and back (``dedupe --undo``).

Rewrites follow the rules of every rewrite: only spans holding one of our own archive URLs are
replaced, the file is written atomically and only if it still holds the bytes we read, and each
replaced span is recorded in the manifest (reason "dedupe") so that ``--undo`` can put the previous
URL back. Undo maps each recorded span through the later rewrite generations to the article's
current text, and restores it only if it still holds exactly what dedupe wrote; the rest is reported.
An undo is itself recorded as a generation with reason "dedupe-undo", so apply → undo → apply works.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from archiver.articles import load_article
from archiver.errors import ArticleError
from archiver.manifest import ArticleReplacement, Manifest
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


def undo_canonical(manifest: Manifest) -> RewriteResult:
    """Put back the URLs that ``apply_canonical`` replaced, in every article it rewrote and not yet undone."""
    result = RewriteResult()
    paths = [r[0] for r in manifest._db.execute(
        "SELECT DISTINCT article FROM replacements WHERE reason=? ORDER BY article", (REASON_APPLY,)
    )]
    for path in paths:
        gens = _generations(manifest, path)
        last_undo = max((i for i, g in enumerate(gens) if g.reason == REASON_UNDO), default=-1)
        outstanding = [i for i in range(last_undo + 1, len(gens)) if gens[i].reason == REASON_APPLY]
        if not outstanding:
            continue
        try:
            article = load_article(Path(path))
        except ArticleError as exc:
            result.problems.append(f"{exc} (not restored)")
            continue
        text = article.text
        later: list[tuple[ArticleReplacement, ...]] = []  # undo steps made in memory, in order
        steps: list[list[ArticleReplacement]] = []
        for i in reversed(outstanding):
            after = [g.reps for g in gens[i + 1 :]] + later
            step: list[ArticleReplacement] = []
            for rep, (s, e) in zip(gens[i].reps, _spans_after(gens[i].reps), strict=True):
                mapped = _map_span(s, e, after)
                if mapped is None or text[mapped[0] : mapped[1]] != rep.replacement:
                    line = text.count("\n", 0, mapped[0] if mapped else 0) + 1
                    result.problems.append(
                        f"{path}:{line}: {rep.replacement} was changed since dedupe wrote it; left as it is"
                    )
                    continue
                step.append(ArticleReplacement(mapped[0], mapped[1], rep.replacement, rep.original, rep.replacement))
            if step:
                text = splice(text, [Replacement(r.start, r.end, r.replacement) for r in step])
                later.append(tuple(step))
                steps.append(step)
        if not steps:
            continue
        try:
            data = render(article, [Replacement(0, len(article.text), text)])
            write_atomic(Path(path), data, expected=article.raw)
        except ArticleError as exc:
            result.problems.append(f"{exc} (not restored)")
            continue
        before = _sha(article.raw)
        for step in steps:
            manifest.record_article(path, before, _sha(data), step, reason=REASON_UNDO)
            result.spans += len(step)
        result.articles += 1
    return result


def _generations(manifest: Manifest, path: str) -> list[_Generation]:
    """Every rewrite generation of an article with its reason, oldest first (Manifest.article_replacements
    leaves the reason out)."""
    gens: dict[int, tuple[str, list[ArticleReplacement]]] = {}
    for seq, reason, *rest in manifest._db.execute(
        "SELECT seq, reason, start, end, original, replacement, url FROM replacements WHERE article=? "
        "ORDER BY seq, start",
        (path,),
    ):
        gens.setdefault(seq, (reason, []))[1].append(ArticleReplacement(*rest))
    return [_Generation(r, tuple(reps)) for r, reps in (gens[k] for k in sorted(gens))]


def _spans_after(reps: Sequence[ArticleReplacement]) -> list[tuple[int, int]]:
    """Where each replaced span ended up in the text that generation wrote."""
    out, shift = [], 0
    for r in reps:  # sorted by start
        out.append((r.start + shift, r.start + shift + len(r.replacement)))
        shift += len(r.replacement) - (r.end - r.start)
    return out


def _map_span(start: int, end: int, later: Sequence[Sequence[ArticleReplacement]]) -> tuple[int, int] | None:
    """The span carried through later generations; None if one of them replaced text inside or across it."""
    for reps in later:
        shift = 0
        for r in reps:
            if r.end <= start:
                shift += len(r.replacement) - (r.end - r.start)
            elif r.start < end:
                return None
        start, end = start + shift, end + shift
    return start, end


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def near_duplicate_pairs(
    rows: Sequence[tuple[str, str, str]], new: Iterable[str], max_distance: int
) -> list[tuple[str, str, int, int]]:
    """Pairs (a, b, phash distance, dhash distance) between each ``new`` asset and every asset in ``rows``.

    ``rows`` are (sha256, phash hex, dhash hex). A pair needs both signals: pHash within
    ``max_distance`` and dHash within ``max_distance + 4`` (dHash is the independent check that keeps
    distinct photos with a chance pHash match apart). This is a linear scan per new asset, fine for
    the tens of thousands of assets one run adds; grouping a whole library at scale is `dedupe`'s job.
    """
    if not rows:
        return []
    shas = [r[0] for r in rows]
    index = {sha: i for i, sha in enumerate(shas)}
    ph = np.array([int(r[1], 16) for r in rows], dtype=np.uint64)
    dh = np.array([int(r[2], 16) for r in rows], dtype=np.uint64)
    pairs: dict[tuple[str, str], tuple[int, int]] = {}
    for sha in new:
        i = index.get(sha)
        if i is None:
            continue
        pd = np.bitwise_count(ph ^ ph[i])
        dd = np.bitwise_count(dh ^ dh[i])
        for j in np.nonzero((pd <= max_distance) & (dd <= max_distance + 4))[0]:
            if j == i:
                continue
            a, b = sorted((sha, shas[j]))
            pairs[(a, b)] = (int(pd[j]), int(dd[j]))
    return [(a, b, p, d) for (a, b), (p, d) in sorted(pairs.items())]
