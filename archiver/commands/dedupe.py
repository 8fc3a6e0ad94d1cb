"""`archiver dedupe`: group the archive's duplicates, pick canonicals, write the report, optionally rewrite.

Without --apply nothing changes in articles or storage (the manifest gains the hash variants of
assets archived before they existed, and the pairs of the assets not yet searched at this distance:
``dedupe.pairs.update_pairs``; the groups come from the recorded pairs). --apply rewrites articles from each
non-canonical member's archive URL to its canonical's; --undo puts the previous URLs back.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from archiver.articles.files import detect_format, load_article, read_raw
from archiver.articles.journal import settle_pending
from archiver.config import Config
from archiver.dedupe import canonical
from archiver.dedupe.canonical import COLLECT_EVERY
from archiver.dedupe.pairs import gc_paused
from archiver.dedupe.plan import Plan, load_assets, plan
from archiver.dedupe.report import GroupRow, MemberRow, mark_undone, member_row, says_applied, write_report
from archiver.errors import ArchiverError, ArticleError, ConfigError, ManifestError
from archiver.find.refs import article_refs
from archiver.image import similarity
from archiver.manifest.sqlite import Manifest
from archiver.manifest.target import exists, manifest_target, shown
from archiver.model import DISTANCE_LIMIT
from archiver.run.articles import archive_shaped, refs_fingerprint
from archiver.storage import Store, open_store
from archiver.storage.keys import check_key, current_url, public_bases
from archiver.terminal import count, say, shown_path

log = logging.getLogger("archiver")
THUMB_MIN_WIDTH = 188  # the report's thumbnail box


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-distance", type=int, metavar="N",
                        help="pHash Hamming distance for candidates (default: [dedupe] max_distance)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--apply", action="store_true",
                      help="rewrite articles that use a non-canonical copy to the canonical copy's URL")
    mode.add_argument("--undo", action="store_true", help="put back the URLs an earlier --apply replaced")
    parser.add_argument("--rescan", action="store_true",
                        help="search the whole archive for near-duplicate pairs again instead of only new images")
    parser.add_argument("--resign", action="store_true",
                        help="sign again, from their stored thumbnails, images archived before signatures were taken "
                             "inside added borders and letterbox bars (once, after upgrading)")
    parser.add_argument("--compact", action="store_true",
                        help="merge the on-disk near-duplicate index (beside a SQLite manifest; in this machine's "
                             "cache for a PostgreSQL one) into one segment first")
    parser.add_argument("--report", type=Path, metavar="PATH", help="HTML report (default: [dedupe] report)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="JSON export (default: the report's path, .json)")


def command(args: argparse.Namespace, cfg: Config) -> int:
    d = cfg.dedupe
    max_distance = d.max_distance if args.max_distance is None else args.max_distance
    if not 0 <= max_distance <= DISTANCE_LIMIT:
        raise ConfigError(f"--max-distance: {max_distance} is not 0-{DISTANCE_LIMIT}")
    html, json_path = _report_paths(args, cfg)  # before any work: a wrong path is one line at once
    manifest_path = manifest_target(cfg)
    if not exists(manifest_path):
        raise ManifestError(f"{shown(manifest_path)}: no manifest yet (run `archiver run` first)")
    fields = cfg.articles.front_matter_fields
    with Manifest.open(manifest_path, reconnect_for=cfg.manifest.reconnect_for) as manifest:
        settle_pending(manifest)  # article writes a killed command left between their rename and their record
        if args.undo:
            now = current_url(public_bases(cfg), manifest.moved_keys())  # objects `rekey` moved: their URLs now
            undone = canonical.undo_canonical(manifest, now)
            code = _report_rewrite("undo", undone)
            if undone.unrestored or undone.gone:  # some may still point at the canonical copies: the export says so
                if says_applied(json_path):  # (one that already says false is not news)
                    say(f"JSON: {json_path} left as it was (an article --apply rewrote was not restored)")
                return code
            try:  # the export of an --apply no longer says the articles point at the canonical copies
                if mark_undone(json_path):
                    say(f"JSON: {json_path} says \"applied\": false")
            except ArchiverError as exc:
                log.warning("%s", exc)
            return code
        store = open_store(cfg)
        p = plan(cfg, manifest, store, max_distance, rescan=args.rescan, compact=args.compact,
                 resign=args.resign)
        if args.rescan and p.search is not None:  # asked for: said without -v (else a rescan looks like nothing)
            say(f"rescan: searched {count(p.search.searched, 'image')} for near-duplicates against "
                f"{p.search.archive} in {p.search.seconds:.1f}s ({count(p.search.pairs, 'pair')})")
        bases = public_bases(cfg)
        # Python's cyclic collector paused until the report is written: a few objects per member of a group, none in a
        # cycle, made beside the plan's millions, which each full collection would walk (at 1 M: the source URLs
        # 5.4-7.0 -> 3.3-3.6 s, the articles' references 5.7-7.5 -> 5.2-5.5 s); parsing an article does make cycles
        # (~13 objects), which ``_usage`` collects as it goes
        with gc_paused():
            several = manifest.assets_with_several_urls()  # one asset reached through several URLs: an "exact" row
            p.assets.update((a.info.sha256, a) for a in load_assets(manifest, store, [s for s in several
                                                                                   if s not in p.assets]))
            sources = manifest.source_urls_of(p.assets)  # the report's assets' only, not every URL of the archive
            members = {a.key: sha for sha, a in p.assets.items()}
            usage = _usage(manifest, p.articles, members, bases, fields, cfg.articles.max_refs)  # before --apply
            rows = _rows(p, sources, usage, store, html.parent)
            applied = canonical.apply_canonical(manifest, p.articles, p.mapping, fields, cfg.articles.max_refs) if args.apply else None
            meta = {"generated": time.strftime("%Y-%m-%d %H:%M:%S"), "max_distance": max_distance,
                    "prefer": list(d.prefer), "applied": bool(args.apply)}
            files = write_report(rows, html, json_path, meta)
    say(f"{count(len(p.groups), 'near-duplicate group')} ({count(sum(len(g.members) for g in p.groups), 'image')}), "
        f"{count(sum(r.kind == 'exact' for r in rows), 'image')} archived from several URLs")
    say(f"report: {files.html} ({count(files.pages, 'page')}); JSON: {files.json}")
    if applied is None:
        say("nothing rewritten (use --apply to point articles at the canonical copies)")
        return 0
    return _report_rewrite("apply", applied)


def _report_paths(args: argparse.Namespace, cfg: Config) -> tuple[Path, Path]:
    """The report page's path and the JSON export's (``--report``/``--json``, else ``[dedupe] report`` and its .json),
    refused (ConfigError) when one is not a file name, or two of the page, the export and the page's data folder
    would be the same path (``--report r.json``: the export would replace the page), or one would be inside another
    (``--report report --json report/dedupe.json``: the export's folder would take the page's path) but for the
    export in the data folder."""
    html = args.report or cfg.resolve_path(cfg.dedupe.report)
    for flag, path in (("--report", html), ("--json", args.json)):
        if path is not None and path.name in ("", ".", ".."):
            raise ConfigError(f"{flag}: {shown_path(path) or repr(str(path))} is not a file name")
    json_path = args.json or html.with_suffix(".json")
    data = html.with_name(html.stem + ".data")
    named = {"the report page": html, "the JSON export": json_path, "the page's data folder": data}
    real = {what: os.path.realpath(path) for what, path in named.items()}
    seen: dict[str, str] = {}
    for what, path in named.items():
        if real[what] in seen:
            raise ConfigError(f"{seen[real[what]]} and {what} would be the same path ({shown_path(path)}): give "
                              "--report or --json another one")
        seen[real[what]] = what
    for what, path in named.items():  # nor one inside another (but the export in the data folder)
        for other, outer in named.items():
            if (what, other) != ("the JSON export", "the page's data folder") and real[what].startswith(
                    os.path.join(real[other], "")):
                raise ConfigError(f"{what} ({shown_path(path)}) would be inside {other} ({shown_path(outer)}): give "
                                  "--report or --json another one")
    for what, path in named.items():  # what is already there and cannot be what it must be: said now, not at the end
        if what == "the page's data folder" and os.path.lexists(path) and not path.is_dir():
            raise ConfigError(f"{shown_path(path)} exists and is not a folder: {what} cannot be made there (left as "
                              "it is); remove it or give --report another path")
        if what != "the page's data folder" and path.is_dir():
            raise ConfigError(f"{shown_path(path)} is a folder: {what} cannot be written there (left as it is); give "
                              "--report or --json another path")
    return html, json_path


def _report_rewrite(what: str, result: canonical.RewriteResult) -> int:
    verb = "rewritten to canonical copies" if what == "apply" else "restored"
    say(f"{what}: {count(result.articles, 'article')} {verb} ({count(result.spans, 'reference')})")
    for p in result.problems:
        say(f"  {p}")
    if result.gone:  # not an error (a deleted article uses nothing), but a moved one still uses the canonical copies
        one = len(result.gone) == 1
        say(f"  {count(len(result.gone), 'article')} that --apply rewrote {'is' if one else 'are'} no longer at "
            f"{'its path' if one else 'their paths'} (moved or deleted since), not restored; move "
            f"{'it' if one else 'them'} back and run --undo again:")
        for path in result.gone[:_GONE_LISTED]:
            say(f"    {shown_path(path)}")
        if len(result.gone) > _GONE_LISTED:
            say(f"    … and {len(result.gone) - _GONE_LISTED} more")
    return 1 if result.problems else 0


_GONE_LISTED = 20  # moved or deleted articles named by --undo (the rest counted)


def _usage(manifest: Manifest, paths: list[str], members: dict[str, str], bases: tuple[str, ...],
           fields: tuple[str, ...], max_refs: int) -> dict[str, list[str]]:
    """asset sha256 -> the articles whose text uses its archive URL (one of ``bases`` followed by its original's
    key), for the assets of ``members`` (key -> sha256: the report's; no other asset is looked up). Each article's
    references are found once per content: the text of each is recorded in the manifest under the bytes' sha256,
    the format and the finder's settings and code (``article_refs``), so an article unchanged since an earlier report
    is read and hashed, not parsed again (at 100 000 articles, ~5 s instead of ~2 minutes)."""
    out: dict[str, list[str]] = defaultdict(list)
    present = [p for p in paths if os.path.lexists(p)]
    if len(present) < len(paths):  # deleted since they were archived: they use nothing (said once, not per article)
        log.info("%s the manifest knows of deleted since they were archived; not read",
                 count(len(paths) - len(present), "article"))
    fingerprint = refs_fingerprint(fields, max_refs, bases)
    known = manifest.article_refs(fingerprint)
    found: list[tuple[str, str, list[str]]] = []  # parsed now: recorded below
    parsed = 0  # articles read to be parsed (found, or refused)
    seen: list[tuple[str, str]] = []

    def member(text: str) -> str | None:
        for base in bases:  # longest first
            if text.startswith(base) and (sha := members.get(text[len(base):])) is not None:
                return sha
        return None

    lengths = sorted({len(k) for k in members})

    def mentions_member(text: str) -> bool:
        """Whether one of ``bases`` followed by a member's key stands anywhere in ``text``: a reference ``member``
        maps to an asset is such a span, so an article without one uses none of the report's assets, whatever its
        references are (most articles of an archive with few duplicates: not parsed)."""
        for base in bases:
            at = text.find(base)
            while at >= 0:
                start = at + len(base)
                if any(text[start : start + n] in members for n in lengths):
                    return True
                at = text.find(base, at + 1)
        return False

    if len(present) - len(known) > 1000:  # (a first report of a large site: minutes, said before, not after)
        log.info("reading %s to see which use which copy (up to %s not seen before, parsed: ~1 ms each)",
                 count(len(present), "article"), len(present) - len(known))
    for path in present:
        file = Path(path)
        try:
            key = (hashlib.sha256(read_raw(file)).hexdigest(), detect_format(file))
            texts = known.get(key)
            if texts is None:
                parsed += 1
                if parsed % COLLECT_EVERY == 0:  # a parse's cycles (one that failed too), with the collector
                    gc.collect(0)  # paused: the young objects only (those made since the last), not the plan's
                article = load_article(file)  # (hashed again: the bytes parsed are the bytes recorded)
                key = (hashlib.sha256(article.raw).hexdigest(), article.format)
                if not mentions_member(article.text):
                    continue  # uses none of the report's assets (not recorded: the next report's may differ)
                texts = archive_shaped((article.text[ref.start : ref.end] for ref in
                                        article_refs(article, fields, max_refs)), bases)
                known[key] = texts
                found.append((*key, texts))
        except ArticleError as exc:
            log.warning("%s", exc)
            continue
        seen.append(key)
        for sha in dict.fromkeys(member(t) for t in texts):  # each asset once, in the text's order
            if sha is not None:
                out[sha].append(shown_path(path))
    log.info("read %s to see which use which copy; parsed %d of them (the others as recorded, or naming none of the "
             "report's images)", count(len(present), "article"), len(found))
    try:
        manifest.record_article_refs(found, fingerprint, seen)
    except ManifestError as exc:  # only the next report's time is at stake
        log.warning("could not record the references found in articles (the next report parses them again): %s", exc)
    return out


def _rows(p: Plan, sources: dict[str, list[str]], usage: dict[str, list[str]], store: Store,
          report_dir: Path) -> list[GroupRow]:
    page_src = _page_src(store, report_dir)
    url_for, assets, pinned = store.url_for, p.assets, p.pinned

    def member(sha: str, m: similarity.Match | None, canonical: bool) -> MemberRow:
        a = assets[sha]
        info = a.info
        key = a.key
        thumb_key = key
        for w, k in a.thumbs:  # the smallest thumbnail the report's box can show, else the largest, else the original
            thumb_key = k
            if w >= THUMB_MIN_WIDTH:
                break
        url, thumb_url = url_for(key), url_for(thumb_key)  # (each checks its key: check_key)
        return member_row(
            sha, url, page_src(key, url), thumb_url, page_src(thumb_key, thumb_url), info.width, info.height,
            info.format, info.bytes, canonical, sha in pinned, m.transform if m else None,
            m.phash_distance if m else None, m.dhash_distance if m else None, m.grey_distance if m else None,
            tuple(sources.get(sha, ())), tuple(usage.get(sha, ())),
            None if info.chroma is None else "greyscale" if info.greyscale else "colour", info.colours or None,
        )

    rows = [GroupRow("near", tuple(member(x.sha256, x.match, i == 0) for i, x in enumerate(g.members)))
            for g in p.groups]
    grouped = {m.sha256 for g in p.groups for m in g.members}
    rows += [GroupRow("exact", (member(sha, None, True),))
             for sha, urls in sources.items() if len(urls) > 1 and sha in p.assets and sha not in grouped]
    return rows


def _page_src(store: Store, report_dir: Path) -> Callable[[str, str], str]:
    """How the page loads an object, given its key and its URL (``store.url_for(key)``, which checked the key:
    relative, no ``.`` or ``..`` segment, only characters ``quote`` leaves as they are): by a path relative to the
    report for a local archive (works from disk), else by its URL. The path is
    ``os.path.relpath(store.local_path(key), realpath(report folder))``, worked out without resolving a million
    paths (a third of the command's time at 1 M images): the two folders are related once, and the key is appended
    to that, or, for a report folder inside the store, the segments the key shares with the report folder's place
    in it are left out, as relpath does (a report folder that is a symlink into the store then reaches the objects
    below it through the link, as the page resolves ``..`` without following it). The page only links to the
    object: a symlink in the store that leads out of it is refused where the archiver reads or writes, not here."""
    root = store.local_root()
    if root is None:
        return lambda _key, url: url
    report = os.path.realpath(report_dir)
    place = os.path.relpath(report, root).split(os.sep)  # where the report's folder is, from the store's
    if place == [os.curdir] or place[0] == os.pardir:  # the store's folder itself, or not inside it
        rel = os.path.relpath(root, report)
        prefix = "" if rel == os.curdir else quote("/".join(rel.split(os.sep))) + "/"
        return lambda key, _url: prefix + key

    def inside(key: str, _url: str) -> str:  # posixpath.relpath's steps, from the store's folder down
        segments = check_key(key).split("/")
        shared = 0
        while shared < min(len(place), len(segments)) and place[shared] == segments[shared]:
            shared += 1
        return "/".join([os.pardir] * (len(place) - shared) + segments[shared:]) or os.curdir

    return inside
