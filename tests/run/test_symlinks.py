"""Symlinks in the articles tree: a link leading outside the folders given is reported and what it leads to is never
changed (unless ``[articles] follow_symlinks_outside``); a looping or broken link is reported and skipped, never a
traceback that aborts the run; links that stay inside are followed, each file once. Real files, real links."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.cli import main
from archiver.config import Config
from archiver.errors import ArticleError
from archiver.manifest.sqlite import Manifest
from archiver.run.articles import OwnUrls, rewrite_article
from tests.support.images import make_jpeg
from tests.support.origin import Server
from tests.support.site import write_config

ARTICLE = b"![a](http://img.news.test/a.jpg)\n"


@pytest.fixture
def linked(tmp_path: Path, origin: Server) -> dict[str, Path]:
    origin.add("/a.jpg", make_jpeg(160, 120, seed=61), "image/jpeg")
    site, outside = tmp_path / "site", tmp_path / "elsewhere"
    (site / "sub").mkdir(parents=True)
    outside.mkdir()
    (site / "ok.md").write_bytes(ARTICLE)
    (outside / "private.md").write_bytes(ARTICLE)
    (outside / "notes").mkdir()
    (outside / "notes" / "diary.md").write_bytes(ARTICLE)
    (site / "to-private.md").symlink_to(outside / "private.md")  # a file outside
    (site / "to-notes").symlink_to(outside / "notes", target_is_directory=True)  # a folder outside
    (site / "loop.md").symlink_to(site / "loop.md")  # itself
    (site / "sub" / "ping.md").symlink_to(site / "sub" / "pong.md")  # a loop of two
    (site / "sub" / "pong.md").symlink_to(site / "sub" / "ping.md")
    (site / "sub" / "up").symlink_to(site, target_is_directory=True)  # back up the tree: walked once
    (site / "sub" / "same-as-ok.md").symlink_to(site / "ok.md")  # inside: the same file, once
    (site / "broken.md").symlink_to(site / "nowhere.md")
    return {"site": site, "private": outside / "private.md", "diary": outside / "notes" / "diary.md",
            "ok": site / "ok.md"}


def test_links_outside_are_reported_and_never_written_loops_never_abort(
    tmp_path: Path, origin: Server, linked: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(write_config(tmp_path, origin))
    assert main(["run", "--config", cfg, "-q"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "Traceback" not in captured.err
    site = linked["site"]
    assert linked["private"].read_bytes() == ARTICLE and linked["diary"].read_bytes() == ARTICLE  # untouched
    assert linked["ok"].read_bytes() != ARTICLE  # the article inside was archived
    assert "1 article scanned, 1 rewritten" in out
    assert f"[skipped] {site}/to-private.md  — a symlink to {linked['private']}, outside the folders given" in out
    assert f"[skipped] {site}/to-notes  — a symlink to {linked['diary'].parent}, outside the folders given" in out
    for loop in ("loop.md", "sub/ping.md", "sub/pong.md"):
        assert f"[skipped] {site}/{loop}  — a symlink loop (it leads back to itself); skipped" in out, loop
    assert f"[skipped] {site}/broken.md  — a broken symlink: its target does not exist" in out

    for command in (["verify"], ["restore", "--dry-run"], ["dedupe"], ["status"]):
        code = main([*command, "--config", cfg])
        captured = capsys.readouterr()
        assert code == 0 and "Traceback" not in captured.err, (command, captured)
    assert main(["verify", str(site / "loop.md"), "--config", cfg]) == 2
    assert "loop.md: a broken symlink, or a symlink loop" in capsys.readouterr().err
    assert main(["run", str(site / "loop.md"), "--config", cfg]) == 2
    assert "loop.md: a broken symlink, or a symlink loop" in capsys.readouterr().err


def test_following_links_outside_is_a_setting(
    tmp_path: Path, origin: Server, linked: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, origin)
    cfg.write_text(cfg.read_text(encoding="utf-8").replace(
        "[articles]\n", "[articles]\nfollow_symlinks_outside = true\n"), encoding="utf-8")
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert "3 articles scanned, 3 rewritten" in capsys.readouterr().out
    assert linked["private"].read_bytes() != ARTICLE and linked["diary"].read_bytes() != ARTICLE
    assert main(["restore", "--config", str(cfg)]) == 0  # recorded by their real paths, restored there
    assert linked["private"].read_bytes() == ARTICLE and linked["diary"].read_bytes() == ARTICLE


def test_a_link_changed_to_lead_outside_after_the_scan_is_not_written(tmp_path: Path) -> None:
    site, outside = tmp_path / "site", tmp_path / "elsewhere"
    site.mkdir()
    outside.mkdir()
    (site / "real.md").write_bytes(ARTICLE)
    (outside / "private.md").write_bytes(ARTICLE)
    link = site / "post.md"
    link.symlink_to(site / "real.md")  # inside when the run scanned it ...
    link.unlink()
    link.symlink_to(outside / "private.md")  # ... and swapped before its rewrite
    cfg = Config()
    with Manifest.open(None) as m, pytest.raises(ArticleError, match="outside the folders given; not written"):
        rewrite_article(link, {"http://img.news.test/a.jpg": "/archive/a.jpg"}, cfg.articles, OwnUrls.of(cfg), m,
                        dry_run=False, roots=[site.resolve()])
    assert (outside / "private.md").read_bytes() == ARTICLE


def test_hard_linked_articles_are_reported_and_left_whole(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by review: of two names of one file, the first was rewritten (a new file renamed into place, which
    split the link) and the second silently skipped; the next run then wrote the second. Both names are now
    reported and neither is changed; a second run does the same and writes nothing."""
    import os

    origin.add("/a.jpg", make_jpeg(160, 120, seed=62), "image/jpeg")
    site = tmp_path / "site"
    site.mkdir()
    (site / "a.md").write_bytes(ARTICLE)
    os.link(site / "a.md", site / "b.md")
    (site / "c.md").write_bytes(ARTICLE)
    cfg = str(write_config(tmp_path, origin))
    for _ in range(2):
        assert main(["run", "--config", cfg, "-q"]) == 0
        out = capsys.readouterr().out
        for name in ("a.md", "b.md"):
            assert f"[skipped] {site}/{name}  — has 2 names (hard links)" in out, out
        assert (site / "a.md").read_bytes() == ARTICLE and os.stat(site / "a.md").st_nlink == 2
        assert (site / "c.md").read_bytes() != ARTICLE  # the article of its own is archived
    assert main(["run", str(site / "b.md"), "--config", cfg, "-q"]) == 0
    assert "has 2 names (hard links)" in capsys.readouterr().out
