"""The failure report: every image that could not be archived, grouped by host and reason, with the articles
(file:line) that use it, as one static HTML page and a CSV beside it (``run --report``, ``archiver report``).

Each host gets a headline a site owner can act on ("cdn.example.com: 412 images 403 Forbidden — set a Referer
..."), then a table per reason with every URL and the articles using it. Everything in it came from outside
(URLs, reason phrases a server sent, file names that may not be UTF-8) and is written escaped: control and bidi
characters as ``\\x1b``/``\\u202e`` (archiver.terminal.printable, as the terminal shows them), then HTML-escaped.
The page loads nothing (no script, no style sheet, no image; a Content-Security-Policy of ``default-src 'none'``
says so to the browser) and links only http(s) URLs. In the CSV, a cell a spreadsheet would read as a formula
(starting with ``=``, ``+``, ``-``, ``@``) is prefixed with ``'``. Only a report replaces a report: a file of
that name that it did not write is refused.
"""

from __future__ import annotations

import contextlib
import csv
import html
import io
import os
import re
import secrets
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from archiver.articles.files import iter_article_paths, load_article
from archiver.config import Config
from archiver.errors import ArchiverError, ArticleError, ConfigError, UrlError
from archiver.find.refs import article_refs
from archiver.manifest.rows import UrlState, url_key
from archiver.model import Cause, Outcome
from archiver.redaction import redact
from archiver.run.report import SKIPPED, WARNING, Problem
from archiver.scratch import FAILURE_PAGE_MARK, is_ours
from archiver.terminal import printable, shown_path
from archiver.urls import resolve

URLS_SHOWN = 500  # per reason on the page; the CSV has every one
USES_SHOWN = 20  # articles per URL on the page
_EARLIER = " (earlier run; --retry-dead to try again)"
_STATUS = re.compile(r"(\d{3})\b")
_STATUS_PHRASE = re.compile(r"(\d{3}(?: [A-Za-z][A-Za-z' -]*)?)(?:[(:;,—.]|$)")
CSV_HEADER = ("host", "outcome", "http_status", "reason", "hint", "url", "article", "line")
_HTML_MARK = FAILURE_PAGE_MARK
_CSV_MARK = (",".join(CSV_HEADER) + "\r\n").encode()


@dataclass(frozen=True)
class Failure:
    """One URL that could not be archived, and where the articles use it."""

    url: str  # as shown (secrets redacted)
    outcome: str  # dead | rejected | failed
    reason: str
    http_status: int | None = None
    cause: str | None = None  # a model.Cause: the setting that decided it
    uses: tuple[tuple[str, int | None], ...] = ()  # (article as shown, line)

    @property
    def host(self) -> str:
        try:
            return urlsplit(self.url).hostname or "(no host)"
        except ValueError:
            return "(no host)"

    @property
    def status(self) -> int | None:
        if self.http_status:
            return self.http_status
        m = _STATUS.match(self.reason)
        return int(m.group(1)) if m and 100 <= int(m.group(1)) < 600 else None


@dataclass(frozen=True)
class Unread:
    """An article that could not be read (its images were not looked for), or not written (``failed``)."""

    article: str
    line: int | None
    reason: str
    outcome: str = SKIPPED


def hint(f: Failure) -> str:
    """What the site owner can do about ``f``, in a few words ("" when nothing obvious)."""
    by_cause = {
        Cause.GUARD: "a private or reserved address: list the network in [fetch] allow_networks if that is intended",
        Cause.UNKNOWN_HOST: "the host name does not resolve: the site is gone, or map it with [fetch] connect_to",
        Cause.BASE_URL: "a relative URL: set [articles] base_url",
        Cause.MAX_BYTES: "larger than [fetch] max_bytes: raise it to archive these",
        Cause.MAX_PIXELS: "more pixels than [images] max_pixels: raise it to archive these",
        Cause.MAX_REDIRECTS: "too many redirects: raise [fetch] max_redirects, or fix the link",
    }
    if f.cause in by_cause:
        return by_cause[Cause(f.cause)]
    status = f.status
    if status in (401, 403):
        return "set a Referer (or a cookie) for this host in [fetch] headers"
    if status in (404, 410):
        return "gone at the source: find another copy, or remove the reference"
    if status == 429:
        return "rate-limited: lower [fetch] per_host and run again"
    if f.outcome == Outcome.FAILED:
        return "a re-run retries these"
    if f.host == "(no host)" and f.outcome == Outcome.REJECTED and ":" in f.url.split("/", 1)[0]:
        return "not an http(s) URL: nothing to archive"
    if "local path" in f.reason.lower():
        return "a file on disk outside the articles' folders: set [articles] site_root, or fix the path"
    if "not an image" in f.reason.lower():
        return "the server answers with something else than an image (often an HTML error page)"
    return ""


