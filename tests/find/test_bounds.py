"""How much of an article the finder holds: with ``max_refs`` (config articles.max_refs) it stops at that many
references, or at 5 times as many lines, Markdown elements or front-matter values, whatever the article, and says
which bound it hit (TooLarge) instead of holding a million references (~1.5 KB each) in memory."""

from __future__ import annotations

import tracemalloc

import pytest

from archiver.config import DEFAULT_FIELDS
from archiver.find.refs import find_refs
from archiver.find.scan import TooLarge

IMG = "http://img.test/a.jpg"


def bounded(text: str, fmt: str, max_refs: int) -> str:
    with pytest.raises(TooLarge) as info:
        find_refs(text, fmt, DEFAULT_FIELDS, max_refs=max_refs)
    return info.value.reason


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("".join(f"![{i}]({IMG})\n" for i in range(11)), "markdown"),  # one paragraph of 11 lines
        ("".join(f'<img src="{IMG}">' for i in range(11)), "html"),  # one line
        ("<div>" + "".join(f'<img src="{IMG}">' for i in range(11)) + "</div>", "markdown"),  # one HTML block
        ("---\nimage: " + IMG + "\n---\n" + "".join(f"![]({IMG}) " for i in range(10)), "markdown"),  # front matter too
    ],
    ids=["markdown", "html", "html-block", "front-matter"],
)
def test_more_references_than_max_refs(text: str, fmt: str) -> None:
    assert len(find_refs(text, fmt, DEFAULT_FIELDS, max_refs=11)) == 11
    assert bounded(text, fmt, 10) == "more than 10 image references (articles.max_refs)"


def test_more_lines_than_five_per_allowed_reference() -> None:
    text = "just prose\n" * 50  # 51 lines, no image at all
    assert find_refs(text, "markdown", DEFAULT_FIELDS, max_refs=11) == []
    assert bounded(text, "markdown", 10) == "more than 50 lines (5 × articles.max_refs)"
    assert bounded(text.replace("\n", "\r\n"), "html", 10) == "more than 50 lines (5 × articles.max_refs)"


def test_more_markdown_elements_than_five_per_allowed_reference() -> None:
    """A deep nest of quotes makes many markdown-it tokens on few lines: ~400 bytes each."""
    text = "> " * 90 + "x\n"
    assert bounded(text, "markdown", 10).startswith("more than 50 Markdown elements")
    assert find_refs(text, "markdown", DEFAULT_FIELDS, max_refs=40) == []


def test_more_front_matter_values_than_five_per_allowed_reference() -> None:
    """One line of YAML can hold any number of values: PyYAML keeps ~1 KB per value while composing."""
    text = "---\nimage: [" + ", ".join(["a"] * 60) + "]\n---\nbody\n"
    assert bounded(text, "markdown", 10) == "more than 50 values in its front matter (5 × articles.max_refs)"
    assert find_refs(text, "markdown", DEFAULT_FIELDS, max_refs=20) == []
    toml = "+++\nimages = [" + ", ".join(['"a"'] * 60) + "]\n+++\nbody\n"
    assert bounded(toml, "markdown", 10) == "more than 50 values in its front matter (5 × articles.max_refs)"


def test_no_bound_without_max_refs() -> None:
    assert len(find_refs("".join(f'<img src="{IMG}">' for i in range(1000)), "html", DEFAULT_FIELDS)) == 1000


@pytest.mark.parametrize("fmt", ["markdown", "html"])
def test_a_million_references_cost_what_max_refs_allows(fmt: str) -> None:
    """A million references on one line: the scan stops after 20 000 of them, having allocated a few MB beyond the
    copies of the text markdown-it makes (the million, before: ~550 MB in HTML, ~1.5 GB in Markdown)."""
    line = f'<img src="{IMG}">' * 1_000_000
    text = f"<p>{line}</p>\n" if fmt == "html" else f"<div>{line}</div>\n"
    tracemalloc.start()
    try:
        reason = bounded(text, fmt, 20_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert reason == "more than 20,000 image references (articles.max_refs)"
    copies = 2 if fmt == "markdown" else 0  # markdown-it normalises its input: new strings of the body's size
    assert peak < copies * len(text) + 20_000_000, peak
