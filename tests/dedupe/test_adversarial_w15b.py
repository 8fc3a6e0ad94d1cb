"""Adversarial checks of the dedupe report's paths and pages (review round w15b)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.dedupe.report import write_report
from tests.dedupe.test_report_browser import chromium
from tests.support.library import build_library, synthetic_groups
from tests.support.origin import Server


@pytest.mark.parametrize("name", ["r#1.html", "a%20b.html", "what?.html"])
def test_a_report_whose_name_holds_url_syntax_still_loads_its_pages(tmp_path: Path, name: str) -> None:
    """The page loads its data pages by a relative URL made from its data folder's name: a name holding "#", "?" or
    "%20" (legal in a file name) is that text, not a fragment, a query or an escape."""
    files = write_report(synthetic_groups(60), tmp_path / name, tmp_path / "r.json", {"generated": "now"})
    dom = chromium(tmp_path, f"{files.html.resolve().as_uri()}#page=2", "--dump-dom")
    assert 'data-page="2"' in dom and len(re.findall(r"<section\b", dom)) == 10, re.findall(r"cannot load [^<\"]*", dom)


@pytest.mark.parametrize(("report", "export"), [("report", "report/dedupe.json"), ("out/r.html", "out")])
def test_report_paths_one_inside_another_are_refused_before_any_work(
        tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        report: str, export: str) -> None:
    """`--report report --json report/dedupe.json` (the report taken for a folder): the export made a folder at
    the page's path, then after all the work the page could not be written there (exit 1), and that folder
    refused every later report at that path. Now one line, exit 2, nothing written."""
    lib = build_library(tmp_path, origin)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["dedupe", "--config", str(lib.config), "--report", report, "--json", export]) == 2
    err = capsys.readouterr().err
    assert "inside" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
