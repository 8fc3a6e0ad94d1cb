"""The dedupe report replaces only a report: files of the same names that archiver did not write are refused before
anything is written, and stale pages are removed from ``<report>.data/`` only when they are recognisably ours; a
report interrupted part-way leaves the previous one whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archiver.dedupe.report import write_report
from archiver.errors import ArchiverError
from tests.support.library import synthetic_groups


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _pages(data: Path) -> list[str]:
    return sorted(p.name for p in data.iterdir() if p.name.startswith("p") and p.name.endswith(".js"))


def test_stale_pages_are_removed_only_when_they_are_ours(tmp_path: Path) -> None:
    html, data = tmp_path / "dedupe.html", tmp_path / "dedupe.data"
    write_report(synthetic_groups(200), html, tmp_path / "dedupe.json", {"generated": "then"})  # 4 pages
    (data / "p00003.js").write_text("// my own script, which happens to have this name\n", encoding="utf-8")
    (data / "p00004-0badcafe.js").write_text("// and another\n", encoding="utf-8")
    (data / "p00009.js").write_text("dedupeReportPage(9,[]);\n", encoding="utf-8")  # a page of an older version
    (data / "notes.txt").write_text("mine\n", encoding="utf-8")
    files = write_report(synthetic_groups(60), html, tmp_path / "dedupe.json", {"generated": "now"})  # 2 pages
    assert files.pages == 2
    token = json.loads(html.read_text(encoding="utf-8").split("const S = ")[1].split(";\n")[0])["token"]
    assert sorted(p.name for p in data.iterdir()) == sorted(
        ["notes.txt", "p00003.js", "p00004-0badcafe.js", f"p00001-{token}.js", f"p00002-{token}.js"])
    assert (data / "p00003.js").read_text(encoding="utf-8").startswith("// my own script")  # not ours: kept
    export = json.loads((tmp_path / "dedupe.json").read_text(encoding="utf-8"))
    assert export["report"] == "archiver dedupe" and export["generated"] == "now"


@pytest.mark.parametrize("fails_at", [1, 3, 5])
def test_a_report_interrupted_part_way_leaves_the_previous_one_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails_at: int) -> None:
    """A Ctrl-C (or a full disk) while the pages of a new report are written: the previous page, its data pages and
    its export are as they were, and the page loads only its own pages; the next report cleans up."""
    from archiver.dedupe import report

    html, data, export = tmp_path / "dedupe.html", tmp_path / "dedupe.data", tmp_path / "dedupe.json"
    write_report(synthetic_groups(200), html, export, {"generated": "then"})  # 4 pages
    before = _files(tmp_path)
    real, written = report._write, []

    def interrupted(path: Path, data: bytes) -> None:
        written.append(path)
        if len(written) == fails_at:
            raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(report, "_write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_report(synthetic_groups(400), html, export, {"generated": "now"})  # 8 pages
    after = _files(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing of the old report changed
    assert not any(name.startswith(".") for name in after)  # no temporary file left
    monkeypatch.setattr(report, "_write", real)
    files = write_report(synthetic_groups(400), html, export, {"generated": "now"})
    assert len(_pages(data)) == files.pages == 8  # the new report's pages only: the old and the unfinished removed


@pytest.mark.parametrize("whose", ["dedupe.html", "dedupe.json"])
def test_a_file_of_the_user_s_under_a_report_name_is_refused_before_anything_is_written(
    tmp_path: Path, whose: str
) -> None:
    (tmp_path / "dedupe.data").mkdir()
    (tmp_path / whose).write_text("the user's own file\n", encoding="utf-8")
    before = _files(tmp_path)
    with pytest.raises(ArchiverError, match=f"{whose} exists and is not a report archiver wrote: not overwritten"):
        write_report(synthetic_groups(10), tmp_path / "dedupe.html", tmp_path / "dedupe.json", {})
    assert _files(tmp_path) == before


def test_a_symlink_under_a_report_name_is_refused(tmp_path: Path) -> None:
    mine = tmp_path / "mine.html"
    mine.write_text("<title>archiver: duplicate images</title> (a copy the user keeps)\n", encoding="utf-8")
    (tmp_path / "dedupe.html").symlink_to(mine)
    with pytest.raises(ArchiverError, match="not overwritten"):
        write_report(synthetic_groups(10), tmp_path / "dedupe.html", tmp_path / "dedupe.json", {})
    assert (tmp_path / "dedupe.html").is_symlink() and "a copy the user keeps" in mine.read_text(encoding="utf-8")


def test_a_report_of_an_earlier_version_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "dedupe.json").write_text('{\n "generated": "2026-01-01 00:00:00",\n "groups": []\n}\n',
                                          encoding="utf-8")
    write_report(synthetic_groups(10), tmp_path / "dedupe.html", tmp_path / "dedupe.json", {"generated": "now"})
    write_report(synthetic_groups(10), tmp_path / "dedupe.html", tmp_path / "dedupe.json", {"generated": "again"})
    assert json.loads((tmp_path / "dedupe.json").read_text(encoding="utf-8"))["generated"] == "again"


def test_an_old_page_that_cannot_be_removed_is_a_warning_not_a_failed_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The new report is written and in place when the old pages go: one that cannot be removed is left, said once,
    and the report is not called failed."""
    html, data = tmp_path / "dedupe.html", tmp_path / "dedupe.data"
    write_report(synthetic_groups(60), html, tmp_path / "dedupe.json", {"generated": "then"})
    old = _pages(data)
    real_unlink = Path.unlink

    def refused(self: Path, missing_ok: bool = False) -> None:
        if self.parent == data and not self.name.startswith("."):  # an old page (not a temporary file)
            raise PermissionError(13, "Permission denied")
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refused)
    files = write_report(synthetic_groups(60), html, tmp_path / "dedupe.json", {"generated": "now"})
    assert files.pages == 2 and set(old) < set(_pages(data))  # the old ones left, the new ones written
    assert "cannot remove a page of an earlier report" in caplog.text
    assert json.loads((tmp_path / "dedupe.json").read_text(encoding="utf-8"))["generated"] == "now"


def test_undo_marks_the_export_not_applied_and_touches_nothing_else(tmp_path: Path) -> None:
    """`dedupe --undo` makes the export's ``"applied": true`` false, every other byte as it was; an export that does
    not say so (an empty report, a plain run), and a file that is not our export, are left alone."""
    from archiver.dedupe.report import mark_undone

    export = tmp_path / "dedupe.json"
    meta = {"generated": "then", "max_distance": 10, "prefer": ["colour", "area"], "applied": True}
    write_report(synthetic_groups(120), tmp_path / "dedupe.html", export, meta)
    before = export.read_bytes()
    assert mark_undone(export)
    after = export.read_bytes()
    assert after == before.replace(b'\n "applied": true,\n', b'\n "applied": false,\n', 1) and len(after) == len(before) + 1
    assert json.loads(after)["applied"] is False and not mark_undone(export) and export.read_bytes() == after
    write_report([], tmp_path / "dedupe.html", export, {**meta, "applied": True})  # no groups: the list closed at once
    assert mark_undone(export) and json.loads(export.read_text(encoding="utf-8"))["applied"] is False
    mine = tmp_path / "mine.json"
    mine.write_text('{\n "applied": true,\n "groups": []\n}\n', encoding="utf-8")
    assert not mark_undone(mine) and json.loads(mine.read_text(encoding="utf-8"))["applied"] is True
    assert not mark_undone(tmp_path / "missing.json")
    (tmp_path / "folder.json").mkdir()
    assert not mark_undone(tmp_path / "folder.json")
