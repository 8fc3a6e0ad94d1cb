"""`archiver status`: counts and the latest failures, read from the manifest in place."""

from __future__ import annotations

import argparse

from archiver.config import Config
from archiver.errors import EXIT_OK
from archiver.manifest.sqlite import Manifest
from archiver.model import Outcome


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No arguments of its own."""


def command(args: argparse.Namespace, cfg: Config) -> int:
    path = cfg.resolve_path(cfg.manifest.path)
    with Manifest.open_readonly(path) as m:
        c = m.counts()
        failures = m.failures(20)
    print(f"manifest: {path}")
    total = sum(c[str(o)] for o in Outcome)
    print(f"{total} URLs: {c['archived']} archived, {c['dead']} dead, {c['rejected']} rejected, "
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
