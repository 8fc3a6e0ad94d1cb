"""Byte fidelity of find + rewrite together, over the shapes real articles have (corpus README).

For any article assembled from those shapes and any subset of its references replaced:
the output equals the input outside the replaced spans, the replaced references are found again
at their new spans, and rewriting a second time changes nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.articles.rewrite import Replacement, render, splice
from archiver.config import DEFAULT_FIELDS
from archiver.find.refs import find_refs
from archiver.model import Article
from tests.support.paths import FIXTURES_DIR

FIXTURES = FIXTURES_DIR
NEW = "/archive/ab/cd/" + "0" * 64 + ".jpg"

URLS = st.sampled_from(
    [
        "https://i.guancha.cn/news/2021/10/31/20211031155825633.jpg",
        "http://zkres1.myzaker.com/202109/6135a1c48e9f0962d33e0e1f_1024.jpg",
        "https://cors.zfour.workers.dev/?http://dockone.io/uploads/a.jpg",
        "//cdn.example.com/img/a.png?x=1&y=2",
        "/assets/images/mm-logo.png",
        "../images/rel ative.jpg",
        "https://example.com/图片/文.jpg",
        "https://example.com/a_(1).jpg",
        "https://p9-juejin.byteimg.com/tos/ffc4~tplv-watermark.image",
    ]
)
NL = st.sampled_from(["\n", "\r\n"])
PAD = st.sampled_from(["", " ", "   ", "\u00a0", "&#123;x&#125;", "文文文", "\t"])


@st.composite
def front_matter(draw: st.DrawFn) -> str:
    nl = draw(NL)
    url = draw(URLS)
    quote = draw(st.sampled_from(["", "'", '"']))
    odd = draw(st.sampled_from(["", ' "unbalanced']))
    lines = [
        f"title: '文文，文文{odd}'",
        f"headimg: {quote}{url}{quote}",
        f"thumbnail: {quote}{url}{quote}",
        "image:",
        f"  path: &image {draw(URLS)}",
        "  feature: *image",
        "cover:",
        f"  url: {draw(URLS)}",
        draw(st.sampled_from(["date: Sun, 31 Oct 2021 12:42:28 GMT", "tags: [a, b", "comments: false"])),
    ]
    lines = draw(st.permutations(lines))
    lead = draw(st.sampled_from(["", nl]))
    return lead + "---" + nl + nl.join(lines) + draw(PAD) + nl + "---" + nl


@st.composite
def body_block(draw: st.DrawFn) -> str:
    url, url2 = draw(URLS), draw(URLS)
    pad = draw(PAD)
    amp = url.replace("&", "&amp;")
    return draw(
        st.sampled_from(
            [
                f'<img src="{amp}" width="530" class="bigimg" referrerpolicy="no-referrer">{pad}',
                f"<img src='{url}' data-original=\"{url2}\" zoomfile=\"{url2}\">",
                f'<img srcset="{url} 1x, {url2} 2x" src="{url2}">',
                f'<picture><source srcset="{url2}" media="(min-width: 800px)"><img src="{url}"></picture>',
                f"![alt {pad}]({url} \"title\"){pad}",
                f"[![thumb]({url})]({url2})",
                f"![ref][img]\n\n[img]: {url}",
                f"```html\n<img src=\"{url}\">\n```",
                f"`![inline]({url})` code",
                f"<!-- <img src=\"{url}\"> -->",
                f'<img src="{{{{ site.url }}}}{url}">',
                '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">',
                f"<p style=\"text-align:justify;\">{pad}文文文文。{pad}</p>",
                f"[a link]({url2}.html)",
            ]
        )
    )


@st.composite
def article(draw: st.DrawFn) -> str:
    nl = draw(NL)
    fm = draw(st.one_of(st.just(""), front_matter()))
    blocks = draw(st.lists(body_block(), min_size=1, max_size=8))
    text = fm + nl + (nl + nl).join(b.replace("\n", nl) for b in blocks)
    return text + draw(st.sampled_from(["", nl, "  ", nl + nl]))


def _apply(text: str, chosen: list[bool]) -> tuple[str, list[Replacement]]:
    refs = find_refs(text, "markdown", DEFAULT_FIELDS)
    reps = [Replacement(r.start, r.end, NEW) for r, pick in zip(refs, chosen, strict=False) if pick]
    return splice(text, reps), reps


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(article(), st.lists(st.booleans(), min_size=40, max_size=40))
def test_rewrite_changes_only_the_replaced_spans_and_is_idempotent(text: str, chosen: list[bool]) -> None:
    out, reps = _apply(text, chosen)
    # 1. outside the spans, the output is the input, piece by piece
    pos, cursor = 0, 0
    for r in sorted(reps, key=lambda r: r.start):
        gap = text[pos : r.start]
        assert out[cursor : cursor + len(gap)] == gap
        cursor += len(gap)
        assert out[cursor : cursor + len(NEW)] == NEW
        cursor += len(NEW)
        pos = r.end
    assert out[cursor:] == text[pos:]
    # 2. the rewritten references are found again, now pointing at the archive
    again = find_refs(out, "markdown", DEFAULT_FIELDS)
    assert sum(1 for r in again if r.url == NEW) >= len(reps)
    # 3. a second rewrite of what was already rewritten changes nothing
    same = [Replacement(r.start, r.end, NEW) for r in again if r.url == NEW]
    assert splice(out, same) == out


@settings(max_examples=100, deadline=None)
@given(article())
def test_nothing_replaced_means_identical_bytes(text: str) -> None:
    for enc in ("utf-8", "utf-8-sig", "gb18030", "utf-16"):
        raw = text.encode(enc)
        art = Article(Path("x.md"), raw, text, enc, "markdown")
        assert render(art, []) == raw


def test_real_corpus_files_rewrite_only_their_url_spans() -> None:
    """Every reference in the copied corpus files replaced: the text between them is untouched."""
    files = [
        p
        for p in sorted((FIXTURES / "refs").glob("*.md")) + sorted((FIXTURES / "articles").rglob("*.md"))
        if p.name != "SOURCES.md"
    ]
    assert len(files) >= 5
    for path in files:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
        refs = find_refs(text, "markdown", DEFAULT_FIELDS)
        if not refs:
            continue
        out = splice(text, [Replacement(r.start, r.end, NEW) for r in refs])
        pieces = re.split(re.escape(NEW), out)
        expected, pos = [], 0
        for r in refs:
            expected.append(text[pos : r.start])
            pos = r.end
        expected.append(text[pos:])
        assert pieces == expected, path
        assert out.encode("utf-8").count(b"\r\n") == raw.count(b"\r\n")
