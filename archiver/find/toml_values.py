"""TOML front matter read as spans: every string value with its key path and the exact characters it occupies.

A small tolerant scanner, not a parser: ``[table]`` and ``[[array.of.tables]]`` headers (each array entry gets
its index: ``("gallery", 1, "url")``), dotted and quoted keys, arrays over several lines (nested, with comments),
inline tables, and basic or literal strings. A value is reported only when its raw text equals its value (a
basic string without backslash escapes, a literal string); multi-line strings are skipped. Anything it cannot
read is skipped to the end of its line, so invalid TOML still gives what can safely be read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

KeyPath = tuple[str | int, ...]  # a key path in front matter: ("image", "path"), ("gallery", 0, "url")

_KEY_PART = re.compile(r"""[A-Za-z0-9_-]+|"((?:[^"\\\n]|\\.)*)"|'([^'\n]*)'""")
_WS = re.compile(r"[ \t]*")
_SKIP = re.compile(r"(?:[ \t\r\n]+|#[^\r\n]*)*")  # whitespace, line breaks and comments inside arrays
_BARE = re.compile(r"""[^\s,\]\}#]+""")  # a number, date or boolean: skipped
_MAX_DEPTH = 32


@dataclass(frozen=True)
class Value:
    path: KeyPath
    start: int
    end: int
    value: str


class _Stop(Exception):
    """The rest of this line cannot be read: skip it."""


class _Scanner:
    def __init__(self, text: str, end: int) -> None:
        self.text, self.end = text, end
        self.found: list[Value] = []

    def ws(self, pos: int) -> int:
        return _WS.match(self.text, pos, self.end).end()  # type: ignore[union-attr]

    def skip(self, pos: int) -> int:
        return _SKIP.match(self.text, pos, self.end).end()  # type: ignore[union-attr]

    def keys(self, pos: int) -> tuple[tuple[str, ...], int]:
        """A dotted key at ``pos``: its parts and where it ends."""
        parts: list[str] = []
        while True:
            pos = self.ws(pos)
            m = _KEY_PART.match(self.text, pos, self.end)
            if m is None:
                raise _Stop
            raw = m.group(0)
            parts.append(raw[1:-1] if raw[0] in "\"'" else raw)
            pos = self.ws(m.end())
            if self.text.startswith(".", pos) and pos < self.end:
                pos += 1
                continue
            return tuple(parts), pos

    def value(self, pos: int, path: KeyPath, depth: int = 0) -> int:
        """Read the value at ``pos`` (recording its strings under ``path``); returns where it ends."""
        if depth > _MAX_DEPTH or pos >= self.end:
            raise _Stop
        text = self.text
        ch = text[pos]
        if text.startswith(('"""', "'''"), pos):
            close = _close_multiline(text, pos + 3, self.end, text[pos : pos + 3])
            if close < 0:
                raise _Stop
            while close + 3 < self.end and text[close + 3] == text[pos]:  # """a"""" ends at the last quotes
                close += 1
            return close + 3
        if ch == '"':
            i = pos + 1
            while i < self.end and text[i] not in '"\n\r':
                i += 2 if text[i] == "\\" else 1
            if i >= self.end or text[i] != '"':
                raise _Stop
            if "\\" not in text[pos + 1 : i]:
                self.found.append(Value(path, pos + 1, i, text[pos + 1 : i]))
            return i + 1
        if ch == "'":
            close = text.find("'", pos + 1, self.end)
            if close < 0 or "\n" in text[pos + 1 : close] or "\r" in text[pos + 1 : close]:
                raise _Stop
            self.found.append(Value(path, pos + 1, close, text[pos + 1 : close]))
            return close + 1
        if ch == "[":
            index = 0

            def element(pos: int) -> int:
                nonlocal index
                index += 1
                return self.value(pos, (*path, index - 1), depth + 1)

            return self.items(pos + 1, "]", element)
        if ch == "{":

            def pair(pos: int) -> int:
                parts, pos = self.keys(pos)
                if not text.startswith("=", pos):
                    raise _Stop
                return self.value(self.ws(pos + 1), (*path, *parts), depth + 1)

            return self.items(pos + 1, "}", pair)
        m = _BARE.match(text, pos, self.end)
        if m is None:
            raise _Stop
        return m.end()

    def items(self, pos: int, close: str, item: Callable[[int], int]) -> int:
        """The comma-separated items of an array or an inline table opened before ``pos``, each read by ``item``;
        returns where its ``close`` bracket ends."""
        text = self.text
        pos = self.skip(pos)
        while pos < self.end and text[pos] != close:
            pos = self.skip(item(pos))
            if pos < self.end and text[pos] == ",":
                pos = self.skip(pos + 1)
            elif pos < self.end and text[pos] != close:
                raise _Stop
        if pos >= self.end:
            raise _Stop
        return pos + 1


def _close_multiline(text: str, pos: int, end: int, delimiter: str) -> int:
    """Where a multi-line string opened before ``pos`` closes (-1: never); a backslash escapes a quote only in a
    basic (double-quoted) string."""
    if delimiter == "'''":
        return text.find(delimiter, pos, end)
    while pos < end:
        if text[pos] == "\\":
            pos += 2
            continue
        if text.startswith(delimiter, pos, end):
            return pos
        pos += 1
    return -1


def toml_values(text: str, start: int, end: int) -> Iterator[Value]:
    """The string values of the TOML in ``text[start:end]``, in order, with their key paths."""
    scan = _Scanner(text, end)
    table: KeyPath = ()
    counts: dict[KeyPath, int] = {}  # array-of-tables path -> index of its last entry
    pos = start
    while pos < end:
        pos = scan.skip(pos)
        if pos >= end:
            break
        try:
            if text[pos] == "[":
                double = text.startswith("[[", pos)
                parts, after = scan.keys(pos + (2 if double else 1))
                if not text.startswith("]]" if double else "]", after):
                    raise _Stop
                table = _table_path(parts, counts, double)
                pos = after + (2 if double else 1)
            else:
                parts, after = scan.keys(pos)
                if not text.startswith("=", after):
                    raise _Stop
                pos = scan.value(scan.ws(after + 1), (*table, *parts))
        except _Stop:
            pass
        yield from scan.found
        scan.found.clear()
        br = re.compile(r"\r\n|\r|\n").search(text, pos, end)  # the rest of the line (a comment, or unreadable)
        pos = br.end() if br else end


def _table_path(parts: tuple[str, ...], counts: dict[KeyPath, int], array: bool) -> KeyPath:
    """The key path of a ``[a.b]`` or ``[[a.b]]`` header: inside an array of tables, its last entry."""
    path: KeyPath = ()
    for i, part in enumerate(parts):
        path = (*path, part)
        if array and i == len(parts) - 1:
            counts[path] = counts.get(path, -1) + 1
            return (*path, counts[path])
        if path in counts:
            path = (*path, counts[path])
    return path
