"""The dedupe report: a small static HTML page that pages through group data files, plus a JSON export.

Layout for ``report/dedupe.html``: the page itself (a few KB of HTML, CSS and script, whatever the
number of groups), ``report/dedupe.data/p00001-<token>.js`` … (one file per page of PAGE_SIZE groups, the
token this report's, loaded with a <script> tag only when that page is shown, so it also works when opened
from disk), and
``report/dedupe.json`` (every group, for scripts). Thumbnails are referenced by URL or relative path,
never inlined, and use loading="lazy". Everything untrusted (URLs, article paths) is rendered with
textContent, never as HTML, and shown with control and bidi characters escaped (a file name holding ESC or
U+202E cannot reorder or hide what the page says); the JSON files carry those characters as ``\\uXXXX`` escapes
(archiver.terminal.UNPRINTABLE), so the data is exact and the files are safe to print on a terminal.
A report only ever replaces a report: files of that name that it did not write are refused, never
overwritten or deleted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

try:
    import orjson
except ImportError:  # pragma: no cover - a dependency; json's encoder does the same, slower
    orjson = None  # type: ignore[assignment]

from archiver.errors import ArchiverError, ConfigError
from archiver.scratch import DEDUPE_PAGE_MARK, is_ours
from archiver.terminal import UNPRINTABLE, shown_path

log = logging.getLogger("archiver")

PAGE_SIZE = 50
ARTICLES_SHOWN = 20  # per member on the page; the JSON export has them all
_PAGE_FILE = re.compile(r"p\d{5}(?:-[0-9a-f]{8})?\.js")  # a data page (without a token: written before they had one)


@dataclass(frozen=True)
class MemberRow:
    sha256: str
    url: str  # the archived original's public URL
    url_src: str  # how the page links to it (a relative path for a local archive)
    thumbnail: str  # the thumbnail's public URL
    thumbnail_src: str  # what the page loads (a relative path for a local archive)
    width: int | None
    height: int | None
    format: str
    bytes: int
    canonical: bool
    pinned: bool = False
    transform: str | None = None  # how this member matches the canonical; None for the canonical
    phash_distance: int | None = None
    dhash_distance: int | None = None
    grey_distance: float | None = None  # mean grey-level difference of the 8x8 thumbnails; -1: unknown
    source_urls: tuple[str, ...] = ()
    articles: tuple[str, ...] = ()
    colour: str | None = None  # "colour" or "greyscale"; None: not measured
    palette_colours: int | None = None  # colours a palette image uses (a GIF); None: not a palette image


_MEMBER_FIELDS = tuple(f.name for f in fields(MemberRow))


def member_row(*values: object) -> MemberRow:
    """``MemberRow(*values)`` with every field given: set at once, not through one ``object.__setattr__`` each (a
    frozen dataclass's ``__init__``), a report of a million images making ~400 000."""
    row = object.__new__(MemberRow)
    row.__dict__.update(zip(_MEMBER_FIELDS, values, strict=True))
    return row


@dataclass(frozen=True)
class GroupRow:
    kind: str  # "near" (several assets) or "exact" (one asset reached through several URLs)
    members: tuple[MemberRow, ...]  # canonical first

    @cached_property
    def articles(self) -> int:  # read three times a group while the report is written: counted once
        return len({a for m in self.members for a in m.articles})


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    json: Path
    data_dir: Path
    pages: int


def sort_groups(groups: Sequence[GroupRow]) -> list[GroupRow]:
    """Most articles touched first, then the largest groups, then a stable order by canonical sha256."""
    return sorted(groups, key=lambda g: (-g.articles, -len(g.members), g.kind, g.members[0].sha256))


def write_report(groups: Sequence[GroupRow], html_path: Path, json_path: Path, meta: dict[str, object]) -> ReportFiles:
    """Write the page, its data files and the JSON export; ``groups`` are sorted here. ArchiverError on I/O errors.

    Only a report overwrites a report: an existing file at the page's or the export's path that is not one this
    function wrote (recognised by its content: the page's title, the export's first key) is refused before anything
    is written. The data pages of this report are new files whose names carry a token of this report
    (``p00001-<token>.js``): written first, then the export and the page (each replaced all at once) switch to them,
    and only then are the pages of earlier reports removed, and only when they are recognisably ours
    (``<report>.data/`` may be a folder of the user's). A report interrupted part-way (Ctrl-C, a full disk) leaves
    the previous page whole, loading its own pages (the export, replaced just before the page, may be the new
    one). Two reports of one data folder (``d.html`` and ``d.htm``) remove each other's pages: one folder, one
    report."""
    ordered = sort_groups(groups)
    data_dir = html_path.with_name(html_path.stem + ".data")
    pages = max(1, -(-len(ordered) // PAGE_SIZE))
    while True:  # a token no file there has (a file of the user's named like one is never replaced)
        token = secrets.token_hex(4)
        page_paths = [data_dir / _page_name(p + 1, token) for p in range(pages)]
        if not any(os.path.lexists(path) for path in page_paths):
            break
    try:
        for path, kind in ((html_path, "html"), (json_path, "json")):
            _refuse_unless_ours(path, kind)
        data_dir.mkdir(parents=True, exist_ok=True)
        with _replacing(json_path) as export:  # streamed, a group a line, beside the pages; in place once they are
            export.write(_export_head(meta, bool(ordered)).encode("utf-8"))
            for p, page_path in enumerate(page_paths):
                chunk = ordered[p * PAGE_SIZE : (p + 1) * PAGE_SIZE]
                rows, lines = [], []
                for i, g in enumerate(chunk):
                    page_row, export_row = _group_rows(p * PAGE_SIZE + i + 1, g)
                    rows.append(page_row)
                    lines.append(_dumps(export_row))
                if lines:
                    export.write(_escaped((",\n  " if p else "") + ",\n  ".join(lines)).encode("utf-8"))
                body = f"{_PAGE_MARK.decode()}{p + 1},{_json(rows)});\n"
                _write(page_path, body.encode("utf-8"))
            export.write(b"\n ]\n}\n" if ordered else b"\n}\n")
        summary = {
            **meta,
            "groups": len(ordered),
            "near_groups": sum(g.kind == "near" for g in ordered),
            "exact_groups": sum(g.kind == "exact" for g in ordered),
            "pages": pages,
            "page_size": PAGE_SIZE,
            "data": f"{quote(data_dir.name, safe='')}/",  # a relative URL: "#", "?" or "%" in the name are text
            "token": token,
        }
        _write(html_path, _html(summary).encode("utf-8"))
        current = {p.name for p in page_paths}
        for old in sorted(data_dir.iterdir()):  # the pages of earlier reports (or of one interrupted part-way)
            if old.name not in current and _PAGE_FILE.fullmatch(old.name) and _holds(old, "page"):
                try:
                    old.unlink()
                except OSError as exc:  # the new report is written: an old page left behind is only clutter
                    log.warning("%s: cannot remove a page of an earlier report: %s", shown_path(old),
                                exc.strerror or exc)
    except OSError as exc:
        raise ArchiverError(f"cannot write the report {html_path}: {exc.strerror or exc}") from exc
    return ReportFiles(html_path, json_path, data_dir, pages)


_APPLIED = b'\n "applied": true,\n'
_GROUPS_KEY = b'\n "groups": ['


def says_applied(json_path: Path) -> bool:
    """Whether the JSON export at ``json_path`` is one of ours that says ``"applied": true`` (False when it cannot be
    read)."""
    try:
        if not _holds(json_path, "json"):
            return False
        with open(json_path, "rb") as src:
            head = src.read(1 << 16)
    except OSError:
        return False
    at, groups = head.find(_APPLIED), head.find(_GROUPS_KEY)
    return at >= 0 and (groups < 0 or at < groups)


def mark_undone(json_path: Path) -> bool:
    """After ``dedupe --undo``: the JSON export's ``"applied": true`` (its articles were pointed at the canonical
    copies) made ``false``, every other byte copied as it is (the groups are what they were), the file replaced all at
    once; nothing is done unless it is an export of ours that says so. Returns whether it changed; ArchiverError when
    it cannot be read or replaced."""
    try:
        if not _holds(json_path, "json"):
            return False
        with open(json_path, "rb") as src:
            head = src.read(1 << 16)  # the keys before the groups: a few hundred bytes
            at, groups = head.find(_APPLIED), head.find(_GROUPS_KEY)
            if at < 0 or (groups >= 0 and at > groups):
                return False
            with _replacing(json_path) as out:
                out.write(head[:at] + b'\n "applied": false,\n' + head[at + len(_APPLIED):])
                shutil.copyfileobj(src, out, 1 << 20)
    except OSError as exc:
        raise ArchiverError(f"cannot update the report {json_path}: {exc.strerror or exc}") from exc
    return True


def _page_name(number: int, token: str) -> str:
    """A data page's file name: its number and its report's token (the page script builds the same name)."""
    return f"p{number:05d}-{token}.js"


def _escaped(text: str) -> str:
    """JSON text with every control, bidi or surrogate character as a ``\\uXXXX`` escape: the same data, safe to
    print, and encodable (a lone surrogate from an undecodable file name). json.dumps escapes C0 controls inside
    strings itself; a newline outside one is the layout, kept. ASCII text can then only hold DEL (the scan of a
    report of a million images costs seconds, the ASCII test milliseconds)."""
    if text.isascii():
        return text.replace("\x7f", "\\u007f")
    return UNPRINTABLE.sub(lambda m: m.group() if m.group() in "\n\r\t " else f"\\u{ord(m.group()):04x}", text)


# How each file of a report is recognised: the page by its title; the JSON export by its first key (as this version
# writes it, or as versions before it did); a data page by its first call.
_HTML_MARK = DEDUPE_PAGE_MARK
_JSON_MARKS = (b'{\n "report": "archiver dedupe"', b'{\n "generated": ')
_PAGE_MARK = b"dedupeReportPage("


def _holds(path: Path, kind: str) -> bool:
    """Whether ``path`` is a regular file (not a symlink) that is a report file of this ``kind`` (html, json, page)."""
    if kind == "html":
        return is_ours(path, contains=(_HTML_MARK,))
    return is_ours(path, starts=_JSON_MARKS if kind == "json" else (_PAGE_MARK,))


def _refuse_unless_ours(path: Path, kind: str) -> None:
    if os.path.lexists(path) and not path.is_symlink() and not path.is_file():
        raise ConfigError(f"cannot write the report: {shown_path(path)}: not a regular file (left as it is)")
    if os.path.lexists(path) and not _holds(path, kind):
        raise ConfigError(f"{shown_path(path)} exists and is not a report archiver wrote: not overwritten; remove "
                            "it or choose another report path (--report, --json, [dedupe] report)")


def _dumps(value: object) -> str:
    """Compact JSON text, non-ASCII characters as they are: orjson's (several times json's speed: a report of a
    million images encodes ~750 000 members), or json's for what orjson refuses (a lone surrogate from an
    undecodable file name) or where it is absent. The same text either way but for a float's notation
    (``1e-05`` / ``0.00001``: the same number)."""
    if orjson is not None:
        try:
            return orjson.dumps(value).decode()
        except TypeError:
            pass
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _json(value: object) -> str:
    # compact, and safe anywhere in HTML or JS: no "<" (</script>), no raw U+2028/2029 or other control characters
    return _escaped(_dumps(value).replace("<", "\\u003c"))


def _export_head(meta: dict[str, object], groups: bool) -> str:
    """The JSON export's start: ``meta`` one key a line, then the ``groups`` list opened (empty: closed); the groups
    follow, each on a line of its own (``_group_rows``), then ``\\n ]\\n}\\n`` (``\\n}\\n`` when empty)."""
    head = json.dumps({"report": "archiver dedupe", **meta}, ensure_ascii=False, indent=1)
    return _escaped(f'{head[:-2]},\n "groups": [\n  ' if groups else f'{head[:-2]},\n "groups": []')


_PAGE_ONLY = tuple(f.name for f in fields(MemberRow) if f.name.endswith("_src"))  # what the page only loads
_EXPORT_ONLY = ("thumbnail", "url")  # what the page does not need (it loads the *_src forms)


def _group_rows(number: int, g: GroupRow) -> tuple[dict[str, object], dict[str, object]]:
    """A group as the page shows it (a member's articles and source URLs cut to ARTICLES_SHOWN, with their totals)
    and as the export holds it (every field but the *_src ones). A member's fields are flat (strings, numbers,
    tuples of strings): copied from its ``vars``, not ``dataclasses.asdict``'s deep copy; the fields keep their
    order."""
    page, export = [], []
    for m in g.members:
        fields_ = vars(m)
        row = dict(fields_)
        for k in _EXPORT_ONLY:
            del row[k]
        row["articles"] = list(m.articles[:ARTICLES_SHOWN])
        row["articles_total"] = len(m.articles)
        row["source_urls"] = list(m.source_urls[:ARTICLES_SHOWN])
        row["source_urls_total"] = len(m.source_urls)
        page.append(row)
        full = dict(fields_)
        for k in _PAGE_ONLY:
            del full[k]
        export.append(full)
    articles = g.articles
    return ({"n": number, "kind": g.kind, "articles": articles, "members": page},
            {"id": number, "kind": g.kind, "canonical": g.members[0].sha256, "articles": articles, "members": export})


def _write(path: Path, data: bytes) -> None:
    """All or nothing (``_replacing``)."""
    with _replacing(path) as f:
        f.write(data)


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[BinaryIO]:
    """A file to write ``path``'s new content to, put in its place when the block ends without an exception, else
    removed: a reader sees the old file or the new one. Only a regular file is ever replaced: a report path naming a
    folder, a device (/dev/full) or a socket is refused, never renamed over."""
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISREG(path.lstat().st_mode):
            raise ArchiverError(f"cannot write the report: {path}: not a regular file (left as it is)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _html(summary: dict[str, object]) -> str:
    return _PAGE.replace("/*SUMMARY*/null", _json(summary))


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>archiver: duplicate images</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f4f2;color:#222}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #ccc;padding:8px 16px;z-index:1}
h1{font-size:18px;margin:0 0 4px}
nav button,nav input{font:inherit;margin-right:4px}
nav input{width:5em}
main{padding:8px 16px}
section{background:#fff;border:1px solid #ddd;border-radius:6px;margin:10px 0;padding:8px}
section h2{font-size:14px;margin:0 0 6px;font-weight:600}
.members{display:flex;flex-wrap:wrap;gap:10px}
.card{width:200px;border:2px solid #ddd;border-radius:4px;padding:6px;font-size:12px;overflow-wrap:anywhere}
.card.canonical{border-color:#2a7d2a;background:#f1faf1}
.thumb{width:188px;height:140px;display:flex;align-items:center;justify-content:center;background:#eee}
.thumb img{max-width:188px;max-height:140px}
.badge{display:inline-block;background:#2a7d2a;color:#fff;border-radius:3px;padding:0 4px;font-weight:600}
.pin{background:#7d5a2a}
.grey{background:#555}
.note{color:#8a4b00}
ul{margin:2px 0;padding-left:16px}
details summary{cursor:pointer}
.muted{color:#666}
</style></head>
<body>
<header><h1>Duplicate images</h1>
<div id="summary" class="muted"></div>
<nav><button id="prev">&larr; previous</button><button id="next">next &rarr;</button>
page <input id="page" type="number" min="1" value="1"> of <span id="pages"></span></nav></header>
<main id="groups" aria-live="polite"></main>
<script>
"use strict";
const S = /*SUMMARY*/null;
const loaded = {};
let current = 0;
const UNPRINTABLE = /[\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u2028-\\u202e\\u2066-\\u2069]/g;
function shown(text) {  // what the page shows of any text: control and bidi characters as \\uXXXX
  return String(text).replace(UNPRINTABLE, (c) => "\\\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = shown(text);
  return e;
}
function size(n) {
  if (n >= 1048576) return (n / 1048576).toFixed(1) + " MB";
  if (n >= 1024) return (n / 1024).toFixed(1) + " KB";
  return n + " B";
}
function list(title, items, total) {
  const d = el("details");
  d.appendChild(el("summary", null, title + " (" + total + ")"));
  const ul = el("ul");
  for (const x of items) ul.appendChild(el("li", null, x));
  if (total > items.length) ul.appendChild(el("li", "muted", "… " + (total - items.length) + " more in the JSON"));
  d.appendChild(ul);
  return d;
}
function card(m) {
  const c = el("div", "card" + (m.canonical ? " canonical" : ""));
  c.dataset.sha256 = m.sha256;
  const t = el("div", "thumb");
  const img = el("img");
  img.loading = "lazy";
  img.decoding = "async";
  img.alt = m.sha256.slice(0, 12);
  img.addEventListener("load", () => { img.dataset.loaded = String(img.naturalWidth); });
  img.addEventListener("error", () => { img.dataset.loaded = "error"; });
  img.src = m.thumbnail_src;
  t.appendChild(img);
  c.appendChild(t);
  const head = el("div");
  if (m.canonical) head.appendChild(el("span", "badge", "canonical"));
  if (m.pinned) head.appendChild(el("span", "badge pin", "pinned"));
  if (m.colour === "greyscale") head.appendChild(el("span", "badge grey", "greyscale"));
  c.appendChild(head);
  const dims = m.width ? m.width + "×" + m.height : "?";
  const palette = m.palette_colours ? " (" + m.palette_colours + "-colour palette)" : "";
  c.appendChild(el("div", null, dims + " · " + m.format + palette + " · " + size(m.bytes)));
  if (!m.canonical && m.transform !== null) {
    const grey = m.grey_distance !== null && m.grey_distance >= 0 ? " · grey " + m.grey_distance : "";
    c.appendChild(el("div", null, "pHash " + m.phash_distance + " · dHash " + m.dhash_distance + grey + " · " + m.transform));
  }
  const a = el("a", null, m.sha256.slice(0, 16) + "…");
  a.href = m.url_src;
  c.appendChild(a);
  c.appendChild(list("articles", m.articles, m.articles_total));
  if (m.source_urls_total) c.appendChild(list("source URLs", m.source_urls, m.source_urls_total));
  return c;
}
function render(page) {
  const main = document.getElementById("groups");
  main.replaceChildren();
  for (const g of loaded[page]) {
    const s = el("section");
    s.id = "group-" + g.n;
    const what = g.kind === "exact" ? "one image, " + g.members[0].source_urls_total + " URLs"
      : g.members.length + " near-duplicate images";
    s.appendChild(el("h2", null, "#" + g.n + " · " + what + " · " + g.articles + " article(s)"));
    const tones = new Set(g.members.map((m) => m.colour).filter((c) => c));
    if (tones.size > 1) s.appendChild(el("div", "note", "colour and greyscale copies of one picture"));
    const row = el("div", "members");
    for (const m of g.members) row.appendChild(card(m));
    s.appendChild(row);
    main.appendChild(s);
  }
  document.body.dataset.page = String(page);
}
window.dedupeReportPage = function (page, groups) {
  loaded[page] = groups;
  if (page === current) render(page);
};
function show(page) {
  page = Math.min(Math.max(1, page | 0), S.pages);
  current = page;
  document.getElementById("page").value = page;
  if (location.hash !== "#page=" + page) history.replaceState(null, "", "#page=" + page);
  if (loaded[page]) { render(page); window.scrollTo(0, 0); return; }
  const sc = document.createElement("script");
  sc.src = S.data + "p" + String(page).padStart(5, "0") + "-" + S.token + ".js";
  sc.onerror = () => { document.getElementById("groups").textContent = "cannot load " + sc.src; };
  document.head.appendChild(sc);
}
document.getElementById("summary").textContent = S.groups + " groups (" + S.near_groups + " near-duplicate, "
  + S.exact_groups + " same image under several URLs) · max pHash distance " + S.max_distance
  + " · generated " + S.generated;
document.getElementById("pages").textContent = S.pages;
document.getElementById("prev").onclick = () => show(current - 1);
document.getElementById("next").onclick = () => show(current + 1);
document.getElementById("page").onchange = (e) => show(Number(e.target.value));
const m = /page=(\\d+)/.exec(location.hash);
show(m ? Number(m[1]) : 1);
</script>
</body></html>
"""
