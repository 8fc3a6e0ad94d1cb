"""`archiver verify`: after a real run, every object the manifest and the articles reference is checked in the
local store and in SeaweedFS; a deleted object is missing, a changed one is corrupt (with --deep), each named
with the articles (file:line) that use it, and the exit code says whether all is well."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from archiver.cli import main
from archiver.storage.audit import Target, VerifyStatus, corruption, target_for_key
from tests.support.images import make_jpeg, make_webp
from tests.support.origin import Server
from tests.support.site import HEXO, JEKYLL, key, sha, write_config


def thumb(k: str) -> str:
    return k.rsplit(".", 1)[0] + "-320w.webp"


def lines_with(text: str, needle: str) -> list[int]:
    return [n for n, line in enumerate(text.split("\n"), 1) if needle in line]


def run_and_verify(cfg: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["verify", "--config", str(cfg), "-q", *extra])
    return code, capsys.readouterr().out


@pytest.fixture
def local(tmp_path: Path, origin: Server, site: dict[str, bytes]) -> Path:  # noqa: F811
    cfg = write_config(tmp_path, origin)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    return cfg


def test_all_good_exits_0_with_and_without_deep(local: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_and_verify(local, capsys)
    assert code == 0, out
    # 4 originals + 4 thumbnails; hexo uses a.jpg 3 times and b.png once, jekyll a, c twice and d twice
    assert "8 objects checked (4 originals, 4 thumbnails)" in out and "2 articles scanned, 9 references" in out
    assert "0 missing, 0 corrupt, 0 could not be checked" in out
    code, out = run_and_verify(local, capsys, "--deep")
    assert code == 0 and "verify --deep: 8 objects checked" in out


def test_local_store_missing_and_corrupt_objects_are_reported_with_their_articles(
    tmp_path: Path, local: Path, site: dict[str, bytes], capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    archive = tmp_path / "archive"
    ka, kb, kd = key(site["/news/a.jpg"], "jpg"), key(site["/news/b.png"], "png"), key(site["/d.jpg"], "jpg")
    (archive / ka).unlink()  # deleted
    (archive / kb).write_bytes(b"\x89PNG not really" * 50)  # overwritten
    (archive / thumb(kd)).write_bytes(make_webp(100, 50, seed=3))  # a valid image, but not the thumbnail
    hexo, jekyll = tmp_path / "site/_posts/hexo.md", tmp_path / "site/_posts/jekyll.md"

    code, out = run_and_verify(local, capsys)
    assert code == 1
    uses_a = [f"{hexo}:{n}" for n in lines_with(HEXO, "news/a.jpg")] + [f"{jekyll}:{n}" for n in lines_with(JEKYLL, "news/a.jpg")]
    assert len(uses_a) == 4
    assert f"missing: {ka} (original): not in storage; used by {', '.join(uses_a)}" in out
    # without --deep, sizes are compared (a local folder keeps no checksum): both changed objects are caught
    assert f"corrupt: {kb} (original): it holds 750 bytes, not the {len(site['/news/b.png'])} expected" in out
    assert f"corrupt: {thumb(kd)} (thumbnail 320w of {kd}): it holds " in out
    assert "1 missing, 2 corrupt" in out and f"  {hexo}: lines 4, 5, 9, 11" in out

    code, out = run_and_verify(local, capsys, "--deep")
    assert code == 1
    assert f"corrupt: {kb} (original): its 750 bytes hash to {sha((archive / kb).read_bytes())[:16]}…" in out
    assert f"not to the {sha(site['/news/b.png'])[:16]}… its key names; used by {hexo}:11" in out
    assert f"corrupt: {thumb(kd)} (thumbnail 320w of {kd}): 100x50 pixels, expected 300x200; used by {jekyll}:8" in out
    assert "1 missing, 2 corrupt" in out


def test_paths_limit_the_check_to_those_articles(
    tmp_path: Path, local: Path, site: dict[str, bytes], capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    (tmp_path / "archive" / key(site["/news/b.png"], "png")).unlink()  # only hexo.md uses it
    code, out = run_and_verify(local, capsys, str(tmp_path / "site/_posts/jekyll.md"))
    assert code == 0 and "6 objects checked (3 originals, 3 thumbnails)" in out
    code, out = run_and_verify(local, capsys, str(tmp_path / "site"))
    assert code == 1 and "1 missing" in out


def test_references_are_checked_even_without_a_manifest(
    tmp_path: Path, local: Path, site: dict[str, bytes], capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    (tmp_path / ".archiver" / "manifest.sqlite3").unlink()
    kd = key(site["/d.jpg"], "jpg")
    (tmp_path / "archive" / kd).unlink()
    code, out = run_and_verify(local, capsys, "--deep")
    assert code == 1
    assert "4 objects checked (4 originals, 0 thumbnails)" in out and "note: no manifest at" in out
    assert f"missing: {kd} (original): not in storage; used by {tmp_path / 'site/_posts/jekyll.md'}:8" in out


def test_s3_missing_and_corrupt_objects(
    tmp_path: Path, origin: Server, site: dict[str, bytes], s3_env, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    bucket = s3_env.make_bucket("verify")
    public = f"{s3_env.endpoint_url}/{bucket}/"
    cfg = write_config(
        tmp_path, origin,
        storage=(f'[storage]\nbackend = "s3"\nbucket = "{bucket}"\nendpoint_url = "{s3_env.endpoint_url}"\n'
                 f'prefix = "media/"\npublic_base_url = "{public}"'),
    )
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    code, out = run_and_verify(cfg, capsys, "--deep")
    assert code == 0 and "8 objects checked" in out and "9 references" in out

    s3 = s3_env.client()
    ka, kc = "media/" + key(site["/news/a.jpg"], "jpg"), "media/" + key(site["/assets/c.jpg"], "jpg")
    kd = "media/" + key(site["/d.jpg"], "jpg")
    s3.delete_object(Bucket=bucket, Key=thumb(ka))
    s3.put_object(Bucket=bucket, Key=kc, Body=make_jpeg(64, 64, seed=99), ContentType="image/jpeg")
    s3.put_object(Bucket=bucket, Key=thumb(kc), Body=b"RIFF\x00\x00\x00\x00WEBPjunk", ContentType="image/webp")
    # same size, other bytes, with a checksum the server checked (of the new bytes): the checksum tells
    same_size = bytes(reversed(site["/d.jpg"]))
    s3.put_object(Bucket=bucket, Key=kd, Body=same_size, ContentType="image/jpeg", ChecksumAlgorithm="SHA256")
    code, out = run_and_verify(cfg, capsys)
    assert code == 1 and "1 missing, 3 corrupt" in out  # without a download: size, type and checksum
    assert f"missing: {thumb(ka)} (thumbnail 320w of {ka}): not in storage; used by" in out
    assert f"corrupt: {kc} (original): it holds " in out
    assert f"corrupt: {kd} (original): its content hashes to {sha(same_size)[:16]}…, not to the" in out
    assert "; 0 read because the store keeps no checksum for them" in out  # every other object: its checksum
    # the right bytes, but uploaded without a checksum (as this archiver did before): read, and found intact
    s3.put_object(Bucket=bucket, Key=kd, Body=site["/d.jpg"], ContentType="image/jpeg")
    code, out = run_and_verify(cfg, capsys)
    assert code == 1 and "1 missing, 2 corrupt" in out and f"{kd} (original)" not in out
    assert "note: 1 object has no checksum in the store (stored before checksums were kept, or in parts), so " \
           "verify read them" in out and "; 1 read because the store keeps no checksum for them" in out
    code, out = run_and_verify(cfg, capsys, "--deep")
    jekyll = tmp_path / "site/_posts/jekyll.md"
    uses_c = ", ".join(f"{jekyll}:{n}" for n in lines_with(JEKYLL, "/assets/c.jpg"))
    assert code == 1 and "1 missing, 2 corrupt" in out and f"{kd} (original)" not in out  # --deep read it: intact
    assert f"corrupt: {kc} (original): its " in out and f"its key names; used by {uses_c}" in out
    assert f"corrupt: {thumb(kc)} (thumbnail 320w of {kc}): not a readable image" in out


def test_wrong_credentials_are_one_clear_error(
    tmp_path: Path, origin: Server, s3_env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = s3_env.make_bucket("verify-creds")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-plugh")
    cfg = write_config(tmp_path, origin, storage=(
        f'[storage]\nbackend = "s3"\nbucket = "{bucket}"\nendpoint_url = "{s3_env.endpoint_url}"'))
    (tmp_path / "site").mkdir()
    assert main(["verify", "--config", str(cfg), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "wrong credentials" in err and "plugh" not in err


def test_keys_and_contents() -> None:
    h = "ab" * 32
    assert target_for_key(f"media/ab/ab/{h}.jpg") == Target(f"media/ab/ab/{h}.jpg", h, digest=h)
    assert target_for_key(f"ab/ab/{h}-640w.webp") == Target(f"ab/ab/{h}-640w.webp", h, 640, "webp")
    assert target_for_key(f"cd/ab/{h}.jpg") is None and target_for_key("ab/ab/notahash.jpg") is None
    png = io.BytesIO()
    Image.new("RGB", (320, 200)).save(png, "PNG")
    assert corruption(Target("k", h, 320, "png", (320, 200)), png.getvalue()) is None
    assert corruption(Target("k", h, 320, "webp", (320, 200)), png.getvalue()) == "a png image, expected webp"
    assert corruption(Target("k", h, 100), png.getvalue()) == "320 pixels wide, more than the 100 its key names"
    assert "not a readable image" in corruption(Target("k", h, 320, "png"), png.getvalue()[:60])


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_status_line_on_a_terminal() -> None:
    stream = _Tty()
    status = VerifyStatus(10, enabled=True, stream=stream)
    status.last = 0.0
    status.update(4, {"missing": 1, "corrupt": 0, "unchecked": 0})
    status.clear()
    assert stream.getvalue().startswith("\r\033[Kverify: 4/10 objects · 1 missing · 0 corrupt")
    assert stream.getvalue().endswith("\r\033[K")
    quiet = _Tty()
    VerifyStatus(10, enabled=False, stream=quiet).update(4, {"missing": 0, "corrupt": 0, "unchecked": 0})
    assert quiet.getvalue() == ""


def test_public_asks_every_archive_url_as_a_reader_would(
    tmp_path: Path, origin: Server, site: dict[str, bytes], s3_env, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    """Before: verify checked keys, not URLs: a base URL that does not serve the bucket, a deleted object or a wrong
    Content-Type went unnoticed."""
    bucket = s3_env.make_bucket("public")
    storage = (f'[storage]\nbackend = "s3"\nbucket = "{bucket}"\nendpoint_url = "{s3_env.endpoint_url}"\n'
               f'prefix = "media/"\npublic_base_url = "{s3_env.endpoint_url}/{bucket}/"')
    cfg = write_config(tmp_path, origin, storage=storage)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    # the archive host (loopback here) is reached although the guard allows no private address to anything else
    cfg.write_text(cfg.read_text().replace('allow_networks = ["127.0.0.1/32"]', "allow_networks = []"))
    code, out = run_and_verify(cfg, capsys, "--public")
    assert code == 0 and "; 0 of 4 public URLs do not work" in out

    s3 = s3_env.client()
    ka, kb = "media/" + key(site["/news/a.jpg"], "jpg"), "media/" + key(site["/news/b.png"], "png")
    kd = "media/" + key(site["/d.jpg"], "jpg")
    s3.delete_object(Bucket=bucket, Key=ka)
    s3.put_object(Bucket=bucket, Key=kb, Body=site["/news/b.png"], ContentType="text/html",
                  ChecksumAlgorithm="SHA256")
    s3.put_object(Bucket=bucket, Key=kd, Body=site["/d.jpg"][:1000], ContentType="image/jpeg")
    code, out = run_and_verify(cfg, capsys, "--public")
    public = f"{s3_env.endpoint_url}/{bucket}/"
    hexo, jekyll = tmp_path / "site/_posts/hexo.md", tmp_path / "site/_posts/jekyll.md"
    assert code == 1 and "; 3 of 4 public URLs do not work" in out
    uses_a = [f"{hexo}:{n}" for n in lines_with(HEXO, "news/a.jpg")] + [f"{jekyll}:{n}" for n in lines_with(JEKYLL, "news/a.jpg")]
    assert f"public: {public}{ka}: 404 Not Found; used by {', '.join(uses_a)}" in out
    assert f"public: {public}{kb}: Content-Type text/html, not image/png; used by {hexo}:11" in out
    assert f"public: {public}{kd}: Content-Length 1000, not the {len(site['/d.jpg'])} bytes stored" in out

    # a base URL that is not where the bucket is served: every URL is reported, though every object is stored
    wrong = cfg.read_text().replace(f"{s3_env.endpoint_url}/{bucket}/", f"{s3_env.endpoint_url}/elsewhere/")
    (tmp_path / "site").rename(tmp_path / "kept")
    cfg.write_text(wrong)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "p.md").write_text(f"![x]({s3_env.endpoint_url}/elsewhere/{kd})\n", encoding="utf-8")
    code, out = run_and_verify(cfg, capsys, "--public")
    assert code == 1 and f"public: {s3_env.endpoint_url}/elsewhere/{kd}: 404 Not Found" in out
    assert "; 1 of 1 public URLs do not work" in out


def test_public_with_a_relative_base_and_no_base_url_says_what_it_cannot_check(
    local: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: "5 of 0 public URLs do not work", exit 1: the URLs could not be asked at all (no host), a
    configuration error (exit 2, as the README's exit-code table says), refused before anything is checked."""
    local.write_text(local.read_text().replace('base_url = "http://blog.test/"', 'base_url = ""'))
    capsys.readouterr()
    assert main(["verify", "--config", str(local), "-q", "--public"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert (f"{local}: verify --public: 4 public URLs could not be checked: public_base_url is relative ('/archive/') "
            "and [articles] base_url is empty; set base_url to the site's address") in captured.err
    code, out = run_and_verify(local, capsys)  # without --public: nothing to ask, the objects are checked
    assert code == 0 and "0 missing, 0 corrupt" in out


def test_s3_object_tampered_without_a_checksum_is_read_and_found_corrupt(
    tmp_path: Path, origin: Server, site: dict[str, bytes], s3_env, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    """Before: same length, same type and metadata, no checksum: "0 corrupt", exit 0, and a note "unproven"."""
    bucket = s3_env.make_bucket("tampered")
    cfg = write_config(tmp_path, origin, storage=(
        f'[storage]\nbackend = "s3"\nbucket = "{bucket}"\nendpoint_url = "{s3_env.endpoint_url}"\n'
        f'prefix = "media/"\npublic_base_url = "{s3_env.endpoint_url}/{bucket}/"'))
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    s3, d = s3_env.client(), site["/d.jpg"]
    kd = "media/" + key(d, "jpg")
    head = s3.head_object(Bucket=bucket, Key=kd)
    tampered = d[:100] + bytes(b ^ 0x55 for b in d[100:200]) + d[200:]
    s3.put_object(Bucket=bucket, Key=kd, Body=tampered, ContentType=head["ContentType"], Metadata=head["Metadata"])
    after = s3.head_object(Bucket=bucket, Key=kd, ChecksumMode="ENABLED")
    assert (after["ContentLength"], after["ContentType"], after["Metadata"]) == (
        len(d), head["ContentType"], head["Metadata"]) and "ChecksumSHA256" not in after

    code, out = run_and_verify(cfg, capsys)
    assert code == 1 and "0 missing, 1 corrupt, 0 could not be checked" in out
    assert f"corrupt: {kd} (original): its {len(d)} bytes hash to {sha(tampered)[:16]}…, not to the" in out
    assert "; 1 read because the store keeps no checksum for them" in out  # the 7 others: their checksum, no read
    with sqlite3.connect(tmp_path / ".archiver/manifest.sqlite3") as db:
        assert db.execute("SELECT key, state FROM lost_objects").fetchall() == [(kd, "corrupt")]
    assert main(["run", "--config", str(cfg), "-q"]) == 0  # recorded lost: run stores it again
    assert s3.get_object(Bucket=bucket, Key=kd)["Body"].read() == d
    code, out = run_and_verify(cfg, capsys)
    assert code == 0 and "0 missing, 0 corrupt" in out and "; 0 read because the store keeps no checksum" in out


def test_a_missing_articles_root_is_refused_as_run_refuses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: in an empty folder verify said "0 articles scanned ... 0 missing", exit 0."""
    monkeypatch.chdir(tmp_path)
    for command in ("run", "verify"):
        assert main([command, "-q"]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and "source/_posts: no such file or folder" in captured.err
    assert main(["restore", "-q"]) == 2 and "no manifest" in capsys.readouterr().err
    (tmp_path / "p.md").write_text("text\n", encoding="utf-8")
    assert main(["verify", "-q", "p.md"]) == 0  # articles named as PATHs need no root
