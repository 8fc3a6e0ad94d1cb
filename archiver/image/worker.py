"""The worker side of archiver.image.pool: a process that runs jobs from a pipe, ignores SIGINT and SIGTERM (the
parent decides) and exits when its parent is gone."""

from __future__ import annotations

import os
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

PARENT_CHECK_SECONDS = 0.5
STARTED = "started"  # sent when a job is unpickled (its module imported): its CPU clock starts now
SIGNALS = {signal.SIGINT, signal.SIGTERM}


def serve(conn: Connection, parent: int) -> None:
    """Run jobs ``(fn, args)`` from ``conn``, sending back STARTED then ``(True, result)`` or ``(False, exception)``,
    until a ``None`` job or the pipe closes. Started with SIGINT and SIGTERM blocked (by the pool's slot thread):
    they are set to be ignored before they are unblocked, so a Ctrl-C during start-up never reaches Python."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    watch_parent(parent)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        except Exception as exc:  # the job's function cannot be imported here
            conn.send((False, RuntimeError(f"cannot load the job: {type(exc).__name__}: {exc}")))
            continue
        if job is None:
            return
        conn.send(STARTED)
        fn, args = job
        try:
            result: tuple[bool, Any] = (True, fn(*args))
        except Exception as exc:
            result = (False, exc)
        try:
            conn.send(result)
        except Exception as exc:  # an exception (or result) that cannot be pickled
            conn.send((False, RuntimeError(f"{type(exc).__name__}: {exc}")))


def watch_parent(parent: int) -> None:
    """Exit as soon as ``parent`` is no longer this process's parent (it died; we were re-parented)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()
