"""`archiver run --watch`: after the first run, new and changed articles are archived as they are written, by the
operating system's change events or by polling; a signal ends it with exit 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from archiver.cli import main
from tests.support.images import make_jpeg
from tests.support.origin import Server
from tests.support.paths import ROOT_DIR
from tests.support.site import key, write_config
from tests.support.waiting import until


class Lines:
    """A process's stdout, read line by line in a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_for(self, text: str, timeout: float = 60) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: any(text in x for x in self.lines), timeout), "".join(self.lines)


@pytest.mark.parametrize("poll", [None, 0.2], ids=["events", "polling"])
def test_new_and_changed_articles_are_archived_as_they_are_written(
    tmp_path: Path, origin: Server, poll: float | None
) -> None:
    images = {name: make_jpeg(120, 90, seed=900 + i) for i, name in enumerate(("a", "b", "c"))}
    for name, body in images.items():
        origin.add(f"/w/{name}.jpg", body, "image/jpeg")
    cfg = write_config(tmp_path, origin)
    site = tmp_path / "site"
    site.mkdir()
    (site / "first.md").write_text("![a](http://img.news.test/w/a.jpg)\n", encoding="utf-8")
    args = [sys.executable, "-m", "archiver", "run", "--config", str(cfg), "--watch", "-q"]
    if poll is not None:
        args += ["--poll", str(poll)]
    proc = subprocess.Popen(args, cwd=ROOT_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT_DIR)})
    try:
        out = Lines(proc)
        out.wait_for("for new and changed articles")
        assert (site / "first.md").read_text(encoding="utf-8") == f"![a](/archive/{key(images['a'], 'jpg')})\n"

        # a new post, written the way editors and generators do (a temp file renamed), and one that grows
        (site / ".new.md.swp").write_text("![b](http://img.news.test/w/b.jpg)\n", encoding="utf-8")
        os.replace(site / ".new.md.swp", site / "new.md")
        until(lambda: "/archive/" in (site / "new.md").read_text(encoding="utf-8"), "new.md was not archived")
        assert (site / "new.md").read_text(encoding="utf-8") == f"![b](/archive/{key(images['b'], 'jpg')})\n"
        with (site / "first.md").open("a", encoding="utf-8") as f:
            f.write("![c](http://img.news.test/w/c.jpg)\n")
        until(lambda: "w/c.jpg" not in (site / "first.md").read_text(encoding="utf-8"), "first.md not archived")
        assert (site / "first.md").read_text(encoding="utf-8") == (
            f"![a](/archive/{key(images['a'], 'jpg')})\n![c](/archive/{key(images['c'], 'jpg')})\n")
        assert [origin.hits(f"/w/{n}.jpg") for n in "abc"] == [1, 1, 1]  # each fetched once
        out.wait_for("scanned, 1 rewritten")  # each cycle prints its summary (a cycle that did nothing: none)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not list(site.glob(".archiver-tmp-*"))


@pytest.mark.parametrize(("args", "message"), [
    (["--poll", "1"], "--poll: only with --watch"),
    (["--watch", "--poll", "0"], "--poll: 0 seconds is not between 0.05 and 3600"),
    (["--watch", "--dry-run"], "--watch: not with --dry-run"),
    (["--watch", "--report", "r.html"], "--watch: not with --report"),
])
def test_watch_options_that_cannot_work_are_refused(
    tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.md").write_text("x\n", encoding="utf-8")
    assert main(["run", str(tmp_path / "a.md"), *args]) == 2
    assert message in capsys.readouterr().err


def test_a_file_given_is_still_watched_after_its_own_rewrite(tmp_path: Path, origin: Server) -> None:
    """`run --watch post.md`: the run's atomic rewrite puts a new file in its place; later edits are still seen (a
    watch on the file itself lost it: found by review)."""
    bodies = [make_jpeg(100, 80, seed=950 + i) for i in range(3)]
    for i, body in enumerate(bodies):
        origin.add(f"/f/{i}.jpg", body, "image/jpeg")
    cfg = write_config(tmp_path, origin)
    post = tmp_path / "site" / "post.md"
    post.parent.mkdir()
    post.write_text("![0](http://img.news.test/f/0.jpg)\n", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "archiver", "run", str(post), "--config", str(cfg), "--watch", "-q"],
                            cwd=ROOT_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT_DIR)})
    try:
        Lines(proc).wait_for("for new and changed articles")
        for i in (1, 2):  # two edits after the first rewrite, each rewritten in turn
            with post.open("a", encoding="utf-8") as f:
                f.write(f"![{i}](http://img.news.test/f/{i}.jpg)\n")
            until(lambda i=i: f"f/{i}.jpg" not in post.read_text(encoding="utf-8"), f"edit {i} was not archived")
        assert post.read_text(encoding="utf-8") == "".join(
            f"![{i}](/archive/{key(b, 'jpg')})\n" for i, b in enumerate(bodies))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
