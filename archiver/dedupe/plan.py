"""The near-duplicate groups of the whole archive and what ``--apply`` would do with them.

``plan`` loads every asset's signature (computing those missing, from stored thumbnails), searches the assets not
yet searched (``pairs.update_pairs``), groups from the recorded pairs (``pairs.stream_groups``: a batch of whole
connected components at a time, each with ``pairs.groups_from_pairs``), and maps
each non-canonical member's archive URL to its canonical's. `archiver dedupe` and a run with
``[dedupe] rewrite_to_canonical`` both start from it; no article is touched here.
"""

from __future__ import annotations

import io
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields, replace
from functools import cached_property
from typing import TypeVar

from PIL import Image

from archiver.config import Config
from archiver.dedupe.grouping import AssetInfo, Group
from archiver.dedupe.pairs import PairSearch, gc_paused, stream_groups, update_pairs
from archiver.dedupe.segments import VARIANTS_WIDTH
from archiver.errors import ArchiverError
from archiver.image import similarity
from archiver.image.process import flatten, mean_chroma, palette_colours
from archiver.manifest.rows import AssetRow
from archiver.manifest.sqlite import Manifest
from archiver.model import Asset, ImageFormat
from archiver.storage import Store
from archiver.storage.keys import public_bases, public_url
from archiver.terminal import count, say

log = logging.getLogger("archiver")
_Frozen = TypeVar("_Frozen", AssetInfo, "ArchivedAsset")


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
    assets: dict[str, ArchivedAsset]  # the members of the groups (what the report shows of them)
    pinned: set[str]
    articles: list[str]  # the articles the manifest knows we rewrote
    bases: tuple[str, ...]  # public_bases: every form an archive URL takes in an article
    search: PairSearch | None = None  # what the pair search did before grouping

    @cached_property
    def mapping(self) -> dict[str, str]:
        """Archive URL of each non-canonical member (in every form of ``bases``) -> its canonical's: what --apply
        rewrites. Made when first asked for (a report alone does not need it: ~400 000 URLs at 1 M images)."""
        return {public_url(b, self.assets[m.sha256].key): public_url(b, self.assets[g.canonical].key)
                for g in self.groups for m in g.members[1:] for b in self.bases}


def plan(cfg: Config, manifest: Manifest, store: Store, max_distance: int, *, rescan: bool = False,
         compact: bool = False, resign: bool = False) -> Plan:
    """Group the archive (computing missing hash variants, searching the assets not yet searched at this distance,
    or all with ``rescan``) from the recorded pairs; no article is touched.
    Also what a run with ``[dedupe] rewrite_to_canonical`` needs: ``canonical.apply_canonical(…, plan.mapping, …)``."""
    with gc_paused():  # a few small objects per asset, millions at a million images, no cycle among them
        return _plan(cfg, manifest, store, max_distance, rescan, compact, resign)


