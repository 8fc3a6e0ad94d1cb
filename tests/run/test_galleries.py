"""Galleries end to end: a run archives every image of a front-matter gallery (YAML block and flow lists,
TOML arrays of tables and inline tables, a real Minimal Mistakes post), rewrites only those URL spans, and
restore gives back the exact original bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.cli import main
from tests.support.images import make_jpeg, make_png
from tests.support.origin import Server
from tests.support.paths import FIXTURES_DIR
from tests.support.site import key, write_config

CORPUS_POST = FIXTURES_DIR / "articles" / "jekyll" / "2015-08-24-neon-l-portrait.md"
FLOW = (
    "---\r\ntitle: \"flow: 文\"\r\ngallery: [{url: '/g/1-lg.jpg', image_path: \"/g/1.jpg\", alt: one.jpg},"
    " {image_path: http://photos.test/g/2.png, url: http://photos.test/page}]  \r\n"
    "images: [ 'http://photos.test/g/2.png' , /g/1.jpg ]\r\n---\r\nbody without final newline"
)
TOML = (
    '+++\ntitle = "toml"\nimages = [\n  "http://photos.test/g/2.png", # cover\n  \'/g/1.jpg\',\n]\n'
    'gallery = [ { url = "/g/1-lg.jpg", image_path = "/g/1.jpg" } ]\n'
    '[[resources]]\n  src = "images/local.jpg"\n  name = "local"\n'
    '[[gallery2]]\nimage_path = "http://photos.test/g/2.png"\n+++\nbody\n'
)


@pytest.fixture
def galleries(tmp_path: Path, origin: Server) -> dict[str, bytes]:
    bodies = {"/g/1.jpg": make_jpeg(400, 300, seed=31), "/g/1-lg.jpg": make_jpeg(1200, 900, seed=32),
              "/g/2.png": make_png(300, 200, seed=33)}
    for i in range(1, 5):
        bodies[f"/assets/images/paperfaces-neon-l-process-{i}-lg.jpg"] = make_jpeg(900, 600, seed=40 + i)
        bodies[f"/assets/images/paperfaces-neon-l-process-{i}-600.jpg"] = make_jpeg(600, 400, seed=50 + i)
    bodies["/assets/images/paperfaces-neon-l.jpg"] = make_jpeg(800, 800, seed=60)
    bodies["/assets/images/paperfaces-neon-l-150.jpg"] = make_jpeg(150, 150, seed=61)
    for path, body in bodies.items():
        origin.add(path, body, "image/jpeg")
    posts = tmp_path / "site"
    posts.mkdir()
    (posts / "neon.md").write_bytes(CORPUS_POST.read_bytes())
    (posts / "flow.md").write_bytes(FLOW.encode("utf-8"))
    (posts / "hugo.md").write_bytes(TOML.encode("utf-8"))
    return bodies


def test_gallery_images_are_archived_rewritten_in_place_and_restored(
    tmp_path: Path, origin: Server, galleries: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    before = {p.name: p.read_bytes() for p in (tmp_path / "site").iterdir()}
    cfg = write_config(tmp_path, origin)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    out = capsys.readouterr().out
    assert f"{len(galleries)} archived" in out and "0 failed" in out
    for path in galleries:
        assert origin.hits(path) == 1, path
    assert origin.hits("/page") == 0  # a gallery url that links to a page is not an image
    assert origin.hits("/images/local.jpg") == 0  # a Hugo resources bundle path is left alone

    def archive_url(path: str) -> str:
        body = galleries[path]
        return "/archive/" + key(body, "png" if path.endswith(".png") else "jpg")

    flow = FLOW
    for old in ("http://photos.test/g/2.png", "/g/1-lg.jpg", "/g/1.jpg"):
        flow = flow.replace(old, archive_url(old.removeprefix("http://photos.test")))
    assert (tmp_path / "site/flow.md").read_bytes() == flow.encode("utf-8")
    hugo = TOML
    for old in ("http://photos.test/g/2.png", "/g/1-lg.jpg", "/g/1.jpg"):
        hugo = hugo.replace(old, archive_url(old.removeprefix("http://photos.test")))
    assert (tmp_path / "site/hugo.md").read_bytes() == hugo.encode("utf-8")
    neon = (tmp_path / "site/neon.md").read_text(encoding="utf-8")
    assert "/assets/images/" not in neon.split("\n---\n", 1)[0]  # every front-matter image, the gallery's too
    expected = CORPUS_POST.read_text(encoding="utf-8")
    for path in galleries:
        if path.startswith("/assets/"):
            expected = expected.replace(path, archive_url(path))
    assert neon == expected

    assert main(["restore", "--config", str(cfg)]) == 0
    capsys.readouterr()
    assert {p.name: p.read_bytes() for p in (tmp_path / "site").iterdir()} == before
