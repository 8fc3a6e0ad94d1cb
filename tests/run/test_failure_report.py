"""The failure report (`run --report`, `archiver report`): the CSV parses back to every image not archived, with
its host, reason, hint and the articles (file:line) using it; hostile names stay data; only a report is replaced."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.run.failure_report import CSV_HEADER, Failure, Unread, group, write_failure_report
from tests.support.images import make_jpeg
from tests.support.origin import Server
from tests.support.site import write_config

HTML_PAGE = b"<!doctype html><title>x</title>"


def _rows(path: Path) -> list[dict[str, str]]:
    text = path.read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert tuple(reader.fieldnames or ()) == CSV_HEADER
    return list(reader)


def _site(tmp: Path, origin: Server) -> Path:
    for i in range(3):
        origin.add(f"/hot/{i}.jpg", HTML_PAGE, "text/html", status=403)
    origin.add("/ok.jpg", make_jpeg(64, 48, seed=5), "image/jpeg")
    site = tmp / "site"
    site.mkdir()
    (site / "a.md").write_text(
        "# A\n\n![0](http://img.news.test/hot/0.jpg)\n![1](http://img.news.test/hot/1.jpg)\n"
        "![ok](http://photos.test/ok.jpg)\n![gone](http://photos.test/gone.jpg)\n![1 again](http://img.news.test/hot/1.jpg)\n",
        encoding="utf-8")
    (site / "b.md").write_text("x\n\n![0 again](http://img.news.test/hot/0.jpg)\n![2](http://img.news.test/hot/2.jpg)\n"
                               "![rel](../relative.jpg)\n", encoding="utf-8")
    return write_config(tmp, origin, base_url="", retries=0)


def test_run_report_lists_every_image_not_archived_by_host_and_reason(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _site(tmp_path, origin)
    out = tmp_path / "out" / "failures.html"
    assert main(["run", "--config", str(cfg), "-q", "--report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "report: 5 images not archived, on 3 hosts" in printed
    rows = _rows(out.with_suffix(".csv"))
    by_url: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_url.setdefault(r["url"], []).append(r)
    assert sorted(by_url) == ["../relative.jpg", "http://img.news.test/hot/0.jpg", "http://img.news.test/hot/1.jpg",
                              "http://img.news.test/hot/2.jpg", "http://photos.test/gone.jpg"]
    hot0 = by_url["http://img.news.test/hot/0.jpg"]
    assert sorted((r["article"].rsplit("/", 1)[-1], r["line"]) for r in hot0) == [("a.md", "3"), ("b.md", "3")]
    hot1 = by_url["http://img.news.test/hot/1.jpg"]  # used twice in one article: both lines are places to fix
    assert sorted((r["article"].rsplit("/", 1)[-1], r["line"]) for r in hot1) == [("a.md", "4"), ("a.md", "7")]
    assert {r["host"] for r in hot0} == {"img.news.test"} and {r["http_status"] for r in hot0} == {"403"}
    assert {r["outcome"] for r in hot0} == {"dead"} and "Referer" in hot0[0]["hint"]
    (gone,) = by_url["http://photos.test/gone.jpg"]
    assert gone["http_status"] == "404" and gone["hint"].startswith("gone at the source")
    (rel,) = by_url["../relative.jpg"]
    assert rel["outcome"] == "rejected", rel  # a path on disk outside the articles' folders (local images)
    assert rel["hint"] == "a file on disk outside the articles' folders: set [articles] site_root, or fix the path"
    page = out.read_text(encoding="utf-8")
    assert "img.news.test: 3 images 403 Forbidden — set a Referer (or a cookie) for this host in [fetch] headers" in page

    # `archiver report` builds the same from the manifest (the earlier run's outcomes) and the articles on disk
    again = tmp_path / "again.html"
    assert main(["report", "--config", str(cfg), "--output", str(again)]) == 0
    assert "5 images not archived, on 3 hosts" in capsys.readouterr().out
    assert sorted((r["url"], r["article"].rsplit("/", 1)[-1], r["line"]) for r in _rows(again.with_suffix(".csv"))) \
        == sorted((r["url"], r["article"].rsplit("/", 1)[-1], r["line"]) for r in rows)
    assert "img.news.test: 3 images 403 Forbidden" in again.read_text(encoding="utf-8")

    # a second run reports the same (the dead ones from the manifest, not fetched again)
    hits = origin.total_hits()
    assert main(["run", "--config", str(cfg), "-q", "--report", str(out)]) == 0
    assert origin.total_hits() == hits
    assert len(_rows(out.with_suffix(".csv"))) == len(rows)
    assert "img.news.test: 3 images 403 Forbidden" in out.read_text(encoding="utf-8")


def test_a_report_path_holding_another_file_is_refused_before_the_run(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _site(tmp_path, origin)
    mine = tmp_path / "notes.csv"
    mine.write_text("my own spreadsheet\n", encoding="utf-8")
    assert main(["run", "--config", str(cfg), "-q", "--report", str(tmp_path / "notes.html")]) == 2
    assert "notes.csv exists and is not a report archiver wrote" in capsys.readouterr().err
    assert mine.read_text(encoding="utf-8") == "my own spreadsheet\n"
    assert origin.total_hits() == 0  # refused before any work
    assert main(["report", "--config", str(cfg), "--output", str(tmp_path / "site")]) != 0  # a folder


def test_csv_keeps_hostile_names_as_data_and_defuses_formulas(tmp_path: Path) -> None:
    evil_name = os.fsdecode(b"caf\xe9\x1b[2J\xe2\x80\xae.md")  # not UTF-8, ESC, U+202E
    failures = [
        Failure('http://cdn.test/a.jpg?q="<script>alert(1)</script>,x\n', "dead", "403 Forbidden", 403,
                uses=((evil_name, 4), ("=HYPERLINK(\"http://evil\").md", 7))),
        Failure("http://cdn.test/b.jpg", "failed", "timeout after 30 s", None, uses=()),
    ]
    files = write_failure_report(failures, [Unread("-bad.md", 2, "not UTF-8 and no charset")],
                                 tmp_path / "r.html", {"generated": "now"})
    rows = _rows(files.csv)
    assert len(rows) == 4
    a = [r for r in rows if r["url"].startswith("http://cdn.test/a.jpg")]
    assert a[0]["url"] == 'http://cdn.test/a.jpg?q="<script>alert(1)</script>,x\\n'
    assert a[0]["article"] == "caf\\xe9\\x1b[2J\\u202e.md" and a[0]["line"] == "4"
    assert a[1]["article"] == "'=HYPERLINK(\"http://evil\").md"
    (b,) = [r for r in rows if r["url"] == "http://cdn.test/b.jpg"]
    assert b["outcome"] == "failed" and b["article"] == "" and b["hint"] == "a re-run retries these"
    (skipped,) = [r for r in rows if r["outcome"] == "skipped"]
    assert skipped["article"] == "'-bad.md" and skipped["line"] == "2"
    raw = files.csv.read_bytes()
    assert b"\x1b" not in raw and "\u202e".encode() not in raw
    raw.decode("utf-8")  # always valid UTF-8


def test_hosts_and_reasons_are_ordered_by_size_with_one_headline_each() -> None:
    fs = [Failure(f"http://big.test/{i}.jpg", "dead", "403 Forbidden (hotlink protection? ...)", 403) for i in range(3)]
    fs += [Failure(f"http://big.test/{i}.png", "dead", "403 Forbidden — the host may need a Referer or cookie", 403)
           for i in range(2)]  # another wording of the same answer: one group
    fs += [Failure("http://big.test/x.jpg", "dead", "404 Not Found", 404)]
    fs += [Failure("http://small.test/y.jpg", "rejected", "not an image (text/html)", None)]
    hosts = group(fs)
    assert [h.host for h in hosts] == ["big.test", "small.test"]
    assert hosts[0].headline == ("big.test: 5 images 403 Forbidden — set a Referer (or a cookie) for this host in "
                                 "[fetch] headers (and 1 more for 1 other reasons)")
    assert hosts[1].headline.startswith("small.test: 1 image not an image (text/html) — the server answers")
    (js,) = group([Failure("javascript:alert(1)", "rejected", "javascript: URLs are never fetched")])
    assert js.headline == "(no host): 1 image javascript: URLs are never fetched — not an http(s) URL: nothing to archive"


def test_a_report_inside_the_articles_is_not_read_as_one_and_a_csv_path_is_refused(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Jekyll user runs `archiver run . --report report/failures.html`: the page lands among the articles. Its links
    are the failed images' URLs; the next run must not take it for an article (and once one of those images comes
    back, rewrite the report and make every later `restore` fail on it). A path ending in .csv names the CSV the
    page would replace: refused before the run."""
    cfg = _site(tmp_path, origin)
    site = tmp_path / "site"
    page = site / "report" / "failures.html"
    assert main(["run", str(site), "--config", str(cfg), "-q", "--report", str(page)]) == 0
    capsys.readouterr()
    origin.add("/hot/0.jpg", make_jpeg(64, 48, seed=9), "image/jpeg")  # the CDN lets it through now
    before = page.read_bytes()
    assert main(["run", str(site), "--config", str(cfg), "-q", "--retry-dead"]) == 0
    out = capsys.readouterr().out
    assert "2 articles scanned" in out and page.read_bytes() == before
    assert main(["run", str(page), "--config", str(cfg), "-q"]) == 0  # named on its own: skipped, said so
    assert "failures.html  — a report archiver wrote, not an article" in capsys.readouterr().out
    assert main(["restore", "--config", str(cfg), str(site)]) == 0
    assert page.read_bytes() == before
    hits = origin.total_hits()
    assert main(["run", "--config", str(cfg), "-q", "--report", str(tmp_path / "failures.csv")]) == 2
    err = capsys.readouterr().err
    assert "the report is an HTML page and its CSV is written beside it" in err and "failures.html" in err
    assert origin.total_hits() == hits and not (tmp_path / "failures.csv").exists()
