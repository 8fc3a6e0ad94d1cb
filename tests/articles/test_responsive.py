"""`[rewrite] responsive`: the real pipeline adds what archived <img>s lack (width, height, srcset, sizes, loading,
decoding, optionally <picture>), changes no other byte, is idempotent, and restore removes exactly what it added."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from archiver.cli import main
from tests.support.images import make_jpeg, make_png
from tests.support.origin import Server
from tests.support.site import sha, snapshot, write_config

RESPONSIVE = '[images]\nthumbnails = [160, 320, 4000]\nformats = ["webp", "avif"]\n[rewrite]\nresponsive = true\n'

MD = (
    "---\r\n"
    "title: t\r\n"
    "cover: http://img.news.test/a.jpg\r\n"
    "---\r\n"
    "Intro ![md](http://img.news.test/a.jpg)\r\n"
    '<p><img alt="a<b" src="http://img.news.test/a.jpg"></p>\r\n'
    '<img src=http://img.news.test/b.png width=100 loading=eager />\r\n'
    '<img src="http://img.news.test/a.jpg" srcset="http://img.news.test/a.jpg 1x" decoding="sync" />\r\n'
    "\r\n```\n<img src=\"http://img.news.test/a.jpg\">\n```\n\n"
    '<IMG SRC="http://img.news.test/anim.gif">'
)


def _jpeg_rotated(width: int, height: int) -> bytes:
    """A JPEG stored ``width`` x ``height`` with EXIF orientation 6: shown ``height`` x ``width``."""
    import io

    im = Image.open(io.BytesIO(make_jpeg(width, height, seed=5)))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif, quality=85)
    return buf.getvalue()


@pytest.fixture
def site(tmp_path: Path, origin: Server) -> dict[str, object]:
    gif = _gif()
    bodies = {"/a.jpg": _jpeg_rotated(800, 600), "/b.png": make_png(500, 250, seed=3), "/anim.gif": gif}
    for path, body in bodies.items():
        origin.add(path, body, "image/jpeg")
    (tmp_path / "site").mkdir()
    article = tmp_path / "site" / "post.md"
    article.write_bytes(MD.encode("utf-8"))
    cfg = write_config(tmp_path, origin)
    cfg.write_text(cfg.read_text(encoding="utf-8") + RESPONSIVE, encoding="utf-8")
    return {"article": article, "cfg": cfg, "bodies": bodies}


def _gif() -> bytes:
    import io

    frames = [Image.new("RGB", (300, 200), c) for c in ("red", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def test_run_adds_missing_attributes_restore_removes_them(site: dict[str, object], tmp_path: Path) -> None:
    article, cfg, bodies = site["article"], site["cfg"], site["bodies"]
    assert isinstance(article, Path) and isinstance(cfg, Path) and isinstance(bodies, dict)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    text = article.read_bytes().decode("utf-8")
    a = sha(bodies["/a.jpg"])
    first = re.search(r'<p><img alt="a<b" src="([^"]+)"([^>]*)></p>', text)
    assert first is not None
    base = first.group(1).rsplit("/", 1)[0]
    assert first.group(2) == (
        f' width="600" height="800" srcset="{base}/{a}-160w.webp 160w, {base}/{a}-320w.webp 320w, '
        f'{first.group(1)} 600w" sizes="100vw" loading="lazy" decoding="async"'
    )
    # the author's width kept, the height from the aspect ratio; their loading kept; "/>" kept after the value
    b = sha(bodies["/b.png"])
    assert re.search(rf'<img src=\S+{b}\.png width=100 loading=eager height="50" srcset="\S+-160w\.webp 160w, '
                     rf'\S+-320w\.webp 320w, \S+{b}\.png 500w" sizes="100vw" decoding="async" />', text), text
    # an author's srcset: no srcset or sizes added; decoding="sync" kept; " />" keeps its space
    assert re.search(r'srcset="\S+ 1x" decoding="sync" width="600" height="800" loading="lazy" />', text), text
    # code fences and Markdown images untouched; an animated GIF gets its size but no srcset of a still frame
    assert '\r\n\r\n```\n<img src="http://img.news.test/a.jpg">\n```\n\n' in text
    assert re.search(r"Intro !\[md\]\(\S+\.jpg\)\r\n", text)
    assert re.search(r'<IMG SRC="\S+\.gif" width="300" height="200" loading="lazy" decoding="async">$', text), text
    # idempotent: a second run changes nothing
    before = snapshot(tmp_path / "site")
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert snapshot(tmp_path / "site") == before
    # restore: byte-identical
    assert main(["restore", "--config", str(cfg)]) == 0
    assert article.read_bytes() == MD.encode("utf-8")


def test_turned_on_after_an_earlier_run_restore_undoes_both_and_counts_references(
    site: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    article, cfg = site["article"], site["cfg"]
    assert isinstance(article, Path) and isinstance(cfg, Path)
    plain = cfg.read_text(encoding="utf-8").replace("responsive = true", "responsive = false")
    cfg.write_text(plain, encoding="utf-8")
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    archived = article.read_bytes()
    assert b"-160w.webp" not in archived and b"loading=\"lazy\"" not in archived
    # a dry run shows the attributes it would add, and writes nothing
    cfg.write_text(plain.replace("responsive = false", "responsive = true"), encoding="utf-8")
    capsys.readouterr()
    assert main(["run", "--config", str(cfg), "--dry-run"]) == 0
    diff = capsys.readouterr().out
    assert '+<p><img alt="a<b" src="/archive/' in diff and 'loading="lazy" decoding="async"></p>' in diff
    assert article.read_bytes() == archived
    # the real run: every URL was archived before, and the article still gets its attributes
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    text = article.read_bytes().decode("utf-8")
    assert text.count('loading="lazy"') == 3 and text.count('sizes="100vw"') == 2
    assert main(["run", "--config", str(cfg), "-q"]) == 0 and article.read_bytes().decode("utf-8") == text
    capsys.readouterr()
    assert main(["restore", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    # the seven image references (front matter, Markdown, four <img>s; none in code): the attributes are not counted
    assert "restored 7 of 7 URLs (byte-identical to before its first rewrite)" in out, out
    assert article.read_bytes() == MD.encode("utf-8")


def test_restore_reports_added_attributes_the_author_edited(
    site: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    article, cfg = site["article"], site["cfg"]
    assert isinstance(article, Path) and isinstance(cfg, Path)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    text = article.read_bytes().decode("utf-8")
    edited = text.replace('width="300" height="200" loading="lazy"', 'width="150" height="100" loading="lazy"')
    assert edited != text
    article.write_bytes(edited.encode("utf-8"))
    capsys.readouterr()
    assert main(["restore", "--config", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert "added by [rewrite] responsive and edited since; left as is" in out, out
    assert "restored 7 of 7 URLs" in out
    now = article.read_bytes().decode("utf-8")
    assert now.endswith('<IMG SRC="http://img.news.test/anim.gif" width="150" height="100" loading="lazy" '
                        'decoding="async">')
    assert now.startswith(MD[: MD.index("<IMG")])  # everything else as it was


def test_widths_and_formats_configured_later_are_made_from_the_stored_originals(
    site: dict[str, object], origin: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    article, cfg, bodies = site["article"], site["cfg"], site["bodies"]
    assert isinstance(article, Path) and isinstance(cfg, Path) and isinstance(bodies, dict)
    full = cfg.read_text(encoding="utf-8")
    cfg.write_text(full.replace(RESPONSIVE, ""), encoding="utf-8")  # the defaults: one 320 px WebP
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    a = sha(bodies["/a.jpg"])
    assert sorted(p.name for p in (tmp_path / "archive").rglob(f"{a}*")) == [f"{a}-320w.webp", f"{a}.jpg"]
    hits = origin.total_hits()
    cfg.write_text(full, encoding="utf-8")
    capsys.readouterr()
    assert main(["run", "--config", str(cfg)]) == 0
    assert "3 archived images given the rendition widths or formats configured since" in capsys.readouterr().out
    assert origin.total_hits() == hits  # made from the stored originals, nothing fetched
    made = sorted(p.name for p in (tmp_path / "archive").rglob(f"{a}*"))
    assert made == sorted([f"{a}.jpg"] + [f"{a}-{w}w.{f}" for w in (160, 320, 4000) for f in ("avif", "webp")])
    assert f"{a}-160w.webp 160w" in article.read_bytes().decode("utf-8")
    snap = snapshot(tmp_path)
    assert main(["run", "--config", str(cfg), "-q"]) == 0 and snapshot(tmp_path) == snap


def test_verify_deep_reads_every_rendition_and_repair_remakes_a_lost_avif(
    site: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, bodies = site["cfg"], site["bodies"]
    assert isinstance(cfg, Path) and isinstance(bodies, dict)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert main(["verify", "--config", str(cfg), "--deep"]) == 0
    a = sha(bodies["/a.jpg"])
    lost = next((tmp_path / "archive").rglob(f"{a}-160w.avif"))
    data = lost.read_bytes()
    lost.unlink()
    assert main(["verify", "--config", str(cfg)]) == 1
    assert main(["verify", "--config", str(cfg), "--repair"]) == 0
    assert lost.read_bytes() == data  # the same bytes: renditions are deterministic, AVIF included
    assert main(["verify", "--config", str(cfg), "--deep"]) == 0
