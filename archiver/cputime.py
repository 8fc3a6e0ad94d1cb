"""CPU seconds by stage, for the benchmarks' per-stage figures: ``ARCHIVER_STAGE_STATS=FILE`` makes `archiver run`
write a JSON object ``{stage: CPU seconds}`` to FILE when it ends. Unset (always, outside benchmarks), ``stage()``
costs one truth test.

Each measured section is synchronous code on one thread (an S3 call in its worker thread, a SQLite statement, the
near-duplicate search), timed with that thread's own CPU clock, so concurrent tasks and other threads never count
in it. What no section claims (the HTTP client, the event loop, scanning, hand-offs) is the process's CPU minus the
sections: `archiver run` reports it as "fetch, loop and the rest".
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, TypeVar

T = TypeVar("T")

ENABLED = bool(os.environ.get("ARCHIVER_STAGE_STATS"))
_spent: dict[str, float] = {}
_lock = threading.Lock()
_local = threading.local()  # .open: [name, started] of this thread's innermost section


_OFF = nullcontext()


def stage(name: str) -> AbstractContextManager[None]:
    """Count this thread's CPU time inside the block under ``name``; a section opened inside another counts only
    for itself (a SQLite statement inside the near-duplicate search is the manifest's time, not the search's)."""
    return _section(name) if ENABLED else _OFF


@contextmanager
def _section(name: str) -> Iterator[None]:
    now = time.thread_time()
    outer = getattr(_local, "open", None)
    if outer is not None:
        add(outer[0], now - outer[1])
    _local.open = [name, now]
    try:
        yield
    finally:
        now = time.thread_time()
        add(name, now - _local.open[1])
        if outer is not None:
            outer[1] = now
        _local.open = outer


def timed(name: str, fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` counted under ``name`` when called (for a function handed to a worker thread)."""
    if not ENABLED:
        return fn

    def call(*args: Any, **kwargs: Any) -> T:
        with stage(name):
            return fn(*args, **kwargs)

    return call


def add(name: str, seconds: float) -> None:
    if ENABLED:
        with _lock:
            _spent[name] = _spent.get(name, 0.0) + seconds


def spent() -> dict[str, float]:
    with _lock:
        return dict(_spent)


def write(extra: dict[str, float]) -> None:
    """Write the stages (and ``extra``) to the file ``ARCHIVER_STAGE_STATS`` names: a new file, or one this wrote
    before (a regular file holding a JSON object), never through a symlink and never over anything else (a manifest
    or an article named by mistake is left alone). A file not written is one warning; the run's outcome is not its."""
    target = os.environ.get("ARCHIVER_STAGE_STATS")
    if not target:
        return
    try:
        fd = os.open(target, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(fd, "r+", encoding="utf-8") as f:
            head = f.read(64)
            if head and not head.lstrip().startswith("{"):
                raise OSError("it holds something else than stage figures: not overwritten")
            f.seek(0)
            f.truncate()
            json.dump({**spent(), **extra}, f, indent=1)
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        logging.getLogger("archiver").warning("ARCHIVER_STAGE_STATS=%s: not written: %s", target, why)