def _plan(cfg: Config, manifest: Manifest, store: Store, max_distance: int, rescan: bool, compact: bool,
          resign: bool) -> Plan:
    d = cfg.dedupe
    if resign:  # every stored thumbnail looked at again
        _resign(manifest, store, load_assets(manifest, store))
    _sign_unsigned(manifest, store)
    by_sha: dict[str, ArchivedAsset] = {}  # the assets that can be in a group, read a batch at a time (below)
    bases = public_bases(cfg)
    pinned = _resolve(manifest, d.canonical, bases, "canonical")
    excluded = _resolve(manifest, d.exclude, bases, "exclude")
    search = update_pairs(manifest, max_distance, rescan=rescan, compact=compact)
    started = time.monotonic()
    if search.searched:
        log.info("searched %d images for near-duplicates against %d in %.1fs (%d pairs)", search.searched,
                 search.archive, search.seconds, search.pairs)
    else:
        log.info("every image was already searched for near-duplicates at distance %d", max_distance)
    readable = coloured = 0

    def infos_of(shas: list[str]) -> list[AssetInfo]:
        """A batch of whole components (pairs.stream_groups): their rows and signatures read now, their colour
        measured where it is missing (every asset of a batch can be in a group); kept in ``by_sha`` (with the colour,
        without the signature) for the report."""
        nonlocal readable, coloured
        out: list[AssetInfo] = []
        unmeasured: list[tuple[int, ArchivedAsset]] = []
        for info, sig, a in _grouping_assets(manifest, shas):
            out.append(_signed(info, sig))
            by_sha[info.sha256] = a
            if info.chroma is None:
                unmeasured.append((len(out) - 1, a))
        readable += len(out)
        if unmeasured:
            measured, n = _with_colour(manifest, store, [a for _, a in unmeasured])
            coloured += n
            for (i, _), a in zip(unmeasured, measured, strict=True):
                out[i] = _signed(a.info, out[i].signature)
                by_sha[a.info.sha256] = a  # the colour kept, not the signature
        return out

    groups = stream_groups(manifest, max_distance, d.prefer, infos_of, pinned, excluded)
    if coloured:  # once for the run, not once per batch of components (hundreds of lines at 10 M)
        log.info("measured the colour of %d images archived before it was recorded", coloured)
    grouped = {m.sha256 for g in groups for m in g.members}
    for sha in [sha for sha in by_sha if sha not in grouped]:  # read for grouping, in no group: not kept
        del by_sha[sha]
    log.info("grouped the %d assets that can be in a group (the ends of recorded pairs, or of several with the same "
             "hashes) in %.1fs", readable, time.monotonic() - started)
    articles = [path for path, _before, _after in manifest.rewritten_articles()]
    return Plan(groups, by_sha, pinned, articles, bases, search)


def archive_assets(manifest: Manifest, bases: tuple[str, ...], urls: Iterable[str]) -> dict[str, str]:
    """The asset sha256 of each of ``urls`` that is an archive URL: one of ``bases`` (``public_bases``) followed by
    the key an original is stored under (``public_url(base, key)``); the others are left out. Looked up by key, a
    batch at a time: no map of every asset's URLs is built."""
    wanted: dict[str, list[str]] = defaultdict(list)  # key -> the URLs that would name it
    for url in set(urls):
        for base in bases:
            if url.startswith(base):
                wanted[url[len(base):]].append(url)
    owners = manifest.original_owners(wanted)
    return {url: owners[key] for key, found in wanted.items() if key in owners for url in found}


def _copy(obj: _Frozen, **changes: object) -> _Frozen:
    """``dataclasses.replace(obj, **changes)`` for AssetInfo and ArchivedAsset (frozen dataclasses without
    ``__post_init__`` or slots): every field copied, ``changes`` set, in a sixth of ``replace``'s time (twice per
    groupable asset, ~750 000 times at 1 M)."""
    new = object.__new__(type(obj))
    new.__dict__.update(vars(obj), **changes)
    return new


def _signed(info: AssetInfo, sig: similarity.Signature | None) -> AssetInfo:
    """``replace(info, signature=sig)``."""
    return _copy(info, signature=sig)


def load_assets(manifest: Manifest, store: Store, shas: Iterable[str] | None = None) -> list[ArchivedAsset]:
    """The assets of ``shas`` (those the manifest knows), or every asset, by sha256, with their thumbnails, without
    their signatures (``info.signature`` None: read later, for the assets that can be in a group)."""
    if shas is None:
        rows, renditions = manifest.asset_rows(well_formed=VARIANTS_WIDTH), manifest.renditions()
    else:
        shas = list(shas)
        rows, renditions = manifest.asset_rows_by_sha(shas), manifest.renditions_of(shas)
    thumbs = _thumbs(renditions)
    return [_archived(r, thumbs) for r in rows]


_INFO_FIELDS = tuple(f.name for f in fields(AssetInfo))
_ASSET_FIELDS = tuple(f.name for f in fields(ArchivedAsset))


def _made(cls: type[_Frozen], names: tuple[str, ...], values: tuple[object, ...]) -> _Frozen:
    """``cls(*values)`` for AssetInfo and ArchivedAsset (frozen dataclasses without ``__post_init__`` or slots): the
    fields set at once, not through one ``object.__setattr__`` each (~400 000 of each when grouping 1 M images)."""
    new = object.__new__(cls)
    new.__dict__.update(zip(names, values, strict=True))
    return new


