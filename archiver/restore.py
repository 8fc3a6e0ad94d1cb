"""`archiver restore`: put the original URLs back into rewritten articles, exactly, from the manifest's spans.

Every rewrite generation of an article is undone, newest first. A span is put back only where the text
still holds the URL we wrote (found at its recorded offset, shifted by the spans before it and by any
user edit learned from the previous span); anything else is reported with file:line and left as it is.
Writes are atomic and refused if the file changes meanwhile; afterwards the article is forgotten by the
manifest, so a second restore is a no-op and a later `run` archives it afresh.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from archiver.articles import load_article
from archiver.config import Config
from archiver.errors import ArticleError, ManifestError
from archiver.manifest import ArticleReplacement, Manifest
from archiver.markdown_refs import line_starts
from archiver.rewrite import Replacement, render, splice, unified_diff, write_atomic

SECRET_KEPT_NOT = "the original URL held credentials, which the manifest does not keep"


@dataclass(frozen=True)
class Unrestored:
    """A recorded span that could not be put back; ``line`` is 1-based in the article as it is now."""

    line: int
    ours: str  # the URL we wrote there
    original: str  # what was there before, as the manifest shows it (a URL with secrets is redacted)
    reason: str


@dataclass
class Undone:
    text: str
    restored: int = 0
    total: int = 0
    problems: list[Unrestored] = field(default_factory=list)


def undo(text: str, generations: Sequence[Sequence[ArticleReplacement]]) -> Undone:
    """``text`` with every generation undone, newest first; spans no longer holding our URL are reported."""
    result = Undone(text)
    for gen in reversed(generations):
        _undo_generation(result, sorted(gen, key=lambda r: r.start))
    return result


def _undo_generation(result: Undone, gen: Sequence[ArticleReplacement]) -> None:
    text = result.text
    expected: list[int] = []  # where each span starts in the text this generation produced
    shift = 0
    for r in gen:
        expected.append(r.start + shift)
        shift += len(r.replacement) - (r.end - r.start)
    next_same: list[int | None] = [None] * len(gen)  # the next span that wrote the same URL
    seen: dict[str, int] = {}
    for i in range(len(gen) - 1, -1, -1):
        next_same[i] = seen.get(gen[i].replacement)
        seen[gen[i].replacement] = i
    edits: list[Replacement] = []
    drift = 0  # how far user edits moved the text, as learned from the last span found
    cursor = 0  # no span may start before this (spans are in order and never overlap)
    found: list[int | None] = []  # where each span was found in ``text``
    for i, r in enumerate(gen):
        want = expected[i] + drift
        pos = _find(text, r.replacement, want, cursor)
        j = next_same[i]
        if pos is not None and j is not None and abs(pos - (expected[j] + drift)) < abs(pos - want):
            pos = None  # that occurrence is the next span's: this one was removed
        found.append(pos)
        if pos is None:
            continue
        drift = pos - expected[i]
        cursor = pos + len(r.replacement)
        if r.original or r.end == r.start:
            edits.append(Replacement(pos, cursor, r.original))
    # a span not found is reported where it would be: shifted like the span found before it (edits above it),
    # else like the next one found, whose shift also counts the edit of this span, so its end is used
    after: list[int | None] = [None] * len(gen)
    following: int | None = None
    for i in range(len(gen) - 1, -1, -1):
        after[i] = following
        if found[i] is not None:
            following = found[i] - expected[i]  # type: ignore[operator]
    starts = line_starts(text)
    before: int | None = None
    for i, (r, pos) in enumerate(zip(gen, found, strict=True)):
        result.total += 1
        if pos is not None:
            before = pos - expected[i]
        if pos is None:
            if before is not None:
                guess = expected[i] + before
            else:
                guess = expected[i] + len(r.replacement) - 1 + (after[i] or 0)
            line = bisect.bisect_right(starts, min(max(guess, 0), len(text)))
            result.problems.append(Unrestored(line, r.replacement, _shown(r), "no longer there (edited since); left as is"))
        elif not r.original and r.end > r.start:
            line = bisect.bisect_right(starts, pos)
            result.problems.append(Unrestored(line, r.replacement, _shown(r), SECRET_KEPT_NOT + "; left as is"))
    result.text = splice(text, edits)
    result.restored += len(edits)


def _find(text: str, needle: str, want: int, cursor: int) -> int | None:
    """The occurrence of ``needle`` at or after ``cursor`` nearest to ``want``."""
    if want >= cursor and text.startswith(needle, want):
        return want
    after = text.find(needle, max(cursor, want))
    before = text.rfind(needle, cursor, want + len(needle) - 1) if want > cursor else -1
    candidates = [p for p in (before, after) if p >= 0]
    return min(candidates, key=lambda p: abs(p - want)) if candidates else None


def _shown(r: ArticleReplacement) -> str:
    """The original as a report may show it: as written, or the manifest's redacted URL when it held a secret."""
    return r.original or r.url.split("#sha256=", 1)[0]


