"""What manifest queries return: one named row type per query (fields in the order of its SELECT); and the forms in
which URLs and article paths are stored (``url_key``, ``stored_path``/``read_path``)."""

from __future__ import annotations

import hashlib
import os
from typing import NamedTuple

from archiver.model import ArticleReplacement, Outcome
from archiver.redaction import redact


def url_key(url: str) -> str:
    """How a URL is stored: as is, or, if it carries credentials or secret query values, redacted plus a
    digest of the full URL (so two URLs differing only in their secret stay apart and no secret is stored)."""
    shown = redact(url)
    if shown == url:
        return url
    return f"{shown}#sha256={hashlib.sha256(url.encode('utf-8', 'surrogatepass')).hexdigest()[:32]}"


def stored_path(path: str) -> str | bytes:
    """How an article's path is stored: as TEXT when it is valid UTF-8 (nearly always, and every path a manifest
    recorded before), else as a BLOB of the file name's bytes (a Latin-1 ``caf\\xe9.md``, which Python holds with
    surrogates). One path has one stored form, so lookups by path work either way."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def read_path(value: str | bytes) -> str:
    """The path ``stored_path`` stored, as Python names the file again."""
    if isinstance(value, str) and value.startswith(BYTES_MARK):
        value = bytes_of_text(value)
    return os.fsdecode(value) if isinstance(value, bytes) else value


# PostgreSQL's TEXT holds only UTF-8: there a BLOB path is kept as this mark and the bytes in hex (a stored path is
# absolute, so it never begins with the mark otherwise). The PostgreSQL connection writes bytes so; read_path and
# migrate-manifest read them back.
BYTES_MARK = "\uffff"


def text_of_bytes(value: bytes) -> str:
    return BYTES_MARK + value.hex()


def bytes_of_text(value: str) -> bytes:
    return bytes.fromhex(value[len(BYTES_MARK):])


class UrlState(NamedTuple):
    url: str  # as the manifest keys it (redacted, with a digest, when it held a secret)
    status: Outcome
    reason: str | None
    attempts: int
    asset: str | None
    http_status: int | None = None
    cause: str | None = None  # a model.Cause: the setting that decided a refusal (None: the URL or its bytes did)


class StoredAsset(NamedTuple):
    sha256: str
    format: str
    mime: str
    ext: str
    bytes: int
    width: int | None
    height: int | None
    phash: str | None
    dhash: str | None
    key: str


class AssetRow(NamedTuple):
    """An asset with everything grouping needs."""

    sha256: str
    format: str
    mime: str
    ext: str
    bytes: int
    width: int | None
    height: int | None
    first_seen: float
    key: str
    phash: str | None
    dhash: str | None
    phash_variants: str | None  # 8 comma-separated hex hashes
    dhash_variants: str | None
    grey: str | None
    colours: int | None  # palette colours used (0: not a palette image); None: not known yet
    chroma: float | None  # mean chroma (~0: greyscale); None: not known yet
    content: float | None  # the share of the area inside an added frame or bars; None: not measured (1.0)


class StoredObject(NamedTuple):
    """An object the manifest says is stored: an original (rendition fields None) or a rendition."""

    key: str
    sha256: str  # the original's
    width: int | None = None  # the rendition's configured width
    format: str | None = None
    pixel_width: int | None = None
    pixel_height: int | None = None
    original_key: str | None = None
    size: int | None = None  # bytes, as stored
    content_sha256: str | None = None  # of the object's own bytes (an original's is ``sha256``); None: not recorded
    mime: str | None = None


class LostObject(NamedTuple):
    """An object found missing or corrupt in storage (by verify), until it is stored again."""

    key: str
    asset: str  # the original's sha256
    state: str  # "missing" | "corrupt"
    reason: str


class ShownRendition(NamedTuple):
    """A stored rendition as a page shows it: its configured width, format, pixel size and key."""

    width: int
    format: str  # "webp", "jpeg", "png", "avif"
    pixel_width: int
    pixel_height: int
    key: str


class ShownImage(NamedTuple):
    """An archived image as a page shows it (``[rewrite] responsive``): its intrinsic size after EXIF orientation
    (None: not known, SVG), frames, original key and renditions, smallest first."""

    sha256: str
    width: int | None
    height: int | None
    frames: int
    key: str
    renditions: tuple[ShownRendition, ...]


class RenditionRow(NamedTuple):
    asset: str
    width: int
    key: str


class RewrittenArticle(NamedTuple):
    path: str
    sha256_before: str  # before our first rewrite
    sha256_after: str  # after our latest


class PendingWrite(NamedTuple):
    """An article write recorded before its rename and not yet confirmed (a run killed in between)."""

    path: str
    sha256_before: str  # the bytes read
    sha256_after: str  # the bytes being renamed into place
    reason: str  # the generation's reason ("archive", "dedupe", "dedupe-undo"), or "restore"


class Generation(NamedTuple):
    """One rewrite of an article: why ("archive", "dedupe", "dedupe-undo") and the spans it replaced."""

    reason: str
    replacements: list[ArticleReplacement]


class VariantRow(NamedTuple):
    rowid: int  # the asset's id (assets.id, stable)
    phash_variants: str
    dhash_variants: str
    grey: str | None


class SignatureRow(NamedTuple):
    rowid: int
    sha256: str
    phash_variants: str
    dhash_variants: str
    grey: str | None


class UnsearchedAsset(NamedTuple):
    rowid: int
    sha256: str


class PairRow(NamedTuple):
    """A recorded near-duplicate pair (a < b) and its distances."""

    a: str
    b: str
    phash_distance: int
    dhash_distance: int


class ExportedRendition(NamedTuple):
    width: int  # the configured width it was made for
    format: str
    pixel_width: int
    pixel_height: int
    bytes: int
    key: str


class ExportedAsset(NamedTuple):
    """An archived image with what a downstream site needs (``archiver export``)."""

    sha256: str
    format: str
    mime: str
    bytes: int
    width: int | None
    height: int | None
    first_seen: float
    key: str
    sources: list[str]  # the archived URLs that gave these bytes, as the manifest keys them, oldest first
    renditions: list[ExportedRendition]  # by width, then format
