"""A source URL's ``#fragment`` (``a.jpg#center`` for a theme, ``icons.svg#home`` for a sprite) is never fetched, but it
means something to the page: the archive URL that replaces it keeps it, a later run reads it as ours, and restore
gives the original back."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.cli import main
from archiver.urls import kept_fragment
from tests.support.images import make_jpeg
from tests.support.origin import Server
from tests.support.site import key, snapshot, write_config

ARTICLE = (
    "---\ntitle: t\ncover: http://img.news.test/f/a.jpg#center\n---\n"
    "![a](http://img.news.test/f/a.jpg#center)\n"
    '<img src="http://img.news.test/f/b.jpg#x&quot;y">\n'
    "![b](http://img.news.test/f/b.jpg)\n"
)


@pytest.mark.parametrize(("raw", "kept"), [
    ("http://h/a.jpg#center", "#center"),
    ("http://h/a.jpg", ""),
    ("http://h/a.svg#icon-home", "#icon-home"),
    ('http://h/a.jpg#x"onerror=y', ""),  # would leave the attribute
    ("http://h/a.jpg#a b", ""),
    ("http://h/a.jpg#", ""),
    ("http://h/a.jpg#t=1)![x](y", ""),  # would end a Markdown link
    ("http://h/a.jpg#access_token=abc123", ""),  # a secret: never copied into the archive URL or the manifest
    ("http://h/a.jpg#xywh=0,0,10,10", "#xywh=0,0,10,10"),
])
def test_only_a_fragment_safe_in_any_context_is_kept(raw: str, kept: str) -> None:
    assert kept_fragment(raw) == kept


def test_a_fragment_follows_the_archive_url_and_a_second_run_changes_nothing(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = make_jpeg(200, 150, seed=3), make_jpeg(220, 140, seed=4)
    origin.add("/f/a.jpg", a, "image/jpeg")
    origin.add("/f/b.jpg", b, "image/jpeg")
    cfg = write_config(tmp_path, origin)
    post = tmp_path / "site" / "post.md"
    post.parent.mkdir(parents=True)
    post.write_text(ARTICLE, encoding="utf-8")

    assert main(["run", "--config", str(cfg), "-q"]) == 0
    ka, kb = key(a, "jpg"), key(b, "jpg")
    assert post.read_text(encoding="utf-8") == (
        f"---\ntitle: t\ncover: /archive/{ka}#center\n---\n"
        f"![a](/archive/{ka}#center)\n"
        f'<img src="/archive/{kb}">\n'  # a fragment with an entity in it is not copied (as before)
        f"![b](/archive/{kb})\n"
    )
    assert origin.hits("/f/a.jpg") == 1 and origin.hits("/f/b.jpg") == 1

    capsys.readouterr()
    before, hits = snapshot(tmp_path), origin.total_hits()
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert origin.total_hits() == hits and snapshot(tmp_path) == before
    assert "0 rewritten" in capsys.readouterr().out

    assert main(["restore", "--config", str(cfg), "-q"]) == 0
    assert post.read_text(encoding="utf-8") == ARTICLE


def test_re_pointing_an_archive_url_keeps_its_fragment(tmp_path: Path) -> None:
    """What rekey and `dedupe --apply` do to an article (dedupe.canonical.apply_canonical): ``old.jpg#center`` becomes
    ``new.jpg#center``; a span whose fragment could not be copied safely is left as it is."""
    from archiver.dedupe.canonical import apply_canonical
    from archiver.manifest.sqlite import Manifest

    post = tmp_path / "post.md"
    post.write_text("![a](https://cdn.example/old.jpg#center)\n![b](https://cdn.example/old.jpg)\n"
                    '<img src="https://cdn.example/old.jpg#a&amp;b">\n', encoding="utf-8")
    with Manifest.open(None) as manifest:
        result = apply_canonical(manifest, [str(post)], {"https://cdn.example/old.jpg": "https://cdn.example/new.jpg"},
                                 ("cover",))
    assert result.spans == 2 and not result.problems
    assert post.read_text(encoding="utf-8") == (
        "![a](https://cdn.example/new.jpg#center)\n![b](https://cdn.example/new.jpg)\n"
        '<img src="https://cdn.example/old.jpg#a&amp;b">\n')
