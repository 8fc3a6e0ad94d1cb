"""Article files as users have them: names from the corpus, and actions run as an unprivileged user."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

NOBODY = 65534

CORPUS_NAMES = [
    '"""""""""\'普华永道：5G对全球经济的影响\'""""""""".md',
    "+_&~_%！'^…….md",
    "© Amir Hossein Kamali _ امیرحسین کمالی.md",
    "(更新) Twitter 在全球遭遇宕机.md",
    "B端决策类产品｜任务中断回溯设计.md",
    "with  two spaces $HOME `x` *.md",
]


def run_unprivileged(action: Callable[[], str]) -> str:
    """Run ``action`` as user nobody when we are root (root ignores permission bits), in a child process."""
    if os.geteuid() != 0:
        return action()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            result = action()
        except BaseException as exc:
            result = f"{type(exc).__name__}: {exc}"
        os.write(write_end, result.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        output = reader.read().decode()
    os.waitpid(pid, 0)
    return output


@contextlib.contextmanager
def open_folder() -> Iterator[Path]:
    """A folder an unprivileged user can reach and write (pytest's tmp_path is private to root); removed after,
    whatever modes the test left inside."""
    folder = Path(tempfile.mkdtemp(prefix="archiver-test-"))
    folder.chmod(0o777)
    try:
        yield folder
    finally:
        for sub in folder.rglob("*"):
            if sub.is_dir() and not sub.is_symlink():
                sub.chmod(0o755)
        shutil.rmtree(folder)


def cli_unprivileged(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """``archiver ARGS`` in-process as user nobody (when root), in ``cwd``: (exit code, stdout, stderr); a traceback
    from the command is returned as stderr with exit code -1."""
    import json

    def attempt() -> str:
        import io
        import traceback
        from contextlib import redirect_stderr, redirect_stdout

        from archiver.cli import main

        os.chdir(cwd)
        out, err = io.StringIO(), io.StringIO()
        try:
            with redirect_stdout(out), redirect_stderr(err):
                code = main(args)
        except BaseException:
            code, err = -1, io.StringIO(traceback.format_exc())
        return json.dumps([code, out.getvalue(), err.getvalue()])

    text = run_unprivileged(attempt)
    try:
        code, out, err = json.loads(text)
    except ValueError:
        return -1, "", text
    return code, out, err
