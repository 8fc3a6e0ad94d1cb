"""`archiver dedupe`: group the archive's duplicates, pick canonicals, write the report, optionally rewrite.

Without --apply nothing changes in articles or storage (the manifest gains the hash variants of
assets archived before they existed, and the pairs of the assets not yet searched at this distance:
``dedupe.update_pairs``; the groups come from the recorded pairs). --apply rewrites articles from each
non-canonical member's archive URL to its canonical's; --undo puts the previous URLs back.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urljoin

from PIL import Image

from archiver import canonical, dedupe, similarity
from archiver.articles import load_article
from archiver.config import MAX_DISTANCE, Config
from archiver.errors import ArchiverError, ArticleError, ConfigError, ManifestError
from archiver.grouping import AssetInfo, Group
from archiver.manifest import Manifest
from archiver.model import Asset, ImageFormat
from archiver.refs import find_refs
from archiver.report import GroupRow, MemberRow, write_report
from archiver.storage import Store, open_store

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
    parser.add_argument("--report", type=Path, metavar="PATH", help="HTML report (default: [dedupe] report)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="JSON export (default: the report's path, .json)")


@dataclass(frozen=True)
class ArchivedAsset:
    """An asset as the command sees it: what grouping needs, its original key and its thumbnails."""

    info: AssetInfo
    mime: str
    ext: str
    key: str
    phash: str | None
    dhash: str | None
    thumbs: tuple[tuple[int, str], ...]  # (width, key), smallest first


@dataclass(frozen=True)
class Plan:
    """The groups of the whole archive and what --apply would do: archive URL of a member -> its canonical's."""

    groups: list[Group]
    assets: dict[str, ArchivedAsset]
    mapping: dict[str, str]
    forms: dict[str, str]  # every archive URL (each public base + key) -> asset sha256
    pinned: set[str]
    articles: list[str]  # the articles the manifest knows we rewrote


def plan(cfg: Config, manifest: Manifest, store: Store, max_distance: int, *, rescan: bool = False) -> Plan:
    """Group the archive (computing missing hash variants, searching the assets not yet searched at this distance,
    or all with ``rescan``) from the recorded pairs; no article is touched.
    Also what a run with ``[dedupe] rewrite_to_canonical`` needs: ``canonical.apply_canonical(…, plan.mapping, …)``."""
    d = cfg.dedupe
    assets = _load_assets(manifest, store)
    by_sha = {a.info.sha256: a for a in assets}
    bases = [cfg.storage.public_base_url]
    if cfg.articles.base_url:
        bases.append(urljoin(cfg.articles.base_url, cfg.storage.public_base_url))
    forms = {b + a.key: a.info.sha256 for a in assets for b in bases}
    pinned = _resolve(manifest, d.canonical, forms, by_sha, "canonical")
    excluded = _resolve(manifest, d.exclude, forms, by_sha, "exclude")
    search = dedupe.update_pairs(manifest, max_distance, rescan=rescan)
    if search.searched:
        log.info("searched %d images for near-duplicates against %d in %.1fs (%d pairs)", search.searched,
                 search.archive, search.seconds, search.pairs)
    else:
        log.info("every image was already searched for near-duplicates at distance %d", max_distance)
    started = time.monotonic()
    pairs = manifest.recorded_pairs(max_distance, similarity.RULE_VERSION)
    groups = dedupe.groups_from_pairs([a.info for a in assets], pairs, max_distance, d.prefer, pinned, excluded)
    log.info("grouped %d assets from %d pairs in %.1fs", len(assets), len(pairs), time.monotonic() - started)
    mapping = {b + by_sha[m.sha256].key: b + by_sha[g.canonical].key
               for g in groups for m in g.members[1:] for b in bases}
    articles = [path for path, _before, _after in manifest.rewritten_articles()]
    return Plan(groups, by_sha, mapping, forms, pinned, articles)


def command(args: argparse.Namespace, cfg: Config) -> int:
    d = cfg.dedupe
    max_distance = d.max_distance if args.max_distance is None else args.max_distance
    if not 0 <= max_distance <= MAX_DISTANCE:
        raise ConfigError(f"--max-distance: {max_distance} is not 0-{MAX_DISTANCE}")
    manifest_path = cfg.resolve_path(cfg.manifest.path)
    if not manifest_path.exists():
        raise ManifestError(f"{manifest_path}: no manifest yet (run `archiver run` first)")
    fields = cfg.articles.front_matter_fields
    with Manifest.open(manifest_path) as manifest:
        if args.undo:
            return _report_rewrite("undo", canonical.undo_canonical(manifest, fields))
        store = open_store(cfg.storage, cfg.source.parent if cfg.source else Path.cwd())
        p = plan(cfg, manifest, store, max_distance, rescan=args.rescan)
        usage = _usage(p.articles, p.forms, fields)  # before --apply: who used which copy
        html = args.report or cfg.resolve_path(d.report)
        rows = _rows(p, _source_urls(manifest), usage, store, html.parent)
        applied = canonical.apply_canonical(manifest, p.articles, p.mapping, fields) if args.apply else None
        meta = {"generated": time.strftime("%Y-%m-%d %H:%M:%S"), "max_distance": max_distance,
                "prefer": list(d.prefer), "applied": bool(args.apply)}
        files = write_report(rows, html, args.json or html.with_suffix(".json"), meta)
    print(f"{len(p.groups)} near-duplicate groups ({sum(len(g.members) for g in p.groups)} images), "
          f"{sum(r.kind == 'exact' for r in rows)} images archived from several URLs")
    print(f"report: {files.html} ({files.pages} pages); JSON: {files.json}")
    if applied is None:
        print("nothing rewritten (use --apply to point articles at the canonical copies)")
        return 0
    return _report_rewrite("apply", applied)


