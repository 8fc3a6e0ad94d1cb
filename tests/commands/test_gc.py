"""`archiver gc` end to end: a real archive made by `archiver run` against the loopback origin, in a local folder and
in SeaweedFS (under a prefix, in a bucket holding other data); a gc killed mid-way, and a real run at the moment a
gc has planned to delete what the run re-uses."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.manifest.connection import release_lock, take_gc_lock, take_lock
from tests.support.library import Library, build_library
from tests.support.origin import Server
from tests.support.paths import ROOT_DIR
from tests.support.seaweed import SeaweedS3
from tests.support.site import HEXO, key, write_config


def thumb(k: str) -> str:
    return k.rsplit(".", 1)[0] + "-320w.webp"


class Archive:
    """The archive as the test sees it: a local folder, or a SeaweedFS bucket under prefix media/ that also holds
    other data (never to be touched)."""

    def __init__(self, tmp_path: Path, origin: Server, s3: SeaweedS3 | None) -> None:
        self.tmp, self.s3, self.root = tmp_path, s3, tmp_path / "archive"
        self.client = s3.client() if s3 is not None else None
        if s3 is None:
            self.prefix, self.base = "", "/archive/"
            self.config = write_config(tmp_path, origin)
        else:
            self.bucket = s3.make_bucket("gc")
            self.prefix, self.base = "media/", f"{s3.endpoint_url}/{self.bucket}/"
            self.config = write_config(tmp_path, origin, storage=(
                f'[storage]\nbackend = "s3"\nbucket = "{self.bucket}"\nendpoint_url = "{s3.endpoint_url}"\n'
                f'prefix = "media/"\npublic_base_url = "{self.base}"'))

    def key(self, data: bytes, ext: str) -> str:
        return self.prefix + key(data, ext)

    def url(self, k: str) -> str:
        return self.base + k

    def has(self, k: str) -> bool:
        if self.s3 is None:
            return (self.root / k).is_file()
        try:
            self.client.head_object(Bucket=self.bucket, Key=k)
            return True
        except self.client.exceptions.ClientError:
            return False

    def write(self, k: str, data: bytes) -> None:
        if self.s3 is None:
            (self.root / k).parent.mkdir(parents=True, exist_ok=True)
            (self.root / k).write_bytes(data)
        else:
            self.client.put_object(Bucket=self.bucket, Key=k, Body=data, ContentType="image/jpeg")

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.tmp / ".archiver" / "manifest.sqlite3")


@pytest.fixture(params=["local", "s3"])
def archive(request: pytest.FixtureRequest, tmp_path: Path, origin: Server, site: dict[str, bytes]) -> Archive:
    s3 = request.getfixturevalue("s3_env") if request.param == "s3" else None
    made = Archive(tmp_path, origin, s3)
    assert main(["run", "--config", str(made.config), "-q"]) == 0
    return made


@pytest.fixture
def local(tmp_path: Path, origin: Server, site: dict[str, bytes]) -> Archive:
    made = Archive(tmp_path, origin, None)
    assert main(["run", "--config", str(made.config), "-q"]) == 0
    return made


def gc(a: Archive, *args: str) -> int:
    return main(["gc", "--config", str(a.config), *args])


def hexo(tmp_path: Path) -> Path:
    return tmp_path / "site" / "_posts" / "hexo.md"


def test_gc_deletes_what_no_article_uses_and_a_later_run_archives_it_again(
    tmp_path: Path, origin: Server, site: dict[str, bytes], archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    b = archive.key(site["/news/b.png"], "png")  # only hexo.md uses b.png; a.jpg is also in jekyll.md
    kept = [archive.key(site["/news/a.jpg"], "jpg"), archive.key(site["/assets/c.jpg"], "jpg"),
            archive.key(site["/d.jpg"], "jpg")]
    foreign = [archive.prefix + "notes/readme.jpg", archive.prefix + key(b"not recorded", "jpg"), "other/x.jpg"]
    for k in foreign:  # in the same folder or bucket, under the prefix or not: not ours, never touched
        archive.write(k, b"someone else's data")
    hexo(tmp_path).unlink()
    capsys.readouterr()

    assert gc(archive) == 0  # the default grace period keeps everything archived a moment ago
    out = capsys.readouterr().out
    assert "nothing deleted" in out and "1 archived within the grace period (7 days)" in out

    assert gc(archive, "--grace", "0", "--dry-run") == 0
    out = capsys.readouterr().out
    size = len(site["/news/b.png"])
    assert "would delete 2 objects of 1 image" in out and f"  {b}  {size} bytes" in out and thumb(b) in out
    assert "3 used by an article on disk" in out and "dry run: nothing deleted" in out
    assert archive.has(b) and archive.has(thumb(b))

    assert gc(archive, "--grace", "0") == 0
    out = capsys.readouterr().out
    assert "deleted 2 objects of 1 image" in out and "freed" in out, out
    assert not archive.has(b) and not archive.has(thumb(b))
    assert all(archive.has(k) and archive.has(thumb(k)) for k in kept)
    assert all(archive.has(k) for k in foreign)
    with archive.db() as db:
        assert db.execute("SELECT COUNT(*) FROM urls WHERE url LIKE '%b.png%'").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM assets").fetchone()[0] == 3
        assert db.execute("SELECT COUNT(*) FROM gc_deletions").fetchone()[0] == 0
    assert main(["verify", "--config", str(archive.config), "-q"]) == 0  # nothing reported lost

    assert gc(archive, "--grace", "0") == 0  # a second gc has nothing to do
    assert "nothing deleted" in capsys.readouterr().out

    hits = origin.hits("/news/b.png")
    hexo(tmp_path).write_bytes(HEXO.encode())  # the article comes back, with its source URLs
    assert main(["run", "--config", str(archive.config), "-q"]) == 0
    assert origin.hits("/news/b.png") == hits + 1  # fetched again, stored again, the article points at it
    assert archive.has(b) and archive.has(thumb(b))
    assert archive.url(b).encode() in hexo(tmp_path).read_bytes()
    assert main(["verify", "--config", str(archive.config), "-q"]) == 0


def test_references_that_keep_an_image(
    tmp_path: Path, site: dict[str, bytes], local: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    b = local.key(site["/news/b.png"], "png")
    # restore gives every article its source URLs back: the next run points them at the archive again, so every
    # image is still in use
    assert main(["restore", "--config", str(local.config), "-q"]) == 0
    capsys.readouterr()
    assert gc(local, "--grace", "0") == 0
    assert "nothing deleted" in capsys.readouterr().out
    assert main(["run", "--config", str(local.config), "-q"]) == 0

    hexo(tmp_path).unlink()
    page = tmp_path / "site" / "page.html"
    # a hand-written srcset naming only b's rendition keeps b (original and renditions go together)
    page.write_text(f'<img src="x.gif" srcset="{local.url(thumb(b))} 320w">\n', encoding="utf-8")
    capsys.readouterr()
    assert gc(local, "--grace", "0") == 0
    assert "nothing deleted" in capsys.readouterr().out and local.has(b)

    # an article holding b's source URL (not yet rewritten): the next run points it at b
    page.write_text('<img src="http://img.news.test/news/b.png?w=1&amp;h=2">\n', encoding="utf-8")
    assert gc(local, "--grace", "0") == 0
    assert "4 used by an article on disk" in capsys.readouterr().out and local.has(b)

    page.write_text("no images here\n", encoding="utf-8")
    assert gc(local, "--grace", "0") == 0
    assert "deleted 2 objects" in capsys.readouterr().out and not local.has(b)


def test_max_delete_and_force(
    tmp_path: Path, site: dict[str, bytes], local: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    b = local.key(site["/news/b.png"], "png")
    hexo(tmp_path).unlink()
    assert gc(local, "--grace", "0", "--max-delete", "1") == 0  # b is 2 objects: over the limit
    out = capsys.readouterr().out
    assert "nothing deleted" in out and "1 over --max-delete this run" in out and local.has(b)
    assert gc(local, "--grace", "0", "--max-delete", "1", "--force") == 0
    assert "deleted 2 objects" in capsys.readouterr().out and not local.has(b)


def test_refuses_to_judge_without_articles(
    tmp_path: Path, site: dict[str, bytes], local: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    for p in (tmp_path / "site" / "_posts").iterdir():
        p.unlink()
    assert gc(local, "--grace", "0") == 1
    assert "no articles found under" in capsys.readouterr().err
    assert local.has(local.key(site["/news/a.jpg"], "jpg"))
    (tmp_path / "archiver.toml").write_text(
        (tmp_path / "archiver.toml").read_text().replace('root = "site"', 'root = "nowhere"'))
    assert gc(local, "--grace", "0") == 2
    assert "nowhere: no such file or folder ([articles] root)" in capsys.readouterr().err
    assert gc(local, "--grace", "-1") == 2
    assert gc(local, "--max-delete", "-5") == 2


def test_an_applied_dedupe_keeps_the_copies_for_undo_unless_told(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    lib: Library = build_library(tmp_path, origin)
    small, rot = lib.archive_url("/b/small.jpg"), lib.archive_url("/c/rot.jpg")
    assert main(["dedupe", "--config", str(lib.config), "--apply"]) == 0
    capsys.readouterr()
    archive = tmp_path / "archive"
    assert main(["gc", "--config", str(lib.config), "--grace", "0"]) == 0
    out = capsys.readouterr().out
    assert "nothing deleted" in out and "2 kept for `dedupe --undo`" in out, out

    after_apply = lib.articles()
    assert main(["gc", "--config", str(lib.config), "--grace", "0", "--forget-undo"]) == 0
    assert "deleted 4 objects of 2 images" in capsys.readouterr().out
    assert not (archive / small.removeprefix("/archive/")).exists()
    assert not (archive / rot.removeprefix("/archive/")).exists()
    assert main(["dedupe", "--config", str(lib.config), "--undo"]) == 0  # nothing left to undo: the articles stay
    assert "undo: 0 articles restored" in capsys.readouterr().out
    assert lib.articles() == after_apply
    assert main(["verify", "--config", str(lib.config), "-q"]) == 0
    assert main(["restore", "--config", str(lib.config), "-q"]) == 0  # restore still gives back every source URL
    assert b"http://photos.test/b/small.jpg" in lib.articles()["post.md"]


def _gc_process(cfg: Path, *args: str, crash: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "archiver", "gc", "--config", str(cfg), "--grace", "0", *args],
        cwd=ROOT_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT_DIR), "ARCHIVER_CRASH_AT": crash},
    )


def _wait_stopped(proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{proc.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("gc did not reach its stop")


def test_a_gc_killed_mid_way_is_finished_by_the_next_and_spares_what_a_run_stored_again(
    tmp_path: Path, site: dict[str, bytes], archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    b = archive.key(site["/news/b.png"], "png")
    hexo(tmp_path).unlink()
    proc = _gc_process(archive.config, crash="gc-recorded:1")  # killed after the records went, before the store
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert archive.has(b)
    with archive.db() as db:
        assert db.execute("SELECT COUNT(*) FROM gc_deletions").fetchone()[0] == 2
    assert main(["verify", "--config", str(archive.config), "-q"]) == 0  # no record of b: nothing lost
    assert gc(archive, "--grace", "0") == 0
    assert "finished the deletion of 2 objects an interrupted gc left" in capsys.readouterr().out
    assert not archive.has(b) and not archive.has(thumb(b))

    # killed again the same way; then a run stores b again (its article is back) before the next gc
    hexo(tmp_path).write_bytes(HEXO.encode())
    assert main(["run", "--config", str(archive.config), "-q"]) == 0
    hexo(tmp_path).unlink()
    proc = _gc_process(archive.config, crash="gc-recorded:1")
    proc.communicate(timeout=120)
    hexo(tmp_path).write_bytes(HEXO.encode())
    assert main(["run", "--config", str(archive.config), "-q"]) == 0
    assert gc(archive, "--grace", "0") == 0
    out = capsys.readouterr().out
    assert "finished the deletion" not in out and "nothing deleted" in out
    assert archive.has(b) and archive.has(thumb(b))
    with archive.db() as db:
        assert db.execute("SELECT COUNT(*) FROM gc_deletions").fetchone()[0] == 0
    assert main(["verify", "--config", str(archive.config), "-q"]) == 0


def test_a_run_that_reuses_an_image_gc_planned_to_delete_wins(
    tmp_path: Path, origin: Server, site: dict[str, bytes], local: Archive
) -> None:
    b = local.key(site["/news/b.png"], "png")
    hexo(tmp_path).unlink()
    proc = _gc_process(local.config, crash="gc-planned:1:stop")  # b planned for deletion; stopped there
    try:
        _wait_stopped(proc)
        # meanwhile a new article uses b's source URL, and a real run points it at the archived b (no fetch)
        new = tmp_path / "site" / "_posts" / "new.md"
        new.write_text("![b](http://img.news.test/news/b.png?w=1&h=2)\n", encoding="utf-8")
        hits = origin.hits("/news/b.png")
        assert main(["run", "--config", str(local.config), "-q"]) == 0
        assert local.url(b) in new.read_text(encoding="utf-8") and origin.hits("/news/b.png") == hits
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "nothing deleted" in out and "4 used by an article on disk" in out, out
    assert "1 image planned for deletion was found in use when checked again under the lock: kept" in out
    assert local.has(b) and local.has(thumb(b))
    assert main(["verify", "--config", str(local.config), "-q"]) == 0


def test_a_run_started_during_a_gc_batch_waits_for_it(tmp_path: Path, local: Archive) -> None:
    manifest = tmp_path / ".archiver" / "manifest.sqlite3"
    gc_fd = take_gc_lock(manifest)
    fd = take_lock(manifest)  # as a gc batch holds it
    threading.Timer(1.0, release_lock, (fd,)).start()
    started = time.monotonic()
    try:
        assert main(["run", "--config", str(local.config), "-q"]) == 0  # waited, then ran
    finally:
        release_lock(gc_fd)
    assert time.monotonic() - started >= 0.9
    fd = take_lock(manifest)  # no gc: a second command is refused at once, as before
    try:
        assert main(["run", "--config", str(local.config), "-q"]) == 2
    finally:
        release_lock(fd)


def test_an_article_the_finder_cannot_read_and_a_pending_write_keep_what_they_name(
    tmp_path: Path, site: dict[str, bytes], local: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    b = local.key(site["/news/b.png"], "png")
    d = local.key(site["/d.jpg"], "jpg")
    hexo(tmp_path).unlink()
    cfg = tmp_path / "archiver.toml"
    cfg.write_text(cfg.read_text().replace('base_url = "http://blog.test/"',
                                           'base_url = "http://blog.test/"\nmax_refs = 2'))
    # more references than max_refs: the finder refuses it; its bytes are searched for the keys instead
    (tmp_path / "site" / "big.md").write_text(
        "".join(f"![x{i}](http://other.test/{i}.jpg)\n" for i in range(5)) + f"![b]({local.url(b)})\n",
        encoding="utf-8")
    (tmp_path / "site" / "_posts" / "jekyll.md").unlink()  # d (and c) now unused, but d is in a pending write
    with local.db() as db:
        db.execute("INSERT INTO pending_writes (path, sha256_before, sha256_after, reason, replacements, started_at) "
                   "VALUES (?, 'x', 'y', 'archive', ?, 0)",
                   (str(tmp_path / "site" / "gone.md"), f'[[[0, 5, "http://photos.test/d.jpg", "{local.url(d)}", '
                                                        '"http://photos.test/d.jpg"]]]'))
    capsys.readouterr()
    assert gc(local, "--grace", "0") == 0
    out = capsys.readouterr().out
    assert "1 used by an article on disk" in out and "1 named by an article write an interrupted command" in out, out
    assert "deleted 4 objects of 2 images" in out  # a.jpg and c.jpg
    assert local.has(b) and local.has(d) and local.has(thumb(d))


def test_an_image_an_unfinished_rekey_is_moving_is_kept(
    tmp_path: Path, site: dict[str, bytes], local: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rekey killed after re-pointing the articles but before recording the new keys leaves the old keys recorded
    and no article using them: gc must not delete what the rekey is still moving."""
    import hashlib

    b = local.key(site["/news/b.png"], "png")
    sha = hashlib.sha256(site["/news/b.png"]).hexdigest()
    hexo(tmp_path).unlink()  # nothing uses b.png any more (as after the rekey re-pointed it)
    with local.db() as db:
        db.execute("INSERT INTO rekey_moves (old_key, new_key, asset, width, format, state) "
                   "VALUES (?, ?, ?, NULL, NULL, 'repointed')", (b, "moved/" + b, sha))
    assert gc(local, "--grace", "0") == 0
    out = capsys.readouterr().out
    assert "1 being moved by an unfinished `archiver rekey`" in out and local.has(b), out
    with local.db() as db:
        db.execute("DELETE FROM rekey_moves")
    assert gc(local, "--grace", "0") == 0 and not local.has(b)


