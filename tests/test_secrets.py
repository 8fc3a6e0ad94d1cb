"""No secret in logs, reports, the manifest, object metadata or exceptions (a recognisable fake secret)."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.cli import main
from tests.support.images import make_jpeg
from tests.support.origin import Server

SECRET = "SEKRET-7f3a9c"


def _all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


def test_a_fake_secret_never_leaves_the_article(
    tmp_path: Path, origin: Server, s3_env, capsys: pytest.CaptureFixture[str]
) -> None:
    origin.add("/a.jpg", make_jpeg(200, 100, seed=1), "image/jpeg")
    origin.add("/b.jpg", make_jpeg(200, 100, seed=2), "image/jpeg")
    origin.add("/gone.jpg", b"", "text/plain", status=404)
    site = tmp_path / "site"
    site.mkdir()
    article = (
        f"![userinfo](http://editor:{SECRET}@img.test/a.jpg)\n"
        f"![signed](http://img.test/b.jpg?X-Amz-Signature={SECRET}&token={SECRET})\n"
        f"![dead](http://editor:{SECRET}@img.test/gone.jpg)\n"
        f"![refused](http://editor:{SECRET}@127.0.0.2/c.jpg)\n"
    )
    (site / "a.md").write_text(article, encoding="utf-8")
    bucket = s3_env.make_bucket("secrets")
    cfg = tmp_path / "archiver.toml"
    cfg.write_text(
        f'[fetch]\nallow_networks = ["127.0.0.1/32"]\nconnect_to = {{ "img.test" = "127.0.0.1:{origin.port}" }}\n'
        f'retries = 0\n[storage]\nbackend = "s3"\nbucket = "{bucket}"\nendpoint_url = "{s3_env.endpoint_url}"\n',
        encoding="utf-8",
    )
    assert main(["run", str(site), "--config", str(cfg), "-v"]) == 0
    assert main(["status", "--config", str(cfg)]) == 0
    out = capsys.readouterr()
    assert "[dead]" in out.out and "[rejected]" in out.out and "***" in out.out  # reported, redacted
    assert SECRET not in out.out + out.err

    manifest = _all_bytes(tmp_path / ".archiver")
    assert b"img.test" in manifest and SECRET.encode() not in manifest

    s3 = s3_env.client()
    objects = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert len(objects) == 4  # two originals, two thumbnails
    for obj in objects:
        meta = s3.head_object(Bucket=bucket, Key=obj["Key"])["Metadata"]
        assert "img.test" in meta["source-url"] and SECRET not in str(meta)
    # the article itself keeps what the author wrote where nothing was archived
    text = (site / "a.md").read_text(encoding="utf-8")
    assert text.count(SECRET) == 2 and "/gone.jpg" in text and "127.0.0.2" in text


def test_wrong_secret_key_is_not_echoed(tmp_path: Path, s3_env, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    (tmp_path / "site").mkdir()
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[storage]\nbackend = "s3"\nbucket = "whatever-bucket"\nendpoint_url = "{s3_env.endpoint_url}"\n'
    )
    assert main(["run", str(tmp_path / "site"), "--config", str(cfg), "-v"]) == 2
    out = capsys.readouterr()
    assert "credentials" in out.err or "access denied" in out.err
    assert SECRET not in out.out + out.err


SECRET_KINDS = {
    "userinfo": f"http://editor:{SECRET}@img.test/u.jpg",
    "x-amz": f"http://img.test/s.jpg?X-Amz-Credential={SECRET}&X-Amz-Signature={SECRET}&w=300",
    "token": f"http://img.test/t.jpg?size=l&token={SECRET}",
    "api_key": f"http://img.test/k.jpg?api_key={SECRET}",
    "apiKey": f"http://img.test/k2.jpg?apiKey={SECRET}",
    "sig": f"http://img.test/g.jpg?sig={SECRET}",
    "password": f"http://img.test/p.jpg?password={SECRET}",
    "session": f"http://img.test/j.jpg?PHPSESSID={SECRET}",
}


def test_each_kind_of_secret_is_redacted_identically_in_logs_manifest_and_metadata(
    tmp_path: Path, origin: Server, s3_env, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    for i, path in enumerate(("/u.jpg", "/s.jpg", "/t.jpg", "/k.jpg", "/k2.jpg", "/g.jpg", "/p.jpg", "/j.jpg")):
        origin.add(path, make_jpeg(120, 90, seed=40 + i), "image/jpeg")
    site = tmp_path / "site"
    site.mkdir()
    (site / "a.md").write_text("".join(f"![{k}]({u})\n" for k, u in SECRET_KINDS.items()), encoding="utf-8")
    bucket = s3_env.make_bucket("secret-kinds")
    cfg = tmp_path / "archiver.toml"
    cfg.write_text(
        f'[fetch]\nallow_networks = ["127.0.0.1/32"]\nconnect_to = {{ "img.test" = "127.0.0.1:{origin.port}" }}\n'
        f'retries = 0\n[storage]\nbackend = "s3"\nbucket = "{bucket}"\nendpoint_url = "{s3_env.endpoint_url}"\n',
        encoding="utf-8",
    )
    assert main(["run", str(site), "--config", str(cfg), "-v"]) == 0
    out = capsys.readouterr()
    logged = {line.split()[1] for line in out.err.splitlines() if line.startswith("archived ")}
    with sqlite3.connect(tmp_path / ".archiver" / "manifest.sqlite3") as db:
        stored = {row[0].split("#sha256=")[0] for row in db.execute("SELECT url FROM urls")}
    s3 = s3_env.client()
    metadata = {
        s3.head_object(Bucket=bucket, Key=o["Key"])["Metadata"]["source-url"]
        for o in s3.list_objects_v2(Bucket=bucket)["Contents"]
    }
    assert len(stored) == len(SECRET_KINDS)
    assert logged == stored == metadata  # one rule: the same redacted form everywhere
    assert all("***" in url for url in stored) and "w=300" in " ".join(stored)
    assert SECRET not in out.out + out.err + " ".join(stored | metadata)
