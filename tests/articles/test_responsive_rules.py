"""The rules of archiver.articles.responsive on text (the pipeline's part: tests/articles/test_responsive.py), and
properties on any article: other bytes unchanged, a second pass adds nothing, the author's attributes kept, and the
span engine removes exactly what was added (with the URL spans of the same rewrite, and after an author's edit)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver import config
from archiver.articles.responsive import Insertion, Options, Shown, additions, img_tag
from archiver.articles.rewrite import Replacement, splice
from archiver.articles.spans import undo
from archiver.errors import ConfigError
from archiver.find.refs import find_refs
from archiver.model import ArticleReplacement, ImageRef, RefKind

A = "/archive/aa/aa/a.jpg"
SHOWN = Shown(800, 600, A, {"webp": ((200, "/archive/a-200w.webp"), (400, "/archive/a-400w.webp"),
                                     (800, "/archive/a-1600w.webp")),
                            "avif": ((200, "/archive/a-200w.avif"), (400, "/archive/a-400w.avif"))})


DEFAULT = Options()


def _add(text: str, opts: Options = DEFAULT, shown: Shown | None = SHOWN) -> str:
    refs = find_refs(text, "html", ())
    found = additions(text, refs, lambda ref: shown if ref.url.startswith("/archive/") else None, opts)
    return splice(text, [Replacement(i.at, i.at, i.text) for i in found])


def test_all_missing_attributes_added_before_the_end_of_the_tag() -> None:
    assert _add(f'<img src="{A}">') == (
        f'<img src="{A}" width="800" height="600" srcset="/archive/a-200w.webp 200w, /archive/a-400w.webp 400w, '
        f'{A} 800w" sizes="100vw" loading="lazy" decoding="async">'
    )


def test_the_authors_attributes_are_kept_and_completed() -> None:
    # a width alone gets the height of the aspect ratio; a width that is not a number gets nothing
    assert _add(f"<img src={A} width=400>") == (
        f'<img src={A} width=400 height="300" srcset="/archive/a-200w.webp 200w, /archive/a-400w.webp 400w, '
        f'{A} 800w" sizes="100vw" loading="lazy" decoding="async">'
    )
    assert _add(f"<img height='150' src='{A}' SIZES='50vw' Loading=eager decoding=sync>") == (
        f"<img height='150' src='{A}' SIZES='50vw' Loading=eager decoding=sync width=\"200\" srcset=\"/archive/a-200w.webp "
        f'200w, /archive/a-400w.webp 400w, {A} 800w">'
    )
    assert _add(f'<img src="{A}" width="50%" srcset="{A} 1x" loading="lazy" decoding="async"/>') == (
        f'<img src="{A}" width="50%" srcset="{A} 1x" loading="lazy" decoding="async"/>'
    )


def test_self_closing_tags_keep_their_slash_and_spacing() -> None:
    opts = Options(loading="", decoding="")
    small = Shown(100, 50, A, {})
    assert _add(f'<img src="{A}"/>', opts, small) == f'<img src="{A}" width="100" height="50"/>'
    assert _add(f'<img src="{A}" />', opts, small) == f'<img src="{A}" width="100" height="50" />'
    assert _add(f"<img src={A} />", opts, small) == f'<img src={A} width="100" height="50" />'
    # an unquoted value ending in "/" holds the "/": what is added goes after it
    assert _add(f"<img src={A}/>", opts, small) == f'<img src={A}/ width="100" height="50">'


def test_no_srcset_of_a_still_frame_for_an_animation_nor_for_an_image_without_narrower_renditions() -> None:
    opts = Options(loading="", decoding="")
    anim = Shown(800, 600, A, SHOWN.renditions, animated=True)
    assert _add(f'<img src="{A}">', opts, anim) == f'<img src="{A}" width="800" height="600">'
    tiny = Shown(150, 100, A, SHOWN.renditions)
    assert _add(f'<img src="{A}">', opts, tiny) == f'<img src="{A}" width="150" height="100">'
    svg = Shown(None, None, A, {})
    assert _add(f'<img src="{A}">', Options(), svg) == f'<img src="{A}" loading="lazy" decoding="async">'


def test_picture_wraps_an_img_once_with_a_source_per_other_format() -> None:
    opts = Options(loading="", decoding="", picture=True, formats=("webp", "avif"))
    two = f'<p><img src="{A}"><img src="{A}"></p>'
    out = _add(two, opts)
    img = (f'<img src="{A}" width="800" height="600" srcset="/archive/a-200w.webp 200w, /archive/a-400w.webp 400w, '
           f'{A} 800w" sizes="100vw">')
    source = '<source type="image/avif" srcset="/archive/a-200w.avif 200w, /archive/a-400w.avif 400w" sizes="100vw">'
    assert out == f"<p><picture>{source}{img}</picture><picture>{source}{img}</picture></p>"
    assert _add(out, opts) == out  # idempotent: already in a <picture>, every attribute there
    inside = f'<picture><source srcset="x.avif"><img src="{A}"></picture>'
    assert "<picture><picture>" not in _add(inside, opts) and _add(inside, opts).count("<source") == 1
    # AVIF alone: the <img> lists it (no other format to fall back on) and there is no <source> to add
    assert "<picture>" not in _add(f'<img src="{A}">', Options(picture=True, formats=("avif",)))


def test_only_img_src_in_html_gets_attributes() -> None:
    text = (f'<p style="background:url({A})">x</p><video poster="{A}"></video><a href="{A}">a</a>'
            f'<!-- <img src="{A}"> --><script>"<img src=\\"{A}\\">"</script><img data-src="{A}" src="{A}" '
            f'data-srcset="{A} 1x" loading="lazy" decoding="async" width="1" height="1">')
    assert _add(text) == text
    md = f'![x]({A})\n\n```\n<img src="{A}">\n```\n\n<img src="{A}" width="8" height="6" loading="lazy" decoding="async" srcset="x">\n'
    refs = find_refs(md, "markdown", ())
    assert additions(md, refs, lambda ref: SHOWN, Options()) == []


# -- properties ----------------------------------------------------------------------------------------
ATTRS = ('alt="a > b"', "width=400", 'height="300"', "srcset='/x.jpg 2x'", "sizes=50vw", "loading=eager",
         'decoding="sync"', 'class="c"', "data-srcset='/y.jpg 1x'", "title='t'", "width='50%'")
SRCS = ('src="{u}"', "src='{u}'", "src={u}", 'SRC = "{u}"')


@st.composite
def _articles(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["text", "img", "img", "picture", "comment"]))
        url = draw(st.sampled_from(["http://o.test/1.jpg", "http://o.test/2.png", "/local.gif"]))
        if kind == "text":
            parts.append(draw(st.text(alphabet="ab \n<>\"'é&", max_size=15)))
        elif kind == "comment":
            parts.append(f'<!-- <img src="{url}"> -->')
        else:
            attrs = draw(st.lists(st.sampled_from(ATTRS), max_size=4, unique=True))
            attrs.insert(draw(st.integers(0, len(attrs))), draw(st.sampled_from(SRCS)).format(u=url))
            end = draw(st.sampled_from([">", "/>", " />", " >"]))
            img = f"<img {' '.join(attrs)}{end}"
            parts.append(f"<picture><source srcset='{url}'>{img}</picture>" if kind == "picture" else img)
    return "".join(parts)


def _rewrite(text: str, opts: Options) -> tuple[str, list[ArticleReplacement]]:
    """What a run does: archived URLs replaced (1.jpg and 2.png are archived), responsive attributes inserted."""
    refs = find_refs(text, "html", ())
    archived = {"http://o.test/1.jpg": "/archive/one.jpg", "http://o.test/2.png": "/archive/two.png"}
    shown = {"/archive/one.jpg": Shown(640, 480, "/archive/one.jpg", {"webp": ((320, "/archive/one-320w.webp"),),
                                                                       "avif": ((320, "/archive/one-320w.avif"),)}),
             "/archive/two.png": Shown(20, 10, "/archive/two.png", {"webp": ((20, "/archive/two-320w.webp"),)})}
    record = [ArticleReplacement(r.start, r.end, text[r.start : r.end], archived[r.url], r.url)
              for r in refs if r.url in archived]
    now = {(r.start, r.end): archived.get(r.url, r.url) for r in refs}

    def shown_for(ref: ImageRef) -> Shown | None:
        return shown.get(now[ref.start, ref.end])

    found: list[Insertion] = additions(text, refs, shown_for, opts)
    record += [ArticleReplacement(i.at, i.at, "", i.text, i.url) for i in found]
    record.sort(key=lambda r: (r.start, r.end))
    return splice(text, [Replacement(r.start, r.end, r.replacement) for r in record]), record


def _attrs(text: str) -> list[dict[str, str]]:
    """The attributes of each <img> the finder reads (not those in comments), as written."""
    out = []
    for ref in find_refs(text, "html", ()):
        if ref.kind == RefKind.IMG_SRC and (found := img_tag(text, ref)) is not None:
            tag = found[1]
            out.append({a.name: text[a.start : a.end] for a in tag.attrs})
    return out


@settings(max_examples=300, deadline=None)
@given(_articles(), st.booleans(), st.one_of(st.none(), st.text(alphabet="qk", min_size=1, max_size=5)))
def test_responsive_rewrite_is_idempotent_keeps_the_author_and_restores_exactly(
    text: str, picture: bool, edit: str | None
) -> None:
    opts = Options(picture=picture, formats=("webp", "avif"))
    new, record = _rewrite(text, opts)
    # a second run: nothing left to replace or add
    again, second = _rewrite(new, opts)
    assert again == new and second == []
    # every attribute the author wrote is still there with its value; what an archived <img> lacked is there
    before, after = _attrs(text), _attrs(new)
    assert len(before) == len(after)
    for old, now in zip(before, after, strict=True):
        for name, value in old.items():
            assert name in now and (now[name] == value or name == "src"), (old, now)
        if old["src"] in ("http://o.test/1.jpg", "http://o.test/2.png"):
            assert {"loading", "decoding"} <= set(now)
            not_a_number = any(name in old and not old[name].strip().isdigit() for name in ("width", "height"))
            assert {"width", "height"} <= set(now) or not_a_number, (old, now)
    # restore: byte for byte, also after an edit of the author's outside our spans (here: at the very start)
    done = undo(new, [record], unchanged=True)
    assert done.text == text and not done.problems
    assert done.restored == done.total == sum(1 for r in record if r.start < r.end)  # references, not insertions
    if edit is not None:
        done = undo(edit + new, [record])
        assert done.text == edit + text and not done.problems


# -- configuration -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[images]\nformats = ["webp", "heic"]\n', "[images] formats: 'heic' is not one of webp, jpeg, png, avif"),
        ('[images]\nformats = ["webp", "webp"]\n', "[images] formats: lists a format twice"),
        ('[images]\nthumbnail_format = "gif"\n', "[images] thumbnail_format: 'gif' is not one of"),
        ('[rewrite]\nsizes = ""\n', "[rewrite] sizes: must not be empty"),
        ('[rewrite]\nsizes = \'50vw" onload="x\'\n', "[rewrite] sizes: "),
        ("[rewrite]\nloading = \"lazy\\n\"\n", "[rewrite] loading: "),
        ("[rewrite]\nresponsive = 1\n", "[rewrite] responsive: expected boolean"),
        ("[rewrite]\nsrcset = true\n", "unknown key [rewrite] srcset"),
    ],
)
def test_bad_settings_name_the_file_and_key(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "archiver.toml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_settings_as_the_readme_shows_them(tmp_path: Path) -> None:
    path = tmp_path / "archiver.toml"
    path.write_text('[images]\nthumbnails = [320, 640, 1280]\nformats = ["webp", "avif"]\n[rewrite]\nresponsive = true\n'
                    'sizes = "(min-width: 800px) 760px, 100vw"\npicture = true\n', encoding="utf-8")
    cfg = config.load(path)
    assert cfg.images.output_formats == ("webp", "avif") and cfg.rewrite.responsive and cfg.rewrite.picture
    assert config.Config().rewrite.responsive is False and config.Config().images.output_formats == ("webp",)


def test_picture_is_the_element_the_browser_reads_not_the_word_in_a_comment_or_an_attribute() -> None:
    """A "<picture>" or "</picture>" in a comment or an attribute value is text: the author's real <picture> gets
    no second one nested in it (its <source media> would stop applying), and an <img> outside any gets its own."""
    opts = Options(loading="", decoding="", picture=True, formats=("webp", "avif"))
    authors = (f'<picture><source srcset="/big.webp" media="(min-width: 800px)"><!-- was </picture> -->'
               f'<img src="{A}" alt="x"></picture>')
    out = _add(authors, opts)
    assert out.count("<picture>") == 1 and out.count("</picture>") == 2 and "image/avif" not in out  # 1 in the comment
    assert 'width="800"' in out  # the attributes are still added
    for before in ("<!-- <picture> -->", '<div title="<picture>">', "<p data-x='</picture><picture>'>"):
        out = _add(f'{before}<img src="{A}">', opts)
        assert out.startswith(f'{before}<picture><source type="image/avif"'), out
        assert out.endswith("</picture>") and _add(out, opts) == out
    # Markdown: a <picture> shown in a code block is not one either
    md = f'```html\n<picture>\n```\n\n<img src="{A}">\n'
    refs = find_refs(md, "markdown", ())
    found = additions(md, refs, lambda ref: SHOWN, opts)
    assert any(i.text.startswith("<picture>") for i in found)