def _label(f: Failure) -> str:
    """The reason a group is named by: the reason recorded, without what the summary adds."""
    reason = f.reason.removesuffix(_EARLIER)
    m = _STATUS_PHRASE.match(reason)  # "403 Forbidden (hotlink protection? ...)": one group per status and phrase,
    return m.group(1).strip() if m else reason  # whatever a version of the archiver added after it


# -- building the rows -------------------------------------------------------------------------------
def from_problems(problems: Iterable[Problem], states: Mapping[str, UrlState]) -> tuple[list[Failure], list[Unread]]:
    """A run's problems as report rows: one Failure per URL (its uses gathered), the article-level ones apart.
    ``states``: what the manifest recorded, by URL as the problems show it (for the status and cause)."""
    by_url: dict[str, Failure] = {}
    uses: dict[str, list[tuple[str, int | None]]] = defaultdict(list)
    unread: list[Unread] = []
    seen: set[tuple[str, str, int | None]] = set()
    for p in problems:
        if p.outcome == WARNING:
            continue
        if p.url is None or p.outcome == SKIPPED:
            unread.append(Unread(p.article or "", p.line, p.reason, str(p.outcome)))
            continue
        if p.url not in by_url:
            state = states.get(p.url)
            by_url[p.url] = Failure(
                p.url, str(p.outcome), (state.reason if state and state.reason else p.reason),
                state.http_status if state else None, state.cause if state else None,
            )
        if p.article and (p.url, p.article, p.line) not in seen:
            seen.add((p.url, p.article, p.line))
            uses[p.url].append((p.article, p.line))
    failures = [Failure(f.url, f.outcome, f.reason, f.http_status, f.cause, tuple(uses[u])) for u, f in by_url.items()]
    return failures, unread


def from_manifest(rows: Iterable[UrlState], uses: Mapping[str, Sequence[tuple[str, int | None]]]) -> list[Failure]:
    """Every URL the manifest records as not archived; ``uses``: by url_key, where the articles use it."""
    return [
        Failure(r.url, str(r.status), r.reason or "", r.http_status, r.cause, tuple(uses.get(r.url, ())))
        for r in rows
        if r.status != Outcome.ARCHIVED
    ]


def scan_uses(paths: Sequence[Path], cfg: Config, wanted: set[str]) -> tuple[dict[str, list[tuple[str, int]]],
                                                                              list[Unread]]:
    """Where the articles under ``paths`` use the URLs whose manifest keys are ``wanted``: key -> [(article as
    shown, line)]; and the articles that could not be read. Only the wanted references are kept in memory."""
    uses: dict[str, list[tuple[str, int]]] = defaultdict(list)
    unread: list[Unread] = []
    a = cfg.articles

    def skipped(path: Path, why: str) -> None:
        unread.append(Unread(shown_path(path), None, why))

    for path in iter_article_paths(paths, a.extensions, follow_outside=a.follow_symlinks_outside, on_skip=skipped):
        try:
            refs = article_refs(load_article(path), a.front_matter_fields, a.max_refs)
        except ArticleError as exc:
            unread.append(Unread(shown_path(path), exc.line, exc.reason))
            continue
        for ref in refs:
            try:
                key = url_key(resolve(ref.url, a.base_url))
            except UrlError as exc:
                key = url_key(redact(exc.url))
            if key in wanted and (not uses[key] or uses[key][-1] != (shown_path(path), ref.line)):
                uses[key].append((shown_path(path), ref.line))  # one entry per line (refs come in text order)
    return uses, unread


