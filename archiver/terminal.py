"""What the archiver writes to a terminal: one status line (redrawn in place, or a plain line every few seconds when
the output is not a terminal), a log handler that clears that line before a message, so the two never mix, and the
output boundary every printed line goes through.

Much of what is printed comes from outside: reason phrases and ``Location`` headers a server sent, URLs and file
names an article or a folder holds, messages a storage server returned. ``printable`` escapes the characters that
would drive a terminal instead of being shown (C0 controls with ESC, DEL, C1 controls with CSI, bidirectional
overrides such as U+202E that reorder what is displayed, lone surrogates from undecodable file names) as ``\\x1b``,
``\\u202e``, … (a byte of a file name that is not UTF-8 as ``\\xNN``, as ``ls -b`` shows it); ``shown_path``
prints any file name on one line; ``shown`` also masks every secret in the text (archiver.redaction.redact_text). ``say`` prints
lines through ``shown``, the log handler formats every record through it, and the status line through
``printable``. Reports written to files escape the same characters (archiver.dedupe.report).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
import time
from collections.abc import Callable
from typing import TextIO

from archiver.redaction import redact_text

CLEAR = "\r\033[K"
# C0 and C1 controls, DEL, bidi marks/embeddings/overrides/isolates, line and paragraph separators, surrogates
_OTHERS = "\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff"
_UNPRINTABLE = re.compile(f"[\x00-\x1f{_OTHERS}]")
UNPRINTABLE = _UNPRINTABLE  # for writers that escape in their own syntax (a JSON report: \\uXXXX)
_UNPRINTABLE_IN_LINES = re.compile(f"\r(?!\n)|[\x00-\x08\x0b\x0c\x0e-\x1f{_OTHERS}]")  # keeps \t, \n, CR LF
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(m: re.Match[str]) -> str:
    ch = m.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"  # a byte of a file name that is not UTF-8: the byte itself
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, lines: bool = False) -> str:
    """``text`` with every character that could drive a terminal escaped (``\\x1b``, ``\\u202e``, ``\\n``, …): what
    it shows is what it says. ``lines``: keep newlines, tabs and CR LF line ends (a diff, a traceback)."""
    pattern = _UNPRINTABLE_IN_LINES if lines else _UNPRINTABLE
    return pattern.sub(_escape, text) if pattern.search(text) else text


def shown_path(path: object) -> str:
    """A file name as the archiver prints it: a name that is not valid UTF-8 (a Latin-1 ``caf\\xe9.md``) shows each
    such byte as ``\\xNN``, control and bidi characters escaped likewise, so every name prints on one line on any
    terminal and in any encoding."""
    return printable(str(path))


def shown(text: str, *, lines: bool = False) -> str:
    """``text`` as the archiver may show it: secrets masked (archiver.redaction) and control characters escaped."""
    return printable(redact_text(text), lines=lines)


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``1 image``, ``2 images``: a number and its noun, in the plural unless it is one."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def say(*lines: str, file: TextIO | None = None) -> None:
    """Print each line through ``shown`` (stdout unless ``file``): how every command prints."""
    out = file or sys.stdout
    for line in lines:
        out.write(shown(line) + "\n")


def say_block(text: str, file: TextIO | None = None) -> None:
    """Print a multi-line block (a unified diff) through ``shown``, its line structure kept."""
    out = file or sys.stdout
    block = shown(text, lines=True)
    out.write(block if block.endswith("\n") else block + "\n")


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
            self.stream.write(CLEAR + printable(self.render()))
            self._drawn = True
        elif self.enabled:
            self.stream.write(printable(self.render()) + "\n")
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
    """A log handler that clears the status line before writing, so the two never interleave; every record is
    formatted through ``shown`` (its message as one line, a traceback with its lines kept)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.progress: StatusLine | None = None

    def format(self, record: logging.LogRecord) -> str:
        message = logging.makeLogRecord({**record.__dict__, "msg": shown(record.getMessage()), "args": None,
                                         "exc_info": None, "exc_text": None, "stack_info": None})
        text = super().format(message)
        formatter = self.formatter or logging.Formatter()
        if record.exc_info:
            text += "\n" + shown(formatter.formatException(record.exc_info), lines=True)
        if record.stack_info:
            text += "\n" + shown(formatter.formatStack(record.stack_info), lines=True)
        return text

    def emit(self, record: logging.LogRecord) -> None:
        if self.progress is not None:
            self.progress.clear()
        super().emit(record)


def attach(line: StatusLine | None, logger: str = "archiver") -> None:
    """Have the logger's status-aware handlers clear ``line`` before each message (None: detach)."""
    for handler in logging.getLogger(logger).handlers:
        if isinstance(handler, ProgressAwareHandler):
            handler.progress = line
