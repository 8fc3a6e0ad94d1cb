"""`archiver run`: archive the images of articles and rewrite the articles (the pipeline is archiver.run)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from archiver import cputime, scratch, terminal
from archiver.config import Config
from archiver.errors import EXIT_FAILED, EXIT_INTERRUPTED, ArchiverError, ConfigError
from archiver.image.formats import writable
from archiver.image.pool import make_pool
from archiver.manifest.sqlite import Manifest
from archiver.manifest.target import is_postgres, local_path, manifest_target, shown
from archiver.run.pipeline import Run, prepare_workdir
from archiver.run.progress import Progress, summary_lines
from archiver.run.report import RunReport
from archiver.storage import Store, open_store
from archiver.storage.null import NullStore
from archiver.terminal import count, shown_path

if TYPE_CHECKING:
    from archiver.run.watch import Watcher


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="article files or folders")
    parser.add_argument("--dry-run", action="store_true",
                        help="fetch and report, write nothing; print the diff a real run would make")
    parser.add_argument("--retry-dead", action="store_true",
                        help="fetch again URLs an earlier run found dead or rejected")
    parser.add_argument("--no-process", action="store_true",
                        help="with a PostgreSQL manifest: queue the URLs and leave them to `archiver worker` "
                             "processes, waiting for their outcomes (this run still fetches itself the URLs that "
                             "carry a secret, which the manifest keeps redacted, and images on disk)")
    parser.add_argument("--report", type=Path, metavar="PATH",
                        help="also write an HTML page (PATH) and a CSV beside it of every image not archived, by "
                             "host and reason, with the articles that use it")
    parser.add_argument("--watch", action="store_true",
                        help="after the run, keep watching the articles' folders and archive new and changed "
                             "articles as they are written (Ctrl-C or SIGTERM stops it, exit 0)")
    parser.add_argument("--poll", type=float, metavar="SECONDS",
                        help="with --watch: look for changes every SECONDS instead of relying on the operating "
                             "system's change events (network and container folders, where those do not arrive)")


def _default_root_hint(cfg: Config) -> str:
    """Why the articles' folder was looked for there: the config's ``[articles] root``, or, without a config, the
    default (with the archiver.toml of a folder above, when there is one: run from there or pass --config)."""
    if cfg.source:
        return f" ([articles] root of {cfg.source})"
    here = Path.cwd()
    above = next((d / "archiver.toml" for d in here.parents if (d / "archiver.toml").is_file()), None)
    hint = (f"; {shown_path(above)} is in a folder above: run from there, or pass --config {shown_path(above)}"
            if above else "; run `archiver init` in your site's folder, pass --config, or name the articles as PATHs")
    return f" (the default [articles] root: no archiver.toml in {shown_path(here)}{hint})"


def _check_watch(args: argparse.Namespace) -> None:
    if args.poll is not None and not args.watch:
        raise ConfigError("--poll: only with --watch")
    if args.poll is not None and not 0.05 <= args.poll <= 3600:
        raise ConfigError(f"--poll: {args.poll:g} seconds is not between 0.05 and 3600")
    if args.watch and args.dry_run:
        raise ConfigError("--watch: not with --dry-run (a dry run writes nothing to watch for)")
    if args.watch and args.report:
        raise ConfigError("--watch: not with --report (`archiver report` writes the report from the manifest at any "
                          "time, also while a watching run goes on)")


def _write_stage_stats() -> None:
    """ARCHIVER_STAGE_STATS (the benchmarks): CPU seconds by stage, the image workers' (ended by now) and the rest."""
    if not cputime.ENABLED:
        return
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    spent = cputime.spent()
    cputime.write({"fetch, loop and the rest": me.ru_utime + me.ru_stime - sum(spent.values()),
                   "image workers": kids.ru_utime + kids.ru_stime})


