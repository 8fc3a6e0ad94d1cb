"""A small real archive for the dedupe tests: near-duplicates of one picture and exact duplicates, used by three
articles, archived by `archiver run` against the loopback origin; and synthetic report rows."""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from archiver.cli import main
from archiver.dedupe.report import GroupRow, MemberRow
from tests.support.origin import Server
from tests.support.paths import FIXTURES_DIR
from tests.support.postgres import manifest_db
from tests.support.site import write_config

FIXTURES = FIXTURES_DIR / "images"


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def key(data: bytes, ext: str) -> str:
    h = hashlib.sha256(data).hexdigest()
    return f"{h[:2]}/{h[2:4]}/{h}.{ext}"


@dataclass(frozen=True)
class Library:
    root: Path
    config: Path
    bodies: dict[str, bytes]  # origin path -> bytes

    def archive_url(self, path: str) -> str:
        data = self.bodies[path]
        return "/archive/" + key(data, "png" if data.startswith(b"\x89PNG") else "jpg")

    def articles(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted((self.root / "site").rglob("*.*"))}

    def manifest(self) -> str | Path:
        """The manifest the library's commands use: the PostgreSQL one of the test's environment, else its file."""
        return os.environ.get("ARCHIVER_MANIFEST_URL") or self.root / ".archiver" / "manifest.sqlite3"

    def record_rewritten(self, name: str) -> None:
        """Record ``site/<name>`` as an article archiver rewrote (what `dedupe` reads), as if a run had."""
        db = manifest_db(self.manifest())
        with db:
            db.execute("INSERT INTO articles (path, sha256_before, sha256_after, rewritten_at) VALUES (?, 'x', 'y', 0)",
                       (str(self.root / "site" / name),))


def count_parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the articles `archiver dedupe` parses from now on (its ``article_refs`` calls), in order."""
    from archiver.commands import dedupe as command

    parsed: list[str] = []
    real = command.article_refs

    def counting(article, *args, **kwargs):  # type: ignore[no-untyped-def]
        parsed.append(article.path.name)
        return real(article, *args, **kwargs)

    monkeypatch.setattr(command, "article_refs", counting)
    return parsed


POST = (
    "---\r\ntitle: \"Ünïcode ✓\"\r\nheadimg: http://photos.test/b/small.jpg\r\n---\r\n"
    "Intro with   trailing spaces   \r\n\r\n"
    "![small](http://photos.test/b/small.jpg \"t\") and ![rocket](http://photos.test/d/rocket.jpg)\r\n"
    "```\r\n![in code](http://photos.test/b/small.jpg)\r\n```\r\n"
    "![again](http://photos.test/b/small.jpg)"  # no final newline
)
PAGE = (
    "<html><head><meta charset=\"utf-8\"></head><body>\n"
    "<img src=\"http://photos.test/c/rot.jpg\" alt=\"&#123;x&#125;\">\n"
    "<img src=\"http://photos.test/a/original.png\" srcset=\"http://photos.test/b/small.jpg 1x,  "
    "http://photos.test/c/rot.jpg 2x\">\n"
    "<img src=\"http://photos.test/e/rocket-copy.jpg\">\n</body></html>\n"
)
OTHER = "![same bytes, other URL](http://photos.test/e/same.png)\n![orig](http://photos.test/a/original.png)\n"


def build_library(tmp_path: Path, origin: Server, extra: str = "") -> Library:
    """Astronaut as a large PNG (the canonical), a small JPEG and a rotated JPEG of it, the rocket (distinct,
    under two URLs), and the PNG under a second URL; three articles using them; archived by `archiver run`."""
    astronaut = Image.open(FIXTURES / "skimage_astronaut.png").convert("RGB")
    original = encode(astronaut, "PNG")
    rocket = (FIXTURES / "skimage_rocket.jpg").read_bytes()
    bodies = {
        "/a/original.png": original,
        "/b/small.jpg": encode(astronaut.resize((300, 300)), "JPEG", quality=80),
        "/c/rot.jpg": encode(astronaut.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=85),
        "/d/rocket.jpg": rocket,
        "/e/rocket-copy.jpg": rocket,
        "/e/same.png": original,
    }
    for path, body in bodies.items():
        origin.add(path, body, "image/png" if path.endswith("png") else "image/jpeg")
    site = tmp_path / "site"
    site.mkdir()
    (site / "post.md").write_bytes(POST.encode("utf-8"))
    (site / "page.html").write_bytes(PAGE.encode("utf-8"))
    (site / "other.md").write_bytes(OTHER.encode("utf-8"))
    cfg = write_config(tmp_path, origin, storage=f'[storage]\nbackend = "local"\npath = "archive"\n{extra}')
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    return Library(tmp_path, cfg, bodies)


def synthetic_groups(n: int) -> list[GroupRow]:
    groups = []
    for g in range(n):
        members = []
        for i in range(3):
            sha = hashlib.sha256(f"{g}-{i}".encode()).hexdigest()
            k = f"{sha[:2]}/{sha[2:4]}/{sha}"
            members.append(MemberRow(
                sha, f"https://cdn.example/{k}.jpg", f"../archive/{k}.jpg", f"https://cdn.example/{k}-320w.webp",
                f"../archive/{k}-320w.webp", 1600 - i, 1000, "jpeg", 300_000 - i, i == 0,
                transform=None if i == 0 else "identity", phash_distance=None if i == 0 else i,
                dhash_distance=None if i == 0 else i + 1, source_urls=(f"https://img.example/{g}/{i}.jpg",),
                articles=tuple(f"/site/posts/{g % 700}/{a}.md" for a in range(g % 4 + 1)),
            ))
        groups.append(GroupRow("near", tuple(members)))
    return groups
