"""Shared pieces of reference finding: the raw span record and what a usable image URL looks like."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html.entities import html5
from urllib.parse import urlsplit

from archiver.model import RefKind

IMAGE_EXTENSIONS = frozenset(
    ("jpg", "jpeg", "png", "gif", "webp", "avif", "svg", "bmp", "tif", "tiff", "heic", "ico")
)
TEMPLATE_MARKERS = ("{{", "}}", "{%", "%}", "<%", "%>")
ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_CHARREF = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[A-Za-z][A-Za-z0-9]{0,31};?)")
_MD_CHARREF = re.compile(r"&(#[0-9]{1,7};|#[xX][0-9a-fA-F]{1,6};|[A-Za-z][A-Za-z0-9]{0,31};)")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass(frozen=True)
class Found:
    """A URL span found by one scanner, before line numbers are attached."""

    url: str
    start: int
    end: int
    kind: RefKind
    field: str = ""
    in_picture: bool = False  # an <img src> inside a <picture> element, as the HTML tokenizer reads the text
    problem: str = ""  # not a reference: something the author wrote that cannot be read (reported as a notice)


# Lines, markdown-it tokens and YAML values allowed per allowed reference (articles.max_refs); real articles have
# fewer than 10 lines per reference and the corpus's largest (900 lines, 640 tokens) is far below either bound.
STRUCTURE_PER_REF = 5


class TooLarge(Exception):
    """An article with more image references, lines or Markdown blocks than the configured bound
    (``[articles] max_refs``): finding them all would hold too much in memory, so scanning stops there."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FoundList(list[Found]):
    """The references one scanner found; past ``limit`` of them, TooLarge (memory stays bounded mid-scan)."""

    def __init__(self, limit: int | None = None) -> None:
        super().__init__()
        self.limit = limit

    def append(self, item: Found) -> None:
        super().append(item)
        self._check()

    def extend(self, items: Iterable[Found]) -> None:
        super().extend(items)
        self._check()

    def _check(self) -> None:
        if self.limit is not None and len(self) > self.limit:
            raise TooLarge(too_many_refs(self.limit))


def too_many_refs(limit: int) -> str:
    return f"more than {limit:,} image references (articles.max_refs)"


def too_much(what: str, limit: int) -> str:
    """The reason for an article with more than ``limit`` of ``what`` (lines, Markdown elements, ...)."""
    return f"more than {limit:,} {what} ({STRUCTURE_PER_REF} × articles.max_refs)"


def usable(url: str, raw: str) -> bool:
    """False for values never reported: empty, ``data:`` URIs, template expressions."""
    value = url.strip()
    if not value or value.lower().startswith("data:"):
        return False
    return not any(m in raw or m in url for m in TEMPLATE_MARKERS)


def is_image_path(url: str) -> bool:
    """True when the URL's path ends in an image file extension (query and fragment ignored)."""
    try:
        path = urlsplit(url.strip()).path
    except ValueError:
        return False
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return "." in name and name.rsplit(".", 1)[1].lower() in IMAGE_EXTENSIONS


def looks_like_url(value: str) -> bool:
    """A single token that is an absolute, protocol-relative, root-relative or dot-relative URL."""
    v = value.strip()
    if not v or any(c.isspace() for c in v):
        return False
    return v.startswith(("/", "./", "../")) or _SCHEME.match(v) is not None


def decode_html(raw: str) -> tuple[str, Sequence[int]]:
    """Decode character references as in an HTML attribute value.

    Returns the decoded text and ``starts``: ``starts[i]`` is the raw offset where decoded char ``i``
    comes from, ``starts[len(decoded)] == len(raw)``. Legacy named references without ``;`` followed
    by ``=`` or an alphanumeric stay as written (the HTML attribute rule: ``?a=1&copy=2``).
    """
    if "&" not in raw:  # nothing to decode: offsets map one to one (no per-character list for a huge data: URI)
        return raw, range(len(raw) + 1)
    out: list[str] = []
    starts: list[int] = []
    pos = 0
    for m in _CHARREF.finditer(raw):
        if m.start() < pos:
            continue
        _plain(raw, pos, m.start(), out, starts)
        body = m.group(1)
        replacement, used = _charref(body)
        after = m.start() + 1 + used
        nxt = raw[after] if after < len(raw) else ""
        legacy = not body.startswith("#") and not body[:used].endswith(";")
        if replacement is None or (legacy and (nxt == "=" or nxt.isalnum())):
            _plain(raw, m.start(), m.start() + 1, out, starts)
            pos = m.start() + 1
            continue
        for ch in replacement:
            out.append(ch)
            starts.append(m.start())
        pos = after
    _plain(raw, pos, len(raw), out, starts)
    starts.append(len(raw))
    return "".join(out), starts


def _plain(raw: str, a: int, b: int, out: list[str], starts: list[int]) -> None:
    out.append(raw[a:b])
    starts.extend(range(a, b))


def _charref(body: str) -> tuple[str | None, int]:
    """The replacement of ``&body`` and how many chars of body it consumed."""
    if body.startswith("#"):
        return html.unescape("&" + body), len(body)
    if body in html5:
        return html5[body], len(body)
    for x in range(len(body) - 1, 1, -1):
        if body[:x] in html5:
            return html5[body[:x]], x
    return None, 0


def decode_markdown(raw: str) -> str:
    """Decode a Markdown link destination: backslash escapes and ``;``-terminated character references."""
    if "\\" not in raw and "&" not in raw:
        return raw
    out: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw) and raw[i + 1] in ASCII_PUNCT:
            out.append(raw[i + 1])
            i += 2
            continue
        if ch == "&":
            m = _MD_CHARREF.match(raw, i)
            if m and (m.group(1).startswith("#") or m.group(1) in html5):
                out.append(html.unescape(m.group(0)))
                i = m.end()
                continue
        out.append(ch)
        i += 1
    return "".join(out)
