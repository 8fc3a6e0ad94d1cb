"""The small frozen records that flow between the stages (walk → find → fetch → image → store → rewrite)."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from enum import StrEnum
from pathlib import Path

# Why an article was written, as the manifest records each write: "archive" (run), "dedupe" (dedupe --apply),
# "dedupe-undo" (dedupe --undo), and this one, a restore: its record, once confirmed, forgets the article.
RESTORE = "restore"


@dataclass(frozen=True)
class FileState:
    """Which file, in which state, was read: a rewrite is refused if the file is no longer that one, in that state."""

    device: int
    inode: int
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Article:
    """One article file as read from disk. ``text`` decodes ``raw`` exactly: ``text.encode(encoding) == raw``."""

    path: Path
    raw: bytes
    text: str
    encoding: str
    format: str  # "markdown" or "html"
    state: FileState | None = None  # the file as it was once read (None: not read from a file)


# Version of the near-duplicate decision rule (archiver.image.similarity.compare) and of the signatures it reads.
# Bump whenever the decision of ``compare`` (or a signature) changes: recorded pairs of another version are
# dropped and every asset is searched again. Here, not in similarity, so a run can check it without SciPy.
SIMILARITY_RULE_VERSION = 3  # 2: tone-normalised and framed confirmations (issue 11); 3: ties broken alike from both sides
# The largest Hamming distance the near-duplicate search supports (the hash index's probes grow like C(22, k/3)
# per hash beyond it); [dedupe] max_distance and --max-distance are checked against it.
DISTANCE_LIMIT = 16


class Outcome(StrEnum):
    """How a URL ended, as the manifest records it, the summary counts it and an error says it should be."""

    ARCHIVED = "archived"
    DEAD = "dead"  # 404/410, unknown host, other 4xx: final, reported, not an error
    REJECTED = "rejected"  # refused by a rule (guard, scheme, not an image, too large): final, reported
    FAILED = "failed"  # timeouts, 5xx, storage: a re-run may fix it (exit code 1)

    @property
    def final(self) -> bool:
        """A later run does not try again (unless --retry-dead)."""
        return self in (Outcome.DEAD, Outcome.REJECTED)


class Cause(StrEnum):
    """Why a URL was refused when the reason is a setting, not the URL or its bytes: such an outcome holds only
    while the settings behind it (``config.settings_fingerprint``) stay as they were, and is re-evaluated when
    they change. A refusal with no cause (a scheme, a body that is not an image) is final until --retry-dead."""

    GUARD = "guard"  # the address guard refused the resolved address: [fetch] allow_networks, connect_to
    UNKNOWN_HOST = "unknown-host"  # NXDOMAIN: [fetch] connect_to may map the host
    BASE_URL = "base-url"  # a relative URL and no [articles] base_url
    MAX_BYTES = "max-bytes"  # body over [fetch] max_bytes
    MAX_PIXELS = "max-pixels"  # image over [images] max_pixels
    MAX_REDIRECTS = "max-redirects"  # more than [fetch] max_redirects hops
    FORBIDDEN = "forbidden"  # 403: the host may want a Referer or a cookie, [fetch] headers and cookies


class RefKind(StrEnum):
    FRONT_MATTER = "front-matter"
    IMG_SRC = "img-src"
    SRCSET = "srcset"
    LAZY_ATTR = "lazy-attr"
    PICTURE_SOURCE = "picture-source"
    LINK_HREF = "link-href"
    MD_INLINE = "markdown-inline"
    MD_REFERENCE = "markdown-reference"
    SHORTCODE = "shortcode"  # Hugo {{< figure src=… >}}: the value is literal
    TEMPLATE_TAG = "template-tag"  # Hexo/Octopress {% img URL %}: literal
    CSS_URL = "css-url"  # url(…) in an inline style attribute
    POSTER = "poster"  # <video poster>
    META_IMAGE = "meta-image"  # og:image / twitter:image <meta content>, <link rel="image_src" href>
    # Hexo {% asset_img [class] name.jpg … %}: the span runs from the tag's name to the file name (literal), as the
    # rewrite turns the tag into {% img [class] URL … %}
    ASSET_TAG = "asset-tag"


@dataclass(frozen=True)
class ImageRef:
    """A reference to an image inside an article.

    ``text[start:end]`` is the exact span to replace (the URL as written, without quotes or
    brackets); ``url`` is that span decoded (HTML entities, Markdown backslash escapes), still
    possibly relative. ``line`` is 1-based.
    """

    url: str
    start: int
    end: int
    kind: RefKind
    line: int
    field: str = ""  # front-matter key path ("cover.url") or attribute name ("data-src"), for reports
    # an <img src> inside a <picture> element (tags in comments and attribute values are not tags); derived from the
    # text and the span, so it takes no part in equality
    in_picture: bool = dataclass_field(default=False, compare=False)


@dataclass(frozen=True)
class ImageFormat:
    """What the magic bytes say a body is."""

    name: str  # "jpeg", "png", "gif", "webp", "avif", "heic", "bmp", "tiff", "ico", "svg"
    mime: str
    ext: str  # without dot: "jpg", "png", ...
    raster: bool = True  # False for SVG: stored as is, never decoded


@dataclass(frozen=True)
class Download:
    """A body fetched to a temporary file; ``sha256`` is of the bytes exactly as received (decoded transfer encoding)."""

    url: str
    final_url: str
    path: Path
    size: int
    sha256: str
    format: ImageFormat
    status: int
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    attempts: int = 1


@dataclass(frozen=True)
class Rendition:
    """A thumbnail made from an original."""

    width: int  # the configured width it was made for
    pixel_width: int
    pixel_height: int
    format: ImageFormat
    data: bytes


@dataclass(frozen=True)
class Asset:
    """An image's identity and derived data. Hashes are hex strings (imagehash's stored form)."""

    sha256: str
    format: ImageFormat
    size: int
    width: int | None
    height: int | None
    phash: str | None
    dhash: str | None
    frames: int = 1
    renditions: tuple[Rendition, ...] = ()
    # pHash / dHash of the 8 dihedral transforms (archiver.image.similarity order; index 0 == phash / dhash)
    phash_variants: tuple[str, ...] = ()
    dhash_variants: tuple[str, ...] = ()
    grey: str = ""  # 8x8 grey thumbnail, 128 hex digits (archiver.image.similarity.Signature.grey); "" unknown
    # colour, for the canonical choice among near-duplicates: the palette colours a palette image uses (0: not a
    # palette image; None: unknown, SVG), and the mean chroma (|Cb - 128| + |Cr - 128|) of the rendition-size
    # image: near 0 for a greyscale picture, whatever its encoding (GREY_CHROMA)
    colours: int | None = None
    chroma: float | None = None
    # the share of the area inside a flat frame or bars added around the picture (similarity.content_box); 1.0: none
    content: float = 1.0


# Below this mean chroma an image is greyscale (a grey picture in an RGB JPEG measures 0; colour photos 12-70).
GREY_CHROMA = 3.0


@dataclass(frozen=True)
class ArticleReplacement:
    """One span a rewrite replaced: ``text[start:end]`` of the text it read held ``original`` and now holds
    ``replacement``; ``url`` is the reference's URL (as the manifest keys it). ``original`` is "" when it held a
    secret (never stored)."""

    start: int
    end: int
    original: str
    replacement: str
    url: str
