"""The command line under conditions a user or the environment creates: one clear line, never a traceback.

A manifest path naming someone else's database, a corrupt manifest, a malformed proxy in the environment, a
report path naming a pipe or a folder, stdout closed early or on a full disk, a terminal that cannot show the
file names: each ends in one line naming what is wrong and an exit code, with nothing of the user's changed.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from archiver.cli import main
from tests.support.images import make_jpeg
from tests.support.origin import Server
from tests.support.paths import ROOT_DIR
from tests.support.site import write_config

COMMANDS = (["run"], ["run", "--dry-run"], ["status"], ["verify"], ["restore"], ["dedupe"])


def archiver(*args: str, cwd: Path, env: dict[str, str] | None = None, shell_tail: str = "") -> subprocess.CompletedProcess[str]:
    """``python -m archiver ARGS`` (piped through ``shell_tail``, e.g. ``| head -c 1``), as a user runs it."""
    command = " ".join([sys.executable, "-m", "archiver", *(f"'{a}'" for a in args)]) + shell_tail
    return subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT_DIR), **(env or {})})


@pytest.fixture
def archived(tmp_path: Path, origin: Server) -> Path:
    """A site with one article whose image `archiver run` archived; returns its config."""
    origin.add("/a.jpg", make_jpeg(64, 48, seed=901), "image/jpeg")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.md").write_text("![a](http://img.news.test/a.jpg)\n", encoding="utf-8")
    cfg = write_config(tmp_path, origin)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    return cfg


def test_a_manifest_path_naming_another_database_is_refused_and_the_database_left_as_it_is(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.md").write_text("![a](http://img.news.test/a.jpg)\n", encoding="utf-8")
    cfg = write_config(tmp_path, origin)
    app = tmp_path / "app.sqlite3"
    with sqlite3.connect(app) as db:
        db.execute("CREATE TABLE users (name TEXT)")
        db.execute("INSERT INTO users VALUES ('ada')")
    cfg.write_text(cfg.read_text() + '\n[manifest]\npath = "app.sqlite3"\n')
    before = app.read_bytes()
    for command in COMMANDS:
        assert main([*command, "--config", str(cfg), "-q"]) == 2, command
        err = capsys.readouterr().err
        assert err.startswith(f"archiver: {app}: not an archiver manifest"), (command, err)
    assert app.read_bytes() == before  # no table added, nothing migrated
    assert origin.hits("/a.jpg") == 0


def test_a_corrupt_manifest_is_one_line_for_every_command(
    tmp_path: Path, archived: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db_path = tmp_path / ".archiver" / "manifest.sqlite3"
    with sqlite3.connect(db_path) as db:  # hand-edited: a table gone
        db.execute("DROP TABLE near_duplicates")
    for command in (["status"], ["dedupe"]):
        assert main([*command, "--config", str(archived), "-q"]) == 2
        assert capsys.readouterr().err == f"archiver: {db_path}: no such table: near_duplicates\n"
    db_path.write_bytes(b"not a database at all" * 100)
    for command in COMMANDS:
        assert main([*command, "--config", str(archived), "-q"]) == 2, command
        err = capsys.readouterr().err
        assert err.startswith(f"archiver: {db_path}: ") and err.count("\n") == 1, err  # not a database, malformed


@pytest.mark.parametrize("proxy", ["http://[broken", "http://:3128", "ftp://proxy.internal/"])
def test_a_malformed_proxy_in_the_environment_stops_the_run_at_start_up(
    tmp_path: Path, archived: Path, origin: Server, proxy: str
) -> None:
    (tmp_path / "site" / "b.md").write_text("![b](http://img.news.test/b.jpg)\n", encoding="utf-8")
    result = archiver("run", "--config", str(archived), "-q", cwd=tmp_path,
                      env={"http_proxy": proxy, "HTTP_PROXY": proxy, "no_proxy": "", "NO_PROXY": ""})
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == f"archiver: http_proxy in the environment: {proxy!r} is not a proxy URL such as " \
                            "http://proxy.example:3128\n"
    assert result.stdout == "" and origin.hits("/b.jpg") == 0


def test_a_report_path_naming_a_pipe_or_a_folder_is_refused_and_left_as_it_is(
    tmp_path: Path, archived: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "report.html"
    os.mkfifo(fifo)
    folder = tmp_path / "out"
    folder.mkdir()
    for option, target in (("--report", fifo), ("--json", fifo)):
        assert main(["dedupe", "--config", str(archived), option, str(target)]) == 2  # a usage error
        assert capsys.readouterr().err == f"archiver: cannot write the report: {target}: not a regular file " \
                                          "(left as it is)\n"
    assert main(["dedupe", "--config", str(archived), "--report", str(folder)]) == 2  # said before any work
    assert capsys.readouterr().err == f"archiver: {folder} is a folder: the report page cannot be written there " \
                                      "(left as it is); give --report or --json another path\n"
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and folder.is_dir() and not any(folder.iterdir())


def test_output_a_reader_closes_early_or_a_full_disk_is_not_a_traceback(tmp_path: Path, archived: Path) -> None:
    result = archiver("status", "--config", str(archived), cwd=tmp_path, shell_tail=" | head -c 1")
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    assert result.stderr == ""  # the reader went away: nothing to complain about
    if stat.S_ISCHR(os.stat("/dev/full").st_mode):
        result = archiver("status", "--config", str(archived), cwd=tmp_path, shell_tail=" > /dev/full")
        assert result.stderr == "archiver: cannot write: No space left on device\n"


def test_file_names_the_terminal_cannot_show_are_printed_escaped(tmp_path: Path, origin: Server) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "新闻.md").write_text("![x](http://img.news.test/404)\n", encoding="utf-8")
    cfg = write_config(tmp_path, origin)
    result = archiver("run", "--config", str(cfg), cwd=tmp_path, env={"PYTHONIOENCODING": "ascii"})
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "\\u65b0\\u95fb.md:1  http://img.news.test/404" in result.stdout


def test_run_from_a_subfolder_without_a_config_says_where_the_config_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sub = tmp_path / "site" / "posts"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "no archiver.toml in" in err and "archiver init" in err and "Traceback" not in err
    (tmp_path / "archiver.toml").write_text('[articles]\nroot = "site/posts"\n', encoding="utf-8")
    assert main(["run"]) == 2
    assert f"{tmp_path / 'archiver.toml'} is in a folder above: run from there, or pass --config" in \
        capsys.readouterr().err
    # with a PATH (or another command) the defaults work, but with none of that config's settings: said first
    (sub / "a.md").write_text("no images\n", encoding="utf-8")
    assert main(["run", "a.md"]) == 0
    assert f"the defaults are used; {tmp_path / 'archiver.toml'} is in a folder above" in capsys.readouterr().err


@pytest.mark.parametrize("lease", ["inf", "1e300", "0.5", "nan"])
def test_a_worker_lease_that_would_strand_urls_is_refused(
    lease: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--lease inf`: a killed worker's URLs would wait for good (found by review)."""
    monkeypatch.setenv("ARCHIVER_MANIFEST_URL", "postgresql://nobody@127.0.0.1:1/none")
    assert main(["worker", "--lease", lease]) == 2
    assert "--lease must be between 1 and 3600 seconds" in capsys.readouterr().err


