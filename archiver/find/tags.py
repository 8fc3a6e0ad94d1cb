"""Image references in template tags: Hugo shortcodes (``{{< figure src=… >}}``) and Hexo/Octopress ``{% img … %}``.

Only tags whose URL is a literal are read, and only these (the list the README documents):

- Hugo ``figure``, ``img`` and ``image`` shortcodes, ``{{< … >}}`` or ``{{% … %}}``: the ``src`` parameter,
  and ``link`` when it names an image file (figure's click-to-enlarge). Values may be ``"quoted"``,
  ```raw``` or bare; a quoted value with a backslash escape is left alone. ``{{</* … */>}}`` (a
  shortcode shown as text) is not a shortcode.
- Hexo ``{% img %}`` / ``{% image %}`` and Jekyll/Octopress ``{% img %}``:
  ``{% img [class names] URL [width] [height] ["title" ["alt"]] %}``. The URL is the first argument that
  looks like one (a scheme or a leading ``/``), as Hexo decides; it is reported when it is http(s),
  protocol-relative or root-relative.
- Hexo ``{% asset_img [class names] name.jpg [width] [height] [title [alt]] %}`` (and ``asset_image``): a file of
  the post's asset folder, the first argument (bare, or quoted as Hexo's Nunjucks lexer reads ``"my pic.jpg"``) that
  names an image file and is not a URL; a tag naming none that can be read is reported. Its span runs from
  the tag's name to the end of the file name (``RefKind.ASSET_TAG``): Hexo renders ``asset_img`` by putting the
  asset's URL in place of the name and calling ``img`` with the same arguments, so the rewrite writes ``img``,
  the arguments before the name as they were, and the archive URL.
"""

from __future__ import annotations

import re

from archiver.find.scan import Found, is_image_path
from archiver.model import RefKind

SHORTCODES = frozenset({"figure", "img", "image"})
SHORTCODE_LINKS = frozenset({"figure"})  # shortcodes whose ``link`` is read when it names an image file
LIQUID_TAGS = frozenset({"img", "image"})
ASSET_TAGS = frozenset({"asset_img", "asset_image"})  # Hexo: an asset of the post, rendered as img / image
ASSET_PREFIX = "asset_"
OPENER = re.compile(r"\{\{[<%]|\{%")
_SHORTCODE = re.compile(r"\{\{([<%])[ \t\r\n]*([A-Za-z][\w-]*)")
_LIQUID = re.compile(r"\{%-?[ \t\r\n]*([A-Za-z_][\w-]*)")
_WS = " \t\r\n"
_PARAM_NAME = re.compile(r"([A-Za-z_][\w-]*)[ \t]*=[ \t]*")
_HEXO_URL = re.compile(r"(?:[A-Za-z]{3,9}:|/)")  # Hexo's test: a scheme, or a path from the root
_FETCHABLE = re.compile(r"(?:https?://|/)", re.IGNORECASE)


def template_tag(text: str, pos: int, limit: int) -> tuple[int, list[Found]] | None:
    """The image tag starting at ``pos`` (an ``OPENER`` match): (offset after it, its references).

    None when ``pos`` starts no complete image tag: another tag, an expression, or malformed input. A
    tag ends before the next opener, so scanning many unclosed openers stays linear.
    """
    bound = OPENER.search(text, pos + 2, limit)
    stop = limit if bound is None else bound.start()
    m = _SHORTCODE.match(text, pos, stop)
    if m is not None:
        return _shortcode(text, m, stop) if m.group(2) in SHORTCODES else None
    m = _LIQUID.match(text, pos, stop)
    if m is not None and m.group(1) in LIQUID_TAGS:
        return _liquid(text, m, stop)
    if m is not None and m.group(1) in ASSET_TAGS:
        return _asset(text, m, stop)
    return None


def asset_rewrite(span: str, name: str, url: str) -> str:
    """What an ``asset_img`` span (``asset_img [class names] name``) becomes when ``name`` is archived at ``url``:
    ``img [class names] url``, the tag Hexo renders it with."""
    return span[len(ASSET_PREFIX) : len(span) - len(name)] + url


def _tag_end(text: str, m: re.Match[str], stop: int) -> tuple[int, int] | None:
    """Where a ``{% … %}`` tag opened by ``m`` ends, and where its body ends (before a ``-%}`` trim marker)."""
    close = text.find("%}", m.end(), stop)
    if close < 0:
        return None
    return close + 2, close - 1 if text[close - 1] == "-" and close - 1 >= m.end() else close


_ARG = re.compile(r"\"((?:[^\"\\]|\\.)*)\"|'((?:[^'\\]|\\.)*)'|\S+")  # Nunjucks: "quoted", 'quoted' or bare


