"""The process pool that decodes and hashes images, and its workers' tie to the process that started them.

A worker whose parent dies (SIGKILL, the OOM killer) would otherwise sit on its task queue forever; each
worker watches its parent and exits when it is gone.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

PARENT_CHECK_SECONDS = 0.5


def make_executor() -> ProcessPoolExecutor:
    """A pool sized to the cores (at most 8); spawn, not fork (the parent has threads)."""
    return ProcessPoolExecutor(
        max_workers=max(1, min(os.cpu_count() or 1, 8)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=watch_parent,
        initargs=(os.getpid(),),
    )


def watch_parent(parent: int) -> None:
    """In a worker: exit as soon as ``parent`` is no longer this process's parent (it died; we were re-parented)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()
