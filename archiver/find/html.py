"""Image references in HTML: tag and attribute parsing with exact spans, srcset, style url(), raw-text skipping."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from archiver.find.css import css_urls
from archiver.find.scan import Found, decode_html, is_image_path
from archiver.find.tags import OPENER, template_tag
from archiver.model import RefKind

_TAG_START = re.compile(r"<(/?)([A-Za-z][^\t\n\f\r />]*)")
_NEXT = re.compile(rf"<|{OPENER.pattern}")  # where a tag, a comment or an image template tag may start
_WS = " \t\n\f\r"
_NAME_REST = re.compile(r"[^\t\n\f\r />=]*")
_UNQUOTED = re.compile(r"[^\t\n\f\r >]*")
_CANDIDATE = re.compile(r"[^\t\n\f\r ]*")
# Elements whose content the HTML parser reads as text, never as tags.
RAW_TEXT = frozenset({"script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes"})
_CLOSERS = {name: re.compile(rf"</{name}[\t\n\f\r />]", re.IGNORECASE) for name in RAW_TEXT}
LAZY_SINGLE = ("data-src", "data-original", "data-lazy-src", "zoomfile", "data-echo", "file")
LAZY_SRCSET = ("data-srcset", "data-lazy-srcset")
# <meta property|name=… content=URL>: Open Graph and Twitter card images
META_IMAGE = frozenset({"og:image", "og:image:url", "og:image:secure_url", "twitter:image", "twitter:image:src"})


@dataclass(frozen=True)
class Attr:
    name: str  # lower-cased
    start: int  # raw value span (inside quotes); start == end for an empty or missing value
    end: int


@dataclass(frozen=True)
class Tag:
    name: str  # lower-cased
    closing: bool
    end: int  # offset just past ">"
    attrs: tuple[Attr, ...]

    def get(self, name: str) -> Attr | None:
        return next((a for a in self.attrs if a.name == name), None)


def parse_tag(text: str, pos: int, limit: int) -> Tag | None:
    """Parse the tag starting at ``text[pos] == "<"`` the way a browser tokenizes it; None if unterminated."""
    m = _TAG_START.match(text, pos, limit)
    if m is None:
        return None
    i = m.end()
    attrs: list[Attr] = []
    seen: set[str] = set()
    while True:
        while i < limit and (text[i] in _WS or text[i] == "/"):
            i += 1
        if i >= limit:
            return None
        if text[i] == ">":
            return Tag(m.group(2).lower(), bool(m.group(1)), i + 1, tuple(attrs))
        n0 = i
        i = _NAME_REST.match(text, i + 1, limit).end()  # type: ignore[union-attr]  # 1st char may be "="
        name = text[n0:i].lower()
        j = i
        while j < limit and text[j] in _WS:
            j += 1
        vs = ve = i
        if j < limit and text[j] == "=":
            j += 1
            while j < limit and text[j] in _WS:
                j += 1
            if j < limit and text[j] in "\"'":
                close = text.find(text[j], j + 1, limit)
                if close < 0:
                    return None
                vs, ve, i = j + 1, close, close + 1
            else:
                k = _UNQUOTED.match(text, j, limit).end()  # type: ignore[union-attr]  # may be empty
                vs, ve, i = j, k, k
        if name not in seen:  # browsers keep the first of duplicate attributes
            seen.add(name)
            attrs.append(Attr(name, vs, ve))


@dataclass
class HtmlScanner:
    """Finds references tag by tag; remembers whether it is inside a ``<picture>`` across calls."""

    picture_depth: int = 0
    found: list[Found] = field(default_factory=list)

    def scan(self, text: str, start: int, end: int, on_text: Callable[[int, int], None] | None = None) -> None:
        """Scan ``text[start:end]`` as HTML: comments and raw-text element bodies are skipped.

        ``on_text(a, b)`` is called for each run of text between tags (Markdown uses it for HTML blocks).
        Image template tags (tags.py) in the text are read here and left out of those runs.
        """
        i = run = start  # scanning position; start of the text run not yet handed to on_text
        while True:
            m = _NEXT.search(text, i, end)
            j = end if m is None else m.start()
            done = None
            if m is not None and text[j] == "{":
                done = template_tag(text, j, len(text))
                if done is None:  # not an image tag: its characters are text
                    i = j + 2
                    continue
            elif m is not None and _TAG_START.match(text, j, end) is None and not text.startswith(("<!", "<?"), j):
                i = j + 1  # a "<" that starts no tag is text
                continue
            if on_text is not None and run < j:
                on_text(run, j)
            if m is None:
                return
            if done is not None:
                self.found.extend(done[1])
                i = run = min(done[0], end)
            elif text.startswith("<!--", j):
                k = text.find("-->", j + 4, end)
                i = run = end if k < 0 else k + 3
            elif text.startswith(("<!", "<?"), j):
                k = text.find(">", j, end)
                i = run = end if k < 0 else k + 1
            else:
                tag = parse_tag(text, j, end)
                if tag is None:  # the tag runs to the end of the input: a browser drops it and the rest
                    return
                i = run = self.tag(text, tag, end)

    def tag(self, text: str, tag: Tag, end: int) -> int:
        """Record the references of one tag; return where scanning resumes (after a raw-text body)."""
        if tag.closing:
            if tag.name == "picture":
                self.picture_depth = max(0, self.picture_depth - 1)
            return tag.end
        if tag.name in RAW_TEXT:
            return resume_after(text, tag, end)
        if tag.name == "picture":
            self.picture_depth += 1
        self.found.extend(tag_refs(text, tag, self.picture_depth > 0))
        return tag.end


def resume_after(text: str, tag: Tag, end: int) -> int:
    """Where scanning resumes after ``tag``: past a raw-text element's body (``<script>``…), else after the tag."""
    if not tag.closing and tag.name in RAW_TEXT:
        m = _CLOSERS[tag.name].search(text, tag.end, end)
        return end if m is None else m.start()
    return tag.end


