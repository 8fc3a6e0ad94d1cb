"""The reference finder on the syntaxes added in round 3: Hugo shortcodes, Hexo/Octopress ``{% img %}`` tags,
inline-style ``url()``, ``<video poster>``, and og:/twitter: image metadata. Each is found with the exact span
of its URL, and a rewrite changes that span only."""

from __future__ import annotations

import pytest

from archiver.articles.rewrite import Replacement, splice
from archiver.config import DEFAULT_FIELDS
from archiver.find.frontmatter import Notice
from archiver.find.refs import find_refs
from archiver.find.tags import asset_rewrite
from archiver.model import ImageRef, RefKind

K = RefKind
NEW = "https://archive.test/ab/cd/abcd.jpg"


def refs(text: str, fmt: str = "markdown") -> list[ImageRef]:
    return find_refs(text, fmt, DEFAULT_FIELDS)


def found(text: str, fmt: str = "markdown") -> list[tuple[RefKind, str, str]]:
    """(kind, field, url) of every reference; each span must decode to its URL without entities or escapes
    where the test wrote none."""
    return [(r.kind, r.field, r.url) for r in refs(text, fmt)]


def rewritten(text: str, fmt: str = "markdown") -> str:
    return splice(text, [Replacement(r.start, r.end, NEW) for r in refs(text, fmt)])


# --- Hugo shortcodes ----------------------------------------------------------------------------


def test_hugo_figure_quoting_styles_and_parameter_order() -> None:
    text = (
        '{{< figure src="https://img.test/a.jpg" alt="A" >}}\n\n'
        '{{< figure caption="c" src=`/raw.png` class="x" >}}\n\n'
        "{{% figure src=/bare.webp title=t %}}\n\n"
        '{{<figure  src = "/spaced.gif"/>}}\n'
    )
    assert found(text) == [
        (K.SHORTCODE, "{{< figure >}} src", "https://img.test/a.jpg"),
        (K.SHORTCODE, "{{< figure >}} src", "/raw.png"),
        (K.SHORTCODE, "{{% figure %}} src", "/bare.webp"),
        (K.SHORTCODE, "{{< figure >}} src", "/spaced.gif"),
    ]
    assert rewritten(text) == (
        f'{{{{< figure src="{NEW}" alt="A" >}}}}\n\n'
        f'{{{{< figure caption="c" src=`{NEW}` class="x" >}}}}\n\n'
        f"{{{{% figure src={NEW} title=t %}}}}\n\n"
        f'{{{{<figure  src = "{NEW}"/>}}}}\n'
    )


def test_hugo_figure_link_only_when_it_names_an_image() -> None:
    text = (
        '{{< figure src="/small.jpg" link="/big.jpg" >}} '
        '{{< figure src="/s2.jpg" link="https://example.test/page/" >}} '
        '{{< img src="/i.png" link="/not-read-for-img.jpg" >}} {{< image src="/im.png" >}}'
    )
    assert found(text) == [
        (K.SHORTCODE, "{{< figure >}} src", "/small.jpg"),
        (K.SHORTCODE, "{{< figure >}} link", "/big.jpg"),
        (K.SHORTCODE, "{{< figure >}} src", "/s2.jpg"),
        (K.SHORTCODE, "{{< img >}} src", "/i.png"),
        (K.SHORTCODE, "{{< image >}} src", "/im.png"),
    ]


def test_hugo_multiline_figure_with_crlf_as_in_hugo_docs() -> None:
    # CommonMark reads the ">}}" line as a block quote; the shortcode is still one tag
    text = '---\r\ntitle: x\r\n---\r\n\r\n{{< figure\r\n  src="/zion.jpg"\r\n  alt="Zion"\r\n>}}\r\nafter\r\n'
    [ref] = refs(text)
    assert (ref.url, ref.line) == ("/zion.jpg", 6)
    assert rewritten(text) == text.replace("/zion.jpg", NEW)


