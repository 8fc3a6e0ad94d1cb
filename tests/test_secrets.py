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
    (tmp_path / "site").mkdir()  # something to fetch: S3 is checked before the first fetch
    (tmp_path / "site" / "a.md").write_text("![a](http://img.test/a.jpg)\n", encoding="utf-8")
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


# --- every spelling, every output ----------------------------------------------------------------------------

MARKDOWN = f"""\
![m1](http://img.test/m1.jpg?w=1\\&token\\={SECRET})
![m2](<http://img.test/m2.jpg?api_key={SECRET}>)
![m3](http://img.test/m3.jpg?%74oken={SECRET})
![m4](http://editor:{SECRET}&#64;img.test/m4.jpg)
![m5](http://img.test/m5.jpg?w=1&amp;sig={SECRET})
![m6][r6]
![m7](http://img.test/m7.jpg#access_token={SECRET})
![m8](http://img.test/m8.jpg;jsessionid={SECRET})
![m9](http://img.test/m9.jpg?subscription-key={SECRET})
![m10](http://img.test/m10.jpg?X-Goog-Signature={SECRET}&X-Goog-Date=20260101)
![m11](http://img.test/m11.jpg?apiKey={SECRET}&password={SECRET}&auth={SECRET}&PHPSESSID={SECRET})
![nested](http://img.test/redirect-to?url=http%3A%2F%2Fimg.test%2Fr1.jpg%3Ftoken%3D{SECRET})
![dead](http://img.test/gone.jpg?password={SECRET})
![refused](http://editor:{SECRET}&#64;127.0.0.2/c.jpg)
![redirect-refused](http://img.test/redirect-to?url=http%3A%2F%2Feditor%3A{SECRET}%40127.0.0.2%2Fx.jpg)

[r6]: http://img.test/m6.jpg?Signature={SECRET}&Key-Pair-Id=K
"""
HTML = f"""\
<p><img src="http://img.test/h1.jpg?w=1&amp;token={SECRET}"></p>
<p><img src="http://img.test/h2.jpg?&#116;oken={SECRET}"></p>
<p><img src="http://editor:{SECRET}&#64;img.test/h3.jpg"></p>
<p><img src=" http://img.test/h4.jpg?X-Api-Key={SECRET} "></p>
<p><img src="http:\\\\editor:{SECRET}@img.test\\h5.jpg"></p>
<p><img src="//editor:{SECRET}@img.test/h6.jpg"></p>
<p><img src="http://img.test/h7.jpg?key={SECRET}"></p>
<p><img src="http://img.test/h8.jpg?X-Amz-Credential={SECRET}&amp;X-Amz-Signature={SECRET}&amp;w=300"></p>
<p><img srcset="http://img.test/h9.jpg?sig={SECRET} 2x"></p>
<p><img src="http://img.test/h10.jpg?session_id={SECRET}"></p>
<p><img src="http://img.test/h11.jpg?tok
en={SECRET}&amp;x=1"></p>
<img src="http://img.test/h12.jpg?a=1&amp;
  sig={SECRET}">
"""
IMAGES = ["/m1.jpg", "/m2.jpg", "/m3.jpg", "/m4.jpg", "/m5.jpg", "/m6.jpg", "/m7.jpg", f"/m8.jpg;jsessionid={SECRET}",
          "/m9.jpg", "/m10.jpg", "/m11.jpg", "/r1.jpg"] + [f"/h{i}.jpg" for i in range(1, 13)]


def _spelling_site(tmp_path: Path, origin: Server, storage: str) -> Path:
    for i, path in enumerate(IMAGES):
        origin.add(path, make_jpeg(90 + i, 60, seed=100 + i), "image/jpeg")
    origin.add("/gone.jpg", b"", "text/plain", status=404)
    site = tmp_path / "site"
    site.mkdir()
    (site / "a.md").write_text(MARKDOWN, encoding="utf-8")
    (site / "b.html").write_text(HTML, encoding="utf-8")
    cfg = tmp_path / "archiver.toml"
    cfg.write_text(
        f'[articles]\nroot = "site"\nbase_url = "http://blog.test/"\n'
        f'[fetch]\nallow_networks = ["127.0.0.1/32"]\nconnect_to = {{ "img.test" = "127.0.0.1:{origin.port}" }}\n'
        f'retries = 0\n{storage}\n[dedupe]\nreport = "report/dedupe.html"\n',
        encoding="utf-8",
    )
    return cfg


