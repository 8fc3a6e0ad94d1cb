"""End to end: the CLI against a real loopback origin and real storage (a folder, and SeaweedFS S3).

Article hosts such as ``img.news.test`` are served by the loopback origin through
``[fetch] connect_to``, exactly as the demo does; nothing here mocks aiohttp or boto3.
"""

from __future__ import annotations

import io
import sqlite3
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from archiver.cli import main
from tests.support.images import make_jpeg
from tests.support.origin import Server
from tests.support.paths import FIXTURES_DIR, ROOT_DIR
from tests.support.postgres import manifest_db
from tests.support.site import HEXO, JEKYLL, key, sha, snapshot, write_config

FIXTURES = FIXTURES_DIR / "images"
def expected_article(raw: str, mapping: dict[str, str]) -> bytes:
    for old, new in mapping.items():
        raw = raw.replace(old, new)
    return raw.encode("utf-8")


def test_run_archives_rewrites_and_second_run_changes_nothing(
    manifest_env: str | None, tmp_path: Path, origin: Server, site: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, origin)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    out = capsys.readouterr().out
    assert "4 archived" in out and "0 failed" in out

    # every unique URL was fetched once, although a.jpg is used by both articles and four times
    for path in site:
        assert origin.hits(path) == 1, path
    assert origin.hits("/never.jpg") == 0  # inside a code fence

    a, b, c, d = (site[p] for p in ("/news/a.jpg", "/news/b.png", "/assets/c.jpg", "/d.jpg"))
    ka, kb, kc, kd = key(a, "jpg"), key(b, "png"), key(c, "jpg"), key(d, "jpg")
    hexo = (tmp_path / "site/_posts/hexo.md").read_bytes()
    assert hexo == expected_article(
        HEXO,
        {"http://img.news.test/news/a.jpg": f"/archive/{ka}", "http://img.news.test/news/b.png?w=1&amp;h=2": f"/archive/{kb}"},
    )
    jekyll = (tmp_path / "site/_posts/jekyll.md").read_bytes()
    assert jekyll == expected_article(
        JEKYLL,
        {
            "http://img.news.test/news/a.jpg": f"/archive/{ka}",
            "&image /assets/c.jpg": f"&image /archive/{kc}",
            "http://photos.test/d.jpg": f"/archive/{kd}",
            ", /assets/c.jpg 2x": f", /archive/{kc} 2x",
        },
    )

    archive = tmp_path / "archive"
    for body, k in ((a, ka), (b, kb), (c, kc), (d, kd)):
        assert (archive / k).read_bytes() == body  # originals stored unchanged
        thumb = Image.open(archive / (k.rsplit(".", 1)[0] + "-320w.webp"))
        assert thumb.format == "WEBP" and thumb.width == min(320, Image.open(io.BytesIO(body)).width)

    before = snapshot(tmp_path)
    hits = origin.total_hits()
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    out = capsys.readouterr().out
    assert origin.total_hits() == hits  # no request at all
    assert snapshot(tmp_path) == before  # no byte and no mtime changed: no write, no upload
    assert "0 rewritten" in out and "objects uploaded 0" in out

    assert main(["status", "--config", str(cfg)]) == 0
    status = capsys.readouterr().out
    assert "4 archived, 0 dead" in status and "articles rewritten: 2" in status


