"""Every command with a manifest it cannot create or write: one clear line naming the manifest, exit 2, never a
traceback; the reading commands (status, verify) read a manifest that sits in a folder they cannot write."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.cli import main
from tests.support.files import cli_unprivileged, open_folder

CONFIG = '[articles]\nroot = "site"\n[storage]\npath = "archive"\n'
COMMANDS = (["run"], ["status"], ["verify"], ["restore"], ["dedupe"])


def _project(folder: Path) -> Path:
    (folder / "site").mkdir()
    (folder / "site" / "a.md").write_text("no images here\n", encoding="utf-8")
    (folder / "archive").mkdir(mode=0o777)
    (folder / "archive").chmod(0o777)
    cfg = folder / "archiver.toml"
    cfg.write_text(CONFIG, encoding="utf-8")
    return cfg


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_manifest_folder_that_is_a_file_is_one_line_for_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _project(tmp_path)
    (tmp_path / ".archiver").write_text("not a folder", encoding="utf-8")
    assert main(["run", "--config", str(cfg), "-q"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "manifest.sqlite3: cannot create the manifest's folder" in line and "is a file" in line
    for command in (["status"], ["restore"], ["dedupe"]):
        assert main([*command, "--config", str(cfg)]) == 2, command
        assert "no manifest" in _one_line(capsys.readouterr().err)


def test_a_manifest_in_a_folder_nobody_may_write_is_one_line_and_status_still_reads_it() -> None:
    with open_folder() as folder:
        cfg = _project(folder)
        assert main(["run", "--config", str(cfg), "-q"]) == 0  # as root: the manifest exists
        (folder / ".archiver" / "manifest.sqlite3.lock").unlink()
        (folder / ".archiver").chmod(0o555)
        for command in COMMANDS:
            code, out, err = cli_unprivileged([*command, "--config", str(cfg)], folder)
            if command[0] in ("status", "verify"):
                assert code == 0, (command, out, err)
                assert "Traceback" not in err
                continue
            assert code == 2, (command, out, err)
            line = _one_line(err)
            assert str(folder / ".archiver" / "manifest.sqlite3") in line, line
            assert f"the folder {folder / '.archiver'} is not writable" in line, line
        code, out, err = cli_unprivileged(["status", "--config", str(cfg)], folder)
        assert "articles rewritten: 0" in out
        code, out, err = cli_unprivileged(["run", "--dry-run", "--config", str(cfg)], folder)  # reads it too
        assert code == 0 and "dry run: 1 article scanned" in out, (out, err)


def test_a_manifest_folder_nobody_may_create_is_one_line() -> None:
    with open_folder() as folder:
        cfg = _project(folder)
        cfg.write_text(CONFIG + '[manifest]\npath = "locked/state/manifest.sqlite3"\n', encoding="utf-8")
        (folder / "locked").mkdir(mode=0o555)
        (folder / "locked").chmod(0o555)
        for command in COMMANDS:
            code, out, err = cli_unprivileged([*command, "--config", str(cfg)], folder)
            if command[0] == "verify":  # no manifest: it checks the articles' own references
                assert code == 0 and "Traceback" not in err, (out, err)
                continue
            assert code == 2, (command, out, err)
            line = _one_line(err)
            if command[0] == "run":
                assert "cannot create the manifest's folder" in line and "Permission denied" in line, line
            else:
                assert "no manifest" in line, line
