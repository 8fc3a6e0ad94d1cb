"""What the user sees of a run: its live status line (archiver.terminal) and the summary at the end."""

from __future__ import annotations

from typing import TextIO

from archiver.model import Outcome
from archiver.run.report import SKIPPED, RunReport, Stats
from archiver.terminal import StatusLine, shown


def _rate(stats: Stats, elapsed: float) -> float:
    return stats.settled / elapsed if elapsed > 0 else 0.0


def status_line(stats: Stats, elapsed: float) -> str:
    return (
        f"articles {stats.articles} · urls {stats.settled}/{stats.urls} · fetched {stats.fetched} · "
        f"uploaded {stats.uploaded} · failed {stats.failed + stats.dead + stats.rejected} · "
        f"rewritten {stats.articles_rewritten} · {_rate(stats, elapsed):.1f} urls/s"
    )


class Progress(StatusLine):
    """The run's status line over its ``Stats``."""

    def __init__(self, stats: Stats, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        super().__init__(lambda: status_line(stats, self.elapsed), stream, enabled=enabled)
        self.stats = stats


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def summary(report: RunReport, elapsed: float, *, dry_run: bool = False) -> str:
    """The summary as printed: every line through ``terminal.shown`` (secrets masked, control characters escaped)."""
    return "\n".join(shown(line) for line in summary_lines(report, elapsed, dry_run=dry_run))


def summary_lines(report: RunReport, elapsed: float, *, dry_run: bool = False) -> list[str]:
    """The lines of the summary, as composed (a server's reason phrase, a URL, a file name as they came)."""
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
    if s.restored:
        lines.append(f"{s.restored} images missing or corrupt in storage (found by verify) stored again")
    if report.replaced:
        lines.append(f"replaced {len(report.replaced)} objects that held other bytes than their key names:")
        lines.extend(f"  {r}" for r in report.replaced)
    if report.stopped:
        lines.append(
            f"stopped early: {report.stopped}; {s.not_attempted} URLs not attempted — run again to finish"
        )
    if report.storage_error:
        lines.append(f"storage error: {report.storage_error}")
    if report.problems:
        lines.append("")
        lines.append(f"Not archived ({len(report.problems)}):")
        order = {Outcome.FAILED: 0, SKIPPED: 1, Outcome.REJECTED: 2, Outcome.DEAD: 3}
        for p in sorted(
            report.problems, key=lambda p: (order.get(p.outcome, 9), p.article or "", p.line or 0, p.url or "")
        ):
            where = p.article or ""
            if p.line:
                where += f":{p.line}"
            parts = [x for x in (where, p.url) if x]
            lines.append(f"  [{p.outcome}] {'  '.join(parts)}  — {p.reason}")
    return lines
