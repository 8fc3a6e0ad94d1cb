"""The dedupe report opened from disk in a real headless browser (Debian's chromium): thumbnails render.

chromium is required, not optional: CI installs it (`apt-get install -y chromium`), so a missing
browser fails this test rather than skipping it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from archiver.cli import main
from tests.support.library import build_library
from tests.support.origin import Server

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--mute-audio", "--hide-scrollbars", "--window-size=1200,900",
    "--virtual-time-budget=10000",  # let the page load its data file and thumbnails before capturing
)


def chromium(tmp: Path, url: str, *extra: str) -> str:
    exe = shutil.which("chromium")
    assert exe, "chromium is not installed: apt-get install -y chromium (CI installs it)"
    profile = tmp / "chromium-profile"
    profile.mkdir(exist_ok=True)
    proc = subprocess.run(
        [exe, *FLAGS, f"--user-data-dir={profile}", *extra, url],
        capture_output=True, text=True, timeout=90, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def colours(im: Image.Image, share: float = 0.0, at_least: int = 1) -> set[int]:
    """Colours quantised to 4 bits a channel that cover ``share`` of the image and ``at_least`` pixels."""
    px = (np.asarray(im.convert("RGB")).reshape(-1, 3) >> 4).astype(np.int32)
    codes, counts = np.unique(px[:, 0] * 256 + px[:, 1] * 16 + px[:, 2], return_counts=True)
    return set(codes[(counts >= share * len(px)) & (counts >= at_least)].tolist())


def test_report_thumbnails_render_in_chromium(tmp_path: Path, origin: Server) -> None:
    lib = build_library(tmp_path, origin)
    assert main(["dedupe", "--config", str(lib.config)]) == 0
    page = (tmp_path / "report" / "dedupe.html").resolve()
    url = page.as_uri()

    dom = chromium(tmp_path, url, "--dump-dom")
    imgs = re.findall(r"<img\b[^>]*>", dom)
    assert len(imgs) == 4, dom[-3000:]  # the near group's 3 members and the rocket's URL group
    for tag in imgs:
        assert 'loading="lazy"' in tag and "data:" not in tag
        loaded = re.search(r'data-loaded="([^"]*)"', tag)
        assert loaded and loaded.group(1).isdigit() and int(loaded.group(1)) > 0, tag  # naturalWidth
    assert dom.count('class="card canonical"') == 2 and "rot90" in dom

    shot = tmp_path / "report.png"
    chromium(tmp_path, url, f"--screenshot={shot}")
    screen = Image.open(shot).convert("RGB")
    assert screen.size == (1200, 900)
    # every thumbnail's main colours are on screen (a page without images is white, grey and green)
    thumbs = sorted((tmp_path / "archive").rglob("*-320w.webp"))
    assert len(thumbs) == 4
    on_screen = colours(screen, at_least=30)
    assert len(on_screen) > 100  # a page without images has a handful: white, greys, green
    for thumb in thumbs:
        wanted = colours(Image.open(thumb), share=0.01)
        assert len(wanted & on_screen) >= 0.6 * len(wanted), thumb


@pytest.mark.parametrize("page_no", [2])
def test_report_pages_through_group_data(tmp_path: Path, page_no: int) -> None:
    """The pager loads another data file: 60 synthetic groups give two pages, the second holds 10."""
    from archiver.dedupe.report import write_report
    from tests.support.library import synthetic_groups

    files = write_report(synthetic_groups(60), tmp_path / "r.html", tmp_path / "r.json",
                         {"generated": "now", "max_distance": 10})
    dom = chromium(tmp_path, f"{files.html.resolve().as_uri()}#page={page_no}", "--dump-dom")
    assert f'data-page="{page_no}"' in dom
    assert len(re.findall(r"<section\b", dom)) == 10
    assert 'id="group-51"' in dom and 'id="group-1"' not in dom


def test_report_page_shows_control_and_bidi_characters_escaped(tmp_path: Path) -> None:
    """A file name holding ESC and U+202E (RIGHT-TO-LEFT OVERRIDE) cannot reorder or hide what the page says."""
    from archiver.dedupe.report import GroupRow, MemberRow, write_report

    evil = "post\x1b[2J\u202egpj.md"
    member = MemberRow("a" * 64, "http://x/a.jpg", "a.jpg", "http://x/t.webp", "t.webp", 10, 10, "JPEG", 100, True,
                       source_urls=("http://evil.test/a.jpg", "http://evil.test/b.jpg"), articles=(evil,))
    files = write_report([GroupRow("exact", (member,))], tmp_path / "r.html", tmp_path / "r.json",
                         {"generated": "now", "max_distance": 10})
    dom = chromium(tmp_path, files.html.resolve().as_uri(), "--dump-dom")
    assert "<li>post\\u001b[2J\\u202egpj.md</li>" in dom
    assert "\u202e" not in dom and "\x1b" not in dom
