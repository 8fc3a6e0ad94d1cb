"""`archiver run`: archive the images of articles and rewrite the articles (the pipeline is archiver.run)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from dataclasses import replace
from pathlib import Path

from archiver import scratch, terminal
from archiver.config import Config
from archiver.errors import EXIT_FAILED, EXIT_INTERRUPTED, ArchiverError, ConfigError
from archiver.image.formats import writable
from archiver.image.pool import make_pool
from archiver.manifest.sqlite import Manifest
from archiver.manifest.target import local_path, manifest_target
from archiver.run.pipeline import Run, prepare_workdir
from archiver.run.progress import Progress, summary_lines
from archiver.run.report import RunReport
from archiver.storage import Store, open_store
from archiver.storage.null import NullStore
from archiver.terminal import count, shown_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="article files or folders")
    parser.add_argument("--dry-run", action="store_true",
                        help="fetch and report, write nothing; print the diff a real run would make")
    parser.add_argument("--retry-dead", action="store_true",
                        help="fetch again URLs an earlier run found dead or rejected")
    parser.add_argument("--report", type=Path, metavar="PATH",
                        help="also write an HTML page (PATH) and a CSV beside it of every image not archived, by "
                             "host and reason, with the articles that use it")


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


def command(args: argparse.Namespace, cfg: Config) -> int:
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
    store: Store = open_store(cfg)
    if args.dry_run:
        manifest = Manifest.snapshot(manifest_path)
        store = NullStore(store)
    else:
        if cfg.storage.backend != "s3":  # a folder: checked now (cheap), which removes killed runs' scratch folders
            store.check()
        # S3 is checked before the first fetch: a run with nothing to fetch does not contact it (nor load boto3)
        manifest = Manifest.open(manifest_path, reconnect_for=cfg.manifest.reconnect_for)
    # a dry run must not touch the real run's scratch folder (a real run may be using it right now)
    workdir = prepare_workdir(None if args.dry_run else local_path(cfg))
    report_failed = False
    pool = make_pool(cfg.images.max_decode_seconds)  # workers start with the first image to decode
    try:
        run = Run(cfg, paths, manifest, store, dry_run=args.dry_run, retry_dead=args.retry_dead,
                  workdir=workdir, pool=pool,
                  check_store=not args.dry_run and cfg.storage.backend == "s3")
        progress = Progress(run.stats, enabled=not args.quiet, dry_run=args.dry_run, paused=run.paused_hosts)
        terminal.attach(progress)

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig, name in ((signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")):
                loop.add_signal_handler(sig, run.request_stop, f"interrupted ({name})")
            progress.start()
            try:
                await run.execute()
            finally:
                await progress.stop()

        asyncio.run(main())
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
    if args.dry_run:
        for diff in report.diffs:
            terminal.say_block(diff)
    terminal.say(*summary_lines(report, progress.elapsed, dry_run=args.dry_run, bounded=not args.quiet))
    if report_line:
        terminal.say(report_line)
    if report.stopped and report.stopped.startswith("interrupted"):
        return EXIT_INTERRUPTED
    return max(report.exit_code, EXIT_FAILED if report_failed else 0)


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
