"""Front matter: where the YAML (``---``) or TOML (``+++``) block is, and the exact spans of its image fields.

YAML is composed with PyYAML (nodes carry character offsets, aliases resolve to the anchored node);
invalid YAML and TOML are read by a line scan. A value is only reported when its raw text equals its
value (no escapes, no folding), so replacing the span can never change anything else.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import yaml

from archiver.find.scan import Found, TooLarge, is_image_path, looks_like_url, too_much
from archiver.find.toml_values import KeyPath, Value, toml_values
from archiver.model import RefKind

_BREAK = re.compile(r"\r\n|\r|\n")
_OPEN = re.compile(r"\ufeff?(?:[ \t]*(?:\r\n|\r|\n))*(---|\+\+\+)[ \t]*(?:\r\n|\r|\n)")
_PROPS = re.compile(r"(?:[&!][^\s]*[ \t]+)*")  # YAML anchor and tag before a scalar
_TEXT_KEYS = ("credit", "caption", "alt", "title")  # a key holding text about a picture, never the picture
_LINK_KEYS = ("link", "href")  # a key holding where a picture links to: an image only when it names an image file
_STR_TAG = "tag:yaml.org,2002:str"


@dataclass(frozen=True)
class FrontMatter:
    kind: str  # "yaml" or "toml"
    content_start: int  # first character after the opening delimiter line
    content_end: int  # start of the closing delimiter line
    body_start: int  # first character after the closing delimiter line


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
    TooLarge if the YAML holds more than ``max_nodes`` values (PyYAML keeps ~1 KB per value while composing), or
    the TOML more than ``max_nodes`` strings."""
    wanted = sorted({tuple(f.split(".")) for f in fields if f}, key=len, reverse=True)  # most specific first
    roots = {w[0] for w in wanted}
    notice: Notice | None = None
    if fm.kind == "toml":
        values = []
        for value in toml_values(text, fm.content_start, fm.content_end):
            values.append(value)
            if max_nodes is not None and len(values) > max_nodes:
                raise TooLarge(too_much("values in its front matter", max_nodes))
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
            rest = _match(v.path, w)
            if rest is None:
                continue
            name = _path_name(v.path)
            direct = not any(isinstance(p, str) for p in rest) and (not rest or len(w) > 1)
            if _direct_ok(v.value) if direct else _nested_ok(v.path, v.value):
                out.append(Found(v.value, v.start, v.end, RefKind.FRONT_MATTER, name))
            break
    return out


def _match(path: KeyPath, field: tuple[str, ...]) -> KeyPath | None:
    """What of ``path`` is left below ``field`` (a dotted field with ``*``/``?`` wildcards; the list indices
    between its parts are passed over: ``gallery.image_path`` names ``gallery[3].image_path``), or None."""
    i = 0
    for part in field:
        while i < len(path) and isinstance(path[i], int) and i:
            i += 1
        if i >= len(path) or not isinstance(path[i], str) or not _name_matches(path[i], part):
            return None
        i += 1
    return path[i:]


def _name_matches(name: str | int, pattern: str) -> bool:
    if isinstance(name, int):
        return False
    if "*" in pattern or "?" in pattern:
        return fnmatch.fnmatchcase(name, pattern)
    return name == pattern


def field_roots_match(key: str, roots: set[str]) -> bool:
    """A top-level front-matter key that some configured field (wildcards allowed) starts with."""
    return key in roots or any(fnmatch.fnmatchcase(key, r) for r in roots if "*" in r or "?" in r)


def _path_name(path: KeyPath) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(path))


def _direct_ok(value: str) -> bool:
    v = value.strip()
    return bool(v) and "\n" not in v and "\r" not in v and (not any(c.isspace() for c in v) or is_image_path(v))


def _nested_ok(path: KeyPath, value: str) -> bool:
    """An image-valued key under a configured field: a value naming an image file, or a URL under a key that is
    not text (alt, title, caption, credit) or a link (link, href, and the ``url`` of a list entry, which gallery
    themes wrap around the entry's picture: those are images only when they name an image file). A Hugo
    ``resources`` entry's ``src`` counts only as an absolute URL: a bundle path or glob names a page resource
    that Hugo matches by path, and a URL in its place would detach the entry's metadata."""
    if not _direct_ok(value):
        return False
    key = next((p for p in reversed(path) if isinstance(p, str)), "").lower()
    if any(w in key for w in _TEXT_KEYS):
        return False
    if path[0] == "resources" and any(isinstance(p, int) for p in path[:2]) and key == "src":
        v = value.strip().lower()
        return v.startswith(("http://", "https://", "//")) and not any(c in v for c in "*?[")
    if any(w in key for w in _LINK_KEYS) or (key == "url" and any(isinstance(p, int) for p in path)):
        return is_image_path(value)
    return is_image_path(value) or looks_like_url(value)


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


