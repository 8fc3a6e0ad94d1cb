"""The near-duplicate groups of the whole archive and what ``--apply`` would do with them.

``plan`` loads every asset's signature (computing those missing, from stored thumbnails), searches the assets not
yet searched (``pairs.update_pairs``), groups from the recorded pairs (``pairs.groups_from_pairs``), and maps
each non-canonical member's archive URL to its canonical's. `archiver dedupe` and a run with
``[dedupe] rewrite_to_canonical`` both start from it; no article is touched here.
"""

from __future__ import annotations

import io
import logging
import time
from collections import defaultdict
from dataclasses import dataclass

from PIL import Image

from archiver.config import Config
from archiver.dedupe.grouping import AssetInfo, Group
from archiver.dedupe.pairs import groups_from_pairs, update_pairs
from archiver.errors import ArchiverError
from archiver.image import similarity
from archiver.image.process import flatten
from archiver.manifest.sqlite import Manifest
from archiver.model import SIMILARITY_RULE_VERSION, Asset, ImageFormat
from archiver.storage import Store
from archiver.storage.keys import public_bases, public_url

log = logging.getLogger("archiver")


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
    bases = public_bases(cfg)
    forms = {public_url(b, a.key): a.info.sha256 for a in assets for b in bases}
    pinned = _resolve(manifest, d.canonical, forms, by_sha, "canonical")
    excluded = _resolve(manifest, d.exclude, forms, by_sha, "exclude")
    search = update_pairs(manifest, max_distance, rescan=rescan)
    if search.searched:
        log.info("searched %d images for near-duplicates against %d in %.1fs (%d pairs)", search.searched,
                 search.archive, search.seconds, search.pairs)
    else:
        log.info("every image was already searched for near-duplicates at distance %d", max_distance)
    started = time.monotonic()
    pairs = manifest.recorded_pairs(max_distance, SIMILARITY_RULE_VERSION)
    groups = groups_from_pairs([a.info for a in assets], pairs, max_distance, d.prefer, pinned, excluded)
    log.info("grouped %d assets from %d pairs in %.1fs", len(assets), len(pairs), time.monotonic() - started)
    mapping = {public_url(b, by_sha[m.sha256].key): public_url(b, by_sha[g.canonical].key)
               for g in groups for m in g.members[1:] for b in bases}
    articles = [path for path, _before, _after in manifest.rewritten_articles()]
    return Plan(groups, by_sha, mapping, forms, pinned, articles)


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
    """The signature from the largest stored thumbnail (what the image stage hashes), or None with a warning."""
    if not thumbs:
        log.warning("%s: no thumbnail stored; not grouped", sha)
        return None
    key = thumbs[-1][1]
    try:
        with Image.open(io.BytesIO(store.get(key))) as im:
            im.load()
            return similarity.signature(flatten(im).convert("RGB"))
    except ArchiverError as exc:
        log.warning("%s: cannot read thumbnail %s: %s; not grouped", sha, key, exc)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        log.warning("%s: thumbnail %s does not decode: %s; not grouped", sha, key, exc)
    return None


def source_urls(manifest: Manifest) -> dict[str, list[str]]:
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
