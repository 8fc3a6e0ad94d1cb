"""Front matter: where the YAML (``---``) or TOML (``+++``) block is, and the exact spans of its image fields.

YAML is composed with PyYAML (nodes carry character offsets, aliases resolve to the anchored node);
invalid YAML and TOML are read by a line scan. A value is only reported when its raw text equals its
value (no escapes, no folding), so replacing the span can never change anything else.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import yaml

from archiver.find.scan import Found, TooLarge, is_image_path, looks_like_url, too_much
from archiver.model import RefKind

KeyPath = tuple[str | int, ...]  # a key path in front matter: ("image", "path"), ("gallery", 0, "url")
_BREAK = re.compile(r"\r\n|\r|\n")
_OPEN = re.compile(r"\ufeff?(?:[ \t]*(?:\r\n|\r|\n))*(---|\+\+\+)[ \t]*(?:\r\n|\r|\n)")
_PROPS = re.compile(r"(?:[&!][^\s]*[ \t]+)*")  # YAML anchor and tag before a scalar
_NOT_IMAGE_KEYS = ("link", "href", "credit", "caption", "alt", "title")
_STR_TAG = "tag:yaml.org,2002:str"


@dataclass(frozen=True)
class FrontMatter:
    kind: str  # "yaml" or "toml"
    content_start: int  # first character after the opening delimiter line
    content_end: int  # start of the closing delimiter line
    body_start: int  # first character after the closing delimiter line


@dataclass(frozen=True)
class _Value:
    path: KeyPath
    start: int
    end: int
    value: str


def split_front_matter(text: str) -> FrontMatter | None:
    """The front matter block at the start of ``text`` (blank lines and a BOM may precede it), if closed."""
    m = _OPEN.match(text)
    if m is None:
        return None
    delim = m.group(1)
    closers = ("---", "...") if delim == "---" else ("+++",)
    pos = m.end()
    while pos < len(text):
        br = _BREAK.search(text, pos)
        line_end, next_line = (br.start(), br.end()) if br else (len(text), len(text))
        if text[pos:line_end].rstrip(" \t") in closers:
            return FrontMatter("yaml" if delim == "---" else "toml", m.end(), pos, next_line)
        pos = next_line
    return None


@dataclass(frozen=True)
class Notice:
    """Something about an article's front matter a site generator would choke on (the article is still read)."""

    line: int
    message: str


def _line_of(text: str, offset: int) -> int:
    return len(_BREAK.findall(text, 0, offset)) + 1


def unclosed_front_matter(text: str) -> Notice | None:
    """A ``---``/``+++`` block opened at the start of ``text`` and never closed (its text is read as body)."""
    m = _OPEN.match(text)
    if m is None or split_front_matter(text) is not None:
        return None
    return Notice(_line_of(text, m.start(1)),
                  f"front matter opened with {m.group(1)} is never closed: read as part of the body")


def _toml_notice(text: str, fm: FrontMatter) -> Notice | None:
    import tomllib

    try:
        tomllib.loads(text[fm.content_start : fm.content_end])
    except tomllib.TOMLDecodeError as exc:
        where = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = _line_of(text, fm.content_start) + (int(where.group(1)) - 1 if where else 0)
        why = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(exc))
        return Notice(line, f"front matter is not valid TOML ({why}): a site generator will refuse it")
    return None


def _yaml_notice(text: str, fm: FrontMatter, exc: BaseException | None, root: object) -> Notice | None:
    start = _line_of(text, fm.content_start)
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        why = " ".join(str(exc.problem or exc.context or "syntax error").split())
        return Notice(start + exc.problem_mark.line, f"front matter is not valid YAML ({why}): "
                                                     "a site generator will refuse it")
    if exc is not None:
        return Notice(start, f"front matter cannot be read as YAML ({type(exc).__name__})")
    if root is not None and not isinstance(root, yaml.MappingNode):
        return Notice(start, "front matter is not a YAML mapping of keys to values: a site generator will refuse it")
    return None


def front_matter_refs(
    text: str, fm: FrontMatter, fields: Sequence[str], notices: list[Notice] | None = None,
    max_nodes: int | None = None,
) -> list[Found]:
    """References in the configured fields: a field's own scalar, or image-like strings nested under it.
    With ``notices``, a block a site generator could not parse (invalid YAML or TOML) adds a Notice there.
    TooLarge if the YAML holds more than ``max_nodes`` values (PyYAML keeps ~1 KB per value while composing)."""
    wanted = sorted({tuple(f.split(".")) for f in fields if f}, key=len, reverse=True)  # most specific first
    roots = {w[0] for w in wanted}
    notice: Notice | None = None
    if fm.kind == "toml":
        values = list(_toml_values(text, fm))
        if notices is not None:
            notice = _toml_notice(text, fm)
    else:
        holder: list[yaml.Node | None] = []
        try:
            values = list(_yaml_values(text, fm.content_start, fm.content_end, roots, holder, max_nodes))
        except (yaml.YAMLError, RecursionError, ValueError) as exc:
            values = list(_yaml_lines(text, fm))
            notice = _yaml_notice(text, fm, exc, None)
        else:
            notice = _yaml_notice(text, fm, None, holder[0] if holder else None)
    if notice is not None and notices is not None:
        notices.append(notice)
    out: list[Found] = []
    for v in values:
        for w in wanted:
            if v.path[: len(w)] != w:
                continue
            name = _path_name(v.path)
            direct = len(v.path) == len(w)
            if _direct_ok(v.value) if direct else _nested_ok(v.path, v.value):
                out.append(Found(v.value, v.start, v.end, RefKind.FRONT_MATTER, name))
            break
    return out


