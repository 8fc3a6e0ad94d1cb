"""What manifest queries return: one named row type per query (fields in the order of its SELECT)."""

from __future__ import annotations

from typing import NamedTuple

from archiver.model import ArticleReplacement, Outcome


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


class StoredObject(NamedTuple):
    """An object the manifest says is stored: an original (rendition fields None) or a rendition."""

    key: str
    sha256: str  # the original's
    width: int | None = None  # the rendition's configured width
    format: str | None = None
    pixel_width: int | None = None
    pixel_height: int | None = None
    original_key: str | None = None


class RenditionRow(NamedTuple):
    asset: str
    width: int
    key: str


class RewrittenArticle(NamedTuple):
    path: str
    sha256_before: str  # before our first rewrite
    sha256_after: str  # after our latest


class Generation(NamedTuple):
    """One rewrite of an article: why ("archive", "dedupe", "dedupe-undo") and the spans it replaced."""

    reason: str
    replacements: list[ArticleReplacement]


class ArchivedUrl(NamedTuple):
    url: str
    asset: str


class VariantRow(NamedTuple):
    rowid: int  # the asset's id for one search (stable while the manifest is open)
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
