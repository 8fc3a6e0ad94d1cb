"""Objects deleted from storage after a run (or lost by the server, or found corrupt): verify remembers them in the
manifest, `run` stores them again before it points any article at them, and `verify --repair` re-creates every one:
originals from their source URLs (checked to hash to their key, else reported lost at the source), thumbnails from
their originals. Against SeaweedFS and a local folder."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from archiver.cli import main
from tests.support.images import make_jpeg
from tests.support.origin import Server
from tests.support.seaweed import SeaweedS3
from tests.support.site import JEKYLL, key, write_config


def thumb(k: str) -> str:
    return k.rsplit(".", 1)[0] + "-320w.webp"


class Bucket:
    """The archive as the test sees it: a SeaweedFS bucket (under prefix media/) or a local folder."""

    def __init__(self, tmp_path: Path, origin: Server, s3: SeaweedS3 | None) -> None:
        self.s3, self.root = s3, tmp_path / "archive"
        self.client = s3.client() if s3 is not None else None
        if s3 is None:
            self.prefix, self.config = "", write_config(tmp_path, origin)
        else:
            self.bucket = s3.make_bucket("repair")
            self.prefix = "media/"
            self.config = write_config(tmp_path, origin, storage=(
                f'[storage]\nbackend = "s3"\nbucket = "{self.bucket}"\nendpoint_url = "{s3.endpoint_url}"\n'
                f'prefix = "media/"\npublic_base_url = "{s3.endpoint_url}/{self.bucket}/"'))

    def key(self, data: bytes, ext: str) -> str:
        return self.prefix + key(data, ext)

    def read(self, k: str) -> bytes | None:
        if self.s3 is None:
            return (self.root / k).read_bytes() if (self.root / k).is_file() else None
        try:
            return self.client.get_object(Bucket=self.bucket, Key=k)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def delete(self, k: str) -> None:
        if self.s3 is None:
            (self.root / k).unlink()
        else:
            self.client.delete_object(Bucket=self.bucket, Key=k)

    def write(self, k: str, data: bytes, content_type: str = "image/jpeg") -> None:
        if self.s3 is None:
            (self.root / k).write_bytes(data)
        else:
            self.client.put_object(Bucket=self.bucket, Key=k, Body=data, ContentType=content_type)


@pytest.fixture(params=["s3", "local"])
def archive(request: pytest.FixtureRequest, tmp_path: Path, origin: Server, site: dict[str, bytes]) -> Bucket:
    s3 = request.getfixturevalue("s3_env") if request.param == "s3" else None
    made = Bucket(tmp_path, origin, s3)
    assert main(["run", "--config", str(made.config), "-q"]) == 0
    return made


def lost_marks(tmp_path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(tmp_path / ".archiver/manifest.sqlite3") as db:
        return db.execute("SELECT key, state FROM lost_objects ORDER BY key").fetchall()


def test_verify_repair_recreates_originals_from_their_source_and_thumbnails_from_their_originals(
    tmp_path: Path, origin: Server, site: dict[str, bytes], archive: Bucket, capsys: pytest.CaptureFixture[str]
) -> None:
    a, c, d = site["/news/a.jpg"], site["/assets/c.jpg"], site["/d.jpg"]
    ka, kc, kd = archive.key(a, "jpg"), archive.key(c, "jpg"), archive.key(d, "jpg")
    thumb_c = archive.read(thumb(kc))
    archive.delete(ka)  # deleted, with its thumbnail
    archive.delete(thumb(ka))
    archive.delete(thumb(kc))  # only the thumbnail: re-made from the stored original, not fetched
    archive.write(kd, make_jpeg(30, 20, seed=77))  # corrupt
    hits = {p: origin.hits(p) for p in site}
    capsys.readouterr()

    assert main(["verify", "--config", str(archive.config), "-q", "--repair"]) == 0
    out = capsys.readouterr().out
    assert f"repaired: {ka} (from http://img.news.test/news/a.jpg)" in out
    assert f"repaired: {thumb(ka)} (from http://img.news.test/news/a.jpg)" in out
    assert f"repaired: {thumb(kc)} (from the stored original)" in out
    assert f"repaired: {kd} (from http://photos.test/d.jpg)" in out
    assert "0 could not be repaired" in out
    assert archive.read(ka) == a and archive.read(kd) == d and archive.read(thumb(kc)) == thumb_c
    assert archive.read(thumb(ka)) is not None
    assert origin.hits("/news/a.jpg") == hits["/news/a.jpg"] + 1 and origin.hits("/assets/c.jpg") == hits["/assets/c.jpg"]
    assert lost_marks(tmp_path) == []
    assert main(["verify", "--config", str(archive.config), "-q", "--deep"]) == 0


def test_an_original_whose_source_is_gone_or_changed_is_reported_lost_at_the_source(
    tmp_path: Path, origin: Server, site: dict[str, bytes], archive: Bucket, capsys: pytest.CaptureFixture[str]
) -> None:
    a, d = site["/news/a.jpg"], site["/d.jpg"]
    ka, kd = archive.key(a, "jpg"), archive.key(d, "jpg")
    archive.delete(ka)
    archive.delete(kd)
    origin.add("/news/a.jpg", b"gone", "text/plain", status=404)
    origin.add("/d.jpg", make_jpeg(300, 200, seed=99), "image/jpeg")  # the source now serves another picture
    capsys.readouterr()
    assert main(["verify", "--config", str(archive.config), "-q", "--repair"]) == 1
    out = capsys.readouterr().out
    assert f"lost: {ka}: lost at the source: http://img.news.test/news/a.jpg: 404" in out
    assert f"lost: {kd}: lost at the source: http://photos.test/d.jpg: now serves other bytes" in out
    assert "2 could not be repaired" in out
    assert archive.read(ka) is None and archive.read(kd) is None
    assert lost_marks(tmp_path) == [(k, "missing") for k in sorted((ka, kd))]  # still known to be missing

    # run does not point an article at them: one still using the URL keeps it; those pointing at them are reported
    jekyll = tmp_path / "site/_posts/jekyll.md"
    (tmp_path / "site/_posts/new.md").write_text("![d](http://photos.test/d.jpg)\n", encoding="utf-8")
    assert main(["run", "--config", str(archive.config), "-q"]) == 1
    out = capsys.readouterr().out
    assert (tmp_path / "site/_posts/new.md").read_text(encoding="utf-8") != "![d](http://photos.test/d.jpg)\n"
    new_key = archive.key(origin.content("/d.jpg").body, "jpg")  # type: ignore[union-attr]
    assert new_key in (tmp_path / "site/_posts/new.md").read_text(encoding="utf-8")  # the new picture, stored
    line_d = next(n for n, text in enumerate(JEKYLL.split("\n"), 1) if "photos.test/d.jpg" in text)
    assert f"[failed] {jekyll}:{line_d}" in out and "its object is missing or corrupt in storage" in out
    assert "img.news.test/news/a.jpg: 404" in out


def test_run_stores_again_what_verify_found_missing_before_pointing_articles_at_it(
    tmp_path: Path, origin: Server, site: dict[str, bytes], archive: Bucket, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: run, run --retry-dead, even restore then run pointed the articles straight back at a missing key."""
    a, b = site["/news/a.jpg"], site["/news/b.png"]
    ka, kb = archive.key(a, "jpg"), archive.key(b, "png")
    archive.delete(ka)
    archive.delete(thumb(kb))
    capsys.readouterr()
    assert main(["verify", "--config", str(archive.config), "-q"]) == 1
    assert lost_marks(tmp_path) == sorted([(ka, "missing"), (thumb(kb), "missing")])
    capsys.readouterr()
    assert main(["status", "--config", str(archive.config)]) == 0
    assert "objects missing or corrupt in storage (found by verify): 2;" in capsys.readouterr().out

    # restore, then run: a.jpg's URL is archived, but its object is missing: fetched and stored again
    assert main(["restore", "--config", str(archive.config), "-q"]) == 0
    assert main(["run", "--config", str(archive.config), "-q"]) == 0
    out = capsys.readouterr().out
    assert "2 images missing or corrupt in storage (found by verify) stored again" in out
    assert archive.read(ka) == a and archive.read(thumb(kb)) is not None and lost_marks(tmp_path) == []
    assert main(["verify", "--config", str(archive.config), "-q", "--deep"]) == 0

    # articles already pointing at a lost object: run fetches its source again
    archive.delete(ka)
    assert main(["verify", "--config", str(archive.config), "-q"]) == 1
    capsys.readouterr()
    hits = origin.hits("/news/a.jpg")
    assert main(["run", "--config", str(archive.config), "-q"]) == 0
    assert "1 image missing or corrupt in storage (found by verify) stored again" in capsys.readouterr().out
    assert archive.read(ka) == a and origin.hits("/news/a.jpg") == hits + 1 and lost_marks(tmp_path) == []
    assert main(["run", "--config", str(archive.config), "-q"]) == 0
    assert origin.hits("/news/a.jpg") == hits + 1  # once repaired, nothing more


