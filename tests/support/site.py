"""Helpers for tests that drive the CLI: content-addressed keys and a config whose made-up hosts reach the
loopback origin through ``[fetch] connect_to``."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.support.images import make_jpeg, make_png
from tests.support.origin import Server

HOSTS = ("img.news.test", "photos.test", "blog.test")
LOCAL_STORAGE = '[storage]\nbackend = "local"\npath = "archive"'


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def key(data: bytes, ext: str) -> str:
    """The object key archiver stores these bytes under (no prefix)."""
    h = sha(data)
    return f"{h[:2]}/{h[2:4]}/{h}.{ext}"


def write_config(
    tmp: Path,
    origin: Server,
    extra: str = "",
    storage: str = "",
    *,
    hosts: Sequence[str] = HOSTS,
    base_url: str = "http://blog.test/",
    retries: int = 2,
    timeout: float = 5,
) -> Path:
    """``tmp/archiver.toml``: articles under ``tmp/site``, ``hosts`` served by ``origin``, ``extra`` lines
    appended to [fetch], ``storage`` replacing the local-folder [storage] section."""
    connect_to = ", ".join(f'"{h}" = "127.0.0.1:{origin.port}"' for h in hosts)
    cfg = tmp / "archiver.toml"
    cfg.write_text(
        f"""
[articles]
root = "site"
base_url = "{base_url}"
[fetch]
allow_networks = ["127.0.0.1/32"]
connect_to = {{ {connect_to} }}
retries = {retries}
backoff = 0.01
max_backoff = 0.05
timeout = {timeout}
{extra}
{storage or LOCAL_STORAGE}
""",
        encoding="utf-8",
    )
    return cfg


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of every file below ``folder`` except the manifest: equal snapshots mean no write."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".archiver" not in p.parts
    }


# Two articles shaped like the real ones (a Hexo news mirror post with CRLF and raw HTML, a Jekyll post with an
# anchor, srcset and a code fence) and the images they use: the site most end-to-end tests start from.
HEXO = (
    "\n---\r\n"
    "title: 'News: 文文文 \"quoted'\r\n"
    "headimg: 'http://img.news.test/news/a.jpg'\r\n"
    "thumbnail: http://img.news.test/news/a.jpg\r\n"
    "---\r\n"
    "\r\n"
    "<div>   \r\n"
    '<img src="http://img.news.test/news/a.jpg" width="970px" referrerpolicy="no-referrer">\r\n'
    '<p style="text-align:center;">&#123;caption&#125;  \r\n'
    '<img src="http://img.news.test/news/b.png?w=1&amp;h=2" title="t" referrerpolicy="no-referrer"> \r\n'
    "</p></div>"
)
JEKYLL = (
    "---\n"
    "image:\n"
    "  path: &image /assets/c.jpg\n"
    "  feature: *image\n"
    "---\n"
    "\n"
    "![same as the news one](http://img.news.test/news/a.jpg \"title\")\n"
    '<img src="http://photos.test/d.jpg" srcset="http://photos.test/d.jpg 1x, /assets/c.jpg 2x">\n'
    "\n"
    "```\n"
    "![in code](http://photos.test/never.jpg)\n"
    "```\n"
)


@pytest.fixture
def site(tmp_path: Path, origin: Server) -> dict[str, bytes]:
    """Two articles and four images on the origin; returns the image bodies by path."""
    bodies = {
        "/news/a.jpg": make_jpeg(800, 600, seed=11),
        "/news/b.png": make_png(400, 300, seed=12),
        "/assets/c.jpg": make_jpeg(1200, 800, seed=13),
        "/d.jpg": make_jpeg(300, 200, seed=14),
    }
    for path, body in bodies.items():
        origin.add(path, body, "image/jpeg")  # the Content-Type lies for the PNG: bytes decide
    posts = tmp_path / "site" / "_posts"
    posts.mkdir(parents=True)
    (posts / "hexo.md").write_bytes(HEXO.encode("utf-8"))
    (posts / "jekyll.md").write_bytes(JEKYLL.encode("utf-8"))
    return bodies
