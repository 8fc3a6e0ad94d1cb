"""The URL spans of CSS ``url(...)`` tokens in a piece of CSS text (an inline ``style`` attribute, decoded)."""

from __future__ import annotations

import re

_WS = " \t\n\r\f"
# "url(" starts a url token only as a whole identifier: not as the tail of "myurl(" or "--url(".
_IDENT_CHAR = re.compile(r"[A-Za-z0-9_\-\u0080-\U0010ffff\\]")
_SPECIAL = re.compile(r"/\*|[\"'\\]|url\(", re.IGNORECASE)
_BAD_UNQUOTED = frozenset("\"'(\\")


def css_urls(css: str) -> list[tuple[int, int]]:
    """Spans ``(a, b)`` of every ``url(...)`` value in ``css``, quotes and surrounding spaces excluded.

    Follows the CSS Syntax tokenizer closely enough for inline styles: comments and strings are
    skipped (``content: "url(x)"`` is text), ``url(`` counts only as a whole identifier, and quoted
    or unquoted values are both read. A value that uses a backslash escape, or a malformed
    ``url(`` (unclosed, bad characters), is left out: reporting it would need CSS unescaping to know
    the URL, and leaving a reference alone is always safe.
    """
    out: list[tuple[int, int]] = []
    n, i = len(css), 0
    while True:
        m = _SPECIAL.search(css, i)
        if m is None:
            return out
        i = m.start()
        tok = m.group(0)
        if tok == "/*":
            k = css.find("*/", i + 2)
            i = n if k < 0 else k + 2
        elif tok in "\"'":
            i = _string_end(css, i)[0]
        elif tok == "\\":
            i += 2
        elif i > 0 and _IDENT_CHAR.match(css, i - 1):  # "...url(" inside a longer name: a plain function
            i += 4
        else:
            span, i = _url_value(css, i + 4)
            if span is not None:
                out.append(span)


def _string_end(css: str, i: int) -> tuple[int, bool]:
    """Offset after the string opened at ``css[i]``; and whether its quote closed it, with no escape inside."""
    quote, j, clean = css[i], i + 1, True
    while j < len(css):
        ch = css[j]
        if ch == quote:
            return j + 1, clean
        if ch in "\n\r\f":  # a newline ends a string as a bad string
            return j, False
        if ch == "\\":
            clean = False
            j += 1
        j += 1
    return len(css), False  # unclosed at the end of the value


def _url_value(css: str, i: int) -> tuple[tuple[int, int] | None, int]:
    """Read the value after ``url(`` at ``i``: (its span or None, offset to continue from)."""
    n = len(css)
    while i < n and css[i] in _WS:
        i += 1
    if i < n and css[i] in "\"'":
        end, clean = _string_end(css, i)
        j = end
        while j < n and css[j] in _WS:
            j += 1
        if not clean or j >= n or css[j] != ")":
            return None, max(end, i + 1)
        return _trimmed(css, i + 1, end - 1), j + 1
    a = i
    while i < n and css[i] != ")" and css[i] not in _WS:
        if css[i] in _BAD_UNQUOTED or ord(css[i]) < 0x20 or css[i] == "\x7f":
            return None, _skip_bad_url(css, i)
        i += 1
    b = i
    while i < n and css[i] in _WS:
        i += 1
    if i >= n or css[i] != ")":  # whitespace inside the value, or unclosed: a bad url token
        return None, _skip_bad_url(css, i)
    return _trimmed(css, a, b), i + 1


def _skip_bad_url(css: str, i: int) -> int:
    """The rest of a bad url token: up to and including the next ``)`` (escapes skipped)."""
    n = len(css)
    while i < n and css[i] != ")":
        i += 2 if css[i] == "\\" else 1
    return min(i + 1, n)


def _trimmed(css: str, a: int, b: int) -> tuple[int, int] | None:
    while a < b and css[a] in _WS:
        a += 1
    while b > a and css[b - 1] in _WS:
        b -= 1
    return (a, b) if a < b else None
