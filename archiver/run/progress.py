"""What the user sees of a run: its live status line (archiver.terminal) and the summary at the end.

One vocabulary everywhere (the summary, the status line, `archiver status`): each unique URL is archived, dead,
rejected or failed (model.Outcome, what the manifest records) or not attempted (left for a re-run), and those
counts add up to the unique URLs found. A dry run says what would be archived, uploaded and rewritten."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TextIO

from archiver.model import Outcome
from archiver.run.report import SKIPPED, WARNING, Problem, RunReport, Stats
from archiver.terminal import StatusLine, count, shown


def _rate(stats: Stats, elapsed: float) -> float:
    return stats.settled / elapsed if elapsed > 0 else 0.0


def _duration(seconds: float) -> str:
    s = int(seconds + 0.5)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _eta(stats: Stats, elapsed: float) -> str:
    """Time left at the rate of this run's own work (URLs settled from the manifest cost nothing, so they are not
    counted in the rate); "--" before there is a rate."""
    left = stats.urls - stats.settled
    if left <= 0:
        return "0s"
    worked = stats.settled - stats.urls_known
    if worked <= 0 or elapsed <= 0:
        return "--"
    return _duration(left * elapsed / worked)


def _host(key: str) -> str:
    return key.removesuffix(":443").removesuffix(":80")


def status_line(stats: Stats, elapsed: float, *, dry_run: bool = False,
                paused: Sequence[tuple[str, float]] = ()) -> str:
    """What rclone's -P users expect: done/total with a percentage, bytes and their rate, URLs per second, the time
    left, and the hosts paused now (a "slow down" answer) with the seconds left."""
    would = "would be " if dry_run else ""
    if not stats.urls and stats.settled == 0:
        return f"articles {stats.articles} · scanning for image references, {stats.refs} so far"
    percent = 100 * stats.settled // stats.urls if stats.urls else 100
    byte_rate = stats.bytes_fetched / elapsed if elapsed > 0 else 0.0
    line = (
        f"articles {stats.articles} · urls {stats.settled}/{stats.urls} ({percent}%): {stats.archived} {would}archived, "
        f"{stats.dead} dead, {stats.rejected} rejected, {stats.failed} failed · fetched {stats.fetched} "
        f"({_size(stats.bytes_fetched)}, {_size(int(byte_rate))}/s) · "
        f"{'would upload' if dry_run else 'uploaded'} {stats.uploaded} · {would}rewritten {stats.articles_rewritten}"
        f" · {_rate(stats, elapsed):.1f} urls/s · ETA {_eta(stats, elapsed)}"
    )
    if paused:
        shown = ", ".join(f"{_host(h)} ({_duration(left)})" for h, left in paused[:3])
        more = f" and {len(paused) - 3} more" if len(paused) > 3 else ""
        line += f" · paused: {shown}{more}"
    return line


class Progress(StatusLine):
    """The run's status line over its ``Stats`` (and ``paused``: the hosts paused now, from the fetcher)."""

    def __init__(
        self, stats: Stats, stream: TextIO | None = None, *, enabled: bool = True, dry_run: bool = False,
        paused: Callable[[], Sequence[tuple[str, float]]] | None = None,
    ) -> None:
        super().__init__(lambda: status_line(stats, self.elapsed, dry_run=dry_run, paused=paused() if paused else ()),
                         stream, enabled=enabled)
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