def test_failures_are_reported_left_in_place_and_retried_by_a_rerun(
    manifest_env: str | None, tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    good = make_jpeg(320, 240, seed=21)
    origin.add("/ok.jpg", good, "image/jpeg")
    origin.add("/later.jpg", b"busy", "text/plain", status=503)
    posts = tmp_path / "site"
    posts.mkdir()
    lines = [
        "# Faults",
        "![ok](http://img.news.test/ok.jpg)",
        "![gone](http://img.news.test/404)",
        "![html](http://img.news.test/html)",
        "![flaky](http://img.news.test/fail/2/e2e)",
        "![later](http://img.news.test/later.jpg)",
        "![bomb](http://img.news.test/bomb)",
        "![root relative, no base](/relative.jpg)",
        "![script](javascript:alert(1))",
    ]
    text = "\n".join(lines) + "\n"
    (posts / "faults.md").write_text(text, encoding="utf-8")
    cfg = write_config(tmp_path, origin)
    cfg.write_text(cfg.read_text().replace('base_url = "http://blog.test/"', 'base_url = ""'))

    assert main(["run", "--config", str(cfg), "-q"]) == 1  # /later.jpg failed after every retry
    out = capsys.readouterr().out
    article = str(posts / "faults.md")
    assert f"[dead] {article}:3  http://img.news.test/404  — 404" in out
    assert f"{article}:4  http://img.news.test/html  — not an image" in out
    assert f"[failed] {article}:6  http://img.news.test/later.jpg" in out
    assert f"{article}:7  http://img.news.test/bomb" in out and "max_pixels" in out
    assert f"{article}:8  /relative.jpg  — relative URL" in out
    assert f"{article}:9  javascript:alert(1)" in out
    assert origin.hits("/later.jpg") == 3  # first attempt + 2 retries
    assert origin.hits("/404") == 1  # never retried

    result = (posts / "faults.md").read_text(encoding="utf-8")
    assert f"/archive/{key(good, 'jpg')}" in result
    assert f"/archive/{key(make_jpeg(640, 480, seed=1), 'jpg')}" in result  # /fail/2 recovered on retry
    for kept in lines[2:4] + lines[5:]:
        assert kept in result  # every failed reference keeps its original URL

    origin.add("/later.jpg", make_jpeg(300, 300, seed=22), "image/jpeg")
    assert main(["run", "--config", str(cfg), "-q"]) == 0  # dead links are reported, not an error
    assert origin.hits("/404") == 1 and origin.hits("/ok.jpg") == 1  # final and archived URLs not refetched
    assert "http://img.news.test/later.jpg" not in (posts / "faults.md").read_text(encoding="utf-8")


def test_dry_run_prints_the_diff_and_writes_nothing(
    manifest_env: str | None, tmp_path: Path, origin: Server, site: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, origin)
    before = snapshot(tmp_path)
    assert main(["run", "--config", str(cfg), "--dry-run", "-q"]) == 0
    out = capsys.readouterr().out
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "archive").exists() and not (tmp_path / ".archiver" / "manifest.sqlite3").exists()
    ka = key(site["/news/a.jpg"], "jpg")
    assert '-<img src="http://img.news.test/news/a.jpg"' in out and f'+<img src="/archive/{ka}"' in out
    assert "2 would be rewritten" in out


