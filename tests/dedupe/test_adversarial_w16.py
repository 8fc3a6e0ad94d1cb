"""Adversarial review (w16) of the sixth round's changes to ``archiver dedupe``: the references found in an article
recorded per content (``article_refs``, migration 20) and articles naming none of the report's images not parsed,
the report's source URLs read for its assets only, and ``--undo`` marking the JSON export ``"applied": false``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.manifest.sqlite import Manifest
from tests.support.library import Library, build_library, count_parses
from tests.support.origin import Server
from tests.support.postgres import manifest_db


@pytest.fixture
def library(manifest_env: str | None, tmp_path: Path, origin: Server) -> Library:
    return build_library(tmp_path, origin)


def _export(lib: Library) -> dict:  # type: ignore[type-arg]
    out = json.loads((lib.root / "report" / "dedupe.json").read_text(encoding="utf-8"))
    out.pop("generated")
    return out


def _target(lib: Library) -> Path | str:
    return os.environ.get("ARCHIVER_MANIFEST_URL") or lib.root / ".archiver" / "manifest.sqlite3"


def test_a_damaged_article_refs_row_nested_too_deep_is_read_as_not_recorded(manifest_target: Path | str) -> None:
    """Found in review: a damaged row whose text is JSON nested deeper than the decoder's recursion limit (``[[[[…``)
    raised RecursionError out of ``Manifest.article_refs`` (only ValueError was caught), so `archiver dedupe` ended
    with "internal error" and no report instead of parsing that article again."""
    fp = "fp"
    with Manifest.open(manifest_target) as m:
        m.record_article_refs([("1" * 64, "markdown", ["/archive/x.jpg"]), ("2" * 64, "html", ["/archive/y.jpg"])],
                              fp, [("1" * 64, "markdown"), ("2" * 64, "html")])
        with m._tx() as db:
            db.execute("UPDATE article_refs SET refs = ? WHERE sha256 = ?", ("[" * 100_000, "2" * 64))
        assert m.article_refs(fp) == {("1" * 64, "markdown"): ["/archive/x.jpg"]}
        m.record_article_refs([("2" * 64, "html", ["/archive/y.jpg"])], fp, [("1" * 64, "markdown"), ("2" * 64, "html")])
        assert m.article_refs(fp) == {("1" * 64, "markdown"): ["/archive/x.jpg"], ("2" * 64, "html"): ["/archive/y.jpg"]}


def test_a_report_over_a_damaged_article_refs_row_is_the_report_of_a_fresh_parse(library: Library) -> None:
    """The same through the command: every recorded row made unreadable (too deep), the report is what it was."""
    assert main(["dedupe", "--config", str(library.config)]) == 0
    first = _export(library)
    db = manifest_db(_target(library))
    db.execute("UPDATE article_refs SET refs = ?", ("[" * 100_000,))
    assert main(["dedupe", "--config", str(library.config)]) == 0
    assert _export(library) == first
    assert all(json.loads(refs) is not None for (refs,) in db.execute("SELECT refs FROM article_refs"))  # anew


def test_undo_that_could_not_restore_an_article_leaves_the_export_saying_applied(
    library: Library, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found in review: `dedupe --undo` made the export say ``"applied": false`` even when an article could not be
    restored (here it became unreadable: a NUL byte) and still points at the canonical copies, exit status 1. Now the
    export goes on saying ``true`` until an undo restores every article; then it says ``false``."""
    assert main(["dedupe", "--config", str(library.config), "--apply"]) == 0
    export = library.root / "report" / "dedupe.json"
    post = library.root / "site" / "post.md"
    applied = post.read_bytes()
    post.write_bytes(applied + b"\x00")
    capsys.readouterr()
    assert main(["dedupe", "--config", str(library.config), "--undo"]) == 1
    out = capsys.readouterr().out
    assert "undo: 1 article restored" in out and "(not restored)" in out and '"applied": false' not in out
    assert json.loads(export.read_text(encoding="utf-8"))["applied"] is True
    post.write_bytes(applied)  # readable again: the next undo restores it, and the export says so
    assert main(["dedupe", "--config", str(library.config), "--undo"]) == 0
    out = capsys.readouterr().out
    assert "undo: 1 article restored" in out and '"applied": false' in out
    assert json.loads(export.read_text(encoding="utf-8"))["applied"] is False