def _asset(text: str, m: re.Match[str], stop: int) -> tuple[int, list[Found]] | None:
    """Hexo looks each argument (quotes removed, as its Nunjucks lexer reads them) up among the post's assets: the
    first that names an image file and is not a URL is the asset. A tag whose name cannot be read (a template
    expression, a backslash escape in quotes) or that names no image file is reported (``Found.problem``)."""
    bounds = _tag_end(text, m, stop)
    if bounds is None:
        return None
    end, body_end = bounds
    tag = "{% " + m.group(1) + " %}"
    unreadable = ""
    for tok in _ARG.finditer(text, m.end(), body_end):
        quoted = tok.lastindex is not None
        word = tok.group(tok.lastindex) if quoted else tok.group(0)
        if not quoted and word[0] in "\"'":  # a quote never closed: what follows is no argument Hexo can read
            unreadable = unreadable or f"a quote is never closed ({text[tok.start() : body_end].strip()}): not archived"
            break
        if _HEXO_URL.match(word) or not word.strip():
            continue  # a URL (Hexo finds no asset by it) or an empty argument
        if "{" in word:  # a template expression: its value is known only when the site is built
            shown = text[tok.start() : body_end].strip()
            unreadable = unreadable or f"its file name is a template expression ({shown}): not archived"
            continue
        if quoted and "\\" in word:
            if is_image_path(word.replace("\\", "")):
                unreadable = unreadable or f"its quoted file name has a backslash escape ({word}): not archived"
            continue
        if is_image_path(word):
            a = tok.start(tok.lastindex) if quoted else tok.start()
            return end, [Found(word, m.start(1), a + len(word), RefKind.ASSET_TAG, tag)]
    why = unreadable or "no argument names an image file of the post's asset folder (name.jpg): not archived"
    return end, [Found("", m.start(), end, RefKind.ASSET_TAG, tag, problem=why)]


def _shortcode(text: str, m: re.Match[str], stop: int) -> tuple[int, list[Found]] | None:
    name = m.group(2)
    closer = ">}}" if m.group(1) == "<" else "%}}"
    delims = "{{" + m.group(1) + " " + name + " " + closer[0] + "}}"
    found: list[Found] = []
    i = m.end()
    while True:
        j = i
        while j < stop and text[j] in _WS:
            j += 1
        if text.startswith(closer, j, stop):
            return j + len(closer), found
        if text.startswith("/" + closer, j, stop):
            return j + 1 + len(closer), found
        if j == i or j >= stop:  # parameters are separated by whitespace
            return None
        p = _PARAM_NAME.match(text, j, stop)
        key = p.group(1) if p else ""
        value = _value(text, p.end() if p else j, stop, closer)
        if value is None:
            return None
        a, b, i, literal = value
        if not literal or a == b:
            continue
        url = text[a:b]
        if key == "src":
            found.append(Found(url, a, b, RefKind.SHORTCODE, f"{delims} src"))
        elif key == "link" and name in SHORTCODE_LINKS and is_image_path(url):
            found.append(Found(url, a, b, RefKind.SHORTCODE, f"{delims} link"))


def _value(text: str, i: int, stop: int, closer: str) -> tuple[int, int, int, bool] | None:
    """A parameter value at ``i``: (start, end, offset after it, literal?); None if malformed."""
    if i >= stop:
        return None
    q = text[i]
    if q == "`":
        k = text.find("`", i + 1, stop)
        return None if k < 0 else (i + 1, k, k + 1, True)
    if q == '"':
        k, escaped = i + 1, False
        while k < stop and text[k] != '"':
            if text[k] == "\\":
                escaped = True
                k += 1
            k += 1
        return None if k >= stop else (i + 1, k, k + 1, not escaped)
    k = i
    while k < stop and text[k] not in _WS and not text.startswith(closer, k, stop):
        k += 1
    return (i, k, k, True) if k > i else None


def _liquid(text: str, m: re.Match[str], stop: int) -> tuple[int, list[Found]] | None:
    bounds = _tag_end(text, m, stop)
    if bounds is None:
        return None
    end, body_end = bounds
    for tok in _ARG.finditer(text, m.end(), body_end):
        quoted = tok.lastindex is not None  # "URL" is the URL to Hexo's lexer (and the asset_img rewrite writes it)
        word = tok.group(tok.lastindex) if quoted else tok.group(0)
        if _HEXO_URL.match(word) is None or (quoted and "\\" in word):
            continue
        if _FETCHABLE.match(word) is None:  # the tag's URL, but not one to fetch (ftp:, mailto:, …)
            return end, []
        a = tok.start(tok.lastindex) if quoted else tok.start()
        return end, [Found(word, a, a + len(word), RefKind.TEMPLATE_TAG, "{% " + m.group(1) + " %}")]
    return end, []
