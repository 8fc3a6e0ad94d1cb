"""Image references in a Markdown body: CommonMark block structure (markdown-it-py), then exact inline spans.

markdown-it-py only decides which lines are code, raw HTML blocks, paragraphs or reference definitions;
every span is found here over the original text so offsets are exact.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from markdown_it import MarkdownIt
from markdown_it.common.utils import normalizeReference
from markdown_it.rules_block import StateBlock

from archiver.find.html import HtmlScanner, Tag, parse_tag, resume_after
from archiver.find.scan import (
    ASCII_PUNCT,
    Found,
    FoundList,
    TooLarge,
    decode_markdown,
    is_image_path,
    too_much,
)
from archiver.find.tags import OPENER, template_tag
from archiver.model import RefKind

# Block nesting markdown-it follows (its commonmark preset stops at 20 and silently drops the rest of the
# document); deeper content is scanned as plain inline text instead. Bounded: each level costs stack frames.
MAX_NESTING = 100
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SP = r"[ \t]*(?:\r\n|\r|\n)?[ \t]*"
_ATTR = r"""(?:[ \t\r\n]+[A-Za-z_:][A-Za-z0-9:._-]*(?:[ \t\r\n]*=[ \t\r\n]*(?:[^"'=<>`\x00-\x20]+|'[^']*'|"[^"]*"))?)"""
_OPEN_TAG = re.compile(rf"<[A-Za-z][A-Za-z0-9-]*{_ATTR}*[ \t\r\n]*/?>")
_CLOSE_TAG = re.compile(r"</[A-Za-z][A-Za-z0-9-]*[ \t\r\n]*>")
_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.-]{1,31}:[^<>\x00-\x20]*)>")
_BACKTICKS = re.compile(r"`+")
_INLINE_SPECIAL = re.compile(r"[\\`<!\[\]{]")  # where the inline scanner has something to decide
_ATOM_START = re.compile(rf"\\|`+|<|\[|\]|{OPENER.pattern}")
_DEST_PLAIN = re.compile(r"[^\\()\x00-\x20\x7f]+")
_ANGLE_DEST_PLAIN = re.compile(r"[^\\<>\r\n]+")
_REFDEF = re.compile(
    r"[ \t]{0,3}(?:>[ \t]?)*(?:[ \t]*(?:[-+*]|[0-9]{1,9}[.)])[ \t]+)?"
    r"\[((?:[^\\\[\]]|\\.){1,999})\]:" + _SP
)


def line_starts(text: str, start: int = 0) -> list[int]:
    """Offsets where each line of ``text[start:]`` begins (breaks: CRLF, CR, LF, as markdown-it counts)."""
    return [start] + [m.end() for m in _LINE_BREAK.finditer(text, start)]


def scan_markdown(
    text: str, start: int, max_refs: int | None = None, max_blocks: int | None = None
) -> list[Found]:
    """Every image reference in the Markdown body ``text[start:]``; TooLarge past ``max_refs`` references or
    ``max_blocks`` markdown-it tokens (a paragraph makes three, a list item five; ~400 bytes each while the article
    is scanned)."""
    env: dict[str, object] = {_BUDGET: max_blocks}
    # Only the block structure is used: inline parsing is skipped (it cost a third of the time, and
    # mdurl's encoder is slow on multi-megabyte data: URIs).
    parser = MarkdownIt("commonmark", {"maxNesting": MAX_NESTING}).disable("inline")
    parser.block.ruler.before("table", "archiver_budget", _budget)
    tokens = parser.parse(text[start:], env)
    starts = line_starts(text, start) + [len(text)]
    last = len(starts) - 2
    covered = [False] * (last + 1)
    html = HtmlScanner(found=FoundList(max_refs))
    inline = _Inline(text, html, found=FoundList(max_refs))
    for tok in tokens:
        if tok.map is None or tok.type not in ("fence", "code_block", "html_block", "paragraph_open",
                                               "heading_open", "hr"):
            continue
        a, b = tok.map
        b = min(b, last + 1)
        covered[a:b] = [True] * (b - a)
        seg_start, seg_end = starts[a], starts[b]
        if tok.type == "html_block":
            # Markdown written between tags is literal text to CommonMark, but its images are still the
            # author's images: report them rather than leave them unarchived.
            html.scan(text, seg_start, seg_end, inline.scan)
        elif tok.type in ("paragraph_open", "heading_open"):
            inline.scan(seg_start, seg_end)
    if any(tok.level >= MAX_NESTING - 1 for tok in tokens):
        _scan_dropped_lines(text, starts, covered, inline)
    refs = env.get("references")
    defined = set(refs) if isinstance(refs, dict) else set()
    definitions = _definitions(text, starts, covered, defined)
    out = html.found + inline.found
    for label, found in definitions:
        if label in inline.image_labels or is_image_path(found.url):
            out.append(found)
    return out


_BUDGET = "archiver.max_blocks"


def _budget(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
    """A block rule tried first at every block start: it matches nothing, but stops a parse whose tokens pass the
    budget in ``env`` (a deep nest of quotes or lists makes many tokens per line)."""
    limit = state.env.get(_BUDGET)
    if limit is not None and len(state.tokens) > limit:
        raise TooLarge(too_much("Markdown elements (paragraphs, list items, quotes, ...)", limit))
    return False


def _scan_dropped_lines(text: str, starts: list[int], covered: list[bool], inline: _Inline) -> None:
    """Scan as inline text the lines markdown-it dropped past its nesting limit (blank lines and
    reference definitions aside), so an image after 10 000 nested quotes or list items is still found."""
    run_start: int | None = None
    for line, is_covered in enumerate([*covered, True]):
        a = starts[line]
        b = starts[line + 1] if line + 1 < len(starts) else a
        dropped = not is_covered and text[a:b].strip() != "" and _REFDEF.match(text, a, b) is None
        if dropped and run_start is None:
            run_start = a
        elif not dropped and run_start is not None:
            inline.scan(run_start, a)
            run_start = None


def _definitions(text: str, starts: list[int], covered: list[bool], defined: set[str]
                 ) -> list[tuple[str, Found]]:
    """Link reference definitions (first per label) on lines markdown-it left outside leaf blocks."""
    out: list[tuple[str, Found]] = []
    seen: set[str] = set()
    for line, is_covered in enumerate(covered):
        if is_covered:
            continue
        m = _REFDEF.match(text, starts[line], starts[-1])
        if m is None:
            continue
        label = normalizeReference(m.group(1))
        if label not in defined or label in seen:
            continue
        seen.add(label)
        dest = _destination(text, m.end(), starts[-1])
        if dest is not None and dest[0] < dest[1]:
            url = decode_markdown(text[dest[0] : dest[1]])
            out.append((label, Found(url, dest[0], dest[1], RefKind.MD_REFERENCE)))
    return out


def _destination(text: str, i: int, limit: int) -> tuple[int, int, int] | None:
    """A link destination at ``i``: (span start, span end, offset after it); ``<...>`` brackets excluded."""
    if i < limit and text[i] == "<":
        j = i + 1
        while j < limit:
            k = _skip_plain(text, j, limit, _ANGLE_DEST_PLAIN)
            if k > j:
                j = k
                continue
            ch = text[j]
            if ch in "<\r\n":
                return None
            if ch == ">":
                return i + 1, j, j + 1
            j += 1
        return None
    j, depth = i, 0
    while j < limit:
        k = _skip_plain(text, j, limit, _DEST_PLAIN)
        if k > j:
            j = k
            continue
        ch = text[j]
        if ch <= " " or ch == "\x7f":
            break
        if ch == "(":
            depth += 1
            if depth > 32:  # as markdown-it: bounds the work on unbalanced input
                return None
        elif ch == ")":
            if depth == 0:
                break
            depth -= 1
        j += 1
    return (i, j, j) if depth == 0 else None


def _skip_plain(text: str, j: int, limit: int, plain: re.Pattern[str]) -> int:
    """Offset after the run of ``plain`` characters or the one backslash escape at ``j``; ``j`` if neither."""
    m = plain.match(text, j, limit)
    if m is not None:
        return m.end()
    if text[j] == "\\" and j + 1 < limit and text[j + 1] in ASCII_PUNCT:
        return j + 2
    return j


_SPACE = re.compile(_SP)


def _skip_space(text: str, i: int, limit: int) -> int:
    m = _SPACE.match(text, i, limit)
    return m.end() if m else i


def _inline_tail(text: str, p: int, limit: int) -> tuple[int, int, int] | None:
    """Parse ``(dest "title")`` at ``text[p] == "("``: (dest start, dest end, offset after ")")."""
    i = _skip_space(text, p + 1, limit)
    dest = _destination(text, i, limit)
    if dest is None:
        return None
    ds, de, i = dest
    j = _skip_space(text, i, limit)
    if j < limit and text[j] in "\"'(" and (j > i or ds == de):
        close = ")" if text[j] == "(" else text[j]
        k = j + 1
        while k < limit and text[k] != close:
            if text[k] == "\\":
                k += 1
            elif close == ")" and text[k] == "(":
                return None
            k += 1
        if k >= limit:
            return None
        j = _skip_space(text, k + 1, limit)
    if j < limit and text[j] == ")":
        return ds, de, j + 1
    return None


@dataclass
class _Inline:
    """Inline scanner for paragraph and heading text: code spans, images, links, autolinks, inline HTML."""

    text: str
    html: HtmlScanner
    found: list[Found] = field(default_factory=list)
    image_labels: set[str] = field(default_factory=set)

    def scan(self, start: int, end: int) -> None:
        text = self.text
        code, match = _atoms(text, start, end)
        jump: dict[int, int] = {}
        i = start
        while i < end:
            if i in jump:
                i = jump.pop(i)
                continue
            ch = text[i]
            if ch == "\\":
                i += 2
            elif ch == "`":
                if i in code:
                    i = code[i]
                else:
                    while i < end and text[i] == "`":
                        i += 1
            elif ch == "<":
                i = self._angle(i, end)
            elif ch == "{":
                i = self._template(i)
            elif ch == "!" and i + 1 < end and text[i + 1] == "[" and i + 1 in match:
                i = self._link(i + 1, match, jump, end, image=True)
            elif ch == "[" and i in match:
                i = self._link(i, match, jump, end, image=False)
            else:  # nothing to decide until the next special character (every jump target is a "]")
                m = _INLINE_SPECIAL.search(text, i + 1, end)
                i = end if m is None else m.start()

    def _template(self, i: int) -> int:
        """An image template tag at ``i`` (it may end past the paragraph: a Hugo shortcode's ``>}}`` line
        reads as a block quote to CommonMark); otherwise the ``{`` is text."""
        if OPENER.match(self.text, i) is None:
            return i + 1
        done = template_tag(self.text, i, len(self.text))
        if done is None:
            return i + 2
        self.found.extend(done[1])
        return done[0]

    def _angle(self, i: int, end: int) -> int:
        stop, item = _inline_html(self.text, i, end)
        if isinstance(item, Tag):
            self.html.tag(self.text, item, end)
        elif item is not None and is_image_path(item.group(1)):
            self.found.append(Found(item.group(1), item.start(1), item.end(1), RefKind.LINK_HREF))
        return stop

    def _link(self, open_: int, match: dict[int, int], jump: dict[int, int], end: int, image: bool) -> int:
        text = self.text
        close = match[open_]
        after = close + 1
        if after < end and text[after] == "(":
            tail = _inline_tail(text, after, end)
            if tail is not None:
                ds, de, stop = tail
                url = decode_markdown(text[ds:de])
                if image:
                    if ds < de:
                        self.found.append(Found(url, ds, de, RefKind.MD_INLINE))
                    return stop
                if ds < de and is_image_path(url):
                    self.found.append(Found(url, ds, de, RefKind.LINK_HREF))
                jump[close] = stop
                return open_ + 1
        label = text[open_ + 1 : close]
        if after < end and text[after] == "[" and after in match:
            second = text[after + 1 : match[after]]
            if second.strip():
                label = second
            stop = match[after] + 1
        else:
            stop = after
        if image:
            if label.strip():
                self.image_labels.add(normalizeReference(label))
            return stop
        jump[close] = stop
        return open_ + 1


def _inline_html(text: str, i: int, end: int) -> tuple[int, Tag | re.Match[str] | None]:
    """What the ``<`` at ``i`` starts in inline text: (offset after it, the tag or autolink match).

    A comment gives (offset after it, None); a ``<`` that starts nothing gives (i + 1, None).
    """
    if text.startswith("<!--", i):
        k = text.find("-->", i + 4, end)
        return (i + 1 if k < 0 else k + 3), None
    m = _AUTOLINK.match(text, i, end)
    if m:
        return m.end(), m
    m = _OPEN_TAG.match(text, i, end) or _CLOSE_TAG.match(text, i, end)
    tag = parse_tag(text, i, m.end()) if m else None
    if tag is None:
        return i + 1, None
    return resume_after(text, tag, end), tag


def _atoms(text: str, start: int, end: int) -> tuple[dict[int, int], dict[int, int]]:
    """Code spans (opening backtick -> offset after the closing run) and matching ``[`` -> ``]`` offsets.

    One left-to-right pass with CommonMark's precedence: whichever of a code span, raw HTML, an
    autolink, a comment or an image template tag starts first wins, so a backtick inside a tag's
    attribute opens no code span and a ``<`` inside a code span is text; brackets inside any of them, or
    escaped, pair with nothing. Replacing a URL inside a tag therefore never changes how the rest of
    the paragraph reads.
    """
    runs = [(m.start(), m.end()) for m in _BACKTICKS.finditer(text, start, end)]
    run_at_end = {b: idx for idx, (_, b) in enumerate(runs)}
    by_len: dict[int, list[int]] = {}
    for idx, (a, b) in enumerate(runs):
        by_len.setdefault(b - a, []).append(idx)
    code: dict[int, int] = {}
    match: dict[int, int] = {}
    stack: list[int] = []
    i = start
    while i < end:
        m = _ATOM_START.search(text, i, end)
        if m is None:
            break
        a = m.start()
        ch = text[a]
        if ch == "\\":  # an escaped backtick is literal; the rest of its run may open a span
            i = a + 2 if a + 1 < end and text[a + 1] in ASCII_PUNCT else a + 1
        elif ch == "`":
            b = m.end()
            same = by_len.get(b - a, [])
            k = bisect.bisect_right(same, run_at_end[b])  # the next run of the same length closes it
            if k < len(same):
                code[a] = runs[same[k]][1]
            i = code.get(a, b)
        elif ch == "[":
            stack.append(a)
            i = a + 1
        elif ch == "]":
            if stack:
                match[stack.pop()] = a
            i = a + 1
        else:
            i = max(_inline_html(text, a, end)[0] if ch == "<" else _template_end(text, a), a + 1)
    return code, match


def _template_end(text: str, i: int) -> int:
    done = template_tag(text, i, len(text))
    return i + 2 if done is None else done[0]
