"""`archiver restore`: put the original URLs back into rewritten articles, exactly, from the manifest's spans.

Every rewrite generation of an article is undone, newest first (archiver.articles.spans, the engine
`dedupe --undo` uses too). A span is put back only where the text still holds the URL we wrote; anything else is
reported with file:line and left as it is.
Writes are atomic and refused if the file changes meanwhile; the article is forgotten by the manifest in the
step that confirms its write (archiver.articles.journal), so a second restore is a no-op and a later `run`
archives it afresh. Articles under the PATHs (or ``[articles] root``) that still reference the archive but that the
manifest has no record of are listed: restore cannot put their originals back, and never says it did.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from archiver.articles.files import iter_article_paths, load_article
from archiver.articles.journal import record_key, settle_pending, sha256, write_recorded
from archiver.articles.rewrite import remove_stale_temp_files_beside, render, unified_diff
from archiver.articles.spans import undo
from archiver.config import Config
from archiver.errors import ArticleError, ConfigError, ManifestError
from archiver.find.refs import article_refs
from archiver.manifest.rows import RewrittenArticle
from archiver.manifest.sqlite import Manifest
from archiver.manifest.target import exists, manifest_target, shown
from archiver.model import RESTORE
from archiver.storage.keys import KeyLookup, ParsedKey, archive_key, public_bases
from archiver.terminal import count, say, say_block, shown_path


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
    restored: int  # references put back
    changed: bool  # the article's bytes change
    lines: list[str]  # what to print: the article's line
    errors: list[str]  # the references that could not be put back (all that -q prints besides the summary)
    diff: str = ""  # a dry run's unified diff, printed before the lines


def _restore_one(manifest: Manifest, entry: RewrittenArticle, *, dry: bool) -> _Outcome:
    """Undo one article's rewrites (write it and forget it unless ``dry``). ArticleError: not restored; ManifestError:
    not restored because its record cannot be written, or restored and its record not yet confirmed."""
    path = Path(entry.path)
    shown = path
    article = load_article(path)
    sha_now = sha256(article.raw)
    if sha_now == entry.sha256_before:  # restored already (e.g. by hand)
        if not dry:
            manifest.forget_article(entry.path)
        return _Outcome(0, False, [f"{shown}: already as before its first rewrite"], [])
    # every generation is undone, `rekey`'s too (each as recorded): no URL of a moved object needs translating
    done = undo(article.text, manifest.article_replacements(entry.path), unchanged=sha_now == entry.sha256_after)
    new = render(replace(article, text=done.text), []) if done.text != article.text else article.raw
    lines = []
    diff = unified_diff(article, done.text) if dry and new != article.raw else ""
    if not dry:
        if new != article.raw:  # the article is forgotten in the step that confirms the write
            write_recorded(manifest, article, new, [], RESTORE, key=entry.path)
        else:
            manifest.forget_article(entry.path)
    if sha256(new) == entry.sha256_before:
        state = "byte-identical to before its first rewrite"
    elif sha_now != entry.sha256_after:
        state = "it was edited since it was rewritten: those edits are kept"
    else:
        state = "some URLs stay as they are"
    verb = "would restore" if dry else "restored"
    lines.append(f"{shown}: {verb} {done.restored} of {done.total} URLs ({state})")
    errors = [f"  {shown}:{p.line}: {p.ours} (was {p.original}): {p.reason}"
              for p in sorted(done.problems, key=lambda p: p.line)]
    return _Outcome(done.restored, new != article.raw, lines, errors, diff)


def _open(manifest_path: Path | str, dry: bool, reconnect_for: float) -> Manifest:
    """The manifest, with the article writes a killed command left pending settled first (in memory for a dry run)."""
    if not dry:
        manifest = Manifest.open(manifest_path, reconnect_for=reconnect_for)
    else:
        manifest = Manifest.open_readonly(manifest_path)
        if manifest.pending_rewrites():
            manifest.close()
            manifest = Manifest.snapshot(manifest_path)
    settle_pending(manifest)
    return manifest


def _unrecorded(paths: Sequence[Path], cfg: Config, recorded: set[str],
                lookup: KeyLookup | None = None) -> list[tuple[Path, list[int]]]:
    """The articles under ``paths`` the manifest has no record of that still reference the archive, with the lines:
    restore cannot put their originals back (rewritten under another manifest, or the URLs were pasted by hand)."""
    bases = public_bases(cfg)
    out: list[tuple[Path, list[int]]] = []
    for path in iter_article_paths(paths, cfg.articles.extensions, on_skip=lambda _path, _why: None,
                                   follow_outside=cfg.articles.follow_symlinks_outside):
        if record_key(path) in recorded:
            continue
        try:
            article = load_article(path)
            refs = article_refs(article, cfg.articles.front_matter_fields, cfg.articles.max_refs)
        except ArticleError:
            continue
        lines = [ref.line for ref in refs if archive_key(ref.url, bases, lookup) is not None]
        if lines:
            out.append((path, sorted(set(lines))))
    return out


def command(args: argparse.Namespace, cfg: Config) -> int:
    for p in args.paths:  # as `run` and `verify`: a PATH that is not there is a usage error (exit 2)
        if not p.exists():
            raise ConfigError(f"{p}: no such file or folder")
    manifest_path = manifest_target(cfg)
    if not exists(manifest_path):
        raise ManifestError(f"{shown(manifest_path)}: no manifest (nothing was rewritten, so nothing to restore)")
    dry = bool(args.dry_run)
    manifest = _open(manifest_path, dry, cfg.manifest.reconnect_for)
    articles = spans = unrestored = failed = gone = 0
    try:
        known = manifest.rewritten_articles()
        for given in args.paths:
            if not any(_under(a.path, [Path(os.path.realpath(given))]) for a in known):
                say(f"{given}: no article rewritten by archiver here; nothing to restore")
        wanted = [Path(os.path.realpath(p)) for p in args.paths]
        if not dry:  # a restore (or run) killed while writing left a temp copy beside the article
            for stale in remove_stale_temp_files_beside([a.path for a in known if not wanted or _under(a.path, wanted)]):
                if not args.quiet:
                    say(f"removed {shown_path(stale)} left by an interrupted write")
        for entry in known:
            if wanted and not _under(entry.path, wanted):
                continue
            if not os.path.lexists(entry.path):  # deleted since: nothing to put back (its record is kept, should it
                gone += 1                         # come back)
                if not args.quiet:
                    say(f"{shown_path(entry.path)}: deleted since archiver rewrote it; nothing to restore")
                continue
            try:
                outcome = _restore_one(manifest, entry, dry=dry)
            except ArticleError as exc:
                failed += 1
                say(f"{exc.message} (not restored)")
                continue
            except ManifestError as exc:
                failed += 1
                say(f"{entry.path}: {exc.message}")
                continue
            articles += outcome.changed
            spans += outcome.restored
            unrestored += len(outcome.errors)
            if outcome.diff and (dry or not args.quiet):  # the diff a dry run is asked for, even with -q
                say_block(outcome.diff)
            say(*(outcome.errors if args.quiet else outcome.lines + outcome.errors))
        ours = {o.key: o.sha256 for o in manifest.objects()}  # templated keys are known by value, not by shape
    finally:
        manifest.close()
    root = cfg.resolve_path(cfg.articles.root)
    scanned = list(args.paths) or ([root] if root.is_dir() else [])
    if not scanned:  # what the manifest records is restored; unrecorded articles cannot be looked for
        say(f"note: {shown_path(root)} ([articles] root): no such folder; articles there that this manifest has no "
            "record of were not looked for")
    def lookup(key: str) -> ParsedKey | None:
        return ParsedKey(key, "", ours[key], key.rsplit(".", 1)[-1]) if key in ours else None

    left = _unrecorded(scanned, cfg, {a.path for a in known}, lookup) if scanned else []
    for path, lines in left:
        say(f"{path}: lines {', '.join(map(str, lines))}: references to the archive that this manifest "
            "has no record of; restore cannot put their original URLs back")
    say(
        f"{'dry run: ' if dry else ''}{count(articles, 'article')} {'would be ' if dry else ''}restored, "
        f"{count(spans, 'URL')} put back; {count(unrestored, 'URL')} could not be restored, "
        f"{count(failed, 'article')} could not be restored"
        + (f"; {count(gone, 'article')} deleted since" if gone else "")
        + (f"; {count(len(left), 'article')} with references to the archive "
           f"{'has' if len(left) == 1 else 'have'} no record to restore from" if left else "")
    )
    return 1 if unrestored or failed or left else 0
