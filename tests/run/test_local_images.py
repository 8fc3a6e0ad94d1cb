"""Images on disk: a Hexo post asset folder, the site's own /images/ under [articles] site_root and relative paths are
archived from the files (no HTTP) under the download checks, rewritten in place and restored; a missing file is
reported with article:line; nothing outside the allowed folders is ever read, through ``..`` or a symlink."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from archiver.cli import main
from tests.support.images import make_jpeg, make_png
from tests.support.origin import Server
from tests.support.site import key, snapshot

POST = (
    "---\r\ntitle: 'local: 文'\r\ncover: /images/b.png\r\n---\r\n"
    "![in the asset folder](a.jpg \"title\")\r\n"
    "<img src=\"../images/b.png\" alt=x>\r\n"
    "![beside the post](plain.jpg)"
)


def site(tmp_path: Path, extra: str = "") -> tuple[Path, dict[str, bytes]]:
    """A Hexo site: source/_posts/post.md, its asset folder source/_posts/post/, and source/images/."""
    posts = tmp_path / "source" / "_posts"
    (posts / "post").mkdir(parents=True)
    (tmp_path / "source" / "images").mkdir()
    bodies = {"post/a.jpg": make_jpeg(640, 480, seed=81), "plain.jpg": make_jpeg(200, 150, seed=82)}
    for name, body in bodies.items():
        (posts / name).write_bytes(body)
    bodies["images/b.png"] = make_png(300, 200, seed=83)
    (tmp_path / "source" / "images" / "b.png").write_bytes(bodies["images/b.png"])
    (posts / "post.md").write_bytes(POST.encode("utf-8"))
    cfg = tmp_path / "archiver.toml"
    cfg.write_text(f'[articles]\nroot = "source/_posts"\nsite_root = "source"\n{extra}\n'
                   '[storage]\nbackend = "local"\npath = "archive"\n', encoding="utf-8")
    return cfg, bodies


def test_local_images_are_archived_from_disk_rewritten_and_restored(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, bodies = site(tmp_path)
    post = tmp_path / "source/_posts/post.md"
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    out = capsys.readouterr().out
    assert "3 archived" in out and "0 failed" in out and origin.total_hits() == 0  # no HTTP at all
    ka, kb, kp = key(bodies["post/a.jpg"], "jpg"), key(bodies["images/b.png"], "png"), key(bodies["plain.jpg"], "jpg")
    expected = (POST.replace("../images/b.png", f"/archive/{kb}").replace("/images/b.png", f"/archive/{kb}")
                .replace("(a.jpg", f"(/archive/{ka}").replace("(plain.jpg)", f"(/archive/{kp})"))
    assert post.read_bytes() == expected.encode("utf-8")
    for k, name in ((ka, "post/a.jpg"), (kb, "images/b.png"), (kp, "plain.jpg")):
        assert (tmp_path / "archive" / k).read_bytes() == bodies[name]  # the same content-addressed keys
        assert (tmp_path / "archive" / (k.rsplit(".", 1)[0] + "-320w.webp")).exists()  # and renditions

    before = snapshot(tmp_path)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert snapshot(tmp_path) == before  # idempotent
    assert main(["restore", "--config", str(cfg), "-q"]) == 0
    assert post.read_bytes() == POST.encode("utf-8")
    capsys.readouterr()


def test_a_missing_file_is_reported_with_its_line_and_archived_once_it_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, bodies = site(tmp_path)
    missing = tmp_path / "source/_posts/post/a.jpg"
    missing.unlink()
    post = tmp_path / "source/_posts/post.md"
    assert main(["run", "--config", str(cfg)]) == 0  # reported like a dead link: not an error
    out = capsys.readouterr().out
    assert f"[dead] {post}:5  file://{missing}  — no such file" in out
    assert "2 archived (0 by earlier runs), 1 dead" in out
    missing.write_bytes(bodies["post/a.jpg"])
    assert main(["run", "--config", str(cfg), "-q"]) == 0  # a file is looked for again: no --retry-dead needed
    out = capsys.readouterr().out
    assert "1 archived" in out and "a.jpg" not in post.read_text(encoding="utf-8")


def test_nothing_outside_the_allowed_folders_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, _ = site(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = make_jpeg(100, 100, seed=84)
    (outside / "secret.jpg").write_bytes(secret)
    (tmp_path / "source/_posts/post/link.jpg").symlink_to(outside / "secret.jpg")
    (tmp_path / "source/_posts/post/text.jpg").write_text("not an image", encoding="utf-8")
    post = tmp_path / "source/_posts/post.md"
    body = "![a](link.jpg)\n![b](../../../outside/secret.jpg)\n![c](/../outside/secret.jpg)\n![d](text.jpg)\n"
    post.write_text(body, encoding="utf-8")
    assert main(["run", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert f"{post}:1" in out and "a symlink leading outside the allowed folders" in out
    assert f"{post}:2  ../../../outside/secret.jpg  — a local path outside the allowed folders" in out
    assert f"{post}:3  /../outside/secret.jpg  — a local path outside the allowed folders" in out
    assert f"{post}:4" in out and "not an image" in out
    assert post.read_text(encoding="utf-8") == body
    assert not any(p.is_file() and p.read_bytes() == secret for p in (tmp_path / "archive").rglob("*"))

    # the articles' rule: follow_symlinks_outside lets a symlink lead out (never a ../ path)
    cfg.write_text(cfg.read_text(encoding="utf-8").replace('site_root = "source"',
                                                           'site_root = "source"\nfollow_symlinks_outside = true'))
    assert main(["run", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "1 archived" in out and f"/archive/{key(secret, 'jpg')}" in post.read_text(encoding="utf-8")
    assert "../../../outside/secret.jpg" in post.read_text(encoding="utf-8")


def test_hexo_asset_img_is_archived_from_the_asset_folder_and_becomes_the_img_tag(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, bodies = site(tmp_path, 'base_url = "http://blog.test/"')
    post = tmp_path / "source/_posts/post.md"
    text = ("---\ntitle: x\n---\n{% asset_img left a.jpg 300 \"A title\" \"alt\" %}\n"
            "{% asset_img gone.jpg %}\n\n![same file](a.jpg)\n")
    post.write_text(text, encoding="utf-8")
    assert main(["run", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    ka = key(bodies["post/a.jpg"], "jpg")
    assert "1 archived" in out and f"[dead] {post}:5  file://{post.parent}/post/gone.jpg  — no such file" in out
    assert origin.total_hits() == 0  # an asset's name is never fetched from base_url, found or not
    assert post.read_text(encoding="utf-8") == text.replace(
        "asset_img left a.jpg", f"img left /archive/{ka}").replace("(a.jpg)", f"(/archive/{ka})")
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert "0 rewritten" in capsys.readouterr().out  # the img tag is read as the archive's URL
    assert main(["restore", "--config", str(cfg), "-q"]) == 0
    assert post.read_text(encoding="utf-8") == text


def test_verify_repair_and_run_store_a_lost_local_original_again_from_its_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, bodies = site(tmp_path)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    ka, kb = key(bodies["post/a.jpg"], "jpg"), key(bodies["images/b.png"], "png")
    (tmp_path / "archive" / ka).unlink()
    (tmp_path / "archive" / kb).write_bytes(b"corrupt")
    capsys.readouterr()
    assert main(["verify", "--config", str(cfg), "-q"]) == 1
    assert main(["verify", "--config", str(cfg), "-q", "--repair"]) == 0
    out = capsys.readouterr().out
    source = tmp_path / "source/_posts/post/a.jpg"
    assert f"repaired: {ka} (from file://{source})" in out and "0 could not be repaired" in out
    assert (tmp_path / "archive" / ka).read_bytes() == bodies["post/a.jpg"]
    assert (tmp_path / "archive" / kb).read_bytes() == bodies["images/b.png"]
    (tmp_path / "archive" / ka).unlink()
    assert main(["verify", "--config", str(cfg), "-q"]) == 1
    assert main(["run", "--config", str(cfg), "-q"]) == 0  # run, too, stores it again from the file
    assert (tmp_path / "archive" / ka).read_bytes() == bodies["post/a.jpg"]


def test_quoted_asset_names_and_latin1_escapes_are_read_and_what_cannot_be_read_is_reported(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """`{% asset_img "my pic.jpg" "T" %}` (Hexo's lexer takes the quoted name) is archived; `caf%E9.jpg` (a Latin-1
    escape) finds the file named café.jpg, and `%E9` a file named in Latin-1 bytes; a tag naming no readable file is
    a warning with article:line, on every run, never silence."""
    cfg, bodies = site(tmp_path)
    posts = tmp_path / "source/_posts"
    (posts / "post" / "my pic.jpg").write_bytes(spaced := make_jpeg(320, 240, seed=91))
    (posts / "post" / "café.jpg").write_bytes(cafe := make_jpeg(330, 240, seed=92))
    (tmp_path / "source/images").joinpath(os.fsdecode(b"l\xe9gume.png")).write_bytes(leg := make_png(50, 40, seed=93))
    post = posts / "post.md"
    text = ('---\ntitle: x\n---\n{% asset_img "my pic.jpg" "A title" %}\n\n![](post/caf%E9.jpg)\n\n'
            "![](/images/l%E9gume.png)\n\n{% asset_img {{ page.cover }} %}\n")
    post.write_text(text, encoding="utf-8")
    assert main(["run", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "3 archived" in out and "0 dead" in out and origin.total_hits() == 0, out
    assert f"{post}:10" in out and "template expression ({{ page.cover }})" in out
    ks, kc, kl = key(spaced, "jpg"), key(cafe, "jpg"), key(leg, "png")
    assert post.read_text(encoding="utf-8") == text.replace(
        'asset_img "my pic.jpg"', f'img "/archive/{ks}"').replace("post/caf%E9.jpg", f"/archive/{kc}").replace(
        "/images/l%E9gume.png", f"/archive/{kl}")
    assert main(["run", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "0 rewritten" in out and f"{post}:10" in out  # settled, and still reported
    assert main(["restore", "--config", str(cfg), "-q"]) == 0
    assert post.read_text(encoding="utf-8") == text


def test_a_site_root_that_is_not_a_folder_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo (`statc`) would make every /images/x.png "no such file" in a run that exits 0: refused, exit 2."""
    cfg, _ = site(tmp_path)
    cfg.write_text(cfg.read_text(encoding="utf-8").replace('site_root = "source"', 'site_root = "sourc"'),
                   encoding="utf-8")
    post = tmp_path / "source/_posts/post.md"
    assert main(["run", "--config", str(cfg), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}: [articles] site_root: {tmp_path / 'sourc'}: no such folder" in err
    assert post.read_bytes() == POST.encode("utf-8") and not (tmp_path / "archive").exists()
