"""Key layouts end to end: a run under ``[storage] key_template`` stores each content once under a readable key and
reads it back from the manifest; a short hash taken by other bytes is widened, never overwritten; changing the
template moves nothing until `archiver rekey`, which copies, re-points, records and deletes, resumably (killed at
any point, a re-run finishes and no article ever points at a missing object) and idempotently; `restore` and
`dedupe --undo` still work afterwards. Against a local folder and real SeaweedFS."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.storage.template import source_name
from tests.support.images import make_jpeg, make_png
from tests.support.origin import Server
from tests.support.paths import ROOT_DIR
from tests.support.site import key, sha, snapshot, write_config

TEMPLATE = "{yyyy}/{mm}/{name}-{sha8}.{ext}"
POST = """---
title: Keys
cover: http://img.news.test/photos/Caf%C3%A9%20Terrace.JPG
---
![terrace](http://img.news.test/photos/Caf%C3%A9%20Terrace.JPG "t")
<img src="http://img.news.test/b.png" alt="b">
"""
OTHER = "Again: ![c](http://photos.test/c.jpg) and ![b](http://img.news.test/b.png)\n"


@pytest.fixture
def images(origin: Server) -> dict[str, bytes]:
    bodies = {"/photos/Caf%C3%A9%20Terrace.JPG": make_jpeg(400, 300, seed=71), "/b.png": make_png(200, 150, seed=72),
              "/c.jpg": make_jpeg(500, 300, seed=73)}
    for path, body in bodies.items():
        origin.add(path.replace("Caf%C3%A9%20", "Café "), body, "image/jpeg")  # the server matches decoded paths
    return bodies


def _site(tmp_path: Path, origin: Server, template: str, storage: str = "") -> Path:
    posts = tmp_path / "site"
    posts.mkdir(exist_ok=True)
    (posts / "post.md").write_text(POST, encoding="utf-8")
    (posts / "other.md").write_text(OTHER, encoding="utf-8")
    return _config(tmp_path, origin, template, storage)


def _config(tmp_path: Path, origin: Server, template: str, storage: str = "") -> Path:
    return write_config(tmp_path, origin, storage=(storage or '[storage]\nbackend = "local"\npath = "archive"')
                        + f'\nkey_template = "{template}"')


def _month() -> str:
    return time.strftime("%Y/%m", time.gmtime())


def _archive_urls(site: Path) -> set[str]:
    return {u for p in site.glob("*.md") for u in re.findall(r"/archive/[^\s\")]+", p.read_text(encoding="utf-8"))}


def _objects(archive: Path) -> set[str]:
    return {str(p.relative_to(archive)) for p in archive.rglob("*") if p.is_file() and ".archiver" not in p.name}


def test_templated_keys_are_readable_made_once_and_read_back_from_the_manifest(
    manifest_env: str | None, tmp_path: Path, origin: Server, images: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _site(tmp_path, origin, TEMPLATE)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    terrace = images["/photos/Caf%C3%A9%20Terrace.JPG"]
    k = f"{_month()}/cafe-terrace-{sha(terrace)[:8]}.jpg"
    archive = tmp_path / "archive"
    assert (archive / k).read_bytes() == terrace
    assert (archive / k.replace(".jpg", "-320w.webp")).is_file()  # the thumbnail beside its original
    text = (tmp_path / "site/post.md").read_text(encoding="utf-8")
    assert text == POST.replace("http://img.news.test/photos/Caf%C3%A9%20Terrace.JPG", f"/archive/{k}").replace(
        "http://img.news.test/b.png", f"/archive/{_month()}/b-{sha(images['/b.png'])[:8]}.png")
    assert len(_objects(archive)) == 6  # 3 originals + 3 thumbnails: b.png used twice is one object
    # a second run: every templated URL is known (from the manifest), nothing fetched, stored or written
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert main(["run", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "5 image references, 5 of them already pointing at the archive" in out, out
    assert "objects uploaded 0" in out and snapshot(tmp_path) == before
    assert main(["verify", "--config", str(cfg), "--deep", "-q"]) == 0
    # the same bytes from another host, name and day: the key recorded first is reused
    origin.add("/elsewhere/renamed.jpg", terrace, "image/jpeg")
    (tmp_path / "site/late.md").write_text("![x](http://photos.test/elsewhere/renamed.jpg)\n", encoding="utf-8")
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert (tmp_path / "site/late.md").read_text(encoding="utf-8") == f"![x](/archive/{k})\n"
    assert len(_objects(archive)) == 6
    # restore puts every original URL back, byte for byte
    assert main(["restore", "--config", str(cfg), "-q"]) == 0
    assert (tmp_path / "site/post.md").read_text(encoding="utf-8") == POST


def test_a_short_hash_taken_by_other_bytes_is_widened_never_overwritten(
    tmp_path: Path, origin: Server, images: dict[str, bytes]
) -> None:
    cfg = _site(tmp_path, origin, "{name}-{sha8}.{ext}")
    c = images["/c.jpg"]
    archive = tmp_path / "archive"
    # in the store: other bytes under c.jpg's short key (another tool's file, or a real 32-bit collision)
    squatter = make_jpeg(64, 64, seed=5)
    archive.mkdir()
    (archive / f"c-{sha(c)[:8]}.jpg").write_bytes(squatter)
    # in the manifest: another asset recorded under b.png's short key
    (tmp_path / "empty").mkdir()
    assert main(["run", "--config", str(cfg), "-q", str(tmp_path / "empty")]) == 0  # makes the manifest
    db = tmp_path / ".archiver/manifest.sqlite3"
    b = images["/b.png"]
    other = "f" * 64
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO assets (sha256, format, mime, ext, bytes, key, first_seen) VALUES "
                     "(?, 'png', 'image/png', 'png', 1, ?, 0)", (other, f"b-{sha(b)[:8]}.png"))
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert (archive / f"c-{sha(c)[:8]}.jpg").read_bytes() == squatter  # left as it was
    assert (archive / f"c-{sha(c)[:16]}.jpg").read_bytes() == c
    assert (archive / f"b-{sha(b)[:16]}.png").read_bytes() == b
    assert not (archive / f"b-{sha(b)[:8]}.png").exists()
    text = (tmp_path / "site/other.md").read_text(encoding="utf-8")
    assert f"/archive/c-{sha(c)[:16]}.jpg" in text and f"/archive/b-{sha(b)[:16]}.png" in text
    assert main(["verify", "--config", str(cfg), "--deep", "-q", str(tmp_path / "site")]) == 0


def test_changing_the_template_moves_nothing_until_rekey_which_moves_everything_once(
    manifest_env: str | None, tmp_path: Path, origin: Server, images: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _site(tmp_path, origin, "")  # content-addressed first
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    archive, site = tmp_path / "archive", tmp_path / "site"
    old_objects, old_text = _objects(archive), (site / "post.md").read_text(encoding="utf-8")
    cfg = _config(tmp_path, origin, "{host}/{name}-{sha16}.{ext}")
    before = snapshot(tmp_path)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert snapshot(tmp_path) == before  # nothing re-pointed, nothing stored
    capsys.readouterr()
    assert main(["rekey", "--config", str(cfg), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would move 6 objects and re-point 2 articles" in out, out
    assert snapshot(tmp_path) == before
    assert main(["rekey", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    terrace, b = images["/photos/Caf%C3%A9%20Terrace.JPG"], images["/b.png"]
    new_t = f"img.news.test/cafe-terrace-{sha(terrace)[:16]}.jpg"
    new_b = f"img.news.test/b-{sha(b)[:16]}.png"
    assert _objects(archive) == {new_t, new_t.replace(".jpg", "-320w.webp"), new_b, new_b.replace(".png", "-320w.webp"),
                                 f"photos.test/c-{sha(images['/c.jpg'])[:16]}.jpg",
                                 f"photos.test/c-{sha(images['/c.jpg'])[:16]}-320w.webp"}
    assert not (old_objects & _objects(archive))
    # only the URL spans changed
    assert (site / "post.md").read_text(encoding="utf-8") == old_text.replace(
        f"/archive/{key(terrace, 'jpg')}", f"/archive/{new_t}").replace(f"/archive/{key(b, 'png')}", f"/archive/{new_b}")
    assert all((archive / u.removeprefix("/archive/")).is_file() for u in _archive_urls(site))
    # a second rekey does nothing; a run stores nothing; verify finds everything
    after = snapshot(tmp_path)
    assert main(["rekey", "--config", str(cfg)]) == 0
    assert "nothing to move" in capsys.readouterr().out
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert snapshot(tmp_path) == after
    assert main(["verify", "--config", str(cfg), "--deep", "-q"]) == 0
    # back to content-addressed keys: rekey moves them back
    cfg = _config(tmp_path, origin, "")
    assert main(["rekey", "--config", str(cfg), "-q"]) == 0
    assert _objects(archive) == old_objects
    assert (site / "post.md").read_text(encoding="utf-8") == old_text
    # restore after two rekeys: the original URLs, byte for byte
    assert main(["restore", "--config", str(cfg), "-q"]) == 0
    assert (site / "post.md").read_text(encoding="utf-8") == POST
    assert (site / "other.md").read_text(encoding="utf-8") == OTHER


@pytest.mark.parametrize("point", ["rekey-copied:2", "article-replaced:1", "recorded-article:2", "rekey-recorded:1",
                                   "rekey-deleted:1"])
def test_a_killed_rekey_is_finished_by_the_next_and_articles_never_point_at_a_missing_object(
    tmp_path: Path, origin: Server, images: dict[str, bytes], point: str
) -> None:
    cfg = _site(tmp_path, origin, "")
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    cfg = _config(tmp_path, origin, TEMPLATE)
    archive, site = tmp_path / "archive", tmp_path / "site"
    killed = subprocess.run(
        [sys.executable, "-m", "archiver", "rekey", "--config", str(cfg), "-q"], cwd=ROOT_DIR, capture_output=True,
        text=True, env={**os.environ, "PYTHONPATH": str(ROOT_DIR), "ARCHIVER_CRASH_AT": point}, timeout=120)
    assert killed.returncode == -9, killed.stderr
    assert all((archive / u.removeprefix("/archive/")).is_file() for u in _archive_urls(site))
    assert main(["rekey", "--config", str(cfg), "-q"]) == 0
    urls = _archive_urls(site)
    assert urls and all(u.startswith(f"/archive/{_month()}/") for u in urls), urls
    assert all((archive / u.removeprefix("/archive/")).is_file() for u in urls)
    assert len(_objects(archive)) == 6 and all(k.startswith(_month()) for k in _objects(archive))
    assert main(["rekey", "--config", str(cfg)]) == 0
    assert main(["verify", "--config", str(cfg), "--deep", "-q"]) == 0
    assert main(["restore", "--config", str(cfg), "-q"]) == 0
    assert (site / "post.md").read_text(encoding="utf-8") == POST


def test_rekey_on_seaweedfs_copies_on_the_server_and_deletes_the_old_keys(
    tmp_path: Path, origin: Server, images: dict[str, bytes], s3_env, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = s3_env.make_bucket("rekey")
    public = f"{s3_env.endpoint_url}/{bucket}/"
    storage = (f'[storage]\nbackend = "s3"\nbucket = "{bucket}"\nendpoint_url = "{s3_env.endpoint_url}"\n'
               f'prefix = "media/"\npublic_base_url = "{public}"')
    cfg = _site(tmp_path, origin, "", storage)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    s3 = s3_env.client()
    old = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert len(old) == 6 and all(k.startswith("media/") for k in old)
    cfg = _config(tmp_path, origin, TEMPLATE, storage)
    assert main(["rekey", "--config", str(cfg), "-q"]) == 0
    now = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    terrace = images["/photos/Caf%C3%A9%20Terrace.JPG"]
    k = f"media/{_month()}/cafe-terrace-{sha(terrace)[:8]}.jpg"
    assert len(now) == 6 and not (now & old) and k in now
    head = s3.head_object(Bucket=bucket, Key=k)
    assert head["ContentType"] == "image/jpeg" and head["CacheControl"] == "public, max-age=31536000, immutable"
    assert s3.get_object(Bucket=bucket, Key=k)["Body"].read() == terrace
    text = (tmp_path / "site/post.md").read_text(encoding="utf-8")
    assert f"{public}{k}" in text and "img.news.test" not in text
    assert main(["verify", "--config", str(cfg), "--deep", "-q"]) == 0
    capsys.readouterr()
    assert main(["rekey", "--config", str(cfg)]) == 0
    assert "nothing to move" in capsys.readouterr().out
    assert main(["restore", "--config", str(cfg), "-q"]) == 0
    assert (tmp_path / "site/post.md").read_text(encoding="utf-8") == POST


def test_name_placeholder_matches_the_source_name() -> None:
    assert source_name("http://img.news.test/photos/Caf%C3%A9%20Terrace.JPG") == "cafe-terrace"


def test_dedupe_undo_and_restore_after_a_rekey(tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]) -> None:
    """dedupe --apply, then rekey: --undo puts back each image's URL as it is now (never a deleted key), and
    restore gives back the articles as first written."""
    from tests.support.library import OTHER as LIB_OTHER
    from tests.support.library import PAGE as LIB_PAGE
    from tests.support.library import POST as LIB_POST
    from tests.support.library import build_library

    lib = build_library(tmp_path, origin)
    archived = lib.articles()
    assert main(["dedupe", "--config", str(lib.config), "--apply"]) == 0
    applied = lib.articles()
    assert applied != archived
    with lib.config.open("a", encoding="utf-8") as f:
        f.write(f'\nkey_template = "{TEMPLATE}"\n')
    assert main(["rekey", "--config", str(lib.config), "-q"]) == 0
    with sqlite3.connect(tmp_path / ".archiver/manifest.sqlite3") as db:
        moved = dict(db.execute("SELECT old_key, new_key FROM moved_keys"))
    assert moved and all(new.startswith(_month()) for new in moved.values())

    def now(data: bytes) -> bytes:
        text = data.decode("utf-8")
        for old, new in moved.items():
            text = text.replace(f"/archive/{old}", f"/archive/{new}")
        return text.encode("utf-8")

    assert lib.articles() == {name: now(raw) for name, raw in applied.items()}
    capsys.readouterr()
    assert main(["dedupe", "--config", str(lib.config), "--undo"]) == 0
    assert "undo: 2 articles restored (6 references)" in capsys.readouterr().out
    assert lib.articles() == {name: now(raw) for name, raw in archived.items()}
    archive = tmp_path / "archive"
    for raw in lib.articles().values():
        for url in re.findall(r"/archive/[^\s\"')]+", raw.decode("utf-8")):
            assert (archive / url.removeprefix("/archive/").split("#")[0]).is_file(), url
    assert main(["restore", "--config", str(lib.config), "-q"]) == 0
    originals = {"post.md": LIB_POST, "page.html": LIB_PAGE, "other.md": LIB_OTHER}
    assert lib.articles() == {k: v.encode("utf-8") for k, v in originals.items()}


def test_an_article_with_archive_urls_pasted_by_hand_is_re_pointed_and_stays_unrecorded(
    tmp_path: Path, origin: Server, images: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _site(tmp_path, origin, "")
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    b = images["/b.png"]
    pasted = tmp_path / "site/pasted.md"
    pasted.write_text(f"Copied from another post: ![b](/archive/{key(b, 'png')})\n", encoding="utf-8")
    cfg = _config(tmp_path, origin, TEMPLATE)
    assert main(["rekey", "--config", str(cfg), "-q"]) == 0
    new = f"/archive/{_month()}/b-{sha(b)[:8]}.png"
    assert pasted.read_text(encoding="utf-8") == f"Copied from another post: ![b]({new})\n"
    assert (tmp_path / "archive" / new.removeprefix("/archive/")).read_bytes() == b
    capsys.readouterr()
    assert main(["restore", "--config", str(cfg)]) == 1  # restore cannot give back what it never rewrote
    out = capsys.readouterr().out
    assert "pasted.md: lines 1: references to the archive that this manifest has no record of" in out, out
    assert pasted.read_text(encoding="utf-8") == f"Copied from another post: ![b]({new})\n"


def test_rekey_deletes_no_old_key_an_article_it_could_not_re_point_still_holds(
    tmp_path: Path, origin: Server, images: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    """A hard-linked article (a snapshot with `ln`) is not re-pointed by the span rewrite: rekey says which old keys
    it still holds and deletes nothing; every URL in every article still names an object (found by review: they used
    to dangle). A hand-written `…jpg#center` is re-pointed, its fragment kept."""
    cfg = _site(tmp_path, origin, TEMPLATE)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    archive = tmp_path / "archive"
    post = tmp_path / "site/post.md"
    (tmp_path / "backup").mkdir()
    os.link(post, tmp_path / "backup/post.md")  # the walk skips a file with two links
    urls = sorted(_archive_urls(tmp_path / "site"))
    (tmp_path / "site/hand.md").write_text(f"![x]({urls[0]}#center)\n", encoding="utf-8")
    cfg.write_text(cfg.read_text(encoding="utf-8").replace(TEMPLATE, "{sha256}.{ext}"), encoding="utf-8")
    before = _objects(archive)
    capsys.readouterr()
    assert main(["rekey", "--config", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert "old keys are still used by articles that could not be re-pointed; nothing is deleted" in out
    assert before <= _objects(archive)  # every old object is still there
    for url in _archive_urls(tmp_path / "site"):
        assert (archive / url.removeprefix("/archive/").split("#")[0]).is_file(), url
    hand = (tmp_path / "site/hand.md").read_text(encoding="utf-8")
    assert urls[0] not in hand and hand.endswith("#center)\n"), hand
