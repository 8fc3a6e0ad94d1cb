"""`archiver restore`: put the original URLs back into rewritten articles, exactly, from the manifest's spans.

Every rewrite generation of an article is undone, newest first (archiver.articles.spans, the engine
`dedupe --undo` uses too). A span is put back only where the text still holds the URL we wrote; anything else is
reported with file:line and left as it is.
Writes are atomic and refused if the file changes meanwhile; afterwards the article is forgotten by the
manifest, so a second restore is a no-op and a later `run` archives it afresh.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from archiver.articles.files import load_article
from archiver.articles.rewrite import render, unified_diff, write_atomic
from archiver.articles.spans import undo
from archiver.config import Config
from archiver.errors import ArticleError, ConfigError, ManifestError
from archiver.manifest.rows import RewrittenArticle
from archiver.manifest.sqlite import Manifest


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
    done = undo(article.text, manifest.article_replacements(entry.path), unchanged=current == entry.sha256_after)
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
    for p in args.paths:  # as `run` and `verify`: a PATH that is not there is a usage error (exit 2)
        if not p.exists():
            raise ConfigError(f"{p}: no such file or folder")
    manifest_path = cfg.resolve_path(cfg.manifest.path)
    if not manifest_path.exists():
        raise ManifestError(f"{manifest_path}: no manifest (nothing was rewritten, so nothing to restore)")
    dry = bool(args.dry_run)
    manifest = Manifest.open_readonly(manifest_path) if dry else Manifest.open(manifest_path)
    articles = spans = unrestored = failed = 0
    try:
        known = manifest.rewritten_articles()
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