def _report_rewrite(what: str, result: canonical.RewriteResult) -> int:
    verb = "rewritten to canonical copies" if what == "apply" else "restored"
    print(f"{what}: {result.articles} articles {verb} ({result.spans} references)")
    for p in result.problems:
        print(f"  {p}")
    return 1 if result.problems else 0


def _load_assets(manifest: Manifest, store: Store) -> list[ArchivedAsset]:
    """Every asset, with its signature; variants missing (archived before they existed) are computed now."""
    thumbs: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for sha, width, key in manifest.renditions():
        thumbs[sha].append((width, key))
    out: list[ArchivedAsset] = []
    for sha, fmt, mime, ext, size, w, h, first, key, ph, dh, pv, dv, grey in manifest.asset_rows():
        sig = None
        if ph is not None:
            sig = _signature(pv, dv, grey) or _backfill(manifest, store, sha, thumbs.get(sha, []))
            if sig is not None and pv is None:
                manifest.record_asset(
                    Asset(sha, ImageFormat(fmt, mime, ext), size, w, h, ph, dh, phash_variants=sig.phash,
                          dhash_variants=sig.dhash, grey=sig.grey),
                    key, [],
                )
        info = AssetInfo(sha, fmt, size, w, h, first, sig)
        out.append(ArchivedAsset(info, mime, ext, key, ph, dh, tuple(thumbs.get(sha, []))))
    return out


def _signature(pv: str | None, dv: str | None, grey: str | None) -> similarity.Signature | None:
    if not pv or not dv:
        return None
    try:
        return similarity.Signature(tuple(pv.split(",")), tuple(dv.split(",")), grey or "")
    except ValueError:
        return None


def _backfill(manifest: Manifest, store: Store, sha: str, thumbs: list[tuple[int, str]]) -> similarity.Signature | None:
    """The signature from the largest stored thumbnail (what imaging hashes), or None with a warning."""
    if not thumbs:
        log.warning("%s: no thumbnail stored; not grouped", sha)
        return None
    key = thumbs[-1][1]
    try:
        with Image.open(io.BytesIO(store.get(key))) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                rgba = im.convert("RGBA")
                flat = Image.new("RGB", rgba.size, (255, 255, 255))
                flat.paste(rgba, mask=rgba.getchannel("A"))
                return similarity.signature(flat)
            return similarity.signature(im.convert("RGB"))
    except ArchiverError as exc:
        log.warning("%s: cannot read thumbnail %s: %s; not grouped", sha, key, exc)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        log.warning("%s: thumbnail %s does not decode: %s; not grouped", sha, key, exc)
    return None


def _source_urls(manifest: Manifest) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for url, asset in manifest.archived_urls():
        out[asset].append(url)
    return out


def _resolve(manifest: Manifest, values: tuple[str, ...], forms: dict[str, str],
             by_sha: dict[str, ArchivedAsset], what: str) -> set[str]:
    """Config entries (sha256, archive URL or source URL) as asset sha256s; unknown ones are warned about."""
    out: set[str] = set()
    states = manifest.url_states([v for v in values if v not in by_sha and v not in forms])
    for v in values:
        sha = v if v in by_sha else forms.get(v) or (states[v].asset if v in states else None)
        if sha is None:
            log.warning("[dedupe] %s: %s is not an archived asset or URL; ignored", what, v)
        else:
            out.add(sha)
    return out


def _usage(paths: list[str], forms: dict[str, str], fields: tuple[str, ...]) -> dict[str, list[str]]:
    """asset sha256 -> articles whose text uses its archive URL."""
    out: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        try:
            article = load_article(Path(path))
        except ArticleError as exc:
            log.warning("%s", exc)
            continue
        seen: set[str] = set()
        for ref in find_refs(article.text, article.format, fields):
            sha = forms.get(article.text[ref.start : ref.end])
            if sha and sha not in seen:
                seen.add(sha)
                out[sha].append(path)
    return out


def _rows(p: Plan, sources: dict[str, list[str]], usage: dict[str, list[str]], store: Store,
          report_dir: Path) -> list[GroupRow]:
    def member(sha: str, m: similarity.Match | None, canonical: bool) -> MemberRow:
        a = p.assets[sha]
        thumb_key = next((k for w, k in a.thumbs if w >= THUMB_MIN_WIDTH), a.thumbs[-1][1] if a.thumbs else a.key)
        return MemberRow(
            sha, store.url_for(a.key), _page_src(store, a.key, report_dir), store.url_for(thumb_key),
            _page_src(store, thumb_key, report_dir), a.info.width, a.info.height, a.info.format, a.info.bytes,
            canonical, sha in p.pinned, m.transform if m else None, m.phash_distance if m else None,
            m.dhash_distance if m else None, m.grey_distance if m else None, tuple(sources.get(sha, ())),
            tuple(usage.get(sha, ())),
        )

    rows = [GroupRow("near", tuple(member(x.sha256, x.match, i == 0) for i, x in enumerate(g.members)))
            for g in p.groups]
    grouped = {m.sha256 for g in p.groups for m in g.members}
    rows += [GroupRow("exact", (member(sha, None, True),))
             for sha, urls in sources.items() if len(urls) > 1 and sha in p.assets and sha not in grouped]
    return rows


def _page_src(store: Store, key: str, report_dir: Path) -> str:
    """How the page loads a thumbnail: a path relative to the report for a local archive (works from disk)."""
    root = getattr(store, "root", None)
    if isinstance(root, Path):
        rel = os.path.relpath(root / key, report_dir.resolve())
        return quote("/".join(rel.split(os.sep)))
    return store.url_for(key)

