"""A run does not parse again the articles an earlier run left fully archived (their bytes are recorded with the
scan's fingerprint), and never trusts that record for bytes, settings or finder code that differ."""

from __future__ import annotations

from pathlib import Path

import pytest

import archiver.run.pipeline as pipeline
from archiver.cli import main
from tests.support.images import make_jpeg
from tests.support.origin import Server
from tests.support.postgres import manifest_db
from tests.support.site import snapshot, write_config


def _no_parsing(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    parsed: list[Path] = []
    real = pipeline.scan_article

    def counting(path, cfg, own, *args):  # type: ignore[no-untyped-def]
        parsed.append(path)
        return real(path, cfg, own, *args)

    monkeypatch.setattr(pipeline, "scan_article", counting)
    return parsed


def test_second_run_parses_no_article_and_reports_the_same(
    manifest_env: str | None, tmp_path: Path, origin: Server, site: dict[str, bytes], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = write_config(tmp_path, origin)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    first = capsys.readouterr().out
    assert "2 articles scanned, 2 rewritten" in first
    rows = manifest_db(manifest_env or tmp_path / ".archiver/manifest.sqlite3").execute("SELECT count(*) FROM settled_articles")
    assert rows.fetchone()[0] == 2  # both articles were written pointing only at the archive

    parsed = _no_parsing(monkeypatch)
    before = snapshot(tmp_path)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    second = capsys.readouterr().out
    assert parsed == []
    assert snapshot(tmp_path) == before  # nothing written, the manifest included
    # the same counts as the run that parsed them: every reference it found, now pointing at the archive
    refs = int(first.split(" rewritten; ")[1].split(" image references")[0])
    assert f"2 articles scanned, 0 rewritten; {refs} image references, {refs} of them already pointing at the" in second


def test_changed_bytes_new_settings_and_lost_objects_are_parsed_again(
    manifest_env: str | None, tmp_path: Path, origin: Server, site: dict[str, bytes], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = write_config(tmp_path, origin)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    capsys.readouterr()
    parsed = _no_parsing(monkeypatch)

    # an article edited after the run: its new image is archived
    origin.add("/news/new.jpg", make_jpeg(seed=77))
    hexo = tmp_path / "site/_posts/hexo.md"
    hexo.write_bytes(hexo.read_bytes() + b"\n![new](http://img.news.test/news/new.jpg)\n")
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert parsed == [hexo]
    assert origin.hits("/news/new.jpg") == 1 and b"img.news.test/news/new.jpg" not in hexo.read_bytes()
    capsys.readouterr()

    # a setting that decides what is found (a new front-matter field): every article is read again
    parsed.clear()
    text = cfg.read_text().replace("[articles]", '[articles]\nfront_matter_fields = ["headimg", "hero"]')
    cfg.write_text(text)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert len(parsed) == 2
    capsys.readouterr()
    parsed.clear()
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert parsed == []  # recorded again under the new settings

    # an object lost from storage: the articles pointing at it must be read to store it again
    archive = tmp_path / "archive"
    victim = next(p for p in archive.rglob("*.jpg"))
    victim.unlink()
    main(["verify", "--config", str(cfg), "-q"])
    capsys.readouterr()
    parsed.clear()
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert len(parsed) == 2 and victim.exists()


def test_responsive_articles_are_settled_once_their_attributes_are_added(
    tmp_path: Path, origin: Server, site: dict[str, bytes], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An article of archive URLs is not settled while [rewrite] responsive may still add attributes to it: the
    run that turns responsive on reads every article and adds them; the run after reads none and changes nothing."""
    cfg = write_config(tmp_path, origin)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    text = cfg.read_text().replace("[storage]", "[rewrite]\nresponsive = true\n[storage]", 1)
    cfg.write_text(text)
    parsed = _no_parsing(monkeypatch)
    before = {p: p.read_bytes() for p in (tmp_path / "site").rglob("*.md")}
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert len(parsed) == 2
    after = {p: p.read_bytes() for p in before}
    assert any(b'decoding="async"' in after[p] and b'decoding="async"' not in before[p] for p in before)
    capsys.readouterr()
    parsed.clear()
    snap = snapshot(tmp_path)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert parsed == [] and snapshot(tmp_path) == snap