def test_hugo_shortcodes_left_alone() -> None:
    text = (
        '{{</* figure src="/shown-as-text.jpg" */>}}\n\n'  # Hugo's escape: the shortcode printed as text
        '`{{< figure src="/inline-code.jpg" >}}`\n\n'
        '```\n{{< figure src="/fenced.jpg" >}}\n```\n\n'
        '<!-- {{< figure src="/comment.jpg" >}} -->\n\n'
        '{{< figure src="{{ .Params.image }}" >}} {{< figure src="/a\\"b.jpg" >}}\n\n'  # expression; escape
        '{{< youtube w7Ft2ymGmfc >}} {{< gallery dir="/img/gallery/" >}} {{< figure src="/unclosed.jpg"\n\n'
        "{{< highlight html >}}\n{{< figure src=\"/highlighted.jpg\" >}}\n{{< /highlight >}}\n"
    )
    assert found(text) == []
    assert rewritten(text) == text


def test_shortcode_in_html_block_and_in_html_document() -> None:
    md = '<div class="row">\n{{< figure src="/in-block.jpg" >}}\n<img src="/img.jpg">\n</div>\n'
    assert [u for *_, u in found(md)] == ["/in-block.jpg", "/img.jpg"]
    html = '<p>{{< figure src="/doc.jpg" >}}</p><!-- {{< figure src="/c.jpg" >}} -->'
    assert found(html, "html") == [(K.SHORTCODE, "{{< figure >}} src", "/doc.jpg")]


# --- Hexo / Octopress tags ----------------------------------------------------------------------


def test_hexo_img_tag_shapes() -> None:
    text = (
        "{% img /a.jpg %}\n\n"
        "{% img left half https://img.test/b.png 300 200 \"Title text\" \"alt text\" %}\n\n"
        "{%- image //cdn.test/c.webp 400 -%}\n\n"
        "{% img right http://img.test/d.gif 'Single quoted title' %}\n"
    )
    assert found(text) == [
        (K.TEMPLATE_TAG, "{% img %}", "/a.jpg"),
        (K.TEMPLATE_TAG, "{% img %}", "https://img.test/b.png"),
        (K.TEMPLATE_TAG, "{% image %}", "//cdn.test/c.webp"),
        (K.TEMPLATE_TAG, "{% img %}", "http://img.test/d.gif"),
    ]
    assert rewritten(text) == (
        f"{{% img {NEW} %}}\n\n"
        f"{{% img left half {NEW} 300 200 \"Title text\" \"alt text\" %}}\n\n"
        f"{{%- image {NEW} 400 -%}}\n\n"
        f"{{% img right {NEW} 'Single quoted title' %}}\n"
    )


def test_hexo_asset_img_names_a_file_and_is_rewritten_to_the_img_tag_hexo_renders_it_with() -> None:
    text = (
        "{% asset_img name.jpg This is an image %}\n\n"
        "{% asset_img left half sub/b.png 300 200 \"Title text\" \"alt text\" %}\n\n"
        "{%- asset_image c.webp -%} {% asset_img \"quoted name.jpg\" %} {% asset_img /abs.jpg %}"
        " {% asset_img not-an-image %} `{% asset_img code.jpg %}`\n"
    )
    assert found(text) == [
        (K.ASSET_TAG, "{% asset_img %}", "name.jpg"),
        (K.ASSET_TAG, "{% asset_img %}", "sub/b.png"),
        (K.ASSET_TAG, "{% asset_image %}", "c.webp"),
        (K.ASSET_TAG, "{% asset_img %}", "quoted name.jpg"),  # Hexo's lexer takes "quoted name.jpg" as one name
    ]
    spans = [text[r.start : r.end] for r in refs(text)]
    assert spans == ["asset_img name.jpg", "asset_img left half sub/b.png", "asset_image c.webp",
                     'asset_img "quoted name.jpg']
    out = splice(text, [Replacement(r.start, r.end, asset_rewrite(text[r.start : r.end], r.url, NEW))
                        for r in refs(text)])
    assert out == text.replace("asset_img name.jpg", f"img {NEW}").replace(
        "asset_img left half sub/b.png", f"img left half {NEW}").replace("asset_image c.webp", f"image {NEW}").replace(
        'asset_img "quoted name.jpg"', f'img "{NEW}"')
    assert [(r.kind, r.url) for r in refs(out)] == [(K.TEMPLATE_TAG, NEW)] * 4  # read as our URL next time
    # what names no image file that can be read is reported, never skipped in silence
    notices: list[Notice] = []
    assert not find_refs(text + '{% asset_img {{ page.cover }} %}\n{% asset_img "a\\"b.jpg" %}\n'
                         '{% asset_img "never closed.jpg %}\n', "markdown", (), notices=notices)[4:]
    assert [(n.line, n.message.split(":")[0]) for n in notices] == [(5, "{% asset_img %}")] * 2 + [
        (6, "{% asset_img %}"), (7, "{% asset_img %}"), (8, "{% asset_img %}")]
    assert "/abs.jpg" not in str(notices) and "template expression ({{" in notices[2].message
    assert "backslash" in notices[3].message and "never closed" in notices[4].message