def command(args: argparse.Namespace, cfg: Config) -> int:
    _check_watch(args)
    paths = list(args.paths) or [cfg.resolve_path(cfg.articles.root)]
    for p in paths:
        if not p.exists():
            why = "a broken symlink, or a symlink loop" if p.is_symlink() else "no such file or folder"
            if not args.paths:
                why += _default_root_hint(cfg)
            raise ConfigError(f"{shown_path(p)}: {why}")
    site_root = cfg.articles.site_root
    if site_root and not os.path.isdir(site_root):  # else every /images/x.png would be "no such file", exit 0
        where = f"{cfg.source}: " if cfg.source else ""
        raise ConfigError(f"{where}[articles] site_root: {shown_path(Path(site_root))}: no such folder (the folder "
                          "your site serves at its root: Hugo static/, Hexo source/, a Jekyll site's root)")
    if args.report:
        from archiver.run.failure_report import check_report_paths

        check_report_paths(args.report)
    images, messages = writable(cfg.images)
    if messages:  # AVIF without an encoder: said once, at start-up, and the other formats are made
        terminal.say(*messages)
        cfg = replace(cfg, images=images)
    manifest_path = manifest_target(cfg)
    if args.no_process and (args.dry_run or not is_postgres(manifest_path)):
        why = "a dry run settles every URL itself" if args.dry_run else \
            f"{shown(manifest_path)} is a SQLite manifest, which has no workers (they need [manifest] url = " \
            "\"postgresql://…\" or ARCHIVER_MANIFEST_URL)"
        raise ConfigError(f"--no-process: {why}")
    store: Store = open_store(cfg)
    if args.dry_run:
        manifest = Manifest.snapshot(manifest_path)
        store = NullStore(store)
    else:
        if cfg.storage.backend != "s3":  # a folder: checked now (cheap), which removes killed runs' scratch folders
            store.check()
        # S3 is checked before the first fetch: a run with nothing to fetch does not contact it (nor load boto3)
        manifest = Manifest.open(manifest_path, reconnect_for=cfg.manifest.reconnect_for)
        if args.watch:  # a gc refuses at once instead of waiting for a command that does not end
            manifest.announce_watch()
    # a dry run must not touch the real run's scratch folder (a real run may be using it right now)
    workdir = prepare_workdir(None if args.dry_run else local_path(cfg))
    report_failed = False
    pool = make_pool(cfg.images.max_decode_seconds)  # workers start with the first image to decode
    try:
        run = Run(cfg, paths, manifest, store, dry_run=args.dry_run, retry_dead=args.retry_dead,
                  workdir=workdir, pool=pool,
                  check_store=not args.dry_run and cfg.storage.backend == "s3", process=not args.no_process)
        progress = Progress(run.stats, enabled=not args.quiet, dry_run=args.dry_run, paused=run.paused_hosts)
        terminal.attach(progress)

        stop = asyncio.Event()
        current: list[Run | None] = [run]  # the run a signal stops: the first, then each cycle of --watch (None: idle)

        def interrupted(name: str) -> None:
            stop.set()
            if (busy := current[0]) is not None:
                busy.request_stop(f"interrupted ({name})")

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig, name in ((signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")):
                loop.add_signal_handler(sig, interrupted, name)
            watcher = None
            if args.watch:  # before the first run: an article written during it is seen
                from archiver.run.watch import Watcher

                watcher = Watcher(paths, cfg.articles.extensions, poll=args.poll,
                                  follow_outside=cfg.articles.follow_symlinks_outside)
                await watcher.start(stop)
            progress.start()
            try:
                await run.execute()
            finally:
                await progress.stop()
            if watcher is not None and not stop.is_set() and not run.report.stopped:
                watched.append(True)
                await _watch(watcher, stop, current, lambda changed: Run(
                    cfg, paths, manifest, store, workdir=workdir, pool=pool, only=changed,
                    check_store=cfg.storage.backend == "s3", process=not args.no_process), progress, run.report, cfg, manifest, store)

        watched: list[bool] = []
        asyncio.run(main())
        if watched:
            return 0  # each cycle printed its summary; a signal is how a watch ends
        report = run.report
        report_line = None
        if args.report:
            try:
                report_line = _failure_report(args.report, report, manifest, paths, dry_run=args.dry_run)
            except ArchiverError as exc:
                report_line, report_failed = f"report not written: {exc}", True
        if cfg.dedupe.rewrite_to_canonical and not args.dry_run and not report.stopped:
            _rewrite_to_canonical(cfg, manifest, store)
    finally:
        terminal.attach(None)
        pool.terminate()  # kills a worker still decoding (an abandoned image): stopping never waits for one
        manifest.close()
        store.close()
        scratch.remove(workdir)
        _write_stage_stats()
    if args.dry_run:
        for diff in report.diffs:
            terminal.say_block(diff)
    terminal.say(*summary_lines(report, progress.elapsed, dry_run=args.dry_run, bounded=not args.quiet))
    if report_line:
        terminal.say(report_line)
    if report.stopped and report.stopped.startswith("interrupted"):
        return EXIT_INTERRUPTED
    return max(report.exit_code, EXIT_FAILED if report_failed else 0)


async def _watch(watcher: Watcher, stop: asyncio.Event, current: list[Run | None], make_run: Callable[[set[str]], Run],
                 progress: Progress, first: RunReport, cfg: Config, manifest: Manifest, store: Store) -> None:
    """--watch: print the first run's summary, then run again over each batch of new or changed articles until a
    signal; a batch that did nothing new (the run's own rewrites come back as changes; an edit elsewhere in an
    article whose dead image an earlier run reported) prints nothing."""
    terminal.say(*summary_lines(first, progress.elapsed, bounded=True))
    if cfg.dedupe.rewrite_to_canonical and not first.stopped:
        _rewrite_to_canonical(cfg, manifest, store)
    terminal.say(watcher.describe())
    current[0] = None
    while (changed := await watcher.next()) is not None:
        run = current[0] = make_run(changed)
        started = asyncio.get_running_loop().time()
        try:
            await run.execute()
        finally:
            current[0] = None
        s = run.report.stats
        news = [p for p in run.report.problems if "(earlier run;" not in p.reason]  # not what a batch said already
        if s.fetched or s.articles_rewritten or s.archived > s.urls_known or news:
            terminal.say(*summary_lines(run.report, asyncio.get_running_loop().time() - started, bounded=True))
            if cfg.dedupe.rewrite_to_canonical and s.assets_new and not run.report.stopped:
                _rewrite_to_canonical(cfg, manifest, store)
        if run.report.stopped:
            if not stop.is_set():  # stopped by itself (storage unavailable): the watch ends, with its reason said
                terminal.say(f"watch: stopped ({run.report.stopped})")
            break
    if stop.is_set():
        terminal.say("watch: stopped; a run (or --watch) again picks up what changed since")


def _failure_report(path: Path, report: RunReport, manifest: Manifest, paths: list[Path], *, dry_run: bool) -> str:
    """--report: the run's problems as an HTML page and a CSV (archiver.run.failure_report, loaded only here)."""
    import time

    from archiver.run.failure_report import csv_path_for, from_problems, write_failure_report

    states = manifest.url_states({p.url for p in report.problems if p.url})
    failures, unread = from_problems(report.problems, states)
    meta = {"generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "articles": ", ".join(shown_path(p) for p in paths)}
    if dry_run:
        meta["run"] = "dry run"
    files = write_failure_report(failures, unread, path, meta)
    return (f"report: {count(files.urls, 'image')} not archived, on {count(files.hosts, 'host')}: {shown_path(files.html)} and "
            f"{shown_path(csv_path_for(files.html))}")


def _rewrite_to_canonical(cfg: Config, manifest: Manifest, store: Store) -> None:
    """[dedupe] rewrite_to_canonical: after the run, point every article at its group's canonical copy."""
    from archiver.dedupe import canonical
    from archiver.dedupe.plan import plan

    groups = plan(cfg, manifest, store, cfg.dedupe.max_distance)
    result = canonical.apply_canonical(
        manifest, groups.articles, groups.mapping, cfg.articles.front_matter_fields, cfg.articles.max_refs
    )
    if result.spans:
        terminal.say(f"dedupe: {terminal.count(result.articles, 'article')} rewritten to canonical copies "
                     f"({terminal.count(result.spans, 'reference')})")
    terminal.say(*(f"  {problem}" for problem in result.problems))
