"""`archiver export`: every archived image with its source URLs, public URL, renditions, size, type, hash,
first-archived time and a tiny placeholder, as JSON keyed by URL (a Hugo/Jekyll/Hexo data file as is) or CSV;
against a real run (local folder and SeaweedFS), and streamed: memory stays flat for a large manifest."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import sqlite3
import tracemalloc
from pathlib import Path

import pytest
from PIL import Image

from archiver.cli import main
from archiver.manifest.sqlite import Manifest
from archiver.model import Outcome
from tests.support.origin import Server
from tests.support.site import write_config

ORIGINALS = {"/news/a.jpg": "http://img.news.test/news/a.jpg", "/news/b.png": "http://img.news.test/news/b.png?w=1&h=2",
             "/assets/c.jpg": "http://blog.test/assets/c.jpg", "/d.jpg": "http://photos.test/d.jpg"}


def _placeholder(value: str) -> Image.Image:
    assert value.startswith("data:image/webp;base64,") and len(value) < 600
    im = Image.open(io.BytesIO(base64.b64decode(value.split(",", 1)[1])))
    im.load()
    return im


def _check(data: dict[str, dict[str, object]], site: dict[str, bytes], public_base: str) -> None:
    assert sorted(data) == sorted(ORIGINALS.values())
    for path, source in ORIGINALS.items():
        e = data[source]
        body = site[path]
        im = Image.open(io.BytesIO(body))
        assert e["sha256"] == hashlib.sha256(body).hexdigest() and e["bytes"] == len(body)
        assert (e["width"], e["height"]) == im.size
        assert e["content_type"] == ("image/png" if path.endswith(".png") else "image/jpeg")
        assert str(e["url"]).startswith(public_base) and e["sources"] == [source]
        assert str(e["first_archived"]).endswith("Z") and len(str(e["first_archived"])) == 20
        renditions = e["renditions"]
        assert isinstance(renditions, list) and renditions
        for r in renditions:
            assert r["format"] == "webp" and r["content_type"] == "image/webp" and r["width"] <= 320
            assert str(r["url"]).startswith(public_base) and r["bytes"] > 0
        assert str(e["srcset"]).endswith(f"{e['url']} {im.size[0]}w")
        if im.size[0] > 320:
            assert str(e["srcset"]).startswith(f"{renditions[0]['url']} 320w, ")
        ph = _placeholder(str(e["placeholder"]))
        assert max(ph.size) == 16 and abs(ph.size[0] / ph.size[1] - im.size[0] / im.size[1]) < 0.15


def test_export_json_is_a_data_file_keyed_by_source_url(
    tmp_path: Path, origin: Server, site: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, origin)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    out = tmp_path / "hugo" / "data" / "images.json"
    assert main(["export", "--config", str(cfg), str(out)]) == 0
    assert "exported 4 entries (json, keyed by source)" in capsys.readouterr().out
    data = json.loads(out.read_text(encoding="utf-8"))
    _check(data, site, "/archive/")
    # the archive URL the rewritten articles now use is a key too, with --key public
    assert main(["export", "--config", str(cfg), "--key", "public", str(out)]) == 0
    by_public = json.loads(out.read_text(encoding="utf-8"))
    assert sorted(by_public) == sorted(e["url"] for e in data.values())
    article = (tmp_path / "site" / "_posts" / "jekyll.md").read_text(encoding="utf-8")
    assert all(url in article for url in (data[ORIGINALS["/assets/c.jpg"]]["url"], data[ORIGINALS["/d.jpg"]]["url"]))

    # standard output, CSV (one row per source URL), parsed back
    capsys.readouterr()
    assert main(["export", "--config", str(cfg), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out, newline="")))
    assert sorted(r["key"] for r in rows) == sorted(ORIGINALS.values())
    for r in rows:
        e = data[r["key"]]
        assert (r["url"], r["sha256"], int(r["width"]), int(r["height"]), int(r["bytes"]), r["content_type"],
                r["srcset"], r["placeholder"]) == (e["url"], e["sha256"], e["width"], e["height"], e["bytes"],
                                                   e["content_type"], e["srcset"], e["placeholder"])


def test_one_image_under_two_urls_is_listed_under_both(tmp_path: Path, origin: Server) -> None:
    from tests.support.images import make_jpeg

    body = make_jpeg(200, 100, seed=3)
    origin.add("/one.jpg", body, "image/jpeg")
    origin.add("/copy.jpg", body, "image/jpeg")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "p.md").write_text("![a](http://photos.test/one.jpg)\n![b](http://photos.test/copy.jpg)\n")
    cfg = write_config(tmp_path, origin)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    out = tmp_path / "images.json"
    assert main(["export", "--config", str(cfg), str(out)]) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert sorted(data) == ["http://photos.test/copy.jpg", "http://photos.test/one.jpg"]
    a, b = data.values()
    assert a == b and sorted(a["sources"]) == sorted(data)


def test_export_from_an_s3_archive_reads_thumbnails_for_placeholders(
    tmp_path: Path, origin: Server, site: dict[str, bytes], s3_env
) -> None:
    bucket = s3_env.make_bucket("export")
    public = f"https://cdn.example.com/{bucket}/"
    cfg = write_config(tmp_path, origin, storage=(
        f'[storage]\nbackend = "s3"\nbucket = "{bucket}"\nendpoint_url = "{s3_env.endpoint_url}"\n'
        f'public_base_url = "{public}"'))
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    out = tmp_path / "images.json"
    assert main(["export", "--config", str(cfg), str(out)]) == 0
    _check(json.loads(out.read_text(encoding="utf-8")), site, public)


def test_a_missing_thumbnail_leaves_that_placeholder_null_and_says_so(
    tmp_path: Path, origin: Server, site: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, origin)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    victim = next((tmp_path / "archive").rglob("*-320w.webp"))
    victim.unlink()
    capsys.readouterr()
    out = tmp_path / "images.json"
    assert main(["export", "--config", str(cfg), str(out)]) == 0
    assert "1 image has no placeholder" in capsys.readouterr().err
    data = json.loads(out.read_text(encoding="utf-8"))
    assert sum(e["placeholder"] is None for e in data.values()) == 1
    assert main(["export", "--config", str(cfg), "--no-placeholders", str(out)]) == 0
    assert all(e["placeholder"] is None for e in json.loads(out.read_text(encoding="utf-8")).values())


def test_export_streams_a_large_manifest_in_bounded_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n = 20_000
    manifest_path = tmp_path / ".archiver" / "manifest.sqlite3"
    with Manifest.open(manifest_path) as m:  # the schema, as a run creates it
        m.record_url("https://cdn.example.com/dead.jpg", Outcome.DEAD, reason="404 Not Found")
    with sqlite3.connect(manifest_path) as db:  # the rows in one transaction (a run writes the same columns)
        shas = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)]
        db.executemany("INSERT INTO assets (sha256, format, mime, ext, bytes, width, height, key, first_seen) "
                       "VALUES (?, 'jpeg', 'image/jpeg', 'jpg', ?, 1600, 1000, ?, ?)",
                       [(s, 100_000 + i, f"{s[:2]}/{s[2:4]}/{s}.jpg", 1.7e9 + i) for i, s in enumerate(shas)])
        db.executemany("INSERT INTO renditions (asset, width, format, pixel_width, pixel_height, bytes, key) "
                       "VALUES (?, 320, 'webp', 320, 200, 10, ?)", [(s, f"{s[:2]}/{s[2:4]}/{s}-320w.webp") for s in shas])
        db.executemany("INSERT INTO urls (url, status, attempts, asset, first_seen, last_tried) "
                       "VALUES (?, 'archived', 1, ?, 0, 0)",
                       [(f"https://cdn.example.com/images/{i:06d}/photo-with-a-long-name.jpg", s)
                        for i, s in enumerate(shas)])
    cfg = tmp_path / "archiver.toml"
    cfg.write_text('[storage]\nbackend = "local"\npath = "archive"\n', encoding="utf-8")
    out = tmp_path / "images.json"
    tracemalloc.start()
    try:
        assert main(["export", "--config", str(cfg), "--no-placeholders", str(out)]) == 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = out.stat().st_size
    assert size > 15_000_000  # ~ 800 bytes an entry
    assert peak < 3_000_000, peak  # a fraction of the output: entries are written as they are read
    assert len(json.loads(out.read_text(encoding="utf-8"))) == n


HUGO_LAYOUT = """{{ with .Params.cover }}{{ with index site.Data.images . }}<img id="cover" src="{{ .url }}" \
srcset="{{ .srcset }}" width="{{ .width }}" height="{{ .height }}" loading="lazy" \
style="background:url({{ .placeholder | safeURL }}) center/cover">{{ end }}{{ end }}
"""


def test_a_real_hugo_build_uses_the_export_as_its_data_file(tmp_path: Path, origin: Server) -> None:
    """The README's Hugo example, built by Debian's hugo (required, like chromium: CI installs it)."""
    import html
    import re
    import shutil
    import subprocess

    from tests.support.images import make_jpeg

    hugo = shutil.which("hugo")
    assert hugo, "hugo is not installed: apt-get install -y hugo (CI installs it)"
    body = make_jpeg(800, 500, seed=21)
    origin.add("/cover.jpg", body, "image/jpeg")
    site = tmp_path / "hugo"
    (site / "content" / "posts").mkdir(parents=True)
    (site / "layouts" / "_default").mkdir(parents=True)
    (site / "hugo.toml").write_text('baseURL = "https://example.org/"\ntitle = "t"\n', encoding="utf-8")
    (site / "layouts" / "_default" / "single.html").write_text(HUGO_LAYOUT, encoding="utf-8")
    (site / "content" / "posts" / "p.md").write_text(
        "---\ntitle: p\ncover: http://photos.test/cover.jpg\n---\nbody\n", encoding="utf-8")
    (site / "content" / "posts" / "plain.md").write_text("---\ntitle: no cover\n---\nbody\n", encoding="utf-8")
    cfg = write_config(tmp_path, origin, storage='[storage]\nbackend = "local"\npath = "hugo/static/archive"\n'
                                                 'public_base_url = "/archive/"')
    assert main(["run", "--config", str(cfg), "-q", str(site / "content")]) == 0
    # the articles now hold archive URLs: key the data file by them
    assert main(["export", "--config", str(cfg), "--key", "public", str(site / "data" / "images.json")]) == 0
    done = subprocess.run([hugo, "--quiet", "-s", str(site), "-d", str(tmp_path / "public")], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "public" / "posts" / "p" / "index.html").read_text(encoding="utf-8")
    tag = re.search(r'<img id="cover"[^>]*>', page)
    assert tag, page
    attrs = {k: html.unescape(v) for k, v in re.findall(r'([a-z-]+)="([^"]*)"', tag.group())}
    data = json.loads((site / "data" / "images.json").read_text(encoding="utf-8"))
    (url,) = data
    e = data[url]
    assert attrs["src"] == url == e["url"] and url.startswith("/archive/")
    assert (tmp_path / "public" / url.lstrip("/")).read_bytes() == body  # static/ published as is
    assert attrs["srcset"] == e["srcset"] and attrs["srcset"].endswith(f"{url} 800w")
    assert (attrs["width"], attrs["height"]) == ("800", "500")
    assert attrs["style"] == f"background:url({e['placeholder']}) center/cover"
    assert max(_placeholder(str(e["placeholder"])).size) == 16


def test_export_never_overwrites_a_file_it_did_not_write(
    tmp_path: Path, origin: Server, site: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    """A slip of the PATH argument (the manifest, the config, an article, a hand-written data file) is refused with
    exit 2 and the file unchanged; an earlier export, JSON or CSV, is replaced."""
    cfg = write_config(tmp_path, origin)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    article = next((tmp_path / "site").rglob("*.md"))
    data_file = tmp_path / "data.json"
    data_file.write_text('{"mine": 1}\n')
    manifest = next(p for p in tmp_path.rglob("*.sqlite3"))
    for victim in (manifest, cfg, article, data_file):
        before = victim.read_bytes()
        capsys.readouterr()
        assert main(["export", "--config", str(cfg), str(victim)]) == 2
        assert "exists and is not an export archiver wrote" in capsys.readouterr().err
        assert victim.read_bytes() == before
    for name in ("images.json", "images.csv"):
        out = tmp_path / name
        assert main(["export", "--config", str(cfg), str(out)]) == 0
        assert main(["export", "--config", str(cfg), "--key", "public", str(out)]) == 0
    empty = tmp_path / "empty.json"
    empty.write_text("{}\n")
    assert main(["export", "--config", str(cfg), str(empty)]) == 0 and len(json.loads(empty.read_text())) == 4


def test_images_read_from_disk_are_exported_and_stored_under_their_site_path_never_this_machines_folders(
    tmp_path: Path, s3_env, capsys: pytest.CaptureFixture[str]
) -> None:
    """`/images/x.png` under site_root is exported as base_url + /images/x.png (as the README says) and a page
    bundle's image by its path in the site; neither the export nor the stored objects' source-url name the absolute
    folder (user names), while the manifest keeps its file:// URL (no re-archiving)."""
    from tests.support.images import make_jpeg, make_png

    site = tmp_path / "home" / "alice-secret" / "blog"
    (site / "static" / "images").mkdir(parents=True)
    (site / "content" / "p").mkdir(parents=True)
    x, a = make_png(400, 300, seed=71), make_jpeg(500, 300, seed=72)
    (site / "static" / "images" / "x é.png").write_bytes(x)
    (site / "content" / "p" / "a.jpg").write_bytes(a)
    (site / "content" / "p" / "index.md").write_text("![](/images/x%20%C3%A9.png)\n![](a.jpg)\n", encoding="utf-8")
    bucket = s3_env.make_bucket("localkeys")
    cfg = site / "archiver.toml"
    cfg.write_text(f'[articles]\nroot = "content"\nsite_root = "static"\nbase_url = "https://blog.example/"\n'
                   f'[storage]\nbackend = "s3"\nbucket = "{bucket}"\nendpoint_url = "{s3_env.endpoint_url}"\n'
                   f'public_base_url = "https://media.example/"\n[manifest]\npath = ".archiver/m.sqlite3"\n',
                   encoding="utf-8")
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    capsys.readouterr()
    assert main(["export", "--config", str(cfg), "--no-placeholders"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert sorted(data) == ["content/p/a.jpg", "https://blog.example/images/x%20%C3%A9.png"]
    assert data["content/p/a.jpg"]["sources"] == ["content/p/a.jpg"]
    assert main(["export", "--config", str(cfg), "--no-placeholders", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert sorted(r["source_urls"] for r in rows) == sorted(data)
    s3 = s3_env.client()
    metas = [s3.head_object(Bucket=bucket, Key=o["Key"])["Metadata"]["source-url"]
             for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(metas) == 4 and set(metas) == set(data)  # originals and renditions
    assert "alice-secret" not in str(metas) + json.dumps(data)
    with sqlite3.connect(site / ".archiver" / "m.sqlite3") as db:  # the manifest's identity is unchanged
        urls = {u for (u,) in db.execute("SELECT url FROM urls")}
    assert {u.split("/blog/", 1)[1] for u in urls if u.startswith("file://")} == {
        "static/images/x%20%C3%A9.png", "content/p/a.jpg"}
