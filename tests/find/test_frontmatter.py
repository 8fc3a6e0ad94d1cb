"""Front matter: the block is found where real generators put it, and image fields give exact spans."""

from __future__ import annotations

from archiver.config import DEFAULT_FIELDS
from archiver.find.frontmatter import split_front_matter
from archiver.find.refs import find_refs
from archiver.model import ImageRef, RefKind


def fm_refs(text: str, fields: tuple[str, ...] = DEFAULT_FIELDS) -> list[ImageRef]:
    refs = [r for r in find_refs(text, "markdown", fields) if r.kind == RefKind.FRONT_MATTER]
    for r in refs:
        assert text[r.start : r.end] == r.url  # front-matter spans are the value exactly
    return refs


def pairs(text: str, fields: tuple[str, ...] = DEFAULT_FIELDS) -> list[tuple[str, str]]:
    return [(r.field, r.url) for r in fm_refs(text, fields)]


def test_yaml_block_at_start() -> None:
    text = "---\ntitle: x\n---\nbody\n"
    fm = split_front_matter(text)
    assert fm is not None and fm.kind == "yaml"
    assert text[fm.content_start : fm.content_end] == "title: x\n"
    assert text[fm.body_start :] == "body\n"


def test_leading_newline_before_opening_dashes() -> None:
    text = "\n---\ntitle: 'a'\nheadimg: 'https://i.example.com/a.jpg'\n---\n\n<div>x</div>\n"
    [ref] = fm_refs(text)
    assert (ref.field, ref.url, ref.line) == ("headimg", "https://i.example.com/a.jpg", 4)


def test_bom_and_crlf() -> None:
    text = "\ufeff---\r\nthumbnail: /a.png\r\ncover: \"https://x.example/c.webp\"\r\n---\r\nbody\r\n"
    assert pairs(text) == [("thumbnail", "/a.png"), ("cover", "https://x.example/c.webp")]
    assert [r.line for r in fm_refs(text)] == [2, 3]


def test_no_final_newline_after_closing_dashes() -> None:
    text = "---\nimage: a.jpg\n---"
    assert pairs(text) == [("image", "a.jpg")]
    fm = split_front_matter(text)
    assert fm is not None and fm.body_start == len(text)


def test_unclosed_block_is_not_front_matter() -> None:
    assert split_front_matter("---\nimage: a.jpg\nno closing line\n") is None
    assert pairs("---\nimage: a.jpg\n") == []


def test_nested_mapping_values_that_look_like_images() -> None:
    text = (
        "---\ncover:\n  url: 'https://cdn.example/ogp/1.jpg'\n  square: 'https://cdn.example/ogp/1.jpg'\n"
        '  alt: "cover"\nimage: {feature: a.jpg, thumbnail: b.jpg, credit: Jane, creditlink: "https://jane.example"}\n---\n'
    )
    assert pairs(text) == [
        ("cover.url", "https://cdn.example/ogp/1.jpg"),
        ("cover.square", "https://cdn.example/ogp/1.jpg"),
        ("image.feature", "a.jpg"),
        ("image.thumbnail", "b.jpg"),
    ]


def test_list_value() -> None:
    text = "---\nimage:\n  - /a.png\n  - 'b.gif'\n  - not an image\n---\n"
    assert pairs(text) == [("image[0]", "/a.png"), ("image[1]", "b.gif")]


def test_dotted_field_matches_that_exact_path_only() -> None:
    text = "---\nimage:\n  path: /assets/p.jpg\n  teaser: /assets/t.jpg\nother: /x.jpg\n---\n"
    assert pairs(text, ("image.path",)) == [("image.path", "/assets/p.jpg")]
    assert pairs(text, ("other",)) == [("other", "/x.jpg")]
    # an exact dotted entry wins over the looser top-level rule for the same value
    assert pairs("---\nimage:\n  path: no-extension\n---\n", ("image", "image.path")) == [
        ("image.path", "no-extension")
    ]


def test_anchor_and_alias_give_one_span() -> None:
    text = (
        "---\nimage: \n  path: &image /assets/images/feature.jpg \n  width: 1280\n"
        "  feature: *image\n  thumbnail: /assets/images/t-150.jpg\n---\n"
    )
    refs = fm_refs(text)
    assert [(r.field, r.url) for r in refs] == [
        ("image.path", "/assets/images/feature.jpg"),
        ("image.thumbnail", "/assets/images/t-150.jpg"),
    ]
    assert text[refs[0].start - 7 : refs[0].start] == "&image "


def test_quoted_scalar_with_escapes_is_skipped() -> None:
    text = "---\nheadimg: \"https://x.example/a\\u0062.jpg\"\nthumbnail: 'it''s.jpg'\nbanner: 'ok.jpg'\n---\n"
    assert pairs(text) == [("banner", "ok.jpg")]


def test_block_scalar_only_when_trivially_safe() -> None:
    text = "---\nimage: |\n  /assets/a.jpg\nbanner: >\n  /assets/b.jpg\n  /assets/c.jpg\n---\n"
    assert pairs(text) == [("image", "/assets/a.jpg")]


