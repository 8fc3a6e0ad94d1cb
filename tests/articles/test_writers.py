"""An article another program is writing is left alone: a real process holding it open for appending (a generator)
would lose every later write when the rename replaces the file. Also: the file read must still be that file, in that
state (inode, size, mtime), right before the rename."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from archiver.articles.files import load_article
from archiver.articles.rewrite import write_atomic
from archiver.articles.writers import _lease_refused, _proc_writer, open_for_writing
from archiver.cli import main
from archiver.errors import ArticleError
from tests.support.images import make_jpeg
from tests.support.origin import Server
from tests.support.site import write_config

# Appends a line, says "ready", then appends one more line each time it reads one from stdin; exits on EOF.
GENERATOR = """
import sys
with open(sys.argv[1], "a", encoding="utf-8") as out:
    out.write("generated line 1\\n"); out.flush()
    print("ready", flush=True)
    n = 1
    for _ in sys.stdin:
        n += 1
        out.write(f"generated line {n}\\n"); out.flush()
        print("wrote", flush=True)
"""


class Generator:
    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", GENERATOR, str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "ready\n"

    def write_more(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("more\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "wrote\n"

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(10)


@pytest.fixture
def generator(tmp_path: Path) -> Iterator[Generator]:
    article = tmp_path / "site" / "live.md"
    article.parent.mkdir()
    article.write_text("![a](http://img.news.test/a.jpg)\n", encoding="utf-8")
    gen = Generator(article)
    yield gen
    gen.close()


def test_an_article_a_generator_is_appending_to_is_left_for_the_next_run(
    tmp_path: Path, origin: Server, generator: Generator, capsys: pytest.CaptureFixture[str]
) -> None:
    origin.add("/a.jpg", make_jpeg(120, 90, seed=71), "image/jpeg")
    article = tmp_path / "site" / "live.md"
    cfg = str(write_config(tmp_path, origin))
    assert main(["run", "--config", cfg, "-q"]) == 1  # a re-run may fix it: exit 1
    out = capsys.readouterr().out
    assert f"[failed] {article}  — another program has it open for writing; not written" in out
    generator.write_more()  # had the run replaced the file, this line would have gone to the old one: lost
    generator.close()
    expected = "![a](http://img.news.test/a.jpg)\ngenerated line 1\ngenerated line 2\n"
    assert article.read_text(encoding="utf-8") == expected
    assert main(["run", "--config", cfg, "-q"]) == 0  # closed now: the next run rewrites it, keeping every line
    text = article.read_text(encoding="utf-8")
    assert text.startswith("![a](/archive/") and text.endswith("generated line 1\ngenerated line 2\n")


def test_the_kernel_lease_and_the_proc_search_both_see_the_writer(generator: Generator, tmp_path: Path) -> None:
    article = tmp_path / "site" / "live.md"
    fd = os.open(article, os.O_RDONLY)
    try:
        assert _lease_refused(fd) is True
        assert _proc_writer(fd) == f"process {generator.proc.pid} (python3) has it open for writing" or \
            _proc_writer(fd) == f"process {generator.proc.pid} (python) has it open for writing"
        generator.close()
        assert _lease_refused(fd) is False and _proc_writer(fd) is None and open_for_writing(fd) is None
    finally:
        os.close(fd)


def test_readers_do_not_hold_a_rewrite_back(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_bytes(b"old\n")
    reader = subprocess.Popen([sys.executable, "-c", f"f = open({str(path)!r}); input()"], stdin=subprocess.PIPE)
    try:
        time.sleep(0.3)
        article = load_article(path)
        write_atomic(path, b"new\n", expected=article.raw, state=article.state)
        assert path.read_bytes() == b"new\n"
    finally:
        reader.kill()
        reader.wait()


def test_a_file_replaced_or_touched_since_it_was_read_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_bytes(b"same bytes\n")
    article = load_article(path)
    other = tmp_path / "b.md"
    other.write_bytes(b"same bytes\n")
    os.replace(other, path)  # an editor's save: another inode, the same bytes
    with pytest.raises(ArticleError, match="replaced by another file since it was read"):
        write_atomic(path, b"new\n", expected=article.raw, state=article.state)
    article = load_article(path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # written again, the same bytes
    with pytest.raises(ArticleError, match="changed since it was read"):
        write_atomic(path, b"new\n", expected=article.raw, state=article.state)
    assert path.read_bytes() == b"same bytes\n" and [p.name for p in tmp_path.iterdir()] == ["a.md"]