def test_private_addresses_are_refused_by_default(
    tmp_path: Path, canary: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "site").mkdir()
    urls = [canary.url("/x.jpg"), f"http://2130706433:{canary.port}/y.jpg", f"http://localhost:{canary.port}/z.jpg"]
    (tmp_path / "site" / "a.md").write_text("".join(f"![x]({u})\n" for u in urls), encoding="utf-8")
    assert main(["run", str(tmp_path / "site"), "-q", "--config", str(_bare_config(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert out.count("[rejected]") == 3
    assert canary.total_hits() == 0


def _bare_config(tmp: Path) -> Path:
    cfg = tmp / "bare.toml"
    cfg.write_text('[fetch]\nretries = 0\n[storage]\npath = "archive"\n', encoding="utf-8")
    return cfg


def test_requests_carry_no_referer_and_per_host_headers_apply(
    tmp_path: Path, origin: Server, site: dict[str, bytes]
) -> None:
    cfg = write_config(
        tmp_path, origin, extra='headers = { "photos.test" = { Referer = "http://photos.test/", X-Token = "t" } }'
    )
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    news = origin.last_headers("/news/a.jpg")
    assert "Referer" not in news and news["User-Agent"].startswith("archiver/")
    assert origin.last_headers("/d.jpg")["Referer"] == "http://photos.test/"


def test_exact_and_near_duplicates(manifest_env: str | None, tmp_path: Path, origin: Server) -> None:
    hopper = (FIXTURES / "pillow_hopper.jpg").read_bytes()
    progressive = (FIXTURES / "derived_hopper_progressive.jpg").read_bytes()
    rocket = (FIXTURES / "skimage_rocket.jpg").read_bytes()
    origin.add("/one/hopper.jpg", hopper, "image/jpeg")
    origin.add("/two/same-bytes.jpg", hopper, "image/jpeg")
    origin.add("/hopper-progressive.jpg", progressive, "image/jpeg")
    origin.add("/rocket.jpg", rocket, "image/jpeg")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.md").write_text(
        "".join(
            f"![x](http://photos.test{p})\n"
            for p in ("/one/hopper.jpg", "/two/same-bytes.jpg", "/hopper-progressive.jpg", "/rocket.jpg")
        ),
        encoding="utf-8",
    )
    cfg = write_config(tmp_path, origin)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    text = (tmp_path / "site" / "a.md").read_text(encoding="utf-8")
    assert text.count(f"/archive/{key(hopper, 'jpg')}") == 2  # two URLs, one object
    originals = [p for p in (tmp_path / "archive").rglob("*.jpg")]
    assert len(originals) == 3
    db = manifest_db(manifest_env or tmp_path / ".archiver" / "manifest.sqlite3")
    assert db.execute("SELECT COUNT(DISTINCT asset), COUNT(*) FROM urls").fetchone() == (3, 4)
    pairs = db.execute("SELECT a, b, phash_distance FROM near_duplicates").fetchall()
    assert [(set(p[:2]), p[2] <= 8) for p in pairs] == [({sha(hopper), sha(progressive)}, True)]


def test_s3_backend_end_to_end(
    tmp_path: Path, origin: Server, site: dict[str, bytes], s3_env, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = s3_env.make_bucket("e2e")
    public = f"{s3_env.endpoint_url}/{bucket}/"
    cfg = write_config(
        tmp_path,
        origin,
        storage=(
            f'[storage]\nbackend = "s3"\nbucket = "{bucket}"\nendpoint_url = "{s3_env.endpoint_url}"\n'
            f'prefix = "media/"\npublic_base_url = "{public}"'
        ),
    )
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    capsys.readouterr()
    a = site["/news/a.jpg"]
    k = "media/" + key(a, "jpg")
    s3 = s3_env.client()
    head = s3.head_object(Bucket=bucket, Key=k)
    assert head["ContentType"] == "image/jpeg"
    assert head["CacheControl"] == "public, max-age=31536000, immutable"
    assert head["Metadata"]["source-url"] == "http://img.news.test/news/a.jpg"
    png = s3.head_object(Bucket=bucket, Key="media/" + key(site["/news/b.png"], "png"))
    assert png["ContentType"] == "image/png"  # from the bytes, though the origin said image/jpeg
    thumb = s3.head_object(Bucket=bucket, Key=k.replace(".jpg", "-320w.webp"))
    assert thumb["ContentType"] == "image/webp"

    # the rewritten URL is the public URL of the stored object, and it serves the original bytes
    assert f'src="{public}{k}"'.encode() in (tmp_path / "site/_posts/hexo.md").read_bytes()
    with urllib.request.urlopen(public + k, timeout=10) as resp:  # anonymous read, like a CDN
        assert resp.read() == a

    listed = {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert len(listed) == 8  # 4 originals + 4 thumbnails
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert "objects uploaded 0" in capsys.readouterr().out
    assert {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]} == listed


def test_wrong_s3_credentials_fail_once_at_start(
    tmp_path: Path, origin: Server, site: dict[str, bytes], s3_env, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = s3_env.make_bucket("creds")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-xyzzy")
    cfg = write_config(
        tmp_path, origin,
        storage=f'[storage]\nbackend = "s3"\nbucket = "{bucket}"\nendpoint_url = "{s3_env.endpoint_url}"',
    )
    assert main(["run", "--config", str(cfg), "-q"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "xyzzy" not in captured.err + captured.out
    assert origin.total_hits() == 0  # nothing fetched when storage cannot be used


@pytest.mark.parametrize(
    ("storage", "key_named"),
    [('prefix = "../elsewhere"', "[storage] prefix"), ('prefix = "a b"', "[storage] prefix"),
     ('public_base_url = "https://cdn.example.com/bucket"', "[storage] public_base_url"),
     ('public_base_url = "archive/"', "[storage] public_base_url")],  # relative: broken on every post page
)
def test_storage_settings_that_cannot_work_are_refused_at_start_naming_file_and_key(
    tmp_path: Path, origin: Server, site: dict[str, bytes], capsys: pytest.CaptureFixture[str], storage: str,
    key_named: str,
) -> None:
    """Before: a bad prefix failed every URL at upload, after fetching them all (exit 1, "a re-run may fix it"),
    and a base URL without its final '/' gave every article broken URLs (…/bucket87/68/….jpg) and exit 0."""
    cfg = write_config(tmp_path, origin, storage=f'[storage]\nbackend = "local"\npath = "archive"\n{storage}')
    before = snapshot(tmp_path)
    for command in ("run", "verify"):
        assert main([command, "--config", str(cfg), "-q"]) == 2, command
        err = capsys.readouterr().err
        assert err.startswith(f"archiver: {cfg}: {key_named}: ") and err.count("\n") == 1, err
    assert origin.total_hits() == 0 and snapshot(tmp_path) == before  # nothing fetched, nothing written


def test_svg_and_animated_images_are_archived_and_rerun_is_a_no_op(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"></svg>\n'
    gif = (FIXTURES / "skimage_no_time_for_that_tiny.gif").read_bytes()
    origin.add("/logo.svg", svg, "text/plain")
    origin.add("/anim.gif", gif, "image/gif")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.html").write_text(
        '<img src="http://photos.test/logo.svg"><img src="http://photos.test/anim.gif">', encoding="utf-8"
    )
    cfg = write_config(tmp_path, origin)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    archive = tmp_path / "archive"
    assert (archive / key(svg, "svg")).read_bytes() == svg  # stored as is, never rasterised
    assert not list(archive.rglob("*-320w.*svg*")) and len(list(archive.rglob("*.webp"))) == 1
    db = sqlite3.connect(tmp_path / ".archiver" / "manifest.sqlite3")
    assert db.execute("SELECT frames FROM assets WHERE format = 'gif'").fetchone()[0] == 24
    capsys.readouterr()
    hits = origin.total_hits()
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert origin.total_hits() == hits and "objects uploaded 0" in capsys.readouterr().out


def test_rewrite_to_canonical_during_run(manifest_env: str | None, tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]) -> None:
    hopper = (FIXTURES / "pillow_hopper.jpg").read_bytes()
    progressive = (FIXTURES / "derived_hopper_progressive.jpg").read_bytes()
    origin.add("/hopper.jpg", hopper, "image/jpeg")
    origin.add("/hopper-progressive.jpg", progressive, "image/jpeg")
    (tmp_path / "site").mkdir()
    article = tmp_path / "site" / "a.md"
    article.write_text(
        "![a](http://photos.test/hopper.jpg)\n\ntext  \n![b](http://photos.test/hopper-progressive.jpg)\n",
        encoding="utf-8",
    )
    cfg = write_config(tmp_path, origin)
    cfg.write_text(cfg.read_text() + "\n[dedupe]\nrewrite_to_canonical = true\n", encoding="utf-8")
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert "dedupe: 1 article rewritten to canonical copies (1 reference)" in capsys.readouterr().out
    text = article.read_text(encoding="utf-8")
    canonical = f"/archive/{key(hopper, 'jpg')}"  # same pixels and format: the larger file wins
    assert text == f"![a]({canonical})\n\ntext  \n![b]({canonical})\n"
    before = article.read_bytes()
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert article.read_bytes() == before
    assert main(["dedupe", "--config", str(cfg), "--undo"]) == 0
    assert f"/archive/{key(progressive, 'jpg')}" in article.read_text(encoding="utf-8")


def test_shortcodes_tags_inline_styles_and_posters_are_archived_and_rewritten(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    bodies = {f"/more/{n}": make_jpeg(200 + 10 * i, 150, seed=40 + i) for i, n in enumerate(("f.jpg", "h.jpg", "s.jpg", "p.jpg"))}
    for path, body in bodies.items():
        origin.add(path, body, "image/jpeg")
    article = (
        "---\r\ntitle: more places\r\n---\r\n\r\n"
        '{{< figure\r\n  src="http://img.news.test/more/f.jpg"\r\n  caption="A figure"\r\n>}}\r\n\r\n'
        '{% img left http://photos.test/more/h.jpg 300 200 "Title" "alt" %}\r\n\r\n'
        "<div class=\"hero\" style=\"background-image: url(&quot;/more/s.jpg&quot;)\"></div>\r\n\r\n"
        '<video controls poster="http://img.news.test/more/p.jpg"><source src="/clip.mp4"></video>\r\n\r\n'
        '```\r\n{{< figure src="http://img.news.test/more/never.jpg" >}}\r\n```\r\n'
    )
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "post.md").write_bytes(article.encode("utf-8"))
    cfg = write_config(tmp_path, origin)  # base_url http://blog.test/ resolves the root-relative style url

    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert "4 archived" in capsys.readouterr().out
    assert origin.hits("/more/never.jpg") == 0 and origin.hits("/clip.mp4") == 0
    keys = {p: key(b, "jpg") for p, b in bodies.items()}
    assert (tmp_path / "site" / "post.md").read_bytes() == expected_article(
        article,
        {
            "http://img.news.test/more/f.jpg": f"/archive/{keys['/more/f.jpg']}",
            "http://photos.test/more/h.jpg": f"/archive/{keys['/more/h.jpg']}",
            "&quot;/more/s.jpg&quot;": f"&quot;/archive/{keys['/more/s.jpg']}&quot;",
            "http://img.news.test/more/p.jpg": f"/archive/{keys['/more/p.jpg']}",
        },
    )
    before = snapshot(tmp_path)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert snapshot(tmp_path) == before


def test_a_run_with_nothing_new_does_not_load_the_near_duplicate_stack(
    tmp_path: Path, origin: Server, site: dict[str, bytes]
) -> None:
    """The usual cron-job run finds nothing new: it must stay small (no numba, SciPy or hash index: ~80 MB)."""
    import subprocess
    import sys

    cfg = write_config(tmp_path, origin)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    probe = (
        "import sys; from archiver.cli import main; code = main(sys.argv[1:]); "
        "print(sorted(m for m in ('numba', 'scipy', 'archiver.dedupe.pairs', 'archiver.dedupe.index') if m in sys.modules)); "
        "raise SystemExit(code)"
    )
    done = subprocess.run([sys.executable, "-c", probe, "run", "--config", str(cfg), "-q"],
                          capture_output=True, text=True, cwd=ROOT_DIR, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "0 archived" in done.stdout or "objects uploaded 0" in done.stdout
