"""Fuzzing the reference finder and the rewriter with hypothesis: arbitrary text and markup-ish fragments.

For any input: ``find_refs`` never raises; its spans are in range, sorted and disjoint; each span's text
decodes to ``ref.url`` the way its syntax says (HTML attributes, inline-style ``url()``, Markdown
destinations, literal front matter and template tags); splicing new URLs in changes no character outside the
replaced spans; and rewriting the result again changes nothing. The bounded run is part of the default
suite; ``-m slow`` selects the soak run with many more examples.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.articles.rewrite import Replacement, splice
from archiver.config import DEFAULT_FIELDS
from archiver.find.refs import HTML_KINDS, LITERAL_KINDS, find_refs
from archiver.find.scan import decode_html, decode_markdown
from archiver.find.tags import asset_rewrite
from archiver.model import ImageRef, RefKind

LINE_BREAK = re.compile(r"\r\n|\r|\n")
NEW = "/archive/ab/cd/" + "e" * 64 + ".jpg"
FRAGMENTS = [
    # markup
    "<img src=", "<img src=\"", "<IMG SRC='", "<img data-src=", "<img srcset=\"", " 1x, ", " 2x\"", "<picture>",
    "</picture>", "<source srcset=", "<a href=", "</a>", ">", "/>", "\"", "'", "=", " ", "\t", "<!--", "-->",
    "<!DOCTYPE html>", "<?xml ?>", "<script>", "</script>", "<style>", "</style>", "<textarea>", "<div>", "</div>",
    "![", "](", ")", "(", "[", "]", "]:", "][", "\\", "`", "``", "```", "~~~", "    ", "> ", "- ", "1. ", "#",
    "<", "<http://a.test/auto.png>", "&amp;", "&#38;", "&#x26;", "&lt;", "&copy", "&", ";", "*", "_",
    # front matter and templates
    "---\n", "+++\n", "...\n", "headimg: ", "thumbnail = ", "cover:\n  url: ", "image:\n  - ", "title: '", "&a ", "*a",
    "{% raw %}", "{% endraw %}", "{{", "}}", "{{< highlight go >}}", "{{< /highlight >}}",
    # template tags, inline styles, posters, meta images
    "{{< figure src=", "{{% figure src=\"", "{{< img src=`", "{{< image ", " link=\"", "\n  caption=\"c\"\n", " >}}",
    " %}}", "/>}}", "{{</* figure src=\"/x.jpg\" */>}}", "{% img ", "{%- image left ", " 300 200 \"t t\" ", " %}",
    " -%}", "{% asset_img a.jpg %}", "{{ .Params.image }}", "{% endraw %}", " style=\"background:url(", " style='",
    "url(", "url('", "URL(&quot;", "&quot;)", "&#39;", ");", "/* ", " */", "<video poster=", "<meta property=\"og:image\"",
    "<meta name=twitter:image ", " content=\"", "<link rel=\"image_src\" href=", "<div style=\"", "\\",
    # line ends and hostile characters
    "\n", "\r\n", "\r", "\x00", "\ufeff", "\u2028", "\u00a0", "文", "😀", "\x7f", "\x0c",
    # URLs
    "http://img.news.test/a.jpg", "https://cdn.test/b c.png?x=1&y=2", "//cdn.test/c.webp", "/root/d.gif",
    "../up/e.jpeg", "f.svg", "http://user:pw@h.test/g.jpg", "http://bücher.test/图.png#frag",
    "data:image/png;base64,AAAA", "javascript:alert(1)", "file:///etc/passwd.jpg", "ftp://h.test/i.jpg",
    "http://h.test/a_(1).jpg", "<http://h.test/angle bracket.jpg>",
]
TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from("\r\n\x00<>[]()!\"'`&;=\\"),
    max_size=30,
)
URLS = st.sampled_from([
    "http://img.news.test/a.jpg", "https://cdn.test/b.png?x=1&amp;y=2", "//cdn.test/c.webp", "/root/d.gif",
    "rel/e.jpg", "/q&quot;uote.jpg", "ftp://h.test/i.jpg", "{{ .Site.BaseURL }}/t.jpg", "data:image/png;base64,AA",
]) | TEXT
GAP = st.sampled_from([" ", "  ", "\n  ", "\r\n\t", "\r"])
# Whole constructs of the syntaxes read since round 3, with random quoting, spacing and URLs, so the
# fuzzer reaches their scanners often instead of relying on fragments lining up by chance.
CONSTRUCTS = st.one_of(
    st.builds(lambda o, name, key, q, url, gap, c: f"{{{{{o}{gap}{name}{gap}{key}={q}{url}{q}{gap}alt=\"a\"{c}}}}}",
              st.sampled_from("<%"), st.sampled_from(["figure", "img", "image", "youtube"]),
              st.sampled_from(["src", "link", "caption"]), st.sampled_from(['"', "`", ""]), URLS, GAP,
              st.sampled_from([">", "%", "/>", " /%"])),
    st.builds(lambda name, cls, url, tail, dash: f"{{%{dash} {name} {cls}{url}{tail} {dash}%}}",
              st.sampled_from(["img", "image", "asset_img", "include"]), st.sampled_from(["", "left ", "a b "]),
              URLS, st.sampled_from(["", " 300", " 300 200 \"t t\" \"alt\""]), st.sampled_from(["", "-"])),
    st.builds(lambda tag, q, fn, url, rest: f"<{tag} style={q}color:red; background:{fn}{url}{rest}{q}>",
              st.sampled_from(["div", "img src=/i.jpg", "p", "script"]), st.sampled_from(['"', "'"]),
              st.sampled_from(["url(", "url( &quot;", "URL('", "url(&#39;", "myurl("]), URLS,
              st.sampled_from([")", "&quot; )", "')", "&#39;)", ";x:url(/y.png)", ""])),
    st.builds(lambda url, q: f"<video poster={q}{url}{q}></video>", URLS, st.sampled_from(['"', "'", ""])),
    st.builds(lambda attr, name, url: f'<meta {attr}="{name}" content="{url}">', st.sampled_from(["property", "name"]),
              st.sampled_from(["og:image", "OG:Image:URL", "og:image:secure_url", "twitter:image", "og:title"]), URLS),
    st.builds(lambda rel, url: f'<link rel="{rel}" href="{url}">', st.sampled_from(["image_src", "icon", "x image_src"]),
              URLS),
)
ARTICLES = st.lists(st.sampled_from(FRAGMENTS) | TEXT | CONSTRUCTS, max_size=40).map("".join)
FORMATS = st.sampled_from(["markdown", "html"])
BOUNDED = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOAK = settings(max_examples=20_000, deadline=None, suppress_health_check=list(HealthCheck))


def decodes_to(text: str, ref: ImageRef) -> bool:
    """The span, decoded by the rules of the syntax it was found in, is exactly ``ref.url``."""
    raw = text[ref.start : ref.end]
    if ref.kind in LITERAL_KINDS:  # front matter, shortcodes, template tags
        return raw == ref.url
    if ref.kind == RefKind.ASSET_TAG:  # from the tag's name to the asset's name, which the rewrite turns into img
        return raw.startswith("asset_") and raw.endswith(ref.url)
    if ref.kind in HTML_KINDS:
        return decode_html(raw)[0] == ref.url
    if ref.kind == RefKind.LINK_HREF and ref.field:  # <a href>: an HTML attribute
        return decode_html(raw)[0] == ref.url
    return decode_markdown(raw) == ref.url or raw == ref.url


def rewrite(text: str, fmt: str) -> str:
    """What the pipeline does to an article whose every image is archived: each found URL becomes NEW."""
    refs = find_refs(text, fmt, DEFAULT_FIELDS)
    return splice(text, [Replacement(r.start, r.end, new_text(text, r)) for r in refs if r.url != NEW])


def new_text(text: str, ref: ImageRef) -> str:
    """What the pipeline writes over the span: NEW, or for an asset tag ``img … NEW``."""
    if ref.kind == RefKind.ASSET_TAG:
        return asset_rewrite(text[ref.start : ref.end], ref.url, NEW)
    return NEW


def check(text: str, fmt: str) -> None:
    refs = find_refs(text, fmt, DEFAULT_FIELDS)
    last_end = 0
    for ref in refs:
        assert 0 <= last_end <= ref.start < ref.end <= len(text), (ref, last_end, len(text))
        last_end = ref.end
        assert decodes_to(text, ref), (ref, text[ref.start : ref.end])
        assert ref.line == len(LINE_BREAK.split(text[: ref.start])), ref  # 1-based; CRLF, CR, LF end a line
        assert ref.url.strip(), ref

    chosen = [r for i, r in enumerate(refs) if i % 2 == 0]  # replace a subset: the others stay as written
    written = splice(text, [Replacement(r.start, r.end, new_text(text, r)) for r in chosen])
    # every character outside the replaced spans is kept, in order
    pos, out = 0, 0
    for r in chosen:
        gap, new = r.start - pos, new_text(text, r)
        assert written[out : out + gap] == text[pos : r.start]
        assert written[out + gap : out + gap + len(new)] == new
        pos, out = r.end, out + gap + len(new)
    assert written[out:] == text[pos:]

    once = rewrite(text, fmt)
    assert rewrite(once, fmt) == once


@BOUNDED
@given(ARTICLES, FORMATS)
def test_finder_and_rewriter_hold_on_arbitrary_text(text: str, fmt: str) -> None:
    check(text, fmt)


@BOUNDED
@given(st.binary(max_size=300).map(lambda b: b.decode("latin-1")), FORMATS)
def test_finder_and_rewriter_hold_on_arbitrary_code_points(text: str, fmt: str) -> None:
    check(text, fmt)


@pytest.mark.slow
@SOAK
@given(ARTICLES, FORMATS)
def test_soak_finder_and_rewriter(text: str, fmt: str) -> None:
    check(text, fmt)


@pytest.mark.parametrize(
    "text",
    [
        # found while fuzzing or reasoning about the scanners; kept as fixed examples
        "<img src=\"http://a.test/x.jpg\">\r\n" * 3 + "<img src='unterminated",
        "![a](http://a.test/x.jpg)\x00![b](http://a.test/y.jpg)",
        "".join("  " * i + "- item\n" for i in range(60)) + "\n\n![after](http://a.test/after.jpg)\n",
        ">" * 10_000 + " ![deep](http://a.test/deep.jpg)\n",
        "---\ntitle: [unclosed\nheadimg: http://a.test/fm.jpg\n---\n![x](http://a.test/x.jpg)\n",
        "<img srcset=\"" + "data:image/png;base64," + "A" * 100_000 + " 1x, http://a.test/s.jpg 2x\">",
        "{{< figure src=\"http://a.test/f.jpg\"\r\n  caption=\"x\"\r\n>}}\r\n{% img /a.jpg %}" + "{{< figure src=\"" * 2000,
        "<p style=\"background:url(&quot;http://a.test/s.jpg&quot;); x:url(" + "(" * 5000 + "\">" + "{%" * 5000,
    ],
    ids=["crlf-unterminated", "nul", "nested-lists", "nested-quotes", "invalid-yaml", "huge-data-uri",
         "unclosed-shortcodes", "unclosed-css-and-tags"],
)
def test_fixed_hostile_examples(text: str) -> None:
    for fmt in ("markdown", "html"):
        check(text, fmt)