def test_non_string_empty_data_and_template_values_are_not_refs() -> None:
    text = (
        "---\nimage: false\nthumbnail: ''\nbanner: data:image/png;base64,iVBORw0KGgo=\n"
        "cover: '{{ site.logo }}'\nfeature: 2021-01-01\nheadimg: javascript:alert(1)\n---\n"
    )
    assert pairs(text) == [("headimg", "javascript:alert(1)")]


def test_invalid_yaml_falls_back_to_a_line_scan() -> None:
    text = (
        "---\nlayout: '../../layouts/MarkdownPost.astro'\ntitle: 'I'm broken: 文'\n"
        "headimg: https://x.example/h.jpg # comment\n"
        "cover:\n  url: 'https://x.example/u.jpg'\n  square: \"https://x.example/s.jpg\"\n  alt: \"cover\"\n"
        "image:\n  path: &img /p.jpg\n  feature: *img\n---\nbody\n"
    )
    assert pairs(text) == [
        ("headimg", "https://x.example/h.jpg"),
        ("cover.url", "https://x.example/u.jpg"),
        ("cover.square", "https://x.example/s.jpg"),
        ("image.path", "/p.jpg"),
    ]


def test_invalid_yaml_with_unbalanced_quotes_does_not_crash() -> None:
    text = "---\ntitle: \"\"\"\"'文文'\"\"\"\ncategories: \n    - 文\nthumbnail: ''\n---\n"
    assert pairs(text) == []


def test_toml_front_matter() -> None:
    text = (
        '+++\ntitle = "x"\nimage = "/img/a.png"\nthumbnail = \'b.jpg\'\nbanner = "c\\u0041.jpg"\n'
        'cover = { url = "https://x.example/c.jpg", alt = "c" }\n'
        'feature = ["f1.jpg", "f2.jpg"]\n[featured_image]\nsrc = "/fi.webp"\n+++\nbody\n'
    )
    fm = split_front_matter(text)
    assert fm is not None and fm.kind == "toml"
    assert pairs(text) == [
        ("image", "/img/a.png"),
        ("thumbnail", "b.jpg"),
        ("cover.url", "https://x.example/c.jpg"),
        ("feature[0]", "f1.jpg"),
        ("feature[1]", "f2.jpg"),
        ("featured_image.src", "/fi.webp"),
    ]


def test_front_matter_in_an_html_article() -> None:
    text = "---\nimage: /a.jpg\n---\n<img src='/b.jpg'>"
    assert [(r.kind, r.url) for r in find_refs(text, "html", DEFAULT_FIELDS)] == [
        (RefKind.FRONT_MATTER, "/a.jpg"),
        (RefKind.IMG_SRC, "/b.jpg"),
    ]


def test_front_matter_is_not_scanned_as_markdown() -> None:
    text = "---\ndescription: '![x](/not-a-body-image.png)'\n---\n"
    assert find_refs(text, "markdown", DEFAULT_FIELDS) == []


def notices(text: str) -> list[tuple[int, str]]:
    found: list = []
    refs = find_refs(text, "markdown", DEFAULT_FIELDS, notices=found)
    assert refs == find_refs(text, "markdown", DEFAULT_FIELDS)  # asking for notices changes nothing else
    return [(n.line, n.message) for n in found]


def test_front_matter_a_generator_would_refuse_gives_a_notice_at_its_line() -> None:
    assert notices("\n\n---\ntitle: x\n\n![a](http://i.example/a.jpg)\n") == [
        (3, "front matter opened with --- is never closed: read as part of the body")]
    assert notices("+++\ntitle = 'x'\n") == [
        (1, "front matter opened with +++ is never closed: read as part of the body")]
    [(line, message)] = notices("---\r\ntitle: ok\r\nimage: 'unterminated\r\ncover: x\r\n---\r\nbody")
    assert line == 5 and message.startswith("front matter is not valid YAML (")  # where the parser gave up
    [(line, message)] = notices("\ufeff+++\ntitle = 'x'\n[image]\npath = \n+++\n")
    assert line == 4 and message.startswith("front matter is not valid TOML (")
    assert notices("---\n- a\n- b\n---\n") == [
        (2, "front matter is not a YAML mapping of keys to values: a site generator will refuse it")]


def test_front_matter_generators_read_gives_no_notice() -> None:
    for text in ("---\ntitle: x\n---\nbody", "---\n---\n", "+++\ntitle = 'x'\n+++\n", "no front matter\n---\n",
                 "---\nimage: &a /x.jpg\ncover: *a\n...\nbody"):
        assert notices(text) == [], text


def test_toml_multi_line_strings_hold_text_not_fields() -> None:
    """Found by review: a line inside a multi-line string that looked like ``cover = "…"`` was rewritten (changing
    the string's text), and a ``[table]`` line inside one moved the fields after it into that table."""
    text = (
        '+++\ntitle = "t"\nsummary = """\ncover = "http://x.example/p1.png"\n[image]\n"""\n'
        "note = '''\nthumbnail = \"/no.png\"\n'''\n"
        'escaped = """ a \\""" still open\nimage = "/no2.png"\n"""\n'
        'one_line = """ closed """\nimage = "/yes.png"\n+++\nbody\n'
    )
    assert pairs(text) == [("image", "/yes.png")]
