"""Front matter composed by libyaml (fast) finds exactly what the Python composer finds: same references and spans,
same notices, same `max_nodes` verdict, where the two are known to differ too (found by an adversarial review)."""

from __future__ import annotations

import pytest

import archiver.find.frontmatter as fm
from archiver.find.frontmatter import front_matter_refs, split_front_matter
from archiver.find.refs import find_refs

URL = "https://ex.com/a.jpg"
pytestmark = pytest.mark.skipif(fm._CLoader is None, reason="PyYAML without libyaml: only one composer to compare")


def _both(fn):  # type: ignore[no-untyped-def]
    saved = fm._CLoader
    try:
        fast = fn()
        fm._CLoader = None
        return fast, fn()
    finally:
        fm._CLoader = saved


@pytest.mark.parametrize("text", [
    f"---\n\ufefftitle: x\nimage: {URL}\n---\nbody\n",  # a BOM: libyaml leaves it out of its positions
    f"---\n# c\n\ufeffimage: {URL}\n---\nbody\n",
    f"---\nt: \t\nimage: |\n  {URL}\n---\nbody\n",  # a tab libyaml accepts and the Python composer refuses
    f"---\nimage: |#c\n  {URL}\n---\nbody\n",
    f"---\ntitle: \"é 🚀 中文\"\nimage: {URL}\n---\nbody\n",
    f"---\r\ntitle: x\r\nimage: '{URL}'\r\n---\r\nbody\r\n",
])
def test_the_same_references_spans_and_notices_as_the_python_composer(text: str) -> None:
    def refs() -> tuple[list[tuple[str, int, int]], list[str]]:
        notices: list = []
        found = [(r.url, r.start, r.end) for r in find_refs(text, "markdown", ["image"], notices=notices)]
        return found, [n.message for n in notices]

    fast, reference = _both(refs)
    assert fast == reference
    for _url, start, end in fast[0]:
        assert text[start:end] == URL


def test_aliases_count_toward_max_nodes_as_in_the_python_composer() -> None:
    text = "---\nimage: " + URL + "\nx: &a 1\ny: [" + ", ".join(["*a"] * 50) + "]\n---\n"
    block = split_front_matter(text)

    def verdict() -> object:
        try:
            return len(front_matter_refs(text, block, ["image"], [], 30))
        except Exception as exc:
            return type(exc).__name__

    fast, reference = _both(verdict)
    assert fast == reference == "TooLarge"
