"""A page rewritten with `[rewrite] responsive`, served over loopback and opened in headless Chromium (Debian's
chromium, required as for the dedupe report): every image loads from the archive, nothing shifts as the images
load (Cumulative Layout Shift 0, from the browser's PerformanceObserver), and a 360 px-wide viewport fetches a
small rendition, not the original (the server records which keys were requested)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from archiver.cli import main
from tests.dedupe.test_report_browser import chromium
from tests.support.images import make_jpeg, make_png
from tests.support.origin import Server
from tests.support.site import sha, write_config

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<style>body { margin: 0; font: 16px/1.4 sans-serif } img { max-width: 100%; height: auto; display: block }</style>
</head><body>
<h1>Launch recap</h1>
<p>Before the first image.</p>
<img src="http://img.news.test/wide.jpg" alt="wide">
<p>Between the images: text the browser lays out before they arrive.</p>
<img alt="flat" src="http://img.news.test/flat.png">
<p>After the images.</p>
</body></html>
"""
# what the test adds to the served page (not to the article): measures and reports, once every image settled
HARNESS = """<script>
let cls = 0;
new PerformanceObserver(list => { for (const e of list.getEntries()) if (!e.hadRecentInput) cls += e.value; })
  .observe({type: "layout-shift", buffered: true});
const pause = ms => new Promise(r => setTimeout(r, ms));
addEventListener("load", async () => {
  for (const img of document.images) { img.scrollIntoView(); await pause(300); }
  await Promise.all([...document.images].map(i => i.complete ? 0 : new Promise(r => { i.onload = i.onerror = r; })));
  await pause(300);
  const out = document.createElement("pre");
  out.id = "result";
  out.textContent = JSON.stringify({cls, width: innerWidth, images: [...document.images].map(
    i => ({src: i.currentSrc, natural: i.naturalWidth, complete: i.complete}))});
  document.body.appendChild(out);
  if (parent !== window) parent.postMessage(out.textContent, "*");
});
</script>"""
# Chromium's window is at least 500 px wide: a narrower viewport is an iframe of that width, which reports back
FRAME = """<!doctype html><html><body style="margin:0">
<iframe src="{page}" width="{width}" height="800" style="border:0;display:block"></iframe>
<script>addEventListener("message", e => {{
  const out = document.createElement("pre"); out.id = "result"; out.textContent = e.data; document.body.appendChild(out);
}});</script></body></html>"""
MIME = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp", "avif": "image/avif"}


def _serve(origin: Server, tmp: Path, name: str, html: str) -> str:
    """Serve the archive folder under /archive/ and ``html`` (with the harness) as /NAME; the page's URL. Every
    object arrives 1.5 s late, long after the text is laid out: an image without its size reserved moves
    the text below it whatever the machine's speed."""
    for obj in sorted((tmp / "archive").rglob("*.*")):
        origin.add("/archive/" + obj.relative_to(tmp / "archive").as_posix(), obj.read_bytes(),
                   MIME[obj.suffix[1:]], headers={"Cache-Control": "no-store"}, delay=1.5)
    return origin.add(f"/{name}", html.replace("</body>", HARNESS + "</body>").encode(), "text/html")


def _open(tmp: Path, origin: Server, url: str, width: int) -> dict[str, object]:
    frame = origin.add(f"/frame-{width}.html", FRAME.format(page=url, width=width).encode(), "text/html")
    dom = chromium(tmp, frame, "--dump-dom", "--force-device-scale-factor=1")
    found = re.search(r'<pre id="result">(.*?)</pre>', dom, re.DOTALL)
    assert found, dom[-2000:]
    return json.loads(found.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))


@pytest.mark.parametrize("picture", [False, True])
def test_rewritten_page_in_chromium(tmp_path: Path, origin: Server, picture: bool) -> None:
    wide, flat = make_jpeg(1600, 1000, seed=41), make_png(1200, 300, seed=42)
    origin.add("/wide.jpg", wide, "image/jpeg")
    origin.add("/flat.png", flat, "image/png")
    (tmp_path / "site").mkdir()
    article = tmp_path / "site" / "page.html"
    article.write_text(PAGE, encoding="utf-8")
    cfg = write_config(tmp_path, origin)
    cfg.write_text(cfg.read_text(encoding="utf-8") + '[images]\nthumbnails = [320, 640, 1280]\nformats = ["webp", '
                   f'"avif"]\n[rewrite]\nresponsive = true\npicture = {str(picture).lower()}\n', encoding="utf-8")
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    html = article.read_text(encoding="utf-8")
    assert html.count("srcset=") == (4 if picture else 2) and html.count("<picture>") == (2 if picture else 0)

    small = _open(tmp_path, origin, _serve(origin, tmp_path, "small.html", html), 360)
    assert small["width"] == 360
    images = small["images"]
    assert isinstance(images, list) and len(images) == 2
    for img in images:  # every image loaded, from the archive
        assert img["complete"] and img["natural"] > 0 and "/archive/" in img["src"], img
    assert small["cls"] == 0
    fmt = "avif" if picture else "webp"
    for body in (wide, flat):  # a 360 px viewport takes the 640 px rendition, never the original
        h = sha(body)
        base = f"/archive/{h[:2]}/{h[2:4]}/{h}"
        assert origin.hits(f"{base}-640w.{fmt}") == 1, origin.arrivals()
        assert origin.hits(f"{base}.{'jpg' if body is wide else 'png'}") == 0
        assert origin.hits(f"{base}-1280w.{fmt}") == 0

    # the same page with the sizes we added taken out does shift: the measurement sees shifts when there are some
    bare = re.sub(r' width="\d+" height="\d+"', "", html)
    assert bare != html
    control = _open(tmp_path, origin, _serve(origin, tmp_path, "bare.html", bare), 360)
    assert isinstance(control["cls"], float) and control["cls"] > 0
