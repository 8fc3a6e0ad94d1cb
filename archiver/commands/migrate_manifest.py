"""`archiver migrate-manifest`: copy a manifest between SQLite and PostgreSQL, verified by per-table counts and
checksums, in one transaction on the target (archiver.manifest.copy)."""

from __future__ import annotations

import argparse
import os

from archiver.config import Config
from archiver.errors import EXIT_OK, ConfigError, ManifestError
from archiver.manifest.copy import copy_manifest
from archiver.manifest.queue import LIVE
from archiver.manifest.sqlite import Manifest
from archiver.manifest.target import ENV_URL, exists, is_postgres, manifest_target, parse_target, shown
from archiver.terminal import say


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", required=True, metavar="URL_OR_PATH",
                        help="the new manifest: a postgresql:// URL, or a SQLite file")
    parser.add_argument("--from", dest="source", metavar="URL_OR_PATH",
                        help="the manifest to copy (default: the configured one)")
    parser.add_argument("--replace", action="store_true",
                        help="overwrite a target that already holds a manifest (default: refuse)")


def command(args: argparse.Namespace, cfg: Config) -> int:
    source = parse_target(args.source, "--from") if args.source else manifest_target(cfg)
    target = parse_target(args.to, "--to")
    if str(source) == str(target):
        raise ConfigError(f"--to: {shown(target)} is the manifest being copied")
    if not exists(source):
        raise ManifestError(f"{shown(source)}: no manifest yet (nothing to copy)")
    # the source's writer lock for the whole copy: no run changes it under us
    with Manifest.open_existing(source) as src, Manifest.open(target) as dst:
        # workers record without the writer's lock: what they record after the copy would be in the source only
        if live := [w for w in src.workers() if w.silent_for < LIVE]:
            names = ", ".join(f"{w.host} pid {w.pid}" for w in live[:5])
            raise ManifestError(f"{shown(source)}: {len(live)} `archiver worker` process(es) are working on it "
                                f"({names}): what they record after the copy would be missing from it; stop them "
                                "(SIGTERM) and run migrate-manifest again")
        digests = copy_manifest(src, dst, replace=args.replace)
    rows = ", ".join(f"{t} {d.rows}" for t, d in digests.items() if d.rows)
    say(f"copied {shown(source)} to {shown(target)}: {rows or 'no rows'}",
        "verified: every table's row count and checksum are equal in both")
    if is_postgres(target):
        say(f'use it: [manifest] url = "{shown(target)}" in the config, or {ENV_URL}=… in the environment '
            "(keep the password in ~/.pgpass or PGPASSWORD)")
    else:
        # the config reads a relative path from its own folder, not from where this command ran: say it whole
        say(f'use it: [manifest] path = "{os.path.abspath(target)}" (and no [manifest] url nor {ENV_URL})')
    return EXIT_OK