# -- writing ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportFiles:
    html: Path
    csv: Path
    urls: int
    hosts: int


def csv_path_for(html_path: Path) -> Path:
    return html_path.with_suffix(".csv")


def check_report_paths(html_path: Path) -> None:
    """Refuse, before any work, a report path (or the CSV beside it) that holds a file this report did not write,
    and a path naming the CSV itself (the page would take the CSV's place)."""
    if html_path.suffix.lower() == ".csv":
        raise ConfigError(f"{shown_path(html_path)}: the report is an HTML page and its CSV is written beside it; "
                          f"give the page's path, e.g. {shown_path(html_path.with_suffix('.html'))}")
    _refuse_unless_ours(html_path, _HTML_MARK)
    _refuse_unless_ours(csv_path_for(html_path), _CSV_MARK)


def write_failure_report(failures: Sequence[Failure], unread: Sequence[Unread], html_path: Path,
                         meta: Mapping[str, str]) -> ReportFiles:
    """Write ``html_path`` and the CSV beside it (same name, ``.csv``); ArchiverError when a path holds a file
    that is not such a report, or on an I/O error."""
    csv_file = csv_path_for(html_path)
    hosts = group(failures)
    check_report_paths(html_path)
    try:
        _write(csv_file, _csv(hosts, unread).encode("utf-8"))
        _write(html_path, _html(hosts, unread, meta).encode("utf-8"))
    except OSError as exc:
        raise ArchiverError(f"cannot write the report {shown_path(html_path)}: {exc.strerror or exc}") from exc
    return ReportFiles(html_path, csv_file, len(failures), len(hosts))


@dataclass(frozen=True)
class ReasonGroup:
    outcome: str
    label: str
    hint: str
    failures: tuple[Failure, ...]


@dataclass(frozen=True)
class HostGroup:
    host: str
    reasons: tuple[ReasonGroup, ...]  # largest first

    @property
    def urls(self) -> int:
        return sum(len(r.failures) for r in self.reasons)

    @property
    def headline(self) -> str:
        top = self.reasons[0]
        n = len(top.failures)
        line = f"{self.host}: {n} image{'s' if n != 1 else ''} {top.label}"
        if top.hint:
            line += f" — {top.hint}"
        if len(self.reasons) > 1:
            line += f" (and {self.urls - n} more for {len(self.reasons) - 1} other reasons)"
        return line


def group(failures: Iterable[Failure]) -> list[HostGroup]:
    """By host (most URLs first), then by outcome and reason (largest first); URLs sorted within."""
    tree: dict[str, dict[tuple[str, str], list[Failure]]] = defaultdict(lambda: defaultdict(list))
    for f in failures:
        tree[f.host][(f.outcome, _label(f))].append(f)
    hosts = []
    for host, reasons in tree.items():
        groups = [ReasonGroup(outcome, label, hint(fs[0]), tuple(sorted(fs, key=lambda f: f.url)))
                  for (outcome, label), fs in reasons.items()]
        groups.sort(key=lambda g: (-len(g.failures), g.outcome, g.label))
        hosts.append(HostGroup(host, tuple(groups)))
    hosts.sort(key=lambda h: (-h.urls, h.host))
    return hosts


