"""Crash points for the kill-and-resume tests: ``ARCHIVER_CRASH_AT=name:n`` SIGKILLs the process at the n-th hit;
``ARCHIVER_CRASH_AT=name:n:raise`` raises an unexpected error there instead (RuntimeError, as a bug would);
``ARCHIVER_CRASH_AT=name:n:stop`` stops the process there (SIGSTOP) until the test sends SIGCONT (a concurrency
test's way to run another command at exactly that moment).

Each point marks a moment between two durable steps (a download on disk, an object stored, a manifest row
committed, an article's temp file written, an article renamed into place). Unset — always, outside tests — a
point costs one truth test.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_SPEC = os.environ.get("ARCHIVER_CRASH_AT", "")
_NAME, _, _REST = _SPEC.partition(":")
_NTH, _, _HOW = _REST.partition(":")
_hits: Counter[str] = Counter()


def crash_point(name: str) -> None:
    if not _SPEC or name != _NAME:
        return
    _hits[name] += 1
    if _hits[name] == int(_NTH or 1):
        if _HOW == "raise":
            raise RuntimeError(f"injected fault at {name}")
        if _HOW == "stop":
            os.kill(os.getpid(), signal.SIGSTOP)
            return
        os.kill(os.getpid(), signal.SIGKILL)