def test_gc_keeps_what_articles_hold_in_forms_and_places_its_walk_does_not_read(
    tmp_path: Path, origin: Server, site: dict[str, bytes], local: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by review, each used to delete an image an article still shows: the public base URL changed in the
    config before the articles were re-pointed; a recorded article in a hidden folder the walk skips; a form the
    finder does not read as an image (`…png#center` in a link)."""
    b = local.key(site["/news/b.png"], "png")
    text = hexo(tmp_path).read_text(encoding="utf-8")
    assert local.url(b) in text
    cfg_text = local.config.read_text(encoding="utf-8")
    local.config.write_text(cfg_text.replace('public_base_url = "/archive/"',
                                             'public_base_url = "https://cdn.example.com/media/"'), encoding="utf-8")
    assert gc(local, "--grace", "0") == 0
    assert local.has(b) and local.has(thumb(b)), capsys.readouterr().out
    local.config.write_text(cfg_text, encoding="utf-8")
    # the only user of b.png moves to a hidden folder (recorded by a run there), another keeps a hand-written link
    hidden = tmp_path / "site" / ".drafts"
    hidden.mkdir()
    moved = hidden / "draft.md"
    moved.write_text("![b](http://img.news.test/news/b.png)\n", encoding="utf-8")
    assert main(["run", "--config", str(local.config), "-q", str(moved)]) == 0
    assert local.url(b) in moved.read_text(encoding="utf-8")  # rewritten, so recorded
    hexo(tmp_path).unlink()
    assert gc(local, "--grace", "0") == 0 and local.has(b)
    moved.unlink()
    (tmp_path / "site" / "note.md").write_text(f"see [the chart]({local.url(b)}#center)\n", encoding="utf-8")
    assert gc(local, "--grace", "0") == 0 and local.has(b)
    (tmp_path / "site" / "note.md").unlink()
    capsys.readouterr()
    assert gc(local, "--grace", "0") == 0 and not local.has(b)  # nothing holds it now: it goes
