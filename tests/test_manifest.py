"""The manifest: migrations, URL/asset/article records, locking, read-only snapshots."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from archiver.errors import ManifestError
from archiver.manifest import MIGRATIONS, ArticleReplacement, Manifest
from archiver.model import Asset, ImageFormat, Rendition

JPEG = ImageFormat("jpeg", "image/jpeg", "jpg")
WEBP = ImageFormat("webp", "image/webp", "webp")


def _asset(sha: str) -> Asset:
    return Asset(sha, JPEG, 1234, 640, 480, "f" * 16, "0" * 16, 1, (Rendition(320, 320, 240, WEBP, b"x" * 10),))


def test_created_with_current_schema_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "m" / "manifest.sqlite3"
    Manifest.open(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "manifest.sqlite3"
    Manifest.open(path).close()
    sqlite3.connect(path).execute(f"PRAGMA user_version={len(MIGRATIONS) + 5}")
    with pytest.raises(ManifestError, match="newer than this archiver"):
        Manifest.open(path)


def test_second_writer_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "manifest.sqlite3"
    with Manifest.open(path), pytest.raises(ManifestError, match="another archiver run"):
        Manifest.open(path)
    Manifest.open(path).close()  # the lock is released on close


def test_url_asset_and_article_records(tmp_path: Path) -> None:
    sha = "a" * 64
    with Manifest.open(tmp_path / "m.sqlite3") as m:
        m.record_url("https://x/1.jpg", "failed", reason="timeout", attempts=5)
        m.record_asset(_asset(sha), "aa/aa/" + sha + ".jpg", ["aa/aa/" + sha + "-320w.webp"])
        m.record_url("https://x/1.jpg", "archived", asset=sha, attempts=1)
        m.record_url("https://y/same-bytes.jpg", "archived", asset=sha, attempts=1)
        m.record_url("https://x/gone.jpg", "dead", reason="404 Not Found", http_status=404, attempts=1)
        state = m.url_states(["https://x/1.jpg"])["https://x/1.jpg"]
        assert (state.status, state.asset, state.attempts) == ("archived", sha, 6)
        assert m.asset(sha).key == "aa/aa/" + sha + ".jpg"
        assert m.rendition_keys(sha) == {(320, "webp"): "aa/aa/" + sha + "-320w.webp"}
        m.record_article("/p.md", "b" * 64, "c" * 64, [ArticleReplacement(3, 9, "old", "new", "old")])
        m.record_article("/p.md", "c" * 64, "d" * 64, [ArticleReplacement(1, 2, "o2", "n2", "o2")])
        assert [len(g) for g in m.article_replacements("/p.md")] == [1, 1]
        counts = m.counts()
        assert counts["archived"] == 2 and counts["dead"] == 1 and counts["duplicate_urls"] == 1
        assert counts["articles"] == 1
        assert [f.url for f in m.failures()] == ["https://x/gone.jpg"]
    snap = Manifest.snapshot(tmp_path / "m.sqlite3")
    snap.record_url("https://z/new.jpg", "dead")  # writes go to memory only
    assert Manifest.open_readonly(tmp_path / "m.sqlite3").counts()["dead"] == 1


def test_status_of_missing_manifest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no manifest yet"):
        Manifest.open_readonly(tmp_path / "nope.sqlite3")
