"""The command line: `archiver run` and `archiver status`; every ArchiverError becomes one line and an exit code.

Exit codes: 0 done (dead links are reported, not an error); 1 something failed that a re-run may
fix; 2 usage, configuration or storage set-up error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from archiver import __version__
from archiver.config import Config, load
from archiver.errors import ArchiverError, ConfigError
from archiver.manifest import Manifest

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_CONFIG = "archiver.toml"

# Commands that live in their own module: each has add_arguments(parser) and command(args, cfg) -> exit code.
EXTRA_COMMANDS = {
    "verify": "check that every archived object exists (and with --deep, is intact)",
    "restore": "put the original URLs back into articles",
    "dedupe": "group exact and near-duplicate images, report them, optionally rewrite to a canonical copy",
}
_MODULES = {"verify": "archiver.verify", "restore": "archiver.restore", "dedupe": "archiver.dedupe_cmd"}


def _command_module(name: str):  # type: ignore[no-untyped-def]
    import importlib

    return importlib.import_module(_MODULES[name])


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"archiver: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """With ``argv``, only the command it names imports its module (``dedupe`` brings SciPy and numba, which a
    plain ``run`` does not need); without, or when it names none, every command's arguments are defined."""
    named = next((a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")), None)
    parser = _Parser(prog="archiver", description="Archive the images your articles reference.")
    parser.add_argument("--version", action="version", version=f"archiver {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, help=f"TOML config file (default: ./{DEFAULT_CONFIG} if present)")
        p.add_argument("-v", "--verbose", action="store_true", help="log every request and decision")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress display; summary and errors only")

    run = sub.add_parser("run", help="archive the images of articles and rewrite the articles")
    run.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="article files or folders")
    run.add_argument("--dry-run", action="store_true",
                     help="fetch and report, write nothing; print the diff a real run would make")
    run.add_argument("--retry-dead", action="store_true",
                     help="fetch again URLs an earlier run found dead or rejected")
    common(run)
    status = sub.add_parser("status", help="counts and recent failures from the manifest")
    common(status)
    for name, help_text in EXTRA_COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        common(p)
        if named not in ("run", "status", *EXTRA_COMMANDS) or named == name:
            _command_module(name).add_arguments(p)
    return parser


def _config(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None and Path(DEFAULT_CONFIG).is_file():
        path = Path(DEFAULT_CONFIG)
    return load(path)


@contextlib.contextmanager
def _logging(args: argparse.Namespace) -> Iterator[logging.Handler]:
    """The "archiver" logger writes plain lines to stderr for this command; its previous state comes back
    afterwards, so a program (or test) calling ``main`` in-process keeps its own logging."""
    from archiver.progress import ProgressAwareHandler

    handler = ProgressAwareHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("archiver")
    saved = (list(root.handlers), root.propagate, root.level)
    root.handlers = [handler]
    root.propagate = False
    root.setLevel(logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.WARNING)
    try:
        yield handler
    finally:
        root.handlers, root.propagate = saved[0], saved[1]
        root.setLevel(saved[2])


def cmd_run(args: argparse.Namespace, handler: logging.Handler) -> int:
    from archiver import scratch
    from archiver.pipeline import Run, make_executor, prepare_workdir
    from archiver.progress import Progress, summary
    from archiver.storage import open_store
    from archiver.storage.null import NullStore

    cfg = _config(args)
    paths = list(args.paths) or [cfg.resolve_path(cfg.articles.root)]
    for p in paths:
        if not p.exists():
            raise ConfigError(f"{p}: no such file or folder")
    manifest_path = cfg.resolve_path(cfg.manifest.path)
    store = open_store(cfg.storage, cfg.source.parent if cfg.source else Path.cwd())
    if args.dry_run:
        manifest = Manifest.snapshot(manifest_path)
        store = NullStore(store)
    else:
        store.check()
        manifest = Manifest.open(manifest_path)
    # a dry run must not touch the real run's scratch folder (a real run may be using it right now)
    workdir = prepare_workdir(None if args.dry_run else manifest_path)
    executor = make_executor()
    try:
        run = Run(cfg, paths, manifest, store, dry_run=args.dry_run, retry_dead=args.retry_dead,
                  workdir=workdir, executor=executor)
        progress = Progress(run.stats, enabled=not args.quiet)
        handler.progress = progress  # type: ignore[attr-defined]

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
        if cfg.dedupe.rewrite_to_canonical and not args.dry_run and not report.stopped:
            _rewrite_to_canonical(cfg, manifest, store)
    finally:
        executor.shutdown(cancel_futures=True)
        manifest.close()
        store.close()
        scratch.remove(workdir)
    if args.dry_run:
        for diff in report.diffs:
            sys.stdout.write(diff)
            if not diff.endswith("\n"):
                sys.stdout.write("\n")
    print(summary(report, progress.elapsed, dry_run=args.dry_run))
    if report.stopped and report.stopped.startswith("interrupted"):
        return EXIT_INTERRUPTED
    return report.exit_code


def _rewrite_to_canonical(cfg: Config, manifest: Manifest, store: object) -> None:
    """[dedupe] rewrite_to_canonical: after the run, point every article at its group's canonical copy."""
    from archiver import canonical, dedupe_cmd

    plan = dedupe_cmd.plan(cfg, manifest, store, cfg.dedupe.max_distance)  # type: ignore[arg-type]
    result = canonical.apply_canonical(manifest, plan.articles, plan.mapping, cfg.articles.front_matter_fields)
    if result.spans:
        print(f"dedupe: {result.articles} articles rewritten to canonical copies ({result.spans} references)")
    for problem in result.problems:
        print(f"  {problem}")


def cmd_status(args: argparse.Namespace) -> int:
    cfg = _config(args)
    path = cfg.resolve_path(cfg.manifest.path)
    with Manifest.open_readonly(path) as m:
        c = m.counts()
        failures = m.failures(20)
    print(f"manifest: {path}")
    print(f"URLs: {c['archived']} archived, {c['dead']} dead, {c['rejected']} rejected, "
          f"{c['failed']} failed (a re-run retries these)")
    print(f"assets: {c['assets']} ({c['bytes_original']:,} bytes), renditions: {c['renditions']} "
          f"({c['bytes_renditions']:,} bytes); {c['duplicate_urls']} URLs are exact duplicates, "
          f"{c['near_duplicate_pairs']} near-duplicate pairs")
    print(f"articles rewritten: {c['articles']}")
    if failures:
        print("\nlast failures:")
        for f in failures:
            code = f" HTTP {f.http_status}" if f.http_status else ""
            print(f"  [{f.status}] {f.url}  — {f.reason}{code} ({f.attempts} attempts)")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    with _logging(args) as handler:
        return _dispatch(args, handler)


def _dispatch(args: argparse.Namespace, handler: logging.Handler) -> int:
    try:
        if args.command == "run":
            return cmd_run(args, handler)
        if args.command == "status":
            return cmd_status(args)
        return int(_command_module(args.command).command(args, _config(args)))
    except ConfigError as exc:
        print(f"archiver: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ArchiverError as exc:
        print(f"archiver: {exc}", file=sys.stderr)
        return EXIT_USAGE if type(exc).__name__ in ("StorageError", "ManifestError") else EXIT_FAILED
    except KeyboardInterrupt:
        print("archiver: interrupted; the manifest keeps what was done, run again to finish", file=sys.stderr)
        return EXIT_INTERRUPTED
