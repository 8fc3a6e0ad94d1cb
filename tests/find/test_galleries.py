"""Galleries in front matter: list-valued image fields found by default, each entry's image-valued keys,
in YAML (block and flow lists, quoted and plain scalars, invalid YAML) and TOML (arrays of tables, inline
tables, arrays over several lines), with spans that are the value exactly."""

from __future__ import annotations

from archiver.config import DEFAULT_FIELDS
from tests.find.test_frontmatter import fm_refs, pairs
from tests.support.paths import FIXTURES_DIR

JEKYLL = FIXTURES_DIR / "articles" / "jekyll"


def test_minimal_mistakes_gallery_from_the_corpus() -> None:
    text = (JEKYLL / "2015-08-24-neon-l-portrait.md").read_text(encoding="utf-8")
    found = pairs(text)
    gallery = [(f, u) for f, u in found if f.startswith("gallery")]
    assert len(gallery) == 8  # four entries, url (the large image) and image_path (the thumbnail) each
    assert gallery[:2] == [
        ("gallery[0].url", "/assets/images/paperfaces-neon-l-process-1-lg.jpg"),
        ("gallery[0].image_path", "/assets/images/paperfaces-neon-l-process-1-600.jpg"),
    ]
    assert ("image.path", "/assets/images/paperfaces-neon-l.jpg") in found  # the anchor's trailing space kept out


def test_gallery_url_that_links_to_a_page_is_not_an_image() -> None:
    text = (JEKYLL / "2015-02-02-asja-k-portrait.md").read_text(encoding="utf-8")
    gallery = [(f, u) for f, u in pairs(text) if f.startswith("gallery")]
    assert gallery == [(f"gallery[{i}].image_path", f"/assets/images/paperfaces-asja-k-process-{i + 1}-600.jpg")
                       for i in range(3)]


def test_entry_text_keys_are_never_images_even_when_they_look_like_files() -> None:
    text = ("---\ngallery:\n  - image_path: a.jpg\n    alt: b.jpg\n    title: \"c.png\"\n    caption: d.gif\n"
            "    url: https://x.example/page\n    link: https://x.example/e.jpg\n---\n")
    assert pairs(text) == [("gallery[0].image_path", "a.jpg"), ("gallery[0].link", "https://x.example/e.jpg")]


def test_flow_lists_and_quoted_scalars() -> None:
    text = (
        "---\ngallery: [{url: '/g/1-lg.jpg', image_path: \"/g/1.jpg\", alt: one}, {image_path: /g/2.jpg}]\n"
        "images: ['https://cdn.example/a.png', \"https://cdn.example/b\", /c.webp, not an image]\n"
        "photos:\n- https://p.example/1.jpg\n- \"https://p.example/2.jpg\"\n---\nbody\n"
    )
    assert pairs(text) == [
        ("gallery[0].url", "/g/1-lg.jpg"),
        ("gallery[0].image_path", "/g/1.jpg"),
        ("gallery[1].image_path", "/g/2.jpg"),
        ("images[0]", "https://cdn.example/a.png"),
        ("images[1]", "https://cdn.example/b"),
        ("images[2]", "/c.webp"),
        ("photos[0]", "https://p.example/1.jpg"),
        ("photos[1]", "https://p.example/2.jpg"),
    ]


def test_named_galleries_and_a_configured_field_list() -> None:
    text = "---\ngallery2:\n  - image_path: /a.jpg\nshots:\n  - file: /b.jpg\n    label: no\n---\n"
    assert pairs(text) == [("gallery2[0].image_path", "/a.jpg")]
    # a configured dotted path reaches the entries' key: any value of it, as for any named field
    assert pairs(text, ("shots.file",)) == [("shots[0].file", "/b.jpg")]
    assert pairs("---\nshots:\n  - file: b-without-extension\n---\n", ("shots.file",)) == [
        ("shots[0].file", "b-without-extension")]
    assert pairs(text, ("headimg",)) == []  # the list is configurable: without the field, nothing


def test_hugo_resources_only_absolute_sources() -> None:
    text = (
        "---\nresources:\n- src: images/sunset.jpg\n  name: header\n- src: '**.png'\n  title: all\n"
        "- src: https://cdn.example/r.jpg\n  params:\n    credits: https://photographer.example\n---\n"
    )
    assert pairs(text) == [("resources[2].src", "https://cdn.example/r.jpg")]


def test_toml_arrays_of_tables_inline_tables_and_long_arrays() -> None:
    text = (
        '+++\ntitle = "x"\nimages = [\n  "https://cdn.example/1.jpg", # first\n  \'https://cdn.example/2.jpg\',\n'
        '  "esc\\u0061ped.jpg",\n]\n'
        'gallery = [ { url = "/g/1-lg.jpg", image_path = "/g/1.jpg", alt = "a.jpg" },\n'
        '            { image_path = "/g/2.jpg" } ]\n'
        '[[resources]]\n  src = "images/a.jpg"\n[[resources]]\n  src = "https://cdn.example/r.jpg"\n'
        '  [resources.params]\n    byline = "https://people.example/me"\n'
        '[[gallery2]]\nimage_path = "/h/1.jpg"\n[[gallery2]]\nimage_path = "/h/2.jpg"\ncount = 3\n+++\nbody\n'
    )
    assert pairs(text) == [
        ("images[0]", "https://cdn.example/1.jpg"),
        ("images[1]", "https://cdn.example/2.jpg"),
        ("gallery[0].url", "/g/1-lg.jpg"),
        ("gallery[0].image_path", "/g/1.jpg"),
        ("gallery[1].image_path", "/g/2.jpg"),
        ("resources[1].src", "https://cdn.example/r.jpg"),
        ("resources[1].params.byline", "https://people.example/me"),
        ("gallery2[0].image_path", "/h/1.jpg"),
        ("gallery2[1].image_path", "/h/2.jpg"),
    ]


def test_invalid_yaml_gallery_is_read_by_the_line_scan() -> None:
    text = (
        "---\ntitle: 'I'm broken: x'\ngallery:\n  - url: /g/1-lg.jpg\n    image_path: '/g/1.jpg'\n    alt: x.jpg\n"
        "  - image_path: /g/2.jpg\n- stray\ngallery3:\n- url: https://x.example/page\n  image_path: /g/3.jpg\n"
        "images:\n  - /i.png\n---\n"
    )
    assert pairs(text) == [
        ("gallery[0].url", "/g/1-lg.jpg"),
        ("gallery[0].image_path", "/g/1.jpg"),
        ("gallery[1].image_path", "/g/2.jpg"),
        ("gallery3[0].image_path", "/g/3.jpg"),
        ("images[0]", "/i.png"),
    ]


def test_spans_and_lines_are_exact() -> None:
    text = "---\r\ngallery:\r\n  - image_path:   \"/g/1.jpg\"   # c\r\n    url: /g/1-lg.jpg \r\n---\r\n"
    refs = fm_refs(text, DEFAULT_FIELDS)  # fm_refs checks text[start:end] == url
    assert [(r.url, r.line) for r in refs] == [("/g/1.jpg", 3), ("/g/1-lg.jpg", 4)]
