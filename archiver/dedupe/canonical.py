"""Rewriting articles to a near-duplicate group's canonical copy (``dedupe --apply``) and back (``dedupe --undo``).

Rewrites follow the rules of every rewrite: only spans holding one of our own archive URLs are
replaced, the file is written atomically and only if it still holds the bytes we read, and each
replaced span is recorded in the manifest (reason "dedupe") in the same step (archiver.articles.journal) so that
``--undo`` can put the previous URL back. Undo is archiver.articles.spans (the engine `restore` uses): each span dedupe wrote is found in
the article as it is now and restored only if it still holds exactly what dedupe wrote; the rest is reported.
An undo is itself recorded as a generation with reason "dedupe-undo", so apply → undo → apply works.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from archiver.articles.files import load_article
from archiver.articles.journal import sha256, write_recorded
from archiver.articles.rewrite import Replacement, render
from archiver.articles.spans import undo
from archiver.errors import ArticleError, ManifestError
from archiver.find.refs import article_refs
from archiver.manifest.sqlite import Manifest
from archiver.model import ArticleReplacement
from archiver.terminal import shown_path
from archiver.urls import kept_fragment

REASON_APPLY = "dedupe"
REASON_UNDO = "dedupe-undo"

COLLECT_EVERY = 500  # articles parsed between two collections of their cycles (the collector may be paused)


@dataclass
class RewriteResult:
    articles: int = 0  # articles written
    spans: int = 0  # URL spans replaced
    problems: list[str] = field(default_factory=list)  # one line each: "path: reason"
    unrestored: int = 0  # undo: articles left as --apply wrote them (unreadable, or their write failed)
    gone: list[str] = field(default_factory=list)  # undo: applied articles no longer at their path (moved, deleted)


def apply_canonical(
    manifest: Manifest, articles: Iterable[str], mapping: Mapping[str, str], fields: Sequence[str],
    max_refs: int | None = None, reason: str = REASON_APPLY,
) -> RewriteResult:
    """Replace every span that holds a key of ``mapping`` (an archive URL) by its value, in each article (one with
    more than ``max_refs`` references, articles.max_refs, is reported, not scanned)."""
    result = RewriteResult()
    for n, path in enumerate(articles, 1):
        if not os.path.lexists(path):  # deleted since it was archived: nothing uses a copy there
            continue
        if n % COLLECT_EVERY == 0:  # a parse's cycles (~13 objects): `archiver dedupe --apply` runs with Python's
            gc.collect(0)  # cyclic collector paused, so the young objects are collected here (not the plan's)
        try:
            article = load_article(Path(path))
            repls: list[Replacement] = []
            record: list[ArticleReplacement] = []
            for ref in article_refs(article, fields, max_refs):
                span = article.text[ref.start : ref.end]
                new = mapping.get(span)
                if new is None and (fragment := kept_fragment(span)):  # "…/key.jpg#center" keeps its fragment
                    new = mapping.get(span[: span.find("#")])
                    new = None if new is None else new + fragment
                if new is not None and new != span:
                    repls.append(Replacement(ref.start, ref.end, new))
                    record.append(ArticleReplacement(ref.start, ref.end, span, new, span))
            if not repls:
                continue
            write_recorded(manifest, article, render(article, repls), [record], reason, key=path)
        except ArticleError as exc:
            result.problems.append(str(exc))
            continue
        except ManifestError as exc:
            result.problems.append(f"{shown_path(path)}: {exc}")
            continue
        result.articles += 1
        result.spans += len(record)
    return result


def undo_canonical(manifest: Manifest, current: Callable[[str], str] | None = None) -> RewriteResult:
    """Put back the URLs that ``apply_canonical`` replaced, in every article it rewrote and not yet undone
    (``current``: archive URLs as they are now, after `archiver rekey` moved objects; spans.undo)."""
    result = RewriteResult()
    applied = manifest.articles_rewritten_for(REASON_APPLY)
    for path, _before, after in manifest.rewritten_articles():
        if path not in applied:
            continue
        if os.path.lexists(path):
            _undo_article(manifest, path, after, result, current)
        elif _outstanding(manifest.article_generations(path)):  # moved or deleted since: said, its record kept
            result.gone.append(path)
    return result


def _outstanding(gens: list) -> list[int]:  # type: ignore[type-arg]
    """The positions of the apply generations not undone yet (after the last undo)."""
    last_undo = max((i for i, g in enumerate(gens) if g.reason == REASON_UNDO), default=-1)
    return [i for i in range(last_undo + 1, len(gens)) if gens[i].reason == REASON_APPLY]


def _undo_article(manifest: Manifest, path: str, sha_after: str, result: RewriteResult,
                  current: Callable[[str], str] | None = None) -> None:
    gens = manifest.article_generations(path)
    outstanding = _outstanding(gens)
    if not outstanding:
        return
    try:
        article = load_article(Path(path))
    except ArticleError as exc:
        result.problems.append(f"{exc} (not restored)")
        result.unrestored += 1
        return
    done = undo(article.text, [g.replacements for g in gens], outstanding, unchanged=sha_after == sha256(article.raw),
                current=current)
    for p in done.problems:
        result.problems.append(f"{shown_path(path)}: {p.ours} (written by dedupe --apply) is no longer there; "
                               "left as it is")
    if not done.steps:
        return
    # recorded as what they are: one rewrite generation per undone one, from dedupe's URLs back to the previous
    undone = [[ArticleReplacement(r.start, r.end, r.original, r.replacement, r.original) for r in step]
              for _generation, step in done.steps]
    try:
        data = render(replace(article, text=done.text), [])
        write_recorded(manifest, article, data, undone, REASON_UNDO, key=path)
    except ArticleError as exc:
        result.problems.append(f"{exc} (not restored)")
        result.unrestored += 1
        return
    except ManifestError as exc:
        result.problems.append(f"{shown_path(path)}: {exc}")
        result.unrestored += 1
        return
    result.spans += done.restored  # references put back, however many apply generations rewrote them
    result.articles += 1