def test_hexo_tags_not_read() -> None:
    text = (
        "{% img relative/path.jpg %} {% img ftp://h.test/x.jpg /later.jpg %} {% img {{ site.url }}/y.jpg %}\n\n"
        "`{% img /code.jpg %}`\n\n{% raw %}{% img /raw.jpg %}{% endraw %}\n\n{% img /unclosed.jpg\n"
    )
    assert found(text) == []


# --- inline style url() -------------------------------------------------------------------------


def test_style_url_quoted_unquoted_and_entity_encoded() -> None:
    text = (
        '<div style="background-image: url(https://img.test/a.jpg)"></div>'
        "<div style='background: #fff url( \"/b.png\" ) no-repeat'></div>"
        '<div style="background:url(&quot;/c.jpg?x=1&amp;y=2&quot;)"></div>'
        '<section style="background-image:url(&#39;/d.webp&#39;), URL(/e.gif);"></section>'
        "<p style=background:url(/f.jpg)>x</p>"
    )
    assert found(text, "html") == [
        (K.CSS_URL, "style", "https://img.test/a.jpg"),
        (K.CSS_URL, "style", "/b.png"),
        (K.CSS_URL, "style", "/c.jpg?x=1&y=2"),
        (K.CSS_URL, "style", "/d.webp"),
        (K.CSS_URL, "style", "/e.gif"),
        (K.CSS_URL, "style", "/f.jpg"),
    ]
    assert [text[r.start : r.end] for r in refs(text, "html")][2] == "/c.jpg?x=1&amp;y=2"
    out = rewritten(text, "html")
    assert out == (
        f'<div style="background-image: url({NEW})"></div>'
        f"<div style='background: #fff url( \"{NEW}\" ) no-repeat'></div>"
        f'<div style="background:url(&quot;{NEW}&quot;)"></div>'
        f'<section style="background-image:url(&#39;{NEW}&#39;), URL({NEW});"></section>'
        f"<p style=background:url({NEW})>x</p>"
    )


def test_style_url_left_alone() -> None:
    text = (
        '<style>.x { background: url(/style-body.png) }</style>'
        '<div style="content: \'url(/in-string.png)\'; /* url(/in-comment.png) */ x: myurl(/fn.png)"></div>'
        '<div style="background: url(/esc\\(1\\).png); b: url(/space in.png); c: url(data:image/png;base64,AA)"></div>'
        '<div data-style="background:url(/not-style.png)"></div><!-- <p style="background:url(/c.png)"> -->'
    )
    assert found(text, "html") == []