def _no_secret_in_files(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_every_spelling_of_a_secret_stays_out_of_every_output(
    tmp_path: Path, origin: Server, s3_env, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = s3_env.make_bucket("spellings")
    cfg = _spelling_site(tmp_path, origin, f'[storage]\nbackend = "s3"\nbucket = "{bucket}"\n'
                                           f'endpoint_url = "{s3_env.endpoint_url}"')
    site = tmp_path / "site"
    assert main(["run", "--config", str(cfg), "--dry-run", "-v"]) == 0
    dry = capsys.readouterr()
    assert "-![m1]" in dry.out and "***" in dry.out  # the diff is shown, its secrets masked
    assert main(["run", "--config", str(cfg), "-v"]) == 0
    run = capsys.readouterr()
    for command in (["status"], ["verify"], ["restore", "--dry-run"], ["dedupe"]):
        main([*command, "--config", str(cfg), "-v"])
    rest = capsys.readouterr()
    outputs = dry.out + dry.err + run.out + run.err + rest.out + rest.err
    assert SECRET not in outputs
    assert outputs.count("[dead]") >= 1 and outputs.count("[rejected]") >= 2  # reported, redacted

    import sqlite3

    with sqlite3.connect(tmp_path / ".archiver" / "manifest.sqlite3") as db:
        archived = db.execute("SELECT COUNT(*) FROM urls WHERE status = 'archived'").fetchone()[0]
        reasons = " ".join(r[0] for r in db.execute("SELECT reason FROM urls WHERE reason IS NOT NULL"))
        kept = db.execute("SELECT COUNT(*) FROM replacements WHERE original != ''").fetchone()[0]
    assert archived == len(IMAGES) and kept == 0  # every image archived, no span with a secret kept
    assert "redirect to http://***@127.0.0.2/x.jpg" in reasons
    _no_secret_in_files(tmp_path / ".archiver")  # the manifest, its WAL if any, the lock
    _no_secret_in_files(tmp_path / "report")  # the dedupe report, its data pages and JSON
    s3 = s3_env.client()
    for obj in s3.list_objects_v2(Bucket=bucket)["Contents"]:
        assert SECRET not in str(s3.head_object(Bucket=bucket, Key=obj["Key"])["Metadata"])
    # the articles point at the archive, except where nothing was archived
    assert (site / "a.md").read_text(encoding="utf-8").count(SECRET) == 3  # dead, refused, redirect refused
    assert SECRET not in (site / "b.html").read_text(encoding="utf-8")


def test_the_manifest_and_its_wal_hold_no_secret_when_a_run_is_killed(tmp_path: Path, origin: Server) -> None:
    """A run killed after its first article is recorded leaves the WAL beside the manifest: neither file (nor the
    pages SQLite freed) ever held a secret; the run that finishes the job adds none."""
    import os
    import subprocess
    import sys

    from tests.support.paths import ROOT_DIR

    cfg = _spelling_site(tmp_path, origin, '[storage]\npath = "archive"')
    env = {**os.environ, "PYTHONPATH": str(ROOT_DIR), "ARCHIVER_CRASH_AT": "recorded-article:1"}
    killed = subprocess.run([sys.executable, "-m", "archiver", "run", "--config", str(cfg), "-v"], cwd=ROOT_DIR,
                            env=env, capture_output=True, timeout=120)
    assert killed.returncode == -9, killed.stderr[-2000:]
    wal = tmp_path / ".archiver" / "manifest.sqlite3-wal"
    assert wal.exists() and wal.stat().st_size > 0
    _no_secret_in_files(tmp_path / ".archiver")
    assert SECRET.encode() not in killed.stdout + killed.stderr
    env.pop("ARCHIVER_CRASH_AT")
    done = subprocess.run([sys.executable, "-m", "archiver", "run", "--config", str(cfg), "-v"], cwd=ROOT_DIR,
                          env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert SECRET.encode() not in done.stdout + done.stderr
    _no_secret_in_files(tmp_path / ".archiver")
    _no_secret_in_files(tmp_path / "archive")
