"""The manifest: migrations, URL/asset/article records, locking, read-only snapshots."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from archiver.errors import ManifestError
from archiver.manifest.schema import MIGRATIONS
from archiver.manifest.sqlite import Manifest
from archiver.model import ArticleReplacement, Asset, ImageFormat, Rendition

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


def test_second_writer_is_refused_with_a_clear_message(manifest_target: Path | str) -> None:
    path = manifest_target
    with Manifest.open(path), pytest.raises(ManifestError, match="another archiver run"):
        Manifest.open(path)
    Manifest.open(path).close()  # the lock is released on close


def test_url_asset_and_article_records(manifest_target: Path | str) -> None:
    sha = "a" * 64
    with Manifest.open(manifest_target) as m:
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
        assert counts["bytes_original"] == 1234 and counts["bytes_renditions"] == 10
        assert m.article_generations("/p.md")[1].replacements == [ArticleReplacement(1, 2, "o2", "n2", "o2")]
    snap = Manifest.snapshot(manifest_target)
    snap.record_url("https://z/new.jpg", "dead")  # writes go to memory only
    assert snap.counts() == {**counts, "dead": 2}
    assert Manifest.open_readonly(manifest_target).counts()["dead"] == 1


def test_status_of_missing_manifest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no manifest yet"):
        Manifest.open_readonly(tmp_path / "nope.sqlite3")


def _variant_asset(sha: str) -> Asset:
    return Asset(sha, JPEG, 1, 8, 8, "f" * 16, "0" * 16, phash_variants=("f" * 16,) * 8, dhash_variants=("0" * 16,) * 8,
                 grey="00" * 64)


def test_migration_4_drops_untracked_pairs_and_leaves_every_asset_to_search(tmp_path: Path) -> None:
    from archiver.manifest.schema import migrate

    path = tmp_path / "v3.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    for i, script in enumerate(MIGRATIONS[:3]):
        db.executescript("BEGIN;" + script + f"; PRAGMA user_version={i + 1}; COMMIT;")
    for sha in ("a" * 64, "b" * 64):
        db.execute("INSERT INTO assets (sha256, format, mime, ext, bytes, key, first_seen, phash_variants, "
                   "dhash_variants) VALUES (?, 'jpeg', 'image/jpeg', 'jpg', 1, ?, 0, ?, ?)",
                   (sha, sha, ",".join(["f" * 16] * 8), ",".join(["0" * 16] * 8)))
    db.execute("INSERT INTO near_duplicates (a, b, phash_distance, dhash_distance) VALUES (?, ?, 1, 1)",
               ("a" * 64, "b" * 64))
    db.close()
    with Manifest.open(path) as m:
        assert m.counts()["near_duplicate_pairs"] == 0  # found again, with what filtering needs, by the next search
        assert [sha for _, sha in m.unsearched(10, 1)] == ["a" * 64, "b" * 64]
    migrate(sqlite3.connect(path), path)  # at the current version: nothing to do


def test_pairs_and_search_marks_are_recorded_together_or_not_at_all(manifest_target: Path | str) -> None:
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    with Manifest.open(manifest_target) as m:
        for sha in (a, b, c):
            m.record_asset(_variant_asset(sha), sha, [])
        with pytest.raises(ManifestError):  # a pair not in (a < b) order fails the CHECK: the marks roll back too
            m.record_pair_search([(b, a, 1, 2, "identity", 0.5, 1)], [a, b], 10, 1)
        assert len(m.unsearched(10, 1)) == 3 and m.recorded_pairs(10, 1) == []
        assert [r.rowid for r in m.unsearched(10, 1)] == [1, 2, 3]  # ids in the order first seen
        assert [r.sha256 for r in m.signature_rows([3, 1])] == [a, c]
        m.record_pair_search([(a, b, 3, 9, "rot90", 4.5, 7), (a, c, 0, 1, "identity", 0.0, 0)], [a, b, c], 8, 1)
        assert m.unsearched(8, 1) == [] and len(m.unsearched(9, 1)) == 3 and len(m.unsearched(8, 2)) == 3
        assert m.searched_below(10, 1) == 3 and m.searched_below(8, 1) == 0
        assert sorted(m.recorded_pairs(8, 1)) == [(a, b, 3, 9), (a, c, 0, 1)]
        assert m.recorded_pairs(6, 1) == [(a, c, 0, 1)]  # accepted only from distance 7 on
        assert m.recorded_pairs(8, 2) == []
        assert len(m.unsearched(8, 0)) == 3 and m.searched_below(8, 0) == 0  # a mark of a later rule is not one
        m.record_pair_search([], [c], 8, 2)  # another rule: the old rule's pairs go
        assert m.counts()["near_duplicate_pairs"] == 0
        assert [r.sha256 for r in m.unsearched(8, 1)] == [c] and [r.sha256 for r in m.unsearched(8, 2)] == [a, b]
        assert m.unsearched(8, 2, limit=1) == m.unsearched(8, 2)[:1]
        m.record_pair_search([], [a], 8, 2, replace_all=True)  # a rescan: every other mark goes
        assert [r.sha256 for r in m.unsearched(8, 2)] == [b, c]
        m.record_pair_search([(a, c, 0, 1, "identity", 0.0, 0)], [c, b], 9, 2, replace_all=True)
        assert [r.sha256 for r in m.unsearched(9, 2)] == [a] and m.recorded_pairs(9, 2) == [(a, c, 0, 1)]
        m.record_pair_search([], [c, a, c], 11, 2)  # ids 1 and 3, not 2: b's mark stays as it was
        assert [r.sha256 for r in m.unsearched(11, 2)] == [b] and m.unsearched(9, 2) == []
        for distance, rule in ((11, 2), (12, 2), (9, 2), (11, 3), (5, 1)):  # the ids alone, as a whole search reads them
            assert m.unsearched_ids(distance, rule) == [r.rowid for r in m.unsearched(distance, rule)]
        # the ids a search passes come ascending; others (numpy integers, repeated, in any order) are put in order
        m.record_pair_search([], (), 12, 2, searched_ids=[np.int64(3), 1, 3])
        assert m.unsearched_ids(12, 2) == [2] and [r.sha256 for r in m.unsearched(12, 2)] == [b]
        m.record_pair_search([], (), 12, 2, searched_ids=[2])
        assert m.unsearched_ids(12, 2) == [] and m.unsearched_ids(13, 2) == [1, 2, 3]


def test_the_assets_to_search_are_found_through_an_index_not_by_reading_every_asset(tmp_path: Path) -> None:
    """What a run must search (``unsearched``, ``searched_below``, dropping another rule's pairs) is read through
    the indexes of migration 16: the cost of a run grows with what it adds, not with the archive."""
    with Manifest.open(tmp_path / "m.sqlite3") as m:
        statements: list[str] = []
        m._db.set_trace_callback(statements.append)  # type: ignore[attr-defined]
        m.unsearched(10, 3)
        m.unsearched(10, 3, limit=1)
        m.unsearched_ids(10, 3)
        m.searched_below(10, 3)
        m.record_pair_search([], [], 10, 3)
        m._db.set_trace_callback(None)  # type: ignore[attr-defined]
        reads = [s for s in statements if "assets" in s or "near_duplicates" in s]
        assert len(reads) >= 6
        for sql in reads:
            plan = " ".join(r[3] for r in m._db.execute("EXPLAIN QUERY PLAN " + sql))
            assert "SCAN" not in plan and "USING" in plan, (sql, plan)


def test_migration_16_copies_the_search_marks_beside_the_assets(tmp_path: Path) -> None:
    path = tmp_path / "v15.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    for i, script in enumerate(MIGRATIONS[:15]):
        db.executescript("BEGIN;" + script + f"; PRAGMA user_version={i + 1}; COMMIT;")
    for n, sha in enumerate(("a" * 64, "b" * 64, "c" * 64, "d" * 64), 1):
        db.execute("INSERT INTO assets (sha256, format, mime, ext, bytes, key, first_seen, phash_variants, "
                   "dhash_variants, id) VALUES (?, 'jpeg', 'image/jpeg', 'jpg', 1, ?, 0, ?, ?, ?)",
                   (sha, sha, ",".join(["f" * 16] * 8), ",".join(["0" * 16] * 8), n))
    db.executemany("INSERT INTO pair_searches (asset, max_distance, rule, searched_at) VALUES (?, ?, ?, 0)",
                   [("a" * 64, 10, 2), ("b" * 64, 8, 2), ("c" * 64, 10, 1)])
    db.close()
    with Manifest.open(path) as m:
        assert [r.sha256 for r in m.unsearched(10, 2)] == ["b" * 64, "c" * 64, "d" * 64]
        assert [r.sha256 for r in m.unsearched(8, 2)] == ["c" * 64, "d" * 64] and m.searched_below(10, 2) == 1
        # migration 21: the search records themselves are gone once copied (nothing read them since 16)
        assert m._db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'pair_searches'").fetchone()[0] == 0


def test_a_manifest_whose_folder_name_holds_uri_syntax_is_read_where_it_is(tmp_path: Path) -> None:
    path = tmp_path / "50% done?mode=rw#x" / "manifest.sqlite3"
    with Manifest.open(path) as m:
        m.record_url("https://x/gone.jpg", "dead", reason="404", attempts=1)
    before = sorted(p.name for p in tmp_path.iterdir())
    with Manifest.open_readonly(path) as m:
        assert m.counts()["dead"] == 1
    assert Manifest.snapshot(path).counts()["dead"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no stray database made beside it


def test_a_read_left_unfinished_closes_quietly_after_the_manifest(tmp_path: Path) -> None:
    """A Ctrl-C while a batch of rows is read leaves the reading generator unfinished; closing it after the manifest
    (at exit) must not try to close a cursor of the closed connection ("Exception ignored ... closed database")."""
    with Manifest.open(tmp_path / "m.sqlite3") as m:
        rows = m._rows_in("SELECT name FROM sqlite_master", "name", ["assets", "urls", "renditions"])
        assert next(rows)
    rows.close()  # no sqlite3.ProgrammingError


def test_source_urls_of_the_report_assets_and_the_assets_reached_through_several(manifest_target: Path | str) -> None:
    """`archiver dedupe` reads the archived URLs of the report's assets only (each asset's oldest first, then by
    URL; URLs that did not archive left out), and which assets several archived URLs reach, without reading every
    URL of the archive into Python."""
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    with Manifest.open(manifest_target) as m:
        for sha in (a, b, c):
            m.record_asset(_asset(sha), "aa/aa/" + sha + ".jpg", ["aa/aa/" + sha + "-320w.webp"])
        for url, sha in (("http://z.test/1.jpg", a), ("http://y.test/2.jpg", a), ("http://x.test/3.jpg", b),
                         ("http://w.test/4.jpg", c), ("http://v.test/5.jpg", c)):
            m.record_url(url, "archived", asset=sha)
        m.record_url("http://u.test/dead.jpg", "dead", reason="404")
        with m._tx() as db:  # two of a's URLs first seen at the same moment: then by URL
            db.execute("UPDATE urls SET first_seen = 5 WHERE url IN ('http://z.test/1.jpg', 'http://y.test/2.jpg')")
            db.execute("UPDATE urls SET first_seen = 1 WHERE url = 'http://v.test/5.jpg'")
            db.execute("UPDATE urls SET status = 'failed' WHERE url = 'http://w.test/4.jpg'")  # tried again, failed
        expected = {a: ["http://y.test/2.jpg", "http://z.test/1.jpg"], b: ["http://x.test/3.jpg"]}
        # asked for a quarter of the assets or more: one pass over the URLs; fewer: looked up by asset. Both alike.
        assert m.source_urls_of([a, b, "f" * 64]) == expected
        assert m.source_urls_of([c]) == {c: ["http://v.test/5.jpg"]}
        for k in range(20):
            sha = f"{k:064x}"
            m.record_asset(_asset(sha), "aa/aa/" + sha + ".jpg", ["aa/aa/" + sha + "-320w.webp"])
        assert m.source_urls_of([a, b, "f" * 64]) == expected
        assert m.source_urls_of({c}) == {c: ["http://v.test/5.jpg"]}
        assert m.assets_with_several_urls() == [a]


def test_article_refs_are_kept_per_content_and_fingerprint(manifest_target: Path | str) -> None:
    """The references `dedupe` found in article bytes: read back under the fingerprint they were found under only;
    rows of another fingerprint, or of contents no longer seen, go when new ones are recorded; a damaged row reads as
    not recorded; texts with quotes, non-ASCII and a lone surrogate come back as they were."""
    odd = ['/archive/a"b.jpg', "/archive/café.jpg", "/archive/\udce9.jpg", ""]
    with Manifest.open(manifest_target) as m:
        assert m.article_refs("fp1") == {}
        m.record_article_refs([("1" * 64, "markdown", odd), ("2" * 64, "html", [])], "fp1",
                              [("1" * 64, "markdown"), ("2" * 64, "html")])
        assert m.article_refs("fp1") == {("1" * 64, "markdown"): odd, ("2" * 64, "html"): []}
        assert m.article_refs("fp2") == {}
        m.record_article_refs([], "fp1", [("1" * 64, "markdown")])  # the html content is gone
        assert list(m.article_refs("fp1")) == [("1" * 64, "markdown")]
        m.record_article_refs([("3" * 64, "markdown", ["x"])], "fp2", [("3" * 64, "markdown")])  # new settings
        assert m.article_refs("fp1") == {} and m.article_refs("fp2") == {("3" * 64, "markdown"): ["x"]}
        with m._tx() as db:
            db.execute("UPDATE article_refs SET refs = 'not json'")
        assert m.article_refs("fp2") == {}
        m.record_article_refs([("3" * 64, "markdown", ["y"])], "fp2", [("3" * 64, "markdown")])
        assert m.article_refs("fp2") == {("3" * 64, "markdown"): ["y"]}
