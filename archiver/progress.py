"""What the user sees: a live progress line on a terminal, periodic log lines otherwise, and the summary."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from typing import TextIO

from archiver.pipeline import RunReport, Stats


def _rate(stats: Stats, elapsed: float) -> float:
    return stats.settled / elapsed if elapsed > 0 else 0.0


def status_line(stats: Stats, elapsed: float) -> str:
    return (
        f"articles {stats.articles} · urls {stats.settled}/{stats.urls} · fetched {stats.fetched} · "
        f"uploaded {stats.uploaded} · failed {stats.failed + stats.dead + stats.rejected} · "
        f"rewritten {stats.articles_rewritten} · {_rate(stats, elapsed):.1f} urls/s"
    )


class Progress:
    """Redraws one status line on a terminal; writes a plain line every ``interval`` seconds otherwise."""

    def __init__(self, stats: Stats, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self.stats = stats
        self.stream = stream or sys.stderr
        self.tty = enabled and self.stream.isatty()
        self.enabled = enabled
        self.started = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._drawn = False

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def clear(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\r\033[K")
            self._drawn = False

    def draw(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + status_line(self.stats, self.elapsed))
            self._drawn = True
        elif self.enabled:
            self.stream.write(status_line(self.stats, self.elapsed) + "\n")
        self.stream.flush()

    async def _loop(self) -> None:
        interval = 0.2 if self.tty else 10.0
        while True:
            await asyncio.sleep(interval)
            self.draw()

    def start(self) -> None:
        if self.enabled:
            self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.clear()
        self.stream.flush()


class ProgressAwareHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A log handler that clears the progress line before writing, so the two never interleave."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.progress: Progress | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.progress is not None:
            self.progress.clear()
        super().emit(record)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def summary(report: RunReport, elapsed: float, *, dry_run: bool = False) -> str:
    s = report.stats
    lines = [
        f"{'dry run: ' if dry_run else ''}{s.articles} articles scanned, {s.articles_rewritten} "
        f"{'would be ' if dry_run else ''}rewritten; {s.refs} image references, {s.refs_done} of them "
        f"already pointing at the archive",
        f"{s.urls} unique image URLs: {s.archived} archived ({s.urls_known} from earlier runs, "
        f"{s.fetched} fetched), {s.dead} dead, {s.rejected} rejected, {s.failed} failed",
        f"{s.assets_new} new images, {s.duplicates} duplicates of stored images; objects uploaded "
        f"{s.uploaded}, already stored {s.already_stored}; {_size(s.bytes_fetched)} fetched in "
        f"{elapsed:.1f} s ({s.fetched / elapsed if elapsed > 0 else 0:.1f} images/s)",
    ]
    if report.stopped:
        lines.append(
            f"stopped early: {report.stopped}; {s.not_attempted} URLs not attempted — run again to finish"
        )
    if report.storage_error:
        lines.append(f"storage error: {report.storage_error}")
    if report.problems:
        lines.append("")
        lines.append(f"Not archived ({len(report.problems)}):")
        order = {"failed": 0, "skipped": 1, "rejected": 2, "dead": 3}
        for p in sorted(
            report.problems, key=lambda p: (order.get(p.outcome, 9), p.article or "", p.line or 0, p.url or "")
        ):
            where = p.article or ""
            if p.line:
                where += f":{p.line}"
            parts = [x for x in (where, p.url) if x]
            lines.append(f"  [{p.outcome}] {'  '.join(parts)}  — {p.reason}")
    return "\n".join(lines)
