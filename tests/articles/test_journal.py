"""The write-ahead step of every article write (archiver.articles.journal), with a real manifest and real files:
no article is written unless its record is, and a record a killed run left pending is settled by the file's hash."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from archiver.articles.files import load_article
from archiver.articles.journal import settle_pending, sha256, write_recorded
from archiver.cli import main
from archiver.errors import ManifestError
from archiver.manifest.sqlite import Manifest
from archiver.model import RESTORE, ArticleReplacement
from tests.support.images import make_jpeg
from tests.support.origin import Server
from tests.support.site import write_config

OLD, NEW = b"![a](http://o/a.jpg)\n", b"![a](/archive/a.jpg)\n"
SPAN = [ArticleReplacement(5, 19, "http://o/a.jpg", "/archive/a.jpg", "http://o/a.jpg")]


def test_a_record_that_cannot_be_written_leaves_the_article_unwritten_and_the_run_goes_on(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    origin.add("/a.jpg", make_jpeg(120, 90, seed=51), "image/jpeg")
    site = tmp_path / "site"
    site.mkdir()
    originals = {site / f"{n}.md": b"![a](http://img.news.test/a.jpg)\n" for n in ("p", "q", "r")}
    for path, data in originals.items():
        path.write_bytes(data)
    cfg = str(write_config(tmp_path, origin))
    db_path = tmp_path / ".archiver" / "manifest.sqlite3"
    Manifest.open(db_path).close()
    db = sqlite3.connect(db_path)  # the manifest refuses this one record, as a full disk or a broken file would
    db.execute("CREATE TRIGGER refuse BEFORE INSERT ON pending_writes WHEN NEW.path LIKE '%/q.md' "
               "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    db.commit()
    db.close()

    assert main(["run", "--config", cfg, "-q"]) == 1
    out = capsys.readouterr().out
    q = site / "q.md"
    assert f"[failed] {q}  — not written, because its record cannot be written:" in out
    assert "database or disk is full" in out
    assert q.read_bytes() == originals[q]  # not rewritten: nothing could have restored it
    assert all(p.read_bytes() != originals[p] for p in originals if p != q)  # the others were
    assert not list(site.glob(".archiver-tmp-*"))
    with Manifest.open_readonly(db_path) as m:
        assert [Path(a.path).name for a in m.rewritten_articles()] == ["p.md", "r.md"] and not m.pending_rewrites()

    db = sqlite3.connect(db_path)
    db.execute("DROP TRIGGER refuse")
    db.commit()
    db.close()
    assert main(["run", "--config", cfg, "-q"]) == 0
    assert q.read_bytes() != originals[q]
    assert main(["restore", "--config", cfg]) == 0
    assert all(p.read_bytes() == data for p, data in originals.items())


def _pending(m: Manifest, path: Path, before: bytes, after: bytes, reason: str = "archive") -> None:
    m.intend_rewrite(str(path), sha256(before), sha256(after), [] if reason == RESTORE else [SPAN], reason)


def test_pending_writes_are_settled_by_the_file_s_hash(tmp_path: Path) -> None:
    renamed, never, edited, gone = (tmp_path / f"{n}.md" for n in ("renamed", "never", "edited", "gone"))
    renamed.write_bytes(NEW)  # killed after the rename
    never.write_bytes(OLD)  # killed before it
    edited.write_bytes(NEW.replace(b"\n", b" and an edit made since\n"))
    with Manifest.open(tmp_path / "m.sqlite3") as m:
        for path in (renamed, never, edited, gone):
            _pending(m, path, OLD, NEW)
        lines = settle_pending(m)
        # by path: edited (confirmed: restore finds our spans by what they hold), gone, never (dropped), renamed
        assert [line.rsplit(": ", 1)[1] for line in lines] == ["recorded", "recorded", "dropped", "recorded"]
        assert "edited.md: the archive write of an interrupted run is changed since" in lines[0]
        assert "renamed.md: the archive write of an interrupted run is in place" in lines[3]
        assert sorted(Path(a.path).name for a in m.rewritten_articles()) == ["edited.md", "gone.md", "renamed.md"]
        assert m.article_replacements(str(renamed)) == [SPAN] and m.pending_rewrites() == []
        assert settle_pending(m) == []


def test_a_pending_restore_forgets_the_article_only_if_it_happened(tmp_path: Path) -> None:
    done, undone = tmp_path / "done.md", tmp_path / "undone.md"
    with Manifest.open(tmp_path / "m.sqlite3") as m:
        for path in (done, undone):
            m.record_article(str(path), sha256(OLD), sha256(NEW), SPAN)
            _pending(m, path, NEW, OLD, RESTORE)
        done.write_bytes(OLD)  # the restore's rename happened
        undone.write_bytes(NEW + b"edited\n")  # it did not, and the article was edited since: the record stays
        settle_pending(m)
        assert [Path(a.path).name for a in m.rewritten_articles()] == ["undone.md"]
        assert m.article_replacements(str(undone)) == [SPAN]


def test_a_second_write_while_one_is_pending_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_bytes(OLD)
    with Manifest.open(tmp_path / "m.sqlite3") as m:
        _pending(m, path, b"something else", OLD)
        with pytest.raises(ManifestError, match="not written, because its record cannot be written"):
            write_recorded(m, load_article(path), NEW, [SPAN], "archive")
        assert path.read_bytes() == OLD and not list(tmp_path.glob(".archiver-tmp-*"))
        settle_pending(m)  # the file holds the pending write's "after": it is confirmed
        write_recorded(m, load_article(path), NEW, [SPAN], "archive")
        assert path.read_bytes() == NEW and len(m.article_replacements(str(path))) == 2
