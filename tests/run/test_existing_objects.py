"""An object that exists is not proof: someone with write access to the bucket (or the folder) puts other bytes under
the key an image's SHA-256 maps to, before the run. The run must not count it "already stored" and point the
articles at it: it checks size, type and checksum, and replaces it, or fails clearly when it may not."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from archiver.cli import main
from tests.support.origin import Server
from tests.support.seaweed import SeaweedS3
from tests.support.site import key, write_config

SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>'


def thumb(k: str) -> str:
    return k.rsplit(".", 1)[0] + "-320w.webp"


def s3_config(tmp_path: Path, origin: Server, s3: SeaweedS3, bucket: str) -> Path:
    return write_config(tmp_path, origin, storage=(
        f'[storage]\nbackend = "s3"\nbucket = "{bucket}"\nendpoint_url = "{s3.endpoint_url}"\nprefix = "media/"\n'
        f'public_base_url = "{s3.endpoint_url}/{bucket}/"'))


def test_s3_objects_planted_under_our_keys_are_replaced_before_any_article_points_at_them(
    tmp_path: Path, origin: Server, site: dict[str, bytes], s3_env: SeaweedS3, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = s3_env.make_bucket("planted")
    s3 = s3_env.client()
    a, b, d = site["/news/a.jpg"], site["/news/b.png"], site["/d.jpg"]
    ka, kb, kd = "media/" + key(a, "jpg"), "media/" + key(b, "png"), "media/" + key(d, "jpg")
    # an SVG with a script, served as SVG; a same-size fake with a (true) checksum of its own bytes; a same-size
    # fake without any checksum; and a thumbnail that is not the one its key names
    s3.put_object(Bucket=bucket, Key=ka, Body=SVG, ContentType="image/svg+xml")
    s3.put_object(Bucket=bucket, Key=kb, Body=bytes(reversed(b)), ContentType="image/png", ChecksumAlgorithm="SHA256")
    s3.put_object(Bucket=bucket, Key=kd, Body=bytes(reversed(d)), ContentType="image/jpeg")
    s3.put_object(Bucket=bucket, Key=thumb(kd), Body=b"RIFF\x00\x00\x00\x00WEBPjunk", ContentType="image/webp")
    cfg = s3_config(tmp_path, origin, s3_env, bucket)

    assert main(["run", "--config", str(cfg), "-q"]) == 0
    out = capsys.readouterr().out
    for k, body, mime in ((ka, a, "image/jpeg"), (kb, b, "image/png"), (kd, d, "image/jpeg")):
        got = s3.get_object(Bucket=bucket, Key=k)
        assert got["Body"].read() == body and got["ContentType"] == mime, k
        head = s3.head_object(Bucket=bucket, Key=k, ChecksumMode="ENABLED")
        assert head["ChecksumSHA256"] and head["ContentLength"] == len(body)
    assert s3.get_object(Bucket=bucket, Key=thumb(kd))["Body"].read().startswith(b"RIFF")
    assert b"junk" not in s3.get_object(Bucket=bucket, Key=thumb(kd))["Body"].read()
    assert "replaced 3 objects that held other bytes than their key names:" in out  # the unproven one: stored again
    assert f"  {ka}: it holds {len(SVG)} bytes, not the {len(a)} expected" in out
    assert f"  {kb}: its content hashes to {hashlib.sha256(bytes(reversed(b))).hexdigest()[:16]}…" in out
    assert f"  {thumb(kd)}: it holds 16 bytes" in out
    capsys.readouterr()
    assert main(["verify", "--config", str(cfg), "-q"]) == 0  # plain verify: sizes, types and checksums all agree
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert "objects uploaded 0" in capsys.readouterr().out  # and a second run trusts what it proved


def test_a_planted_object_that_may_not_be_replaced_fails_its_urls_clearly(
    tmp_path: Path, origin: Server, site: dict[str, bytes], s3_env: SeaweedS3, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = s3_env.make_bucket("readonly")
    a = site["/news/a.jpg"]
    ka = "media/" + key(a, "jpg")
    s3_env.client().put_object(Bucket=bucket, Key=ka, Body=SVG, ContentType="image/svg+xml")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_env.reader_key)  # may read the bucket, not write it
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_env.reader_secret)
    cfg = s3_config(tmp_path, origin, s3_env, bucket)
    hexo = tmp_path / "site/_posts/hexo.md"
    before = hexo.read_bytes()

    assert main(["run", "--config", str(cfg), "-q"]) == 1
    out = capsys.readouterr().out
    assert (f"{ka}: the object stored there is not the one its key names (it holds {len(SVG)} bytes, not the "
            f"{len(a)} expected) and cannot be replaced: S3 PUT {ka}") in out
    assert "access denied" in out.lower()
    assert hexo.read_bytes() == before  # no article points at what the bucket holds
    assert s3_env.client().get_object(Bucket=bucket, Key=ka)["Body"].read() == SVG


def test_local_files_planted_under_our_keys_are_replaced(
    tmp_path: Path, origin: Server, site: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    a, c = site["/news/a.jpg"], site["/assets/c.jpg"]
    ka, kc = key(a, "jpg"), key(c, "jpg")
    archive = tmp_path / "archive"
    for k, data in ((ka, bytes(reversed(a))), (kc, SVG), (thumb(kc), b"not a thumbnail")):  # same size for ka
        (archive / k).parent.mkdir(parents=True, exist_ok=True)
        (archive / k).write_bytes(data)
    cfg = write_config(tmp_path, origin)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    out = capsys.readouterr().out
    assert (archive / ka).read_bytes() == a and (archive / kc).read_bytes() == c
    assert (archive / thumb(kc)).read_bytes().startswith(b"RIFF")
    assert "replaced 3 objects that held other bytes than their key names:" in out
    assert f"  {ka}: its content hashes to {hashlib.sha256(bytes(reversed(a))).hexdigest()[:16]}…" in out
    assert f"/archive/{ka}" in (tmp_path / "site/_posts/hexo.md").read_text(encoding="utf-8")
