"""The failure report opened from disk in a real headless browser (Debian's chromium, as the dedupe report's test):
the headlines and every failed URL show, and nothing a document or a server sent can run, load or hide anything.

chromium is required, not optional: CI installs it, so a missing browser fails this test rather than skipping it.
"""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

from archiver.cli import main
from archiver.run.failure_report import Failure, Unread, write_failure_report
from tests.dedupe.test_report_browser import chromium
from tests.support.origin import Server
from tests.support.site import write_config


def test_a_run_report_shows_each_host_headline_and_every_url_in_chromium(tmp_path: Path, origin: Server) -> None:
    for i in range(3):
        origin.add(f"/hot/{i}.jpg", b"<html>no</html>", "text/html", status=403)
    site = tmp_path / "site"
    site.mkdir()
    (site / "post.md").write_text("".join(f"![{i}](http://img.news.test/hot/{i}.jpg)\n" for i in range(3))
                                  + "![gone](http://photos.test/gone.jpg)\n", encoding="utf-8")
    cfg = write_config(tmp_path, origin, retries=0)
    report = tmp_path / "failures.html"
    assert main(["run", "--config", str(cfg), "-q", "--report", str(report)]) == 0
    dom = chromium(tmp_path, report.resolve().as_uri(), "--dump-dom")
    headlines = re.findall(r'<ul id="headlines">(.*?)</ul>', dom, re.S)[0]
    assert "img.news.test: 3 images 403 Forbidden — set a Referer (or a cookie) for this host in [fetch] headers" \
        in headlines
    assert "photos.test: 1 image 404 Not Found — gone at the source" in headlines
    for i in range(3):
        assert f'href="http://img.news.test/hot/{i}.jpg"' in dom
        assert f"post.md:{i + 1}</li>" in dom


def test_hostile_urls_and_file_names_cannot_run_load_or_hide_anything(tmp_path: Path, origin: Server) -> None:
    pwned = origin.url("/pwned.jpg")
    evil_url = f'http://cdn.test/a.jpg?"><img src="{pwned}" onerror="document.title=1"><script>fetch("{pwned}")</script>'
    evil_name = os.fsdecode(b"post-\xe9\x1b[2J\xe2\x80\xaegpj.md")  # a Latin-1 byte, ESC, RIGHT-TO-LEFT OVERRIDE
    failures = [
        Failure(evil_url, "dead", f'403 <b>Forbidden</b><img src="{pwned}">', 403, uses=((evil_name, 3),)),
        Failure("javascript:alert(document.domain)", "rejected", "scheme 'javascript' is not fetched",
                uses=(("a.md", 1),)),
        Failure(f"http://{'x' * 20}.test/<style>body{{display:none}}</style>.png", "failed", "timeout", None),
    ]
    files = write_failure_report(failures, [Unread(f"<iframe src='{pwned}'>.md", None, "cannot read")],
                                 tmp_path / "r.html", {"generated": "now"})
    dom = chromium(tmp_path, files.html.resolve().as_uri(), "--dump-dom")
    assert origin.hits("/pwned.jpg") == 0
    body = dom.split("<body>", 1)[1]
    assert not re.search(r"<(img|script|iframe|style|b)\b", body), body[:3000]
    assert "<title>archiver: images not archived</title>" in dom  # onerror never ran
    assert "post-\\xe9\\x1b[2J\\u202egpj.md:3" in body
    assert "\u202e" not in dom and "\x1b" not in dom
    assert 'href="javascript:' not in dom  # shown, never a link
    assert "3 URLs on 3 hosts" in body and "Articles not read or not written (1)" in body
    html_source = files.html.read_text(encoding="utf-8")
    tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            tags.append((tag, attrs))

    Tags().feed(html_source)
    assert {t for t, _ in tags} <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "ul",
                                    "li", "a", "section", "small", "span", "table", "thead", "tbody", "tr", "th",
                                    "td", "code", "div"}
    assert sum(t == "style" for t, _ in tags) == 1  # the page's own, in the head
    links = [v or "" for _, attrs in tags for k, v in attrs if k in ("src", "href")]
    assert links and all(v.startswith(("#", "http://cdn.test/", "http://xxxx")) for v in links), links
