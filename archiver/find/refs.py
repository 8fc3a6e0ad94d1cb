"""Find every image reference in one article's text, with the exact span of each URL as written.

Front matter fields (frontmatter.py), then the body as Markdown (markdown.py, raw HTML included)
or as HTML (html.py, with inline-style ``url()`` from css.py); in both, Hugo shortcodes and
Hexo/Octopress ``{% img %}`` tags (tags.py). Kinds: the newer syntaxes report under the nearest
``RefKind`` (``IMG_SRC`` for a shortcode ``src``, ``{% img %}``, ``style`` ``url()`` and ``poster``;
``LINK_HREF`` for a figure ``link`` and og:/twitter: images) and ``field`` says exactly where: a field
starting with ``{`` names a template tag, whose URL is written literally. Liquid/Hugo blocks whose
content is code or literal text (``raw``, ``highlight``, ``codeblock``, ``comment``) are blanked out
first, keeping every offset.

Memory: scanning holds every reference found (and markdown-it every line and block). With ``max_refs``, an article
with more references than that, or more than ``STRUCTURE_PER_REF`` times as many lines, Markdown elements or
front-matter values, raises
TooLarge as soon as it is seen, so what one article can cost stays bounded whatever it holds.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence

from archiver.errors import ArticleError
from archiver.find.frontmatter import Notice, front_matter_refs, split_front_matter, unclosed_front_matter
from archiver.find.html import HtmlScanner
from archiver.find.markdown import line_starts, scan_markdown
from archiver.find.scan import (
    STRUCTURE_PER_REF,
    Found,
    FoundList,
    TooLarge,
    decode_html,
    decode_markdown,
    too_many_refs,
    too_much,
    usable,
)
from archiver.model import Article, ImageRef, RefKind

_TEMPLATE_BLOCKS = (
    re.compile(
        r"\{%-?[ \t]*(raw|highlight|codeblock|comment)\b.*?%\}.*?\{%-?[ \t]*end\1[ \t]*-?%\}",
        re.DOTALL,
    ),
    re.compile(r"\{\{[<%][ \t]*(highlight)\b.*?[>%]\}\}.*?\{\{[<%][ \t]*/highlight[ \t]*[>%]\}\}", re.DOTALL),
)
# how a kind's span decodes to its URL: literally, or as an HTML attribute value (entities)
LITERAL_KINDS = frozenset({RefKind.FRONT_MATTER, RefKind.SHORTCODE, RefKind.TEMPLATE_TAG})
HTML_KINDS = frozenset({
    RefKind.IMG_SRC, RefKind.SRCSET, RefKind.LAZY_ATTR, RefKind.PICTURE_SOURCE,
    RefKind.CSS_URL, RefKind.POSTER, RefKind.META_IMAGE,
})


def find_refs(
    text: str, fmt: str, fields: Sequence[str], *, notices: list[Notice] | None = None, max_refs: int | None = None
) -> list[ImageRef]:
    """fmt is "markdown" or "html". fields = config articles.front_matter_fields (dotted paths allowed).

    With ``notices``, front matter a site generator could not parse (never closed, invalid YAML or TOML) adds a
    ``Notice`` (line, message) there; the article is read all the same. ``max_refs`` (config articles.max_refs):
    TooLarge for an article with more references than that, or more than STRUCTURE_PER_REF times as many lines,
    Markdown elements or front-matter values; None: no bound."""
    if fmt not in ("markdown", "html"):
        raise ValueError(f"unknown article format {fmt!r} (expected 'markdown' or 'html')")
    max_structure = None if max_refs is None else STRUCTURE_PER_REF * max_refs
    if max_structure is not None:
        lines = text.count("\n") + text.count("\r") - text.count("\r\n") + 1
        if lines > max_structure:
            raise TooLarge(too_much("lines", max_structure))
    found = FoundList(max_refs)
    body_start = 0
    fm = split_front_matter(text)
    if fm is not None:
        found.extend(front_matter_refs(text, fm, fields, notices, max_structure))
        body_start = fm.body_start
    elif notices is not None and (unclosed := unclosed_front_matter(text)) is not None:
        notices.append(unclosed)
    masked = mask_template_blocks(text, body_start)
    if fmt == "html":
        scanner = HtmlScanner(found=FoundList(max_refs))
        scanner.scan(masked, body_start, len(masked))
        found.extend(scanner.found)
    else:
        found.extend(scan_markdown(masked, body_start, max_refs, max_structure))
    if max_refs is not None and len(found) > max_refs:
        raise TooLarge(too_many_refs(max_refs))
    return _finish(text, found, notices)


def article_refs(
    article: Article, fields: Sequence[str], max_refs: int | None, notices: list[Notice] | None = None
) -> list[ImageRef]:
    """``find_refs`` of a loaded article; an article too large to scan is an ArticleError naming it."""
    try:
        return find_refs(article.text, article.format, fields, notices=notices, max_refs=max_refs)
    except TooLarge as exc:
        raise ArticleError(article.path, exc.reason) from None


def mask_template_blocks(text: str, start: int) -> str:
    """``text`` with Liquid/Hugo literal blocks after ``start`` replaced by spaces (line breaks kept)."""
    spans = [m.span() for pattern in _TEMPLATE_BLOCKS for m in pattern.finditer(text, start)]
    if not spans:
        return text
    chars = list(text)
    for a, b in spans:
        for i in range(a, b):
            if chars[i] not in "\r\n":
                chars[i] = " "
    return "".join(chars)


def _consistent(text: str, f: Found) -> bool:
    """The span decodes to the URL exactly as the kind's syntax says (a guard against scanner slips)."""
    raw = text[f.start : f.end]
    if f.kind in LITERAL_KINDS:
        return raw == f.url
    if f.kind == RefKind.ASSET_TAG:  # from the tag's name to the asset's name
        return raw.startswith("asset_") and raw.endswith(f.url) and not any(c in raw for c in "\r\n")
    if f.kind in HTML_KINDS or (f.kind == RefKind.LINK_HREF and f.field):
        return decode_html(raw)[0] == f.url
    return decode_markdown(raw) == f.url or raw == f.url


def _finish(text: str, found: list[Found], notices: list[Notice] | None = None) -> list[ImageRef]:
    lines = line_starts(text)
    refs: list[ImageRef] = []
    last_end = -1
    for f in sorted(found, key=lambda f: (f.start, f.end)):
        if f.problem:  # what the author wrote that names an image no one can read: reported, never guessed
            if notices is not None:
                notices.append(Notice(bisect.bisect_right(lines, f.start), f"{f.field}: {f.problem}"))
            continue
        if not 0 <= f.start < f.end <= len(text) or f.start < last_end:
            continue
        if not usable(f.url, text[f.start : f.end]) or not _consistent(text, f):
            continue
        line = bisect.bisect_right(lines, f.start)
        refs.append(ImageRef(f.url, f.start, f.end, f.kind, line, f.field, f.in_picture))
        last_end = f.end
    return refs