def test_a_ctrl_c_while_the_command_line_is_made_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The parser imports the named command's module (most of a short command's time): a Ctrl-C then is the usual
    one line and exit 130, not a traceback."""
    import archiver.cli as cli

    def interrupted(argv: object = None) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["status"]) == 130
    assert capsys.readouterr().err.strip() == "archiver: interrupted"


@pytest.mark.parametrize("delay", [0.15, 0.3, 0.5, 0.8])
def test_a_ctrl_c_at_any_moment_of_a_command_is_never_a_traceback(tmp_path: Path, delay: float) -> None:
    """SIGINT while `archiver dedupe` loads its modules (numpy, SciPy, numba: ~1 s), or once it has: exit 130 and one
    line, or the command's own answer if it was done (here: no config), never a traceback."""
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "archiver", "dedupe", "--config", str(tmp_path / "none.toml")],
                            stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err and "Exception ignored" not in err, err
    # 130 and the line; or the command's own answer (2: no config) if it was done, then the signal during the
    # interpreter's exit (-SIGINT: it ends the process as the signal would, saying nothing more)
    assert (proc.returncode, err.strip()) in ((130, "archiver: interrupted"), (2, err.strip()),
                                             (-signal.SIGINT, err.strip())), err
    assert len(err.strip().splitlines()) == 1, err
