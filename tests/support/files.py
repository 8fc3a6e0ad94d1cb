"""Article files as users have them: names from the corpus, and actions run as an unprivileged user."""

from __future__ import annotations

import os
from collections.abc import Callable

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