def _path_name(path: KeyPath) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(path))


def _direct_ok(value: str) -> bool:
    v = value.strip()
    return bool(v) and "\n" not in v and "\r" not in v and (not any(c.isspace() for c in v) or is_image_path(v))


def _nested_ok(path: KeyPath, value: str) -> bool:
    if not _direct_ok(value):
        return False
    key = next((p for p in reversed(path) if isinstance(p, str)), "").lower()
    return is_image_path(value) or (looks_like_url(value) and not any(w in key for w in _NOT_IMAGE_KEYS))


# --- YAML through PyYAML's composer --------------------------------------------------------------


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe composer, counting the nodes it composes: past ``max_nodes``, TooLarge."""

    def __init__(self, stream: str, max_nodes: int | None) -> None:
        super().__init__(stream)
        self.max_nodes = self.nodes_left = max_nodes

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.nodes_left is not None:
            self.nodes_left -= 1
            if self.nodes_left < 0:
                raise TooLarge(too_much("values in its front matter", self.max_nodes or 0))
        return super().compose_node(parent, index)  # type: ignore[no-any-return]


def _yaml_values(
    text: str, start: int, end: int, roots: set[str], holder: list[yaml.Node | None], max_nodes: int | None
) -> Iterator[_Value]:
    loader = _BoundedLoader(text[start:end], max_nodes)
    try:
        root = loader.get_single_node()
    finally:
        loader.dispose()  # type: ignore[no-untyped-call]
    holder.append(root)
    if not isinstance(root, yaml.MappingNode):
        return
    seen: set[int] = set()
    for key, node in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value in roots:
            yield from _walk(text, start, node, (key.value,), seen)


def _walk(text: str, base: int, node: yaml.Node, path: KeyPath, seen: set[int]) -> Iterator[_Value]:
    if id(node) in seen or len(path) > 32:
        return
    seen.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        span = _scalar_span(text, base, node)
        if span is not None:
            yield _Value(path, span[0], span[1], text[span[0] : span[1]])
    elif isinstance(node, yaml.MappingNode):
        for key, child in node.value:
            if isinstance(key, yaml.ScalarNode):
                yield from _walk(text, base, child, (*path, key.value), seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            yield from _walk(text, base, child, (*path, i), seen)


def _scalar_span(text: str, base: int, node: yaml.ScalarNode) -> tuple[int, int] | None:
    """Where the scalar's value is written, if the raw text there equals the value exactly."""
    if node.tag != _STR_TAG or not node.value:
        return None
    s, e = base + node.start_mark.index, base + node.end_mark.index
    raw, value, style = text[s:e], node.value, node.style
    if style is None:
        prefix = raw[: len(raw) - len(value)]
        if raw.endswith(value) and _PROPS.fullmatch(prefix):
            return e - len(value), e
    elif style in ("'", '"'):
        q = style
        prefix = raw[: len(raw) - len(value) - 2]
        if raw.endswith(q + value + q) and _PROPS.fullmatch(prefix):
            return e - 1 - len(value), e - 1
    elif style in ("|", ">"):
        v = value.rstrip("\n")
        if v and "\n" not in v and v == v.strip() and raw.count(v) == 1:
            at = raw.index(v)
            line_start = raw.rfind("\n", 0, at) + 1
            if line_start > 0 and not raw[line_start:at].strip() and not raw[at + len(v) :].strip():
                return s + at, s + at + len(v)
    return None


# --- line scans: invalid YAML, TOML --------------------------------------------------------------

_YAML_KEY = re.compile(r"""("[^"\\\n]*"|'[^'\n]*'|[^\s#'"{\[\-?:,][^:\n]*?|-[^\s:][^:\n]*?)[ \t]*:(?:[ \t]+|$)""")


def _lines(text: str, start: int, end: int) -> Iterator[tuple[int, str]]:
    pos = start
    while pos < end:
        br = _BREAK.search(text, pos, end)
        stop = br.start() if br else end
        yield pos, text[pos:stop]
        pos = br.end() if br else end