_CLoader = getattr(yaml, "CSafeLoader", None)  # PyYAML built with libyaml: the same composer, ~10x faster
_C_LIMIT = 64 * 1024  # characters of front matter composed in C; larger blocks go through the bounded composer
# where libyaml and the Python composer are known to differ, the Python composer (the reference here) decides: a byte
# order mark (libyaml leaves it out of its positions), tabs (libyaml accepts some the Python composer refuses), a
# block scalar header followed by a comment without a space, and deep flow nesting
_C_DIFFERS = re.compile(r"[\ufeff\t]|[|>][-+0-9]*#")
_C_FLOW_LIMIT = 100  # flow collections opened in the block beyond which the Python composer decides (its recursion)


def _compose(doc: str, max_nodes: int | None) -> yaml.Node | None:
    """The YAML document's node graph. A block of usual size is composed by libyaml (its nesting is capped at 1000
    levels, and a block this small holds few nodes; they are counted after); a block libyaml refuses is composed
    again in Python, whose error (or acceptance) is the one that counts: its messages are the ones reported."""
    if (_CLoader is not None and len(doc) <= _C_LIMIT and not _C_DIFFERS.search(doc)
            and doc.count("[") + doc.count("{") <= _C_FLOW_LIMIT):
        loader = _CLoader(doc)
        try:
            root = loader.get_single_node()
        except yaml.YAMLError:
            root = None
        else:
            if max_nodes is not None and _nodes(root) > max_nodes:
                raise TooLarge(too_much("values in its front matter", max_nodes))
            return root
        finally:
            loader.dispose()
    loader = _BoundedLoader(doc, max_nodes)
    try:
        return loader.get_single_node()  # type: ignore[no-any-return]
    finally:
        loader.dispose()  # type: ignore[no-untyped-call]


def _nodes(root: yaml.Node | None) -> int:
    """Nodes as the bounded composer counts them: one per node event, an alias included (the root, and one per
    reference from a mapping or a sequence, each node's references counted once)."""
    if root is None:
        return 0
    seen: set[int] = set()
    todo, count = [root], 1
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                children += (key, value)
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        count += len(children)
        todo += children
    return count


def _yaml_values(
    text: str, start: int, end: int, roots: set[str], holder: list[yaml.Node | None], max_nodes: int | None
) -> Iterator[Value]:
    root = _compose(text[start:end], max_nodes)
    holder.append(root)
    if not isinstance(root, yaml.MappingNode):
        return
    seen: set[int] = set()
    for key, node in root.value:
        if isinstance(key, yaml.ScalarNode) and field_roots_match(key.value, roots):
            yield from _walk(text, start, node, (key.value,), seen)


def _walk(text: str, base: int, node: yaml.Node, path: KeyPath, seen: set[int]) -> Iterator[Value]:
    if id(node) in seen or len(path) > 32:
        return
    seen.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        span = _scalar_span(text, base, node)
        if span is not None:
            yield Value(path, span[0], span[1], text[span[0] : span[1]])
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
    raw, value, style = text[s:e], node.value, node.style or None  # libyaml: "" for a plain scalar
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


def _yaml_lines(text: str, fm: FrontMatter) -> Iterator[Value]:
    """Read ``key: value`` lines of invalid YAML, nesting by indentation; anything unclear is skipped.
    A list entry that is a mapping (``- url: a.jpg`` then ``  alt: x``) gives its keys under the entry's index."""
    stack: list[tuple[int, KeyPath, bool]] = []  # (indent, path, is a list entry) of the open keys and entries
    items: dict[KeyPath, int] = {}
    for off, line in _lines(text, fm.content_start, fm.content_end):
        body = line.lstrip(" ")
        indent = len(line) - len(body)
        if not body.strip() or body.startswith("#") or "\t" in line[:indent]:
            continue
        if body.startswith("- ") or body.rstrip() == "-":
            while stack and (stack[-1][0] > indent or (stack[-1][0] == indent and stack[-1][2])):
                stack.pop()
            if not stack:
                continue
            parent = stack[-1][1]
            index = items.get(parent, 0)
            items[parent] = index + 1
            rest_at = indent + 2
            entry = (*parent, index)
            m = _YAML_KEY.match(line, rest_at)
            if m is None:
                yield from _yaml_scalar(text, off + rest_at, line[rest_at:], entry)
                continue
            stack.append((indent, entry, True))
            indent, body = rest_at, line[rest_at:]
        m = _YAML_KEY.match(body)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if m is None:
            continue
        key = m.group(1)
        if key[:1] in "'\"":
            key = key[1:-1]
        path = (*stack[-1][1], key) if stack else (key,)
        stack.append((indent, path, False))
        rest_at = indent + m.end()
        yield from _yaml_scalar(text, off + rest_at, line[rest_at:], path)


def _yaml_scalar(text: str, off: int, rest: str, path: KeyPath) -> Iterator[Value]:
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
        yield Value(path, off + skip + 1, off + skip + 1 + len(inner), inner)
        return
    cut = re.search(r"[ \t]#", value)
    plain = (value[: cut.start()] if cut else value).rstrip()
    if plain and not plain.endswith(":") and ": " not in plain:
        yield Value(path, off + skip, off + skip + len(plain), plain)