def _archived(r: AssetRow, thumbs: dict[str, list[tuple[int, str]]]) -> ArchivedAsset:
    """The asset of a manifest row as the command sees it, with its thumbnails (``_thumbs``), without its signature."""
    info = _made(AssetInfo, _INFO_FIELDS, (r.sha256, r.format, r.bytes, r.width, r.height, r.first_seen, None,
                                           r.colours, r.chroma, r.content))
    return _made(ArchivedAsset, _ASSET_FIELDS, (info, r.mime, r.ext, r.key, r.phash, r.dhash,
                                                tuple(thumbs.get(r.sha256, ()))))


def _grouping_assets(manifest: Manifest, shas: list[str]
                     ) -> Iterator[tuple[AssetInfo, similarity.Signature, ArchivedAsset]]:
    """Of ``shas``, those the manifest knows with a signature that parses, by sha256: (the asset without its
    signature, the signature, the asset as the report shows it: the same AssetInfo, with its thumbnails)."""
    rows, thumbs = manifest.asset_rows_by_sha(shas), _thumbs(manifest.renditions_of(shas))
    for r in rows:
        sig = similarity.Signature.from_columns(r.phash_variants, r.dhash_variants, r.grey)
        if sig is not None:
            a = _archived(r, thumbs)
            yield a.info, sig, a


def _thumbs(renditions: Iterable[tuple[str, int, str]]) -> dict[str, list[tuple[int, str]]]:
    """(width, key) of each asset's thumbnails, in the order given (by width), from (asset, width, key) rows."""
    out: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for sha, width, key in renditions:
        out[sha].append((width, key))
    return out


def _sign_unsigned(manifest: Manifest, store: Store) -> None:
    """Variants missing (images archived before they existed) computed now, from the largest stored thumbnail, and
    recorded (a warning when there is no thumbnail to compute them from); stored variants that do not parse
    (damaged) are left as they are, and grouping leaves that image out. Only those rows are read
    (``unsigned_asset_rows``)."""
    rows = manifest.unsigned_asset_rows(VARIANTS_WIDTH)
    thumbs = _thumbs(manifest.renditions_of(r.sha256 for r in rows))
    for r in rows:
        if similarity.Signature.from_columns(r.phash_variants, r.dhash_variants, r.grey) is not None:
            continue
        sig = _backfill(manifest, store, r.sha256, thumbs.get(r.sha256, []))
        if sig is not None and r.phash_variants is None:
            manifest.record_asset(
                Asset(r.sha256, ImageFormat(r.format, r.mime, r.ext), r.bytes, r.width, r.height, r.phash, r.dhash,
                      phash_variants=sig.phash, dhash_variants=sig.dhash, grey=sig.grey),
                r.key, [],
            )


_PALETTE_FORMATS = frozenset({"gif", "png", "bmp", "tiff", "ico"})  # the formats a palette image can come in


def _with_colour(manifest: Manifest, store: Store, assets: list[ArchivedAsset]) -> tuple[list[ArchivedAsset], int]:
    """The assets (signed ones that can be in a group: an end of a recorded pair, or one of several with the same
    hashes), with the colour of those archived before it was recorded measured now: chroma from the largest stored
    thumbnail, palette colours from the original (palette formats only). Recorded, so measured once: an asset
    without a stored thumbnail has no chroma to measure, and once its palette colours are recorded it is not read
    again (it was on every run: the original of a GIF read, the row written, each time). With how many were
    measured."""
    measured: list[tuple[str, int | None, float | None]] = []
    out = []
    for a in assets:
        if a.info.chroma is None and (a.thumbs or a.info.colours is None):
            colours, chroma = _measure_colour(store, a)
            measured.append((a.info.sha256, colours, chroma))
            a = replace(a, info=replace(a.info, colours=colours, chroma=chroma))
        out.append(a)
    if measured:
        manifest.record_colour(measured)
    return out, len(measured)