def test_an_article_edited_between_its_hash_and_its_parse_is_recorded_under_the_bytes_parsed(
    library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held up: the bytes hashed first (to look the record up) and the bytes parsed may differ when the article is
    written meanwhile; what is recorded is under the parsed bytes' hash, so no later report trusts references of
    other bytes."""
    from archiver.commands import dedupe as command

    assert main(["dedupe", "--config", str(library.config)]) == 0
    first = _export(library)
    post = library.root / "site" / "post.md"
    original = post.read_bytes()
    post.write_bytes(original + b"\nEdited.\n")  # not recorded: looked up, then loaded again
    real = command.read_raw

    def racing(path: Path, *args: object, **kwargs: object) -> bytes:
        data = real(path, *args, **kwargs)  # type: ignore[arg-type]
        if path.name == "post.md":
            path.write_bytes(b"no images here\n")  # written just after the hash
        return data

    monkeypatch.setattr(command, "read_raw", racing)
    assert main(["dedupe", "--config", str(library.config)]) == 0
    monkeypatch.setattr(command, "read_raw", real)

    def users(rep: dict) -> set[str]:  # type: ignore[type-arg]
        return {Path(a).name for g in rep["groups"] for m in g["members"] for a in m["articles"]}

    assert "post.md" not in users(_export(library))  # what it holds when parsed: nothing
    assert main(["dedupe", "--config", str(library.config)]) == 0
    assert "post.md" not in users(_export(library))
    post.write_bytes(original)
    assert main(["dedupe", "--config", str(library.config)]) == 0
    assert _export(library) == first


def test_migrate_manifest_carries_the_recorded_references_both_ways(
    library: Library, tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held up: `migrate-manifest` copies article_refs (SQLite -> PostgreSQL and back) and a report on the copy
    parses no article again and is the same."""
    assert main(["dedupe", "--config", str(library.config)]) == 0
    first = _export(library)
    on_postgres = "ARCHIVER_MANIFEST_URL" in os.environ
    other = str(tmp_path / "copy.sqlite3") if on_postgres else postgres_url
    assert main(["migrate-manifest", "--config", str(library.config), "--to", other]) == 0
    if on_postgres:
        monkeypatch.delenv("ARCHIVER_MANIFEST_URL")
        os.replace(other, library.root / ".archiver" / "manifest.sqlite3")
    else:
        monkeypatch.setenv("ARCHIVER_MANIFEST_URL", other)
    parsed = count_parses(monkeypatch)
    assert main(["dedupe", "--config", str(library.config)]) == 0
    assert _export(library) == first and parsed == []


def test_references_recorded_under_one_parser_version_are_not_trusted_under_another(
    library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in review: the record's fingerprint held the finder's own code but not the libraries it parses with
    (markdown-it-py, PyYAML, charset-normalizer): after an upgrade that finds other references in the same bytes, a
    report went on using the old ones, where the code before the record parsed every article with the library
    installed. Another version of one of them now means every article is parsed again."""
    import markdown_it


    parsed = count_parses(monkeypatch)
    assert main(["dedupe", "--config", str(library.config)]) == 0
    first = _export(library)
    parsed.clear()
    assert main(["dedupe", "--config", str(library.config)]) == 0 and parsed == []
    monkeypatch.setattr(markdown_it, "__version__", "99.0")
    assert main(["dedupe", "--config", str(library.config)]) == 0
    assert sorted(parsed) == ["other.md", "page.html", "post.md"] and _export(library) == first
    parsed.clear()
    assert main(["dedupe", "--config", str(library.config)]) == 0 and parsed == []
