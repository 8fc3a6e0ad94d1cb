"""What a run reports: live counters (``Stats``), each image or article it could not use (``Problem``), and the
whole (``RunReport``) with its exit code. Shared by the pipeline, its steps and the progress display."""

from __future__ import annotations

from dataclasses import dataclass, field

from archiver.model import Outcome

SKIPPED = "skipped"  # a Problem about an article that could not be read (not a URL outcome)
WARNING = "warning"  # a Problem about an article that was read all the same (front matter a generator refuses)


@dataclass(frozen=True)
class Problem:
    """One thing the summary reports: an image that could not be archived, or an article we could not use."""

    # an Outcome (dead, rejected, failed: a re-run may fix it), SKIPPED (an article we cannot read) or WARNING
    outcome: str
    reason: str
    url: str | None = None
    article: str | None = None
    line: int | None = None


@dataclass
class Stats:
    """Live counters for the progress display and the final summary.

    Every unique URL found ends in exactly one of archived, dead, rejected, failed (its recorded outcome) or not
    attempted (left for a re-run): ``urls == archived + dead + rejected + failed + not_attempted`` once the run
    is over. URLs refused before any request (a ``javascript:`` URL, a relative one without a base URL) count
    among the unique URLs and the rejected, once each however many references use them."""

    articles: int = 0
    articles_rewritten: int = 0
    refs: int = 0
    refs_done: int = 0  # references that already point at the archive
    urls: int = 0  # unique URLs found
    urls_known: int = 0  # archived by an earlier run: no request made
    fetched: int = 0
    bytes_fetched: int = 0
    assets_new: int = 0
    duplicates: int = 0  # URLs whose bytes were already archived under another URL
    uploaded: int = 0
    already_stored: int = 0  # proven to hold these bytes (size, type, checksum): not uploaded
    restored: int = 0  # images whose objects verify found missing or corrupt, stored again
    renditions_added: int = 0  # archived images given the rendition widths or formats configured since
    archived: int = 0  # these four: URLs with their outcome (model.Outcome)
    dead: int = 0
    rejected: int = 0
    failed: int = 0
    not_attempted: int = 0  # left for a re-run because the run stopped early (set when the run ends)
    by_workers: int = 0  # URLs whose outcome `archiver worker` processes recorded (a PostgreSQL manifest)

    @property
    def settled(self) -> int:
        """URLs with their outcome so far."""
        return self.archived + self.dead + self.rejected + self.failed


@dataclass
class RunReport:
    stats: Stats
    problems: list[Problem] = field(default_factory=list)
    diffs: list[str] = field(default_factory=list)
    storage_error: str | None = None
    replaced: list[str] = field(default_factory=list)  # "key: why" of objects that held other bytes, replaced
    stopped: str | None = None  # why the run stopped early (signal, storage unavailable)
    guard_refused: int = 0  # URLs the address guard refused (this run or an earlier one)
    guard_addresses: set[str] = field(default_factory=set)  # addresses it refused in this run

    @property
    def exit_code(self) -> int:
        """0: done (dead links are reported, not an error); 1: something a re-run may fix."""
        if self.storage_error or self.stopped or any(p.outcome == Outcome.FAILED for p in self.problems):
            return 1
        return 0