def tag_refs(text: str, tag: Tag, in_picture: bool) -> list[Found]:
    out: list[Found] = []
    if tag.name == "img":
        _single(text, tag.get("src"), RefKind.IMG_SRC, out)
        if in_picture and out:  # responsive.py wraps an <img> in a <picture> only when it is in none
            out[-1] = replace(out[-1], in_picture=True)
        _srcset(text, tag.get("srcset"), RefKind.SRCSET, out)
        for name in LAZY_SINGLE:
            _single(text, tag.get(name), RefKind.LAZY_ATTR, out)
        for name in LAZY_SRCSET:
            _srcset(text, tag.get(name), RefKind.LAZY_ATTR, out)
    elif tag.name == "source" and in_picture:
        _single(text, tag.get("src"), RefKind.PICTURE_SOURCE, out)
        _srcset(text, tag.get("srcset"), RefKind.PICTURE_SOURCE, out)
        _single(text, tag.get("data-src"), RefKind.LAZY_ATTR, out)
        for name in LAZY_SRCSET:
            _srcset(text, tag.get(name), RefKind.LAZY_ATTR, out)
    elif tag.name == "a":
        href = tag.get("href")
        if href is not None and is_image_path(_value(text, href)):
            _single(text, href, RefKind.LINK_HREF, out)
    elif tag.name == "video":
        _single(text, tag.get("poster"), RefKind.POSTER, out)
    elif tag.name == "meta":
        prop = tag.get("property") or tag.get("name")
        name = _value(text, prop).strip().lower() if prop is not None else ""
        if name in META_IMAGE:
            _single(text, tag.get("content"), RefKind.META_IMAGE, out, name)
    elif tag.name == "link":
        rel = tag.get("rel")
        if rel is not None and "image_src" in _value(text, rel).lower().split():
            _single(text, tag.get("href"), RefKind.META_IMAGE, out, "rel=image_src")
    _style(text, tag.get("style"), out)
    return out


def _value(text: str, attr: Attr) -> str:
    return decode_html(text[attr.start : attr.end])[0]


def _single(text: str, attr: Attr | None, kind: RefKind, out: list[Found], label: str = "") -> None:
    if attr is None or attr.start == attr.end:
        return
    decoded, starts = decode_html(text[attr.start : attr.end])
    a, b = 0, len(decoded)
    while a < b and decoded[a] in _WS:
        a += 1
    while b > a and decoded[b - 1] in _WS:
        b -= 1
    if a < b:
        out.append(_mapped(decoded, starts, a, b, attr, kind, label))


def _style(text: str, attr: Attr | None, out: list[Found]) -> None:
    """Each ``url(...)`` of an inline ``style`` attribute (not ``<style>`` bodies: those are raw text)."""
    if attr is None or "(" not in text[attr.start : attr.end]:
        return
    decoded, starts = decode_html(text[attr.start : attr.end])
    for a, b in css_urls(decoded):
        out.append(_mapped(decoded, starts, a, b, attr, RefKind.CSS_URL))


def _srcset(text: str, attr: Attr | None, kind: RefKind, out: list[Found]) -> None:
    """Each candidate URL of a srcset, per the HTML "parse a srcset attribute" algorithm."""
    if attr is None:
        return
    s, starts = decode_html(text[attr.start : attr.end])
    n, pos = len(s), 0
    while True:
        while pos < n and (s[pos] in _WS or s[pos] == ","):
            pos += 1
        if pos >= n:
            return
        a = pos
        pos = _CANDIDATE.match(s, pos).end()  # type: ignore[union-attr]  # the URL runs to whitespace
        b = pos
        if s[b - 1] == ",":
            while b > a and s[b - 1] == ",":
                b -= 1
        else:  # descriptors run to the next comma outside parentheses
            in_parens = False
            while pos < n:
                ch = s[pos]
                pos += 1
                if ch == "(":
                    in_parens = True
                elif ch == ")":
                    in_parens = False
                elif ch == "," and not in_parens:
                    break
        if a < b:
            out.append(_mapped(s, starts, a, b, attr, kind))


def _mapped(decoded: str, starts: Sequence[int], a: int, b: int, attr: Attr, kind: RefKind, label: str = "") -> Found:
    raw_end = starts[b] if b < len(decoded) else starts[-1]
    # a multi-char entity maps all its chars to its start: end at the next distinct raw offset
    if b < len(decoded) and starts[b] == starts[b - 1]:
        raw_end = next((x for x in starts[b:] if x > starts[b - 1]), starts[-1])
    return Found(decoded[a:b], attr.start + starts[a], attr.start + raw_end, kind, label or attr.name)
