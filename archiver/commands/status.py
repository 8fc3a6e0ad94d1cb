"""`archiver status`: counts and the latest failures, read from the manifest in place."""

from __future__ import annotations

import argparse

from archiver.config import Config
from archiver.errors import EXIT_OK
from archiver.manifest.queue import LIVE
from archiver.manifest.sqlite import Manifest
from archiver.manifest.target import is_postgres, manifest_target, shown
from archiver.model import Outcome
from archiver.terminal import count, say


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No arguments of its own."""


def command(args: argparse.Namespace, cfg: Config) -> int:
    path = manifest_target(cfg)
    with Manifest.open_readonly(path, reconnect_for=cfg.manifest.reconnect_for) as m:
        c = m.counts()
        failures = m.failures(20)
        lost = m.lost_objects()
        queue = m.queue_depth()
        fleet = m.workers() if is_postgres(path) else None
        held = m.held_by() if fleet is not None else {}
        recent = m.completed_since(60) if is_postgres(path) else 0
    total = sum(c[str(o)] for o in Outcome)
    say(f"manifest: {shown(path)}",
        f"{total} URLs: {c['archived']} archived, {c['dead']} dead, {c['rejected']} rejected, "
        f"{c['failed']} failed" + (" (a re-run retries these)" if c["failed"] else ""),
        f"assets: {c['assets']} ({c['bytes_original']:,} bytes), renditions: {c['renditions']} "
        f"({c['bytes_renditions']:,} bytes); {c['duplicate_urls']} URLs are exact duplicates, "
        f"{c['near_duplicate_pairs']} near-duplicate pairs",
        f"articles rewritten: {c['articles']}")
    if c["articles_pending"]:
        say(f"article writes of an interrupted command not yet settled: {c['articles_pending']} (the next run, "
            "restore or dedupe settles them)")
    if any(queue) or fleet is not None:
        say(f"queue: {queue.waiting} waiting, {queue.claimed} claimed by a worker, {queue.expired} with a lease "
            "that passed (the next claim takes them)")
    if fleet is not None:
        live = [w for w in fleet if w.silent_for < LIVE]
        say(f"workers: {len(live)} live; {count(recent, 'URL')} completed in the last minute")
        for w in fleet:
            state = "" if w.silent_for < LIVE else "  (silent: killed, paused or cut off; its claims pass to others)"
            say(f"  {w.host} pid {w.pid}  last heartbeat {w.silent_for:.0f}s ago  holds "
                f"{count(held.get(w.id, 0), 'URL')}  done {w.done} (at its last heartbeat){state}")
    if lost:
        say(f"objects missing or corrupt in storage (found by verify): {len(lost)}; `archiver verify --repair` "
            "re-creates them, `archiver run` stores again those its articles use")
    if failures:
        say("", "last failures:")
        for f in failures:
            code = f" HTTP {f.http_status}" if f.http_status else ""
            say(f"  [{f.status}] {f.url}  — {f.reason}{code} ({count(f.attempts, 'attempt')})")
    return EXIT_OK