def _yaml_lines(text: str, fm: FrontMatter) -> Iterator[_Value]:
    """Read ``key: value`` lines of invalid YAML, nesting by indentation; anything unclear is skipped."""
    stack: list[tuple[int, KeyPath]] = []  # (indent, path) of the open mapping keys
    items: dict[KeyPath, int] = {}
    for off, line in _lines(text, fm.content_start, fm.content_end):
        body = line.lstrip(" ")
        indent = len(line) - len(body)
        if not body.strip() or body.startswith("#") or "\t" in line[:indent]:
            continue
        if body.startswith("- ") or body.rstrip() == "-":
            while stack and stack[-1][0] > indent:
                stack.pop()
            if not stack:
                continue
            parent = stack[-1][1]
            index = items.get(parent, 0)
            items[parent] = index + 1
            rest_at = indent + 2
            yield from _yaml_scalar(text, off + rest_at, line[rest_at:], (*parent, index))
            continue
        m = _YAML_KEY.match(body)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if m is None:
            continue
        key = m.group(1)
        if key[:1] in "'\"":
            key = key[1:-1]
        path = (*stack[-1][1], key) if stack else (key,)
        stack.append((indent, path))
        rest_at = indent + m.end()
        yield from _yaml_scalar(text, off + rest_at, line[rest_at:], path)


def _yaml_scalar(text: str, off: int, rest: str, path: KeyPath) -> Iterator[_Value]:
    props = _PROPS.match(rest)
    skip = props.end() if props else 0
    value = rest[skip:]
    if not value or value[0] in "*|>{[#":
        return
    if value[0] in "'\"":
        q = value[0]
        close = value.find(q, 1)
        inner = value[1:close]
        tail = value[close + 1 :].strip()
        if close < 0 or (q == '"' and "\\" in inner) or value[close + 1 : close + 2] == q:
            return
        if tail and not tail.startswith("#"):
            return
        yield _Value(path, off + skip + 1, off + skip + 1 + len(inner), inner)
        return
    cut = re.search(r"[ \t]#", value)
    plain = (value[: cut.start()] if cut else value).rstrip()
    if plain and not plain.endswith(":") and ": " not in plain:
        yield _Value(path, off + skip, off + skip + len(plain), plain)


_TOML_KEY = re.compile(r"""[ \t]*((?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*')(?:[ \t]*\.[ \t]*(?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*'))*)[ \t]*=[ \t]*""")
_TOML_STR = re.compile(r""""((?:[^"\\\n]|\\.)*)"|'([^'\n]*)'""")
_TOML_PART = re.compile(r"""[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*'""")


def _toml_keys(dotted: str) -> tuple[str, ...]:
    return tuple(p.strip("\"'") for p in _TOML_PART.findall(dotted))


def _toml_values(text: str, fm: FrontMatter) -> Iterator[_Value]:
    """``key = "value"`` lines under ``[table]`` headers; inline tables and one-line arrays of strings."""
    table: tuple[str, ...] = ()
    open_string: str | None = None  # the delimiter of a multi-line string being skipped (''' or """)
    for off, line in _lines(text, fm.content_start, fm.content_end):
        if open_string is not None:  # text inside a string: never a key, a table or a field
            if _closes(line, open_string):
                open_string = None
            continue
        s = line.strip()
        if s.startswith("["):
            head = re.match(r"\[\[?([^\]]*)\]\]?", s)
            table = _toml_keys(head.group(1)) if head else ()
            continue
        m = _TOML_KEY.match(line)
        if m is None:
            continue
        path = table + _toml_keys(m.group(1))
        value = line[m.end() :]
        if value.startswith(('"""', "'''")):
            if not _closes(value[3:], value[:3]):
                open_string = value[:3]
            continue
        if value.startswith(("'", '"')):
            sm = _TOML_STR.match(line, m.end())
            if sm:
                yield from _toml_str(off, sm, path)
        elif value.startswith("["):
            for i, sm in enumerate(_TOML_STR.finditer(line, m.end())):
                yield from _toml_str(off, sm, (*path, i))
        elif value.startswith("{"):
            for km in _TOML_KEY.finditer(line, m.end() + 1):
                sm = _TOML_STR.match(line, km.end())
                if sm:
                    yield from _toml_str(off, sm, path + _toml_keys(km.group(1)))


def _closes(rest: str, delimiter: str) -> bool:
    """Whether a multi-line TOML string ends in ``rest`` (a backslash escapes a quote only in basic strings)."""
    if delimiter == "'''":
        return delimiter in rest
    i = 0
    while i < len(rest):
        if rest[i] == "\\":
            i += 2
            continue
        if rest.startswith(delimiter, i):
            return True
        i += 1
    return False


def _toml_str(off: int, sm: re.Match[str], path: KeyPath) -> Iterator[_Value]:
    group = 1 if sm.group(1) is not None else 2
    inner = sm.group(group)
    if "\\" in inner and group == 1:
        return
    yield _Value(path, off + sm.start(group), off + sm.end(group), inner)
