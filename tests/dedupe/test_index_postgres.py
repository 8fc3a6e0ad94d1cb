"""The near-duplicate index of a PostgreSQL manifest: kept on this machine (``$XDG_CACHE_HOME/archiver/pg-….index``)
by the process holding the writer's lock, appended to by each search like the folder beside a SQLite manifest, and
rebuilt, with one log line, when another machine's searcher has moved the manifest's index on; searched in memory
when no such folder can be made or the manifest is opened without the lock. Pairs and groups equal the from-scratch
computation throughout."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from archiver.dedupe.pairs import infos_from_rows, stream_groups, update_pairs
from archiver.dedupe.reference import build_groups
from archiver.manifest.sqlite import Manifest
from tests.dedupe.test_pairs import PREFER, _infos, _record, synthetic_signatures
from tests.support.postgres import PostgresServer


def _rebuilt(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "rebuilding it" in r.getMessage()]


def _groups(m: Manifest) -> None:
    assert stream_groups(m, 10, PREFER, lambda shas: infos_from_rows(m, shas)) == build_groups(_infos(m), 10, PREFER)


def test_the_index_of_a_postgresql_manifest_is_kept_on_this_machine(
        postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    url = postgres_server.url(postgres_server.new_database().rsplit("/", 1)[1], password="pw-one")
    sigs = synthetic_signatures(120, seed=8)
    third = len(sigs) // 3
    here, there = tmp_path / "here", tmp_path / "there"
    monkeypatch.setenv("XDG_CACHE_HOME", str(here))
    caplog.set_level(logging.INFO, logger="archiver")
    with Manifest.open(url) as m:
        folder = m.index_folder
        assert folder is not None and folder.parent == here / "archiver" and folder.name.startswith("pg-")
        _record(m, sigs[:third], 0)
        update_pairs(m, 10)
        generation = (folder / "variants" / "GENERATION").read_text()
        _record(m, sigs[third:2 * third], third)
        update_pairs(m, 10)  # appended to: one more generation, nothing rebuilt
        assert (folder / "variants" / "GENERATION").read_text() != generation
        assert not _rebuilt(caplog)
        _groups(m)
    with Manifest.open(url.replace("pw-one", "pw-two") + "?sslmode=disable&application_name=other") as m:
        assert m.index_folder == folder  # the database's folder, whatever password or options reach it
    monkeypatch.setenv("PGPASSWORD", "pw-one")
    with Manifest.open(url.replace(":pw-one", "")) as m:
        assert m.index_folder == folder  # the password in the environment (or ~/.pgpass), not in the URL
    monkeypatch.delenv("PGPASSWORD")
    other = postgres_server.new_database()
    with Manifest.open(other) as m:
        assert m.index_folder not in (None, folder)  # another database on the same server: a folder of its own
    with Manifest.open(url, lock=False) as m:
        assert m.index_folder is None  # only the writer's lock holder writes it
    # another machine (its own cache) searches next: its index is made from the manifest, and ours is then stale
    monkeypatch.setenv("XDG_CACHE_HOME", str(there))
    with Manifest.open(url) as m:
        _record(m, sigs[2 * third:-10], 2 * third)
        update_pairs(m, 10)
        assert m.index_folder is not None and m.index_folder.parent == there / "archiver"
        _groups(m)
    caplog.clear()
    monkeypatch.setenv("XDG_CACHE_HOME", str(here))
    with Manifest.open(url) as m:
        _record(m, sigs[-10:], len(sigs) - 10)
        update_pairs(m, 10)
        assert len(_rebuilt(caplog)) == 1  # one line, and never a search of the stale copy
        _groups(m)
    # no folder can be made (the cache path is a file): said once, searched in memory, same groups
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    caplog.clear()
    with Manifest.open(url) as m:
        update_pairs(m, 10, rescan=True)
        assert any("no local folder for its near-duplicate index" in r.getMessage() for r in caplog.records)
        _groups(m)
