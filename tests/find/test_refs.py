"""The reference finder: every image reference in an article body, with the exact span of its URL."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.config import DEFAULT_FIELDS
from archiver.find.refs import find_refs
from archiver.model import ImageRef, RefKind
from tests.support.paths import FIXTURES_DIR

FIXTURES = FIXTURES_DIR / "refs"
K = RefKind


def refs(text: str, fmt: str = "markdown") -> list[ImageRef]:
    found = find_refs(text, fmt, DEFAULT_FIELDS)
    assert [r.start for r in found] == sorted(r.start for r in found)
    assert all(a.end <= b.start for a, b in zip(found, found[1:], strict=False))
    return found


def urls(text: str, fmt: str = "markdown") -> list[tuple[RefKind, str]]:
    return [(r.kind, r.url) for r in refs(text, fmt)]


def raws(text: str, fmt: str = "markdown") -> list[str]:
    return [text[r.start : r.end] for r in refs(text, fmt)]


# --- HTML ---------------------------------------------------------------------------------------


def test_img_src_quoting_styles_and_case() -> None:
    text = "<img src=\"/a.jpg\"><IMG SRC='/b.png'><img alt=x src=/c.gif width=3><img\n  src = \"/d.webp\" >"
    assert urls(text, "html") == [(K.IMG_SRC, u) for u in ("/a.jpg", "/b.png", "/c.gif", "/d.webp")]
    assert raws(text, "html") == ["/a.jpg", "/b.png", "/c.gif", "/d.webp"]


def test_entities_decoded_in_url_but_span_is_raw() -> None:
    text = '<img src="https://x.example/i.php?a=1&amp;b=2&#38;c=3&copy=4">'
    [r] = refs(text, "html")
    assert r.url == "https://x.example/i.php?a=1&b=2&c=3&copy=4"  # legacy &copy before "=" stays
    assert text[r.start : r.end] == "https://x.example/i.php?a=1&amp;b=2&#38;c=3&copy=4"


def test_srcset_candidates_with_descriptors_and_commas_in_urls() -> None:
    text = (
        '<img src="s.jpg" srcset="a.jpg 1x, https://cdn.example/w=640,h=480/b.jpg 2x,'
        'c.jpg 640w,d.jpg, e.jpg (x, y) 3x">'
    )
    found = refs(text, "html")
    assert [(r.kind, r.url) for r in found] == [
        (K.IMG_SRC, "s.jpg"),
        (K.SRCSET, "a.jpg"),
        (K.SRCSET, "https://cdn.example/w=640,h=480/b.jpg"),
        (K.SRCSET, "c.jpg"),
        (K.SRCSET, "d.jpg"),
        (K.SRCSET, "e.jpg"),
    ]
    assert all(text[r.start : r.end] == r.url for r in found)
    assert {r.field for r in found[1:]} == {"srcset"}


def test_srcset_without_spaces_is_one_url() -> None:
    # HTML spec: a URL runs to whitespace; only trailing commas split candidates
    assert urls('<img srcset="a.jpg,b.jpg">', "html") == [(K.SRCSET, "a.jpg,b.jpg")]


def test_lazy_attributes() -> None:
    text = (
        '<img data-src="/1.jpg" data-original="/2.jpg" data-lazy-src="/3.jpg" zoomfile="/4.jpg" '
        'file="/5.jpg" data-echo="/6.jpg" data-srcset="/7.jpg 1x, /8.jpg 2x" data-lazy-srcset="/9.jpg 2x">'
    )
    found = refs(text, "html")
    assert [(r.kind, r.field, r.url) for r in found] == [
        (K.LAZY_ATTR, "data-src", "/1.jpg"),
        (K.LAZY_ATTR, "data-original", "/2.jpg"),
        (K.LAZY_ATTR, "data-lazy-src", "/3.jpg"),
        (K.LAZY_ATTR, "zoomfile", "/4.jpg"),
        (K.LAZY_ATTR, "file", "/5.jpg"),
        (K.LAZY_ATTR, "data-echo", "/6.jpg"),
        (K.LAZY_ATTR, "data-srcset", "/7.jpg"),
        (K.LAZY_ATTR, "data-srcset", "/8.jpg"),
        (K.LAZY_ATTR, "data-lazy-srcset", "/9.jpg"),
    ]


def test_lazy_attributes_only_on_images() -> None:
    assert urls('<div data-src="/a.jpg"></div><iframe data-src="/b.jpg"></iframe>', "html") == []


def test_picture_sources() -> None:
    text = (
        '<picture><source srcset="/a.avif 1x, /a2.avif 2x" type="image/avif">'
        '<source src="/b.webp"><img src="/c.jpg"></picture>'
        '<video><source src="/movie.mp4"></video>'
    )
    assert urls(text, "html") == [
        (K.PICTURE_SOURCE, "/a.avif"),
        (K.PICTURE_SOURCE, "/a2.avif"),
        (K.PICTURE_SOURCE, "/b.webp"),
        (K.IMG_SRC, "/c.jpg"),
    ]


def test_anchor_href_only_when_it_points_at_an_image_file() -> None:
    text = (
        '<a href="/big.JPG?w=2000"><img src="/small.jpg"></a> <a href="/page.html">x</a> '
        '<a href="https://x.example/photo.heic#f">y</a> <a href="/dir/">z</a>'
    )
    assert urls(text, "html") == [
        (K.LINK_HREF, "/big.JPG?w=2000"),
        (K.IMG_SRC, "/small.jpg"),
        (K.LINK_HREF, "https://x.example/photo.heic#f"),
    ]


def test_comments_scripts_styles_are_skipped() -> None:
    text = (
        '<!-- <img src="/c.jpg"> --><script>var s = \'<img src="/s.jpg">\';</script>'
        '<style>.x{background:url(/st.png)} /* <img src="/st2.png"> */</style>'
        '<textarea><img src="/t.jpg"></textarea><img src="/real.jpg">'
    )
    assert urls(text, "html") == [(K.IMG_SRC, "/real.jpg")]


def test_images_inside_html_pre_and_code_are_real() -> None:
    assert urls('<pre><code><img src="/in-pre.png"></code></pre>', "html") == [(K.IMG_SRC, "/in-pre.png")]


def test_never_data_empty_or_templates_but_weird_schemes_are_reported() -> None:
    text = (
        '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="><img src=""><img src>'
        '<img src="{{ page.image }}"><img src="/a/{% if x %}b{% endif %}.jpg"><img src="<%= url %>">'
        '<img src="javascript:alert(1)"><img src="file:///etc/passwd"><img src="ftp://x.example/a.png">'
        '<img src="//cdn.example/p.png"><img src="rel/p.png">'
    )
    assert [u for _, u in urls(text, "html")] == [
        "javascript:alert(1)",
        "file:///etc/passwd",
        "ftp://x.example/a.png",
        "//cdn.example/p.png",
        "rel/p.png",
    ]


def test_html_format_does_not_read_markdown() -> None:
    assert urls("<p>![x](/a.png)</p>", "html") == []


def test_unknown_format_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        find_refs("", "rst", DEFAULT_FIELDS)


# --- Markdown -----------------------------------------------------------------------------------


def test_inline_images_with_titles_angle_brackets_nesting_and_escapes() -> None:
    text = (
        '![a](/1.png "t") ![b](/2.png \'t\') ![c](/3.png (t)) ![d](</my img.png>) '
        "![alt [nested] ok](/4.png) ![e](/wiki/File_(1).jpg) ![f](/5\\_x.png) ![g](/6.png?a=1&amp;b=2)"
    )
    found = refs(text)
    assert [(r.kind, r.url) for r in found] == [
        (K.MD_INLINE, "/1.png"),
        (K.MD_INLINE, "/2.png"),
        (K.MD_INLINE, "/3.png"),
        (K.MD_INLINE, "/my img.png"),
        (K.MD_INLINE, "/4.png"),
        (K.MD_INLINE, "/wiki/File_(1).jpg"),
        (K.MD_INLINE, "/5_x.png"),
        (K.MD_INLINE, "/6.png?a=1&b=2"),
    ]
    assert [text[r.start : r.end] for r in found][3:] == [
        "/my img.png",
        "/4.png",
        "/wiki/File_(1).jpg",
        "/5\\_x.png",
        "/6.png?a=1&amp;b=2",
    ]


def test_links_to_image_files_and_click_to_enlarge() -> None:
    text = "[![thumb](/t.jpg)](/big.jpg) [page](/about/) [photo](https://x.example/p.PNG?s=1) [x](/doc.pdf)"
    assert urls(text) == [(K.MD_INLINE, "/t.jpg"), (K.LINK_HREF, "/big.jpg"), (K.LINK_HREF, "https://x.example/p.PNG?s=1")]


def test_reference_style_images_and_definitions() -> None:
    text = (
        "![full][Logo] ![Shot][] ![banner] [plain link][img-def] [doc][page]\n\n"
        "[logo]: /logo-no-extension\n"
        "[SHOT]: <https://x.example/shot> \"title\"\n"
        "  [Banner]:\n    https://x.example/banner\n"
        "[img-def]: /big.png 'used by a plain link'\n"
        "[page]: /about/\n"
        "[unused]: /unused-page\n"
    )
    found = refs(text)
    assert [(r.kind, r.url, r.line) for r in found] == [
        (K.MD_REFERENCE, "/logo-no-extension", 3),
        (K.MD_REFERENCE, "https://x.example/shot", 4),
        (K.MD_REFERENCE, "https://x.example/banner", 6),
        (K.MD_REFERENCE, "/big.png", 7),
    ]


def test_shortcut_image_without_definition_is_text() -> None:
    assert urls("![nothing here]\n\n[other]: /x.png\n") == [(K.MD_REFERENCE, "/x.png")]


def test_fenced_code_is_not_scanned() -> None:
    text = (
        "```html\n<img src=\"/in-fence.png\">\n![x](/md-in-fence.png)\n```\n"
        "  ~~~\n  ![x](/tilde.png)\n  ~~~~~\n"
        "````\n```\n![x](/still-in.png)\n````\n"
        "![ok](/after.png)\n"
        "```\n![x](/unclosed-runs-to-end.png)\n"
    )
    assert urls(text) == [(K.MD_INLINE, "/after.png")]


def test_indented_code_block_but_not_paragraph_continuation() -> None:
    text = (
        "Paragraph\n    ![cont](/continuation.png)\n\n"
        "    ![code](/indented-code.png)\n    <img src=\"/code2.png\">\n\ntext\n"
    )
    assert urls(text) == [(K.MD_INLINE, "/continuation.png")]


def test_hexo_html_block_with_indented_images() -> None:
    text = (
        "<div>   \n<p>\n    <img src=\"https://x.example/1.jpg\" referrerpolicy=\"no-referrer\">\n"
        "        <img data-original='https://x.example/2.jpg'>\n</p>\n</div>\n"
    )
    assert urls(text) == [(K.IMG_SRC, "https://x.example/1.jpg"), (K.LAZY_ATTR, "https://x.example/2.jpg")]


def test_inline_code_spans_are_text() -> None:
    text = "`![a](/a.png)` ``x ` <img src=\"/b.png\"> y`` \\`![c](/c.png) and `<img src=\"/d.png\">`"
    # the escaped backtick does not open a span, so /c.png is an image and the next span holds /d.png
    assert urls(text) == [(K.MD_INLINE, "/c.png")]


def test_html_comments_script_and_style_in_markdown() -> None:
    text = (
        "<!--\n![a](/block-comment.png)\n-->\n\n"
        "text <!-- ![b](/inline-comment.png) --> more\n\n"
        "<script>\nvar s = '![c](/script.png)';\n</script>\n\n"
        "<style>\n.a { background: url(/style.png) }\n</style>\n\n"
        "![ok](/ok.png)\n"
    )
    assert urls(text) == [(K.MD_INLINE, "/ok.png")]


def test_liquid_and_hugo_literal_blocks_and_expressions() -> None:
    text = (
        "{% raw %}\n<img src=\"/raw.png\">\n{% endraw %}\n\n"
        "{% highlight html %}\n<img src=\"/hl.png\">\n{% endhighlight %}\n\n"
        "{{< highlight html >}}\n<img src=\"/hugo.png\">\n{{< /highlight >}}\n\n"
        "![a]({{ site.url }}/liquid.png) ![b]({{ '/x.png' | relative_url }}) <img src=\"{{ page.image }}\">\n\n"
        "{% figure caption:\"c\" %}\n![kept](/assets/images/kept.jpg)\n{% endfigure %}\n"
    )
    assert urls(text) == [(K.MD_INLINE, "/assets/images/kept.jpg")]


def test_raw_html_inside_markdown_paragraphs() -> None:
    text = "Text <img src=\"/inline.png\" alt=\"a\"> and <a href=\"/big.gif\">link</a>.\n"
    assert urls(text) == [(K.IMG_SRC, "/inline.png"), (K.LINK_HREF, "/big.gif")]


def test_markdown_image_written_inside_an_html_block_is_reported() -> None:
    # CommonMark prints it as text, but the author meant an image: archive it rather than lose it
    text = '<figure class="ctms-editor-image">![image](https://x.example/zoom/1.jpg)</figure>\n'
    assert urls(text) == [(K.MD_INLINE, "https://x.example/zoom/1.jpg")]


def test_autolink_to_image() -> None:
    assert urls("See <https://x.example/a.png> and <https://x.example/page>.") == [
        (K.LINK_HREF, "https://x.example/a.png")
    ]


def test_data_uri_and_empty_destination_in_markdown() -> None:
    assert urls("![a](data:image/png;base64,iVBORw0KGgo=) ![b]() ![c](<>)") == []


def test_crlf_and_no_final_newline_lines_are_right() -> None:
    text = "---\r\nimage: /fm.jpg\r\n---\r\n\r\nline\r\n![a](/a.png)\r\n\r\n```\r\n![b](/b.png)\r\n```\r\n<img src=\"/c.png\">"
    found = refs(text)
    assert [(r.url, r.line) for r in found] == [("/fm.jpg", 2), ("/a.png", 6), ("/c.png", 11)]
    assert all(text[r.start : r.end] == r.url for r in found)


# --- real corpus files --------------------------------------------------------------------------


def fixture(name: str) -> str:
    return (FIXTURES / name).read_bytes().decode("utf-8")


def test_fixture_rsshub_hexo_zaker() -> None:
    text = fixture("rsshub-zaker-asahi.md")
    cors = "https://cors.zfour.workers.dev/?http://zkres1.myzaker.com/202206/62a1973a8e9f091def639698_1024.jpg"
    assert [(r.line, r.kind, r.field, r.url) for r in refs(text)] == [
        (8, K.FRONT_MATTER, "headimg", cors),
        (12, K.FRONT_MATTER, "thumbnail", cors),
        (16, K.LAZY_ATTR, "data-original", "http://zkres1.myzaker.com/202206/62a1973a8e9f091def639698_1024.jpg"),
        (16, K.IMG_SRC, "src", cors),
    ]


def test_fixture_made_mistakes_anchors_and_click_to_enlarge() -> None:
    text = fixture("made-mistakes-kristoffbertram.md")
    found = refs(text)
    base = "/assets/images/paperfaces-kristoffbertram-"
    expected = [
        (5, K.FRONT_MATTER, "image.path", base + "twitter.jpg"),
        (7, K.FRONT_MATTER, "image.thumbnail", base + "twitter-150.jpg"),
    ]
    for n in range(1, 6):
        expected += [(17, K.MD_INLINE, "", f"{base}process-{n}-600.jpg"), (17, K.LINK_HREF, "", f"{base}process-{n}-lg.jpg")]
    assert [(r.line, r.kind, r.field, r.url) for r in found] == expected
    assert all(text[r.start : r.end] == r.url for r in found)


def test_fixture_made_mistakes_code_fences_and_liquid_have_no_refs() -> None:
    text = fixture("made-mistakes-static-files.md")
    assert '<img src="assets/images/gallery-1/foo.jpg"' in text and '<img src="{{' in text
    assert refs(text) == []


def test_fixture_animenews_invalid_yaml() -> None:
    text = fixture("animenews-invalid-yaml.md")
    jp = "https://animeanime.jp/imgs/"
    assert [(r.line, r.kind, r.field, r.url) for r in refs(text)] == [
        (8, K.FRONT_MATTER, "cover.url", jp + "ogp_f/595142.jpg"),
        (9, K.FRONT_MATTER, "cover.square", jp + "ogp_f/595142.jpg"),
        (16, K.MD_INLINE, "", jp + "ogp_f/595142.jpg"),
        (33, K.IMG_SRC, "src", jp + "zoom/595147.jpg"),
        (39, K.MD_INLINE, "", jp + "zoom/595149.jpg"),
        (43, K.MD_INLINE, "", jp + "zoom/595143.jpg"),
        (47, K.MD_INLINE, "", jp + "zoom/595150.jpg"),
    ]


def test_fixture_animenews_404_page_crlf() -> None:
    text = fixture("animenews-404-crlf.md")
    assert "\r\n" in text
    assert refs(text) == [] and refs(text, "html") == []


# --- property -----------------------------------------------------------------------------------

FRAGMENTS = [
    "---\n", "+++\n", "\n", "\r\n", "\r", "    ", "   ", "\t", "```", "~~~", "`", "``", "\\", "[", "]", "(", ")",
    "<", ">", "!", '"', "'", "&amp;", "&", "#", "<!--", "-->", "{{", "}}", "{% raw %}", "{% endraw %}",
    "image: ", "cover:\n  url: ", "&a ", "*a", "![a](/x.png)", "[b]: /y.jpg", "![c][b]", "[![d](/t.jpg)](/b.jpg)",
    '<img src="/i.jpg" srcset="/s.jpg 1x, /t.jpg 2x">', "<img src=/u.png>", "<picture>", "</picture>",
    '<source srcset="/p.webp">', "<script>", "</script>", '<a href="/h.gif">', "<div>", "</div>", "\ufeff",
    "data:", "http://x/", "文", "\u00a0", "\x00",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=40),
    st.sampled_from(["markdown", "html"]),
)
def test_never_raises_and_spans_are_sane(parts: list[str], fmt: str) -> None:
    text = "".join(parts)
    found = find_refs(text, fmt, (*DEFAULT_FIELDS, "cover.url"))
    last_end = 0
    for r in found:
        assert 0 <= last_end <= r.start < r.end <= len(text)
        assert r.url and r.line == 1 + len(re.findall(r"\r\n|\r|\n", text[: r.start]))
        last_end = r.end
