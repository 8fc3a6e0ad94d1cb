"""``[storage] key_template``: object keys people can browse (``{yyyy}/{mm}/{name}-{sha8}.{ext}``) instead of the
content-addressed default. Parsed and checked once at start-up (``KeyTemplate.parse``); a key is rendered once, when
its bytes are first archived, and recorded in the manifest (whoever reads a key back looks it up there).

A thumbnail's key is derived from its original's (``rendition_of``): ``….{ext}`` becomes ``…-{width}w.{fmt}``, beside
it, which is also what the content-addressed layout does. A short hash (``{sha8}``, ``{sha16}``) can collide: the
archiver then widens it (``widen``: 8 → 16 → 64 hex digits) until the key is free."""

from __future__ import annotations

import contextlib
import re
import time
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes, urlsplit

PLACEHOLDERS: dict[str, str] = {
    "yyyy": "year the bytes were first archived (UTC), 4 digits",
    "mm": "month, 01-12",
    "dd": "day of the month, 01-31",
    "host": "the source URL's host, lower case (IDNA: xn--…), 'local' for a file on disk",
    "name": "the source file name without its extension: letters, digits, '.', '_', '-' only, at most 64, "
            "never empty ('image'), never a name Windows reserves (con → con_)",
    "sha256": "the SHA-256 of the bytes, 64 hex digits",
    "sha16": "its first 16 hex digits",
    "sha8": "its first 8 hex digits",
    "ext": "the extension of the real format, from the bytes (jpg, png, webp, gif, avif, svg…), not from the URL",
}
HASH_WIDTH = {"sha8": 8, "sha16": 16, "sha256": 64}
WIDTHS = (8, 16, 64)  # how a short hash is widened when its key is taken
NAME_MAX = 64
_FIELD = re.compile(r"\{([^{}]*)\}")
_LITERAL = re.compile(r"[A-Za-z0-9._~/-]*")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_HOST_CHARS = re.compile(r"[^a-z0-9.-]+")


class TemplateError(ValueError):
    """Why a template cannot be used (the caller names the config file and key)."""


@dataclass(frozen=True)
class KeyParts:
    """What a template draws on: known when the bytes are first archived."""

    sha256: str
    ext: str
    source: str  # the URL the bytes were first archived from
    archived_at: float  # seconds since the epoch


@dataclass(frozen=True)
class KeyTemplate:
    text: str
    fields: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> KeyTemplate:
        """A checked template. TemplateError: an unknown placeholder, no hash placeholder, a character that is not
        safe in a key (anything but letters, digits, '.', '_', '~', '-', '/'), a stray brace, an empty, '.' or '..'
        folder, a leading or trailing '/'."""
        fields = tuple(_FIELD.findall(text))
        unknown = [f for f in fields if f not in PLACEHOLDERS]
        if unknown:
            raise TemplateError(f"unknown placeholder {{{unknown[0]}}} (known: "
                                + ", ".join("{" + p + "}" for p in PLACEHOLDERS) + ")")
        literal = _FIELD.sub("", text)
        if "{" in literal or "}" in literal:
            raise TemplateError("has a '{' or '}' that does not enclose a placeholder")
        if not _LITERAL.fullmatch(literal):
            bad = next(c for c in literal if not _LITERAL.fullmatch(c))
            raise TemplateError(f"{bad!r} is not safe in an object key (use letters, digits, '.', '_', '~', '-', '/' "
                                "and placeholders)")
        if not any(f in HASH_WIDTH for f in fields):
            raise TemplateError("must contain {sha256}, {sha16} or {sha8}, so the same bytes are one object and "
                                "different bytes are never confused")
        for seg in text.split("/"):
            if seg in ("", ".", ".."):
                raise TemplateError("has an empty, '.' or '..' folder (or a leading or trailing '/')")
        return cls(text, fields)

    @property
    def shortest_hash(self) -> int:
        return min(HASH_WIDTH[f] for f in self.fields if f in HASH_WIDTH)

    def widths(self) -> tuple[int, ...]:
        """The hash widths to try, in order: the template's own, then wider (a collision widens every short hash)."""
        return tuple(w for w in WIDTHS if w >= self.shortest_hash)

    def render(self, parts: KeyParts, width: int | None = None) -> str:
        """The key (without ``[storage] prefix``); ``width``: every hash placeholder at least this many digits."""
        day = time.gmtime(parts.archived_at)
        values = {
            "yyyy": f"{day.tm_year:04d}", "mm": f"{day.tm_mon:02d}", "dd": f"{day.tm_mday:02d}",
            "host": source_host(parts.source), "name": source_name(parts.source), "ext": parts.ext,
        }
        for f, w in HASH_WIDTH.items():
            values[f] = parts.sha256[: max(w, width or 0)]
        return _FIELD.sub(lambda m: values[m[1]], self.text)


def source_host(url: str) -> str:
    """The host of ``url`` as a key segment: lower case, IDNA (``xn--…``), an IPv6 address with '-' for ':';
    'local' for a file on disk, 'unknown' when there is none."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return "local"
    host = (parts.hostname or "").rstrip(".")
    with contextlib.suppress(UnicodeError):
        host = host.encode("idna").decode("ascii")
    host = _HOST_CHARS.sub("-", host.lower().replace(":", "-")).strip(".-")
    return host[:253] or "unknown"


_WINDOWS_RESERVED = frozenset({"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
                               *(f"lpt{i}" for i in range(10))})


def source_name(url: str) -> str:
    """The file name of ``url`` (its last path segment) without its extension, as a key segment: percent-escapes
    decoded (bytes that are not UTF-8 read as Latin-1), accents folded to ASCII (``café`` → ``cafe``), every run of
    other characters one '-', lower case, at most 64 characters; 'image' when nothing is left."""
    path = urlsplit(url).path
    raw = unquote_to_bytes(path.rsplit("/", 1)[-1])
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        name = raw.decode("latin-1")
    stem, dot, ext = name.rpartition(".")
    if dot and stem and 1 <= len(ext) <= 5 and ext.isalnum():
        name = stem
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    name = _NAME_CHARS.sub("-", name).lower().strip(".-_")[:NAME_MAX].strip(".-_")
    head, dot, rest = name.partition(".")
    if head in _WINDOWS_RESERVED:  # "con.jpg", "aux.tar" cannot be files on Windows (a synced bucket, a copied folder)
        name = f"{head}_{dot}{rest}"
    return name or "image"


def rendition_of(original: str, original_ext: str, width: int, ext: str) -> str:
    """A thumbnail's key, beside its original's: ``a/b/photo-1f2e3d4c.jpg`` → ``a/b/photo-1f2e3d4c-320w.webp`` (the
    content-addressed layout's form too)."""
    stem = original[: -len(original_ext) - 1] if original.endswith("." + original_ext) else original
    return f"{stem}-{width}w.{ext}"