# -- the manifest (read-only queries, and forgetting a restored article) ---------------------------
@dataclass(frozen=True)
class RewrittenArticle:
    path: str
    sha256_before: str
    sha256_after: str


def rewritten_articles(manifest: Manifest) -> list[RewrittenArticle]:
    return [RewrittenArticle(*row) for row in manifest.rewritten_articles()]


# -- the command ---------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                        help="restore only these articles, or the articles under these folders (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="print the diff a restore would make; write nothing")


def _under(path: str, wanted: Sequence[Path]) -> bool:
    p = Path(path)
    return any(p == w or p.is_relative_to(w) for w in wanted)


@dataclass(frozen=True)
class _Outcome:
    restored: int  # URLs put back
    changed: bool  # the article's bytes change
    lines: list[str]  # what to print
    unrestored: int


def _restore_one(manifest: Manifest, entry: RewrittenArticle, *, dry: bool) -> _Outcome:
    """Undo one article's rewrites (write it and forget it unless ``dry``); ArticleError if it cannot be."""
    path = Path(entry.path)
    article = load_article(path)
    current = hashlib.sha256(article.raw).hexdigest()
    if current == entry.sha256_before:  # restored already (e.g. killed before the manifest was updated)
        if not dry:
            manifest.forget_article(entry.path)
        return _Outcome(0, False, [f"{path}: already as before its first rewrite"], 0)
    done = undo(article.text, manifest.article_replacements(entry.path))
    new = render(replace(article, text=done.text), []) if done.text != article.text else article.raw
    lines = []
    if dry and new != article.raw:
        lines.append(unified_diff(article, done.text).rstrip("\n"))
    if not dry:
        if new != article.raw:
            write_atomic(path, new, expected=article.raw)
        manifest.forget_article(entry.path)
    if hashlib.sha256(new).hexdigest() == entry.sha256_before:
        state = "byte-identical to before its first rewrite"
    elif current != entry.sha256_after:
        state = "it was edited since it was rewritten: those edits are kept"
    else:
        state = "some URLs stay as they are"
    verb = "would restore" if dry else "restored"
    lines.append(f"{path}: {verb} {done.restored} of {done.total} URLs ({state})")
    for p in sorted(done.problems, key=lambda p: p.line):
        lines.append(f"  {path}:{p.line}: {p.ours} (was {p.original}): {p.reason}")
    return _Outcome(done.restored, new != article.raw, lines, len(done.problems))


def command(args: argparse.Namespace, cfg: Config) -> int:
    manifest_path = cfg.resolve_path(cfg.manifest.path)
    if not manifest_path.exists():
        raise ManifestError(f"{manifest_path}: no manifest (nothing was rewritten, so nothing to restore)")
    dry = bool(args.dry_run)
    manifest = Manifest.open_readonly(manifest_path) if dry else Manifest.open(manifest_path)
    articles = spans = unrestored = failed = 0
    try:
        known = rewritten_articles(manifest)
        for given in args.paths:
            if not any(_under(a.path, [given.resolve()]) for a in known):
                print(f"{given}: no article rewritten by archiver here; nothing to restore")
        wanted = [p.resolve() for p in args.paths]
        for entry in known:
            if wanted and not _under(entry.path, wanted):
                continue
            try:
                outcome = _restore_one(manifest, entry, dry=dry)
            except ArticleError as exc:
                failed += 1
                print(f"{exc.message} (not restored)")
                continue
            articles += outcome.changed
            spans += outcome.restored
            unrestored += outcome.unrestored
            print("\n".join(outcome.lines))
    finally:
        manifest.close()
    print(
        f"{'dry run: ' if dry else ''}{articles} articles {'would be ' if dry else ''}restored, {spans} URLs "
        f"put back; {unrestored} URLs could not be restored, {failed} articles could not be restored"
    )
    return 1 if unrestored or failed else 0