def test_style_url_in_markdown_raw_html_with_crlf() -> None:
    text = 'Intro\r\n\r\n<div class="hero"\r\n     style="background-image:\r\n  url(\'/hero.jpg\')">\r\n</div>\r\n'
    [ref] = refs(text)
    assert (ref.kind, ref.field, ref.url, ref.line) == (K.CSS_URL, "style", "/hero.jpg", 5)
    assert rewritten(text) == text.replace("/hero.jpg", NEW)


# --- poster, meta, link -------------------------------------------------------------------------


def test_video_poster() -> None:
    text = '<video controls poster="/poster.jpg?v=1&amp;w=2"><source src="/movie.mp4"></video><audio poster="/no.jpg">'
    [ref] = refs(text, "html")
    assert (ref.kind, ref.field, ref.url) == (K.POSTER, "poster", "/poster.jpg?v=1&w=2")
    assert rewritten(text, "html") == text.replace("/poster.jpg?v=1&amp;w=2", NEW)


def test_open_graph_twitter_and_image_src_metadata() -> None:
    text = (
        "<head>\r\n"
        '<meta property="og:image" content="https://img.test/og.jpg">\r\n'
        '<meta property="og:image:url" content="/og-url.jpg">\r\n'
        "<meta property='OG:IMAGE:SECURE_URL' content='https://img.test/secure.jpg'>\r\n"
        '<meta name="twitter:image" content="https://img.test/tw.jpg?a=1&amp;b=2">\r\n'
        '<meta content="/content-first.png" name="twitter:image:src">\r\n'
        '<link rel="image_src" href="/image-src.png">\r\n'
        '<meta property="og:image:width" content="1200"><meta property="og:title" content="/t.jpg">\r\n'
        '<link rel="icon" href="/favicon.png"><meta name="description" content="/d.jpg">\r\n'
        "</head>"
    )
    assert [(r.kind, r.field, r.url, r.line) for r in refs(text, "html")] == [
        (K.META_IMAGE, "og:image", "https://img.test/og.jpg", 2),
        (K.META_IMAGE, "og:image:url", "/og-url.jpg", 3),
        (K.META_IMAGE, "og:image:secure_url", "https://img.test/secure.jpg", 4),
        (K.META_IMAGE, "twitter:image", "https://img.test/tw.jpg?a=1&b=2", 5),
        (K.META_IMAGE, "twitter:image:src", "/content-first.png", 6),
        (K.META_IMAGE, "rel=image_src", "/image-src.png", 7),
    ]
    out = rewritten(text, "html")
    assert out.count(NEW) == 6 and "&amp;b=2" not in out
    assert out.replace(NEW, "") == (
        text.replace("https://img.test/og.jpg", "").replace("/og-url.jpg", "")
        .replace("https://img.test/secure.jpg", "").replace("https://img.test/tw.jpg?a=1&amp;b=2", "")
        .replace("/content-first.png", "").replace("/image-src.png", "")
    )


def test_meta_in_markdown_raw_html() -> None:
    text = '<meta property="og:image" content="/md-og.jpg">\n\n![x](/x.png)\n'
    assert found(text) == [(K.META_IMAGE, "og:image", "/md-og.jpg"), (K.MD_INLINE, "", "/x.png")]


# --- precedence: a URL inside a tag never changes how the rest of the paragraph reads --------------


@pytest.mark.parametrize(
    "text",
    [
        # found by the fuzzer: a backtick inside an attribute paired with one after it as a code span
        '<meta property="og:image" content="`">{{< figure src="`" alt="a"%}}`{{< figure src=`http://a.test/a.jpg` alt="a">}}',
        '<img src="a`b.jpg"> `code` ![x](/x.png) `',
        '[see <img src="]"> here](/big.jpg) ![y](/y.png)',
        '{{< figure src="/a]b.jpg" >}} [t](/t.jpg)',
    ],
)
def test_rewriting_inside_a_tag_is_stable(text: str) -> None:
    once = rewritten(text)
    assert splice(once, [Replacement(r.start, r.end, NEW) for r in refs(once) if r.url != NEW]) == once
    assert len(refs(once)) == len(refs(text))
