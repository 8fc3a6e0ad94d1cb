"""What the archiver writes to a terminal: one status line (redrawn in place, or a plain line every few seconds when
the output is not a terminal), a log handler that clears that line before a message, so the two never mix, and how
a file name is shown (``shown_path``: any name prints, on one line)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
import time
from collections.abc import Callable
from typing import TextIO

CLEAR = "\r\033[K"
# Bytes of a file name that are not UTF-8 (Python keeps them as lone surrogates U+DC80-U+DCFF), other lone
# surrogates, and control characters (C0, DEL, C1): none can be printed as they are.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"  # the byte itself, as ls -b shows it
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def shown_path(path: object) -> str:
    """A file name as the archiver prints it: a name that is not valid UTF-8 (a Latin-1 ``caf\\xe9.md``) shows each
    such byte as ``\\xNN``, and a control character (newline, ESC) likewise, so every name prints on one line on
    any terminal and in any encoding, and two different names never look the same except by a backslash."""
    text = str(path)
    return _UNPRINTABLE.sub(_escape, text) if _UNPRINTABLE.search(text) else text


class StatusLine:
    """``render()`` is the line. On a terminal it is redrawn in place at most every ``tty_interval`` seconds,
    otherwise written as a plain line every ``interval`` seconds; nothing at all when not ``enabled`` (``-q``).

    Synchronous callers call ``update()`` as work progresses (it draws when a redraw is due); asynchronous ones
    ``start()`` a loop that draws on its own and ``stop()`` it."""

    def __init__(self, render: Callable[[], str], stream: TextIO | None = None, *, enabled: bool = True,
                 interval: float = 10.0, tty_interval: float = 0.2) -> None:
        self.render = render
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.interval = tty_interval if self.tty else interval
        self.started = self.last = time.monotonic()
        self._drawn = False
        self._task: asyncio.Task[None] | None = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def draw(self) -> None:
        if self.tty:
            self.stream.write(CLEAR + self.render())
            self._drawn = True
        elif self.enabled:
            self.stream.write(self.render() + "\n")
        else:
            return
        self.stream.flush()

    def update(self) -> None:
        """Draw if the last draw is ``interval`` seconds old."""
        now = time.monotonic()
        if self.enabled and now - self.last >= self.interval:
            self.last = now
            self.draw()

    def clear(self) -> None:
        """Remove the line from a terminal (before a log message, and at the end)."""
        if self._drawn:
            self.stream.write(CLEAR)
            self.stream.flush()
            self._drawn = False

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.draw()

    def start(self) -> None:
        if self.enabled:
            self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.clear()
        self.stream.flush()


class ProgressAwareHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A log handler that clears the status line before writing, so the two never interleave."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.progress: StatusLine | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.progress is not None:
            self.progress.clear()
        super().emit(record)


def attach(line: StatusLine | None, logger: str = "archiver") -> None:
    """Have the logger's status-aware handlers clear ``line`` before each message (None: detach)."""
    for handler in logging.getLogger(logger).handlers:
        if isinstance(handler, ProgressAwareHandler):
            handler.progress = line