def _cell(text: str) -> str:
    text = printable(text)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def _csv(hosts: Sequence[HostGroup], unread: Sequence[Unread]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for h in hosts:
        for r in h.reasons:
            for f in r.failures:
                status = "" if f.status is None else str(f.status)
                for article, line in f.uses or (("", None),):
                    writer.writerow([_cell(h.host), f.outcome, status, _cell(f.reason), r.hint, _cell(f.url),
                                     _cell(shown_path(article)), "" if line is None else str(line)])
    for u in unread:
        writer.writerow(["", u.outcome, "", _cell(u.reason), "", "", _cell(shown_path(u.article)),
                         "" if u.line is None else str(u.line)])
    return out.getvalue()


def _e(text: object) -> str:
    return html.escape(printable(str(text)), quote=True)


def _where(article: str, line: int | None) -> str:
    return shown_path(article) + (f":{line}" if line else "")


def _url_cell(url: str) -> str:
    try:
        linkable = urlsplit(url).scheme.lower() in ("http", "https")
    except ValueError:
        linkable = False
    if linkable and printable(url) == url:
        return f'<a href="{_e(url)}" rel="noreferrer noopener">{_e(url)}</a>'
    return f"<code>{_e(url)}</code>"


def _html(hosts: Sequence[HostGroup], unread: Sequence[Unread], meta: Mapping[str, str]) -> str:
    total = sum(h.urls for h in hosts)
    parts = [_HEAD, f"<h1>Images not archived: {total} URL{'s' if total != 1 else ''} on {len(hosts)} "
             f"host{'s' if len(hosts) != 1 else ''}</h1>"]
    parts.append("<p class=meta>" + " · ".join(f"{_e(k)}: {_e(v)}" for k, v in meta.items()) + "</p>")
    if not hosts and not unread:
        parts.append("<p id=none>Every image was archived.</p>")
    if hosts:
        parts.append('<ul id="headlines">')
        parts.extend(f'<li><a href="#host-{i}">{_e(h.headline)}</a></li>' for i, h in enumerate(hosts, 1))
        parts.append("</ul>")
    for i, h in enumerate(hosts, 1):
        parts.append(f'<section id="host-{i}" class="host"><h2>{_e(h.host)} <small>{h.urls} URLs</small></h2>')
        for r in h.reasons:
            parts.append(
                f'<h3 class="{_e(r.outcome)}"><span class=badge>{_e(r.outcome)}</span> {len(r.failures)} × '
                f"{_e(r.label)}</h3>" + (f"<p class=hint>{_e(r.hint)}</p>" if r.hint else "")
            )
            parts.append("<table><thead><tr><th>URL</th><th>used in</th></tr></thead><tbody>")
            for f in r.failures[:URLS_SHOWN]:
                uses = "".join(f"<li>{_e(_where(a, line))}</li>" for a, line in f.uses[:USES_SHOWN])
                if len(f.uses) > USES_SHOWN:
                    uses += f"<li>… {len(f.uses) - USES_SHOWN} more (see the CSV)</li>"
                detail = f"<div class=reason>{_e(f.reason)}</div>" if f.reason != r.label else ""
                parts.append(f"<tr><td>{_url_cell(f.url)}{detail}</td><td><ul>{uses or '<li>—</li>'}</ul></td></tr>")
            if len(r.failures) > URLS_SHOWN:
                parts.append(f"<tr><td colspan=2>… {len(r.failures) - URLS_SHOWN} more URLs (see the CSV)</td></tr>")
            parts.append("</tbody></table>")
        parts.append("</section>")
    if unread:
        parts.append(f'<section id="unread"><h2>Articles not read or not written ({len(unread)})</h2><ul>')
        parts.extend(f"<li>{_e(_where(u.article, u.line))} — {_e(u.reason)}</li>" for u in unread)
        parts.append("</ul></section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>archiver: images not archived</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em;color:#222;max-width:80em}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}h3{font-size:1em}
small,.meta,.reason{color:#666}.hint{margin:.2em 0 .6em;color:#8a4b00}
#headlines li{margin:.2em 0}
table{border-collapse:collapse;width:100%}td,th{border-top:1px solid #eee;padding:.25em .5em;text-align:left;
vertical-align:top}td ul{margin:0;padding-left:1em}
a,code{word-break:break-all}
.badge{display:inline-block;padding:0 .4em;border-radius:3px;background:#ddd;font-size:.85em}
.failed .badge{background:#fbd} .dead .badge{background:#eee} .rejected .badge{background:#fec}
</style></head><body>"""


def _refuse_unless_ours(path: Path, mark: bytes) -> None:
    ours = is_ours(path, contains=(mark,)) if mark is _HTML_MARK else is_ours(path, starts=(mark,))
    if os.path.lexists(path) and not ours:
        raise ConfigError(f"{shown_path(path)} exists and is not a report archiver wrote: not overwritten; remove "
                            "it or choose another report path")


def _write(path: Path, data: bytes) -> None:
    """All or nothing: a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
