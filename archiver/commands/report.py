"""`archiver report`: the failure report (HTML and CSV) of every image the manifest records as not archived, with
the articles under PATH (or the config's root) that use it (archiver.run.failure_report)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from archiver.config import Config
from archiver.errors import EXIT_OK, ConfigError
from archiver.manifest.sqlite import Manifest
from archiver.manifest.target import manifest_target
from archiver.run.failure_report import csv_path_for, from_manifest, scan_uses, write_failure_report
from archiver.terminal import count, say, shown_path

DEFAULT_OUTPUT = "report/failures.html"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                        help="articles to find the failed images in (default: [articles] root)")
    parser.add_argument("--output", type=Path, metavar="PATH",
                        help=f"the HTML page to write; the CSV goes beside it (default: {DEFAULT_OUTPUT} beside the "
                             "config)")


def command(args: argparse.Namespace, cfg: Config) -> int:
    paths = list(args.paths) or [cfg.resolve_path(cfg.articles.root)]
    for p in paths:
        if not p.exists():
            raise ConfigError(f"{shown_path(p)}: no such file or folder")
    output = args.output or cfg.resolve_path(DEFAULT_OUTPUT)
    with Manifest.open_readonly(manifest_target(cfg), reconnect_for=cfg.manifest.reconnect_for) as m:
        rows = list(m.unarchived())
    uses, unread = scan_uses(paths, cfg, {r.url for r in rows})
    failures = from_manifest(rows, uses)
    meta = {"generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "articles": ", ".join(shown_path(p) for p in paths)}
    files = write_failure_report(failures, unread, output, meta)
    say(f"{count(files.urls, 'image')} not archived, on {count(files.hosts, 'host')}: {shown_path(files.html)} and "
        f"{shown_path(csv_path_for(files.html))}")
    return EXIT_OK
