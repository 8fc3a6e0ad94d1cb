"""`archiver gc`: delete the stored images (originals and renditions) that no article and no manifest record uses
any more, and their records; `--dry-run` lists what would go. The work is in archiver.gc."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from archiver.config import Config
from archiver.errors import EXIT_FAILED, EXIT_OK, ConfigError, ManifestError
from archiver.faults import crash_point
from archiver.gc.sweep import REASONS, Options, Result, Sweeper
from archiver.gc.usage import Usage, known_articles
from archiver.manifest.connection import lock_note, release_lock, take_gc_lock, take_lock
from archiver.manifest.gc import WATCH, watch_refused
from archiver.manifest.sqlite import Manifest
from archiver.manifest.target import is_postgres, manifest_target
from archiver.storage import open_store
from archiver.terminal import say, shown_path

DEFAULTS = Options()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true",
                        help="list what would be deleted, with sizes and totals; change nothing")
    parser.add_argument("--max-delete", type=int, default=DEFAULTS.max_delete, metavar="N",
                        help=f"delete at most N objects in this run (default {DEFAULTS.max_delete}); the next gc "
                             "takes the rest")
    parser.add_argument("--grace", type=float, default=DEFAULTS.grace_days, metavar="DAYS",
                        help=f"keep images archived less than DAYS ago (default {DEFAULTS.grace_days:g}; measured "
                             "from the last time the manifest recorded archiving the image)")
    parser.add_argument("--force", action="store_true",
                        help="no --max-delete limit, and delete even when an article or folder could not be read")
    parser.add_argument("--forget-undo", action="store_true",
                        help="also delete the copies an applied `dedupe --apply` replaced (kept for `dedupe --undo` "
                             "otherwise); those articles can then no longer be undone, only restored")


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def command(args: argparse.Namespace, cfg: Config) -> int:
    if args.max_delete < 0:
        raise ConfigError(f"--max-delete: {args.max_delete} is negative")
    if not math.isfinite(args.grace) or args.grace < 0:
        raise ConfigError(f"--grace: {args.grace:g} is not a number of days (0 or more)")
    opts = Options(args.grace, args.max_delete, args.force, args.forget_undo)
    target = manifest_target(cfg)
    if isinstance(target, Path) and not target.exists():
        raise ManifestError(f"{target}: no manifest yet (run `archiver run` first)")
    root = cfg.resolve_path(cfg.articles.root)
    if not root.exists():  # as `run` and `verify`: judging against no articles would call everything unused
        why = "a broken symlink, or a symlink loop" if root.is_symlink() else "no such file or folder"
        raise ConfigError(f"{shown_path(root)}: {why} ([articles] root)")
    store = open_store(cfg)
    gc_fd = None if args.dry_run or is_postgres(target) else take_gc_lock(target)
    try:
        if args.dry_run:
            manifest = Manifest.open_readonly(target, reconnect_for=cfg.manifest.reconnect_for)
        elif is_postgres(target):  # migrated (if need be) under PostgreSQL's own lock; the writer's lock per batch
            manifest = Manifest.open_existing(target, lock=False, reconnect_for=cfg.manifest.reconnect_for)
            try:
                manifest.take_gc_running()
            except BaseException:
                manifest.close()
                raise
        else:
            assert isinstance(target, Path)
            try:
                fd = take_lock(target, wait=0.0)
            except ManifestError:
                if (note := lock_note(target)) is not None and note.startswith(WATCH):
                    raise watch_refused(target, note) from None
                fd = take_lock(target, wait=float("inf"))  # a migration, if any, under the lock
            try:
                manifest = Manifest.open(target, lock=False, reconnect_for=cfg.manifest.reconnect_for)
            finally:
                release_lock(fd)
        with manifest:
            if not args.dry_run:
                if (watch := manifest.watching_run()) is not None:  # it never ends: refused now, not after a plan
                    raise watch_refused(manifest.path, watch)
                store.check()
            # read again before each batch: a concurrent run may have rewritten one more
            usage = Usage(cfg, [root], known_articles(manifest), extra_source=lambda: known_articles(manifest))
            sweeper = Sweeper(manifest, target, store, usage, opts)
            said: list[bool] = []

            def waiting() -> None:
                if not said and not args.quiet:
                    say("gc: waiting for the command using the manifest to finish (gc goes on after it)")
                    said.append(True)

            journal = Result()
            if not args.dry_run:
                sweeper.finish_journal(journal, waiting)
            result = sweeper.plan()
            result.journal_objects, result.journal_bytes = journal.journal_objects, journal.journal_bytes
            if args.dry_run:
                _print_dry(result, opts)
                return EXIT_OK
            crash_point("gc-planned")
            sweeper.delete(result, waiting)
            _print_done(result, opts)
            if journal.error:
                say(f"archiver: {journal.error}")
            if result.error:
                say(f"archiver: gc stopped: {result.error}")
                return EXIT_FAILED
            return EXIT_FAILED if journal.error else EXIT_OK
    finally:
        store.close()
        if gc_fd is not None:
            release_lock(gc_fd)


def _kept_lines(result: Result, opts: Options) -> list[str]:
    total = sum(result.kept.values())
    if not total:
        return []
    lines = [f"kept {_plural(total, 'image')} ({_plural(sum(result.kept_objects.values()), 'object')}, "
             f"{_size(sum(result.kept_bytes.values()))}):"]
    for reason, text in REASONS.items():
        if n := result.kept[reason]:
            if reason == "recent":
                text += f" ({opts.grace_days:g} days)"
            lines.append(f"  {n:>7} {text} ({_size(result.kept_bytes[reason])})")
    return lines


def _header(result: Result) -> str:
    return (f"gc: {_plural(result.images, 'image')} recorded, {_plural(result.articles, 'article')} read")


def _print_dry(result: Result, opts: Options) -> None:
    say(_header(result))
    objects = [o for a in result.candidates for o in a.objects]
    size = sum(o.bytes for o in objects)
    if objects:
        say(f"would delete {_plural(len(objects), 'object')} of {_plural(len(result.candidates), 'image')}, "
            f"{_size(size)} ({size} bytes):")
        for o in objects:
            say(f"  {o.key}  {o.bytes} bytes")
    else:
        say("nothing to delete")
    say(*_kept_lines(result, opts))
    say("dry run: nothing deleted")


def _print_done(result: Result, opts: Options) -> None:
    say(_header(result))
    if result.journal_objects:
        say(f"finished the deletion of {_plural(result.journal_objects, 'object')} an interrupted gc left "
            f"({_size(result.journal_bytes)})")
    objects = sum(len(a.objects) for a in result.deleted)
    size = sum(a.bytes for a in result.deleted)
    if objects:
        say(f"deleted {_plural(objects, 'object')} of {_plural(len(result.deleted), 'image')}: "
            f"{_size(size)} freed ({size} bytes)")
    else:
        say("nothing deleted")
    say(*_kept_lines(result, opts))
    if result.late:
        say(f"{_plural(result.late, 'image')} planned for deletion {'was' if result.late == 1 else 'were'} found in "
            "use when checked again under the lock: kept")