def summary_lines(report: RunReport, elapsed: float, *, dry_run: bool = False, bounded: bool = False) -> list[str]:
    """The lines of the summary, as composed (a server's reason phrase, a URL, a file name as they came).
    ``bounded``: each problem was logged as it happened, so a long list is cut to one line per host and the first
    PROBLEMS_SHOWN (a quiet run logs none of them: its summary lists every one)."""
    s = report.stats
    would = "would be " if dry_run else ""
    left = f", {s.not_attempted} not attempted" if s.not_attempted else ""
    lines = [
        f"{'dry run: ' if dry_run else ''}{count(s.articles, 'article')} scanned, {s.articles_rewritten} "
        f"{would}rewritten; {count(s.refs, 'image reference')}, {s.refs_done} of them already pointing at the archive",
        f"{count(s.urls, 'unique image URL')}: {s.archived} {would}archived ({s.urls_known} by earlier runs), "
        f"{s.dead} dead, {s.rejected} rejected, {s.failed} failed{left}",
        f"{count(s.fetched, 'image')} fetched ({_size(s.bytes_fetched)} in {elapsed:.1f} s, "
        f"{s.fetched / elapsed if elapsed > 0 else 0:.1f} images/s): {s.assets_new} new, "
        f"{count(s.duplicates, 'duplicate')} of stored images; objects "
        f"{'that would be uploaded' if dry_run else 'uploaded'} {s.uploaded}, "
        f"already stored {s.already_stored}",
    ]
    if s.by_workers:
        lines.append(f"{count(s.by_workers, 'URL')} settled by `archiver worker` processes (their fetches and "
                     "uploads are counted by them, not above)")
    if s.restored:
        lines.append(f"{count(s.restored, 'image')} missing or corrupt in storage (found by verify) stored again")
    if s.renditions_added:
        lines.append(f"{count(s.renditions_added, 'archived image')} given the rendition widths or formats "
                     "configured since (from their stored originals)")
    if report.replaced:
        lines.append(f"replaced {count(len(report.replaced), 'object')} that held other bytes than their key names:")
        lines.extend(f"  {r}" for r in report.replaced)
    if report.guard_refused and not s.archived:
        lines.append(_guard_hint(report))
    if report.stopped:
        lines.append(
            f"stopped early: {report.stopped}; {count(s.not_attempted, 'URL')} not attempted — run again to finish"
        )
    if report.storage_error:
        lines.append(f"storage error: {report.storage_error}")
    problems = [p for p in report.problems if p.outcome != WARNING]
    warnings = [p for p in report.problems if p.outcome == WARNING]
    if problems:
        lines.append("")
        lines.append(f"Not archived ({len(problems)}):")
        shown = PROBLEMS_SHOWN if bounded else len(problems)
        if len(problems) > shown:
            lines.extend(_by_host(problems))
        order = {Outcome.FAILED: 0, SKIPPED: 1, Outcome.REJECTED: 2, Outcome.DEAD: 3}
        ordered = sorted(problems, key=lambda p: (order.get(p.outcome, 9), p.article or "", p.line or 0, p.url or ""))
        for p in ordered[:shown]:
            where = p.article or ""
            if p.line:
                where += f":{p.line}"
            parts = [x for x in (where, p.url) if x]
            lines.append(f"  [{p.outcome}] {'  '.join(parts)}  — {p.reason}")
        if len(ordered) > shown:
            lines.append(f"  … and {len(ordered) - shown} more (each logged above as it happened); "
                         "`archiver report` writes a page and a CSV of every one, grouped by host and reason")
    if warnings:
        lines.append("")
        lines.append(f"Warnings ({len(warnings)}; these articles were archived all the same):")
        for p in sorted(warnings, key=lambda p: (p.article or "", p.line or 0)):
            lines.append(f"  {p.article}:{p.line}  — {p.reason}")
    return lines


PROBLEMS_SHOWN = 30  # lines of the summary's "Not archived" list; beyond it, one headline per host first
HOSTS_SHOWN = 10


def _by_host(problems: list[Problem]) -> list[str]:
    """A long list starts with what a site owner acts on: one line per host ("cdn.example: 412 images 403
    Forbidden — set a Referer …"), the largest first."""
    from archiver.run.failure_report import from_problems, group

    hosts = group(from_problems(problems, {})[0])
    lines = [f"  {h.headline}" for h in hosts[:HOSTS_SHOWN]]
    if len(hosts) > HOSTS_SHOWN:
        lines.append(f"  … and {sum(h.urls for h in hosts[HOSTS_SHOWN:])} URLs on {len(hosts) - HOSTS_SHOWN} "
                     "other hosts")
    return [*lines, f"  the first {PROBLEMS_SHOWN}:"] if lines else []


def _unspecified(address: str) -> bool:
    """0.0.0.0/8 and :: are refused whatever allow_networks says: never suggest allowing them."""
    import ipaddress

    try:
        addr = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
    except ValueError:
        return True
    return addr.is_unspecified or (addr.version == 4 and addr in ipaddress.ip_network("0.0.0.0/8"))


def _guard_hint(report: RunReport) -> str:
    """Nothing archived and URLs refused by the address guard: say how to allow a network (e.g. a local origin)."""
    nets = sorted(f"{a}/{128 if ':' in a else 32}" for a in report.guard_addresses if not _unspecified(a))[:5]
    nets = nets or ["127.0.0.1/32"]
    example = ", ".join(f'"{n}"' for n in nets)
    return (
        f"nothing archived: the address guard refused {report.guard_refused} URLs (private, loopback or reserved "
        f"addresses); to fetch from such a network on purpose, list it in [fetch] allow_networks, e.g. "
        f"allow_networks = [{example}]"
    )