def _measure_colour(store: Store, a: ArchivedAsset) -> tuple[int | None, float | None]:
    colours: int | None = 0
    chroma: float | None = None
    try:
        if a.thumbs:
            with Image.open(io.BytesIO(store.get(a.thumbs[-1][1]))) as im:
                im.load()
                chroma = mean_chroma(im)
        if a.info.format in _PALETTE_FORMATS:
            with Image.open(io.BytesIO(store.get(a.key))) as im:
                colours = palette_colours(im) if im.mode in ("P", "PA", "1") else 0
    except (ArchiverError, OSError, ValueError, Image.DecompressionBombError) as exc:
        log.warning("%s: cannot measure its colour (%s); judged as colour, full colour", a.info.sha256, exc)
        return None, None
    return colours, chroma


def _thumbnail(store: Store, sha: str, key: str, otherwise: str) -> Image.Image | None:
    """The stored thumbnail ``key`` decoded and flattened (what the image stage hashes), or None with a warning
    ending in ``otherwise`` (what then does not happen)."""
    try:
        with Image.open(io.BytesIO(store.get(key))) as im:
            im.load()
            return flatten(im).convert("RGB")
    except ArchiverError as exc:
        log.warning("%s: cannot read thumbnail %s: %s; %s", sha, key, exc, otherwise)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        log.warning("%s: thumbnail %s does not decode: %s; %s", sha, key, exc, otherwise)
    return None


def _backfill(manifest: Manifest, store: Store, sha: str, thumbs: list[tuple[int, str]]) -> similarity.Signature | None:
    """The signature from the largest stored thumbnail (what the image stage hashes), or None with a warning."""
    if not thumbs:
        log.warning("%s: no thumbnail stored; not grouped", sha)
        return None
    flat = _thumbnail(store, sha, thumbs[-1][1], "not grouped")
    return None if flat is None else similarity.signature(flat)


def _resign(manifest: Manifest, store: Store, assets: list[ArchivedAsset]) -> int:
    """`dedupe --resign`: images archived before signatures were taken inside added borders and letterbox bars
    (similarity.content_box) get the signature of their content, from their largest stored thumbnail, when that
    thumbnail has such a frame and the stored signature is not already of its content (identity hashes more than
    4 bits apart: a thumbnail is a lossy copy). Returns how many were signed again."""
    done = checked = 0
    for a in assets:
        if not a.thumbs or not a.phash or not a.dhash:
            continue
        checked += 1
        flat = _thumbnail(store, a.info.sha256, a.thumbs[-1][1], "not signed again")
        if flat is None:
            continue
        grey = flat.convert("L")
        box = similarity.content_box(grey)
        if box == (0, 0, grey.width, grey.height):
            continue  # no frame: the signature it has is the one it would get now
        sig = similarity.signature(grey, box=box)
        if _bits(sig.phash[0], a.phash) <= 4 and _bits(sig.dhash[0], a.dhash) <= 4 and a.info.content is not None:
            continue  # signed inside its frame already
        manifest.resign_asset(a.info.sha256, sig.phash, sig.dhash, sig.grey, similarity.content_share(box, grey.size))
        done += 1
    say(f"signed again {count(done, 'image')} of {checked} (the content inside an added border or bars)")
    return done


def _bits(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def _resolve(manifest: Manifest, values: tuple[str, ...], bases: tuple[str, ...], what: str) -> set[str]:
    """Config entries (sha256, archive URL or source URL) as asset sha256s; unknown ones are warned about."""
    out: set[str] = set()
    known = manifest.asset_ids(values)
    forms = archive_assets(manifest, bases, [v for v in values if v not in known])
    states = manifest.url_states([v for v in values if v not in known and v not in forms])
    for v in values:
        sha = v if v in known else forms.get(v) or (states[v].asset if v in states else None)
        if sha is None:
            log.warning("[dedupe] %s: %s is not an archived asset or URL; ignored", what, v)
        else:
            out.add(sha)
    return out