def test_repair_needs_the_manifest_and_unproven_objects_get_a_checksum(
    tmp_path: Path, origin: Server, site: dict[str, bytes], s3_env: SeaweedS3, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = Bucket(tmp_path, origin, s3_env)
    assert main(["run", "--config", str(archive.config), "-q"]) == 0
    a = site["/news/a.jpg"]
    ka = archive.key(a, "jpg")
    archive.write(ka, a)  # the right bytes, uploaded without a checksum (as archives made before it was kept)
    capsys.readouterr()
    assert main(["verify", "--config", str(archive.config), "-q"]) == 0
    assert "note: 1 object has no checksum in the store" in capsys.readouterr().out
    assert main(["verify", "--config", str(archive.config), "-q", "--repair"]) == 0
    assert f"repaired: {ka} (from the stored original)" in capsys.readouterr().out
    head = s3_env.client().head_object(Bucket=archive.bucket, Key=ka, ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] and archive.read(ka) == a
    assert main(["verify", "--config", str(archive.config), "-q"]) == 0
    out = capsys.readouterr().out
    assert "note: " not in out and "; 0 read because the store keeps no checksum for them" in out

    (tmp_path / ".archiver/manifest.sqlite3").unlink()
    assert main(["verify", "--config", str(archive.config), "-q", "--repair"]) == 2
    assert "no manifest" in capsys.readouterr().err


def test_the_manifest_marks_survive_and_thumbnails_record_their_sha256(
    tmp_path: Path, origin: Server, site: dict[str, bytes]
) -> None:
    cfg = write_config(tmp_path, origin)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    with sqlite3.connect(tmp_path / ".archiver/manifest.sqlite3") as db:
        rows = db.execute("SELECT key, sha256 FROM renditions").fetchall()
    assert len(rows) == 4
    for k, digest in rows:
        assert hashlib.sha256((tmp_path / "archive" / k).read_bytes()).hexdigest() == digest


def test_what_verify_deep_found_stays_recorded_until_proven_and_plain_repair_repairs_it(
    tmp_path: Path, site: dict[str, bytes], archive: Bucket, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: a plain verify cleared the record --deep made (the size still matched), and `verify --repair`
    printed "0 could not be repaired", exit 0, leaving the corrupt thumbnail."""
    t = thumb(archive.key(site["/news/b.png"], "png"))
    good = archive.read(t)
    assert good is not None
    bad = good[:40] + bytes(x ^ 0xFF for x in good[40:80]) + good[80:]  # same size, other bytes

    def verify(*extra: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["verify", "--config", str(archive.config), "-q", *extra])
        return code, capsys.readouterr().out

    archive.write(t, bad, "image/webp")
    if archive.s3 is None:  # a local folder keeps no checksum: a plain verify compares the size, which matches
        assert verify()[0] == 0
    assert verify("--deep")[0] == 1 and lost_marks(tmp_path) == [(t, "corrupt")]
    code, out = verify()
    assert code == 1 and f"corrupt: {t} (thumbnail 320w of " in out and "0 missing, 1 corrupt" in out
    if archive.s3 is None:
        assert "; 1 recorded missing or corrupt read again" in out
    assert lost_marks(tmp_path) == [(t, "corrupt")]  # still recorded: nothing proved it intact
    assert main(["status", "--config", str(archive.config)]) == 0
    assert "objects missing or corrupt in storage (found by verify): 1;" in capsys.readouterr().out

    archive.write(t, good, "image/webp")  # put right by hand: the plain verify reads it, proves it, ends the record
    assert verify()[0] == 0 and lost_marks(tmp_path) == []

    archive.write(t, bad, "image/webp")
    assert verify("--deep")[0] == 1
    code, out = verify("--repair")
    assert code == 0 and f"repaired: {t} (from the stored original)" in out and "0 could not be repaired" in out
    assert archive.read(t) == good and lost_marks(tmp_path) == []
    assert verify("--deep")[0] == 0
