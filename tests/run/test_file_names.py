"""A file name that is not valid UTF-8 (a Latin-1 ``café.md`` from an old system) goes through every command: it
is rewritten and recorded like any other, printed escaped (``caf\\xe9.md``) by run, restore and dedupe, and
restored byte for byte; so are the articles rewritten in the same moment."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.manifest.rows import text_of_bytes
from archiver.manifest.schema import MIGRATIONS
from archiver.manifest.sqlite import Manifest
from tests.support.images import make_jpeg
from tests.support.origin import Server
from tests.support.postgres import manifest_db
from tests.support.site import write_config

LATIN1 = b"caf\xe9.md"  # "café.md" as Latin-1 bytes: not valid UTF-8


@pytest.fixture
def latin1_site(tmp_path: Path, origin: Server) -> dict[Path, bytes]:
    origin.add("/a.jpg", make_jpeg(200, 150, seed=41), "image/jpeg")
    origin.add("/a-copy.jpg", make_jpeg(200, 150, seed=41), "image/jpeg")  # the same bytes: an exact duplicate
    origin.add("/b.jpg", make_jpeg(180, 120, seed=42), "image/jpeg")
    site = tmp_path / "site"
    site.mkdir()
    articles = {
        Path(os.fsdecode(bytes(site) + b"/" + LATIN1)):
            b"![a](http://img.news.test/a.jpg)\n![gone](http://img.news.test/404)\n",
        site / "x.md": b"![b](http://img.news.test/b.jpg)\n![a](http://img.news.test/a.jpg)\n",
        site / "y.md": b"<img src=\"http://img.news.test/b.jpg\">\n![copy](http://img.news.test/a-copy.jpg)\n",
    }
    for path, data in articles.items():
        path.write_bytes(data)
    return articles


def test_a_latin1_file_name_is_rewritten_recorded_printed_and_restored(
    manifest_env: str | None, tmp_path: Path, origin: Server, latin1_site: dict[Path, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(write_config(tmp_path, origin))
    assert main(["run", "--config", cfg, "-q"]) == 0  # the dead link is reported, not an error
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert f"{tmp_path}/site/caf\\xe9.md:2  http://img.news.test/404" in captured.out  # escaped, on one line
    assert "3 articles scanned, 3 rewritten" in captured.out
    for path, data in latin1_site.items():
        assert path.read_bytes() != data and b"img.news.test/a.jpg" not in path.read_bytes(), path

    target = manifest_env or tmp_path / ".archiver" / "manifest.sqlite3"
    with Manifest.open_readonly(target) as m:
        assert sorted(a.path for a in m.rewritten_articles()) == sorted(str(p) for p in latin1_site)
        assert m.pending_rewrites() == []
    with manifest_db(target) as db:
        stored = {row[0] for row in db.execute("SELECT path FROM articles")}
    own = bytes(tmp_path) + b"/site/" + LATIN1  # the file name's own bytes, not a mangled spelling
    assert own in stored if manifest_env is None else text_of_bytes(own) in stored  # PostgreSQL: its TEXT form

    assert main(["status", "--config", cfg]) == 0
    assert "articles rewritten: 3" in capsys.readouterr().out
    assert main(["verify", "--config", cfg]) == 0
    assert main(["dedupe", "--config", cfg]) == 0
    report = json.loads((tmp_path / "report" / "dedupe.json").read_text(encoding="utf-8"))
    shown = {a for g in report["groups"] for m in g["members"] for a in m["articles"]}
    assert f"{tmp_path}/site/caf\\xe9.md" in shown  # a.jpg, archived from two URLs: an "exact" group
    capsys.readouterr()

    assert main(["restore", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path}/site/caf\\xe9.md: restored 1 of 1 URLs (byte-identical to before its first rewrite)" in out
    assert "3 articles restored, 5 URLs put back; 0 URLs could not be restored" in out
    for path, data in latin1_site.items():
        assert path.read_bytes() == data, path


def test_a_dry_run_prints_the_diff_of_a_latin1_file_name(
    tmp_path: Path, origin: Server, latin1_site: dict[Path, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--config", str(write_config(tmp_path, origin)), "-q", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"--- {tmp_path}/site/caf\\xe9.md\n" in out
    assert all(path.read_bytes() == data for path, data in latin1_site.items())


def test_a_manifest_written_before_paths_were_kept_as_bytes_is_migrated_and_restored(
    tmp_path: Path, origin: Server, latin1_site: dict[Path, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    """A manifest of schema 4 (UTF-8 paths only) keeps its records: restore still restores what it rewrote."""
    cfg = str(write_config(tmp_path, origin))
    x = tmp_path / "site" / "x.md"
    latin1 = next(p for p in latin1_site if p.name.endswith(".md") and p.name.startswith("caf"))
    latin1.unlink()  # what schema 4 could record: UTF-8 names only
    assert main(["run", "--config", cfg, "-q"]) == 0
    db_path = tmp_path / ".archiver" / "manifest.sqlite3"
    db = sqlite3.connect(db_path, isolation_level=None)
    db.executescript("DROP INDEX assets_search_mark; ALTER TABLE assets DROP COLUMN search_mark; "
                     "DROP INDEX near_duplicates_rule; DROP TABLE host_slots; DROP TABLE host_pauses; "
                     "DROP TABLE pending_writes; DROP TABLE lost_objects; ALTER TABLE renditions DROP COLUMN sha256; "
                     "ALTER TABLE urls DROP COLUMN cause; ALTER TABLE urls DROP COLUMN settings; "
                     "ALTER TABLE assets DROP COLUMN colours; ALTER TABLE assets DROP COLUMN chroma; DROP TABLE settled_articles; "
                     "DROP INDEX assets_id; ALTER TABLE assets DROP COLUMN id; DROP TABLE counters; DROP TABLE queue; "
                     "DROP TABLE gc_deletions; "
                     "ALTER TABLE assets DROP COLUMN source; DROP INDEX assets_key; DROP INDEX renditions_key; "
                     "DROP TABLE rekey_moves; DROP TABLE moved_keys; DROP TABLE hash_index; "
                     "DROP TABLE workers; DROP INDEX assets_identity_phash; ALTER TABLE assets DROP COLUMN content; "
                     "DROP TABLE article_refs; CREATE TABLE pair_searches (asset TEXT PRIMARY KEY REFERENCES "
                     "assets(sha256), max_distance INTEGER NOT NULL, rule INTEGER NOT NULL, searched_at REAL NOT NULL); "
                     "PRAGMA user_version=4;")
    db.close()
    assert main(["restore", "--config", cfg]) == 0
    assert x.read_bytes() == latin1_site[x]
    db = sqlite3.connect(db_path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    db.close()
