"""Responsive images (``[rewrite] responsive``): what an HTML ``<img>`` of an archived image lacks, as insertions.

For each ``<img>`` whose ``src`` is (or is being rewritten to) an archived original, the attributes the author did
not write are inserted before the tag's ``>``: ``width`` and ``height`` (the intrinsic size after EXIF orientation,
or the one the author left out, from the aspect ratio), ``srcset`` (the renditions narrower than the original, with
``w`` descriptors, and the original) with ``sizes``, ``loading`` and ``decoding``. With ``picture``, an ``<img>``
that is not in a ``<picture>`` already is wrapped in one, with a ``<source>`` per other rendition format (AVIF
first). Nothing the author wrote changes: every addition is an insertion (an empty span), recorded like a URL
replacement, so restore removes exactly it; an ``<img>`` that has them all gets nothing, so a second run changes
nothing.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape

from archiver.find.html import LAZY_SRCSET, Tag, parse_tag
from archiver.model import ImageRef, RefKind

_WS = " \t\n\f\r"
_NUMBER = re.compile(r"[\t\n\f\r ]*([0-9]+)(?:\.0*)?[\t\n\f\r ]*")
_IMG = re.compile(r"<img[\t\n\f\r />]", re.IGNORECASE)
_LOOK_BACK = 65_536  # how far before a src value its tag may start (attributes before src)
_LOOK_AHEAD = 65_536  # and how far after it the tag may end: past either, the <img> is left as it is
_CANDIDATES = 8  # "<img" starts tried before a src value (one in an attribute value before src is passed over)
_MIME = {"avif": "image/avif", "webp": "image/webp", "jpeg": "image/jpeg", "png": "image/png"}
_SOURCE_ORDER = ("avif", "webp", "jpeg", "png")  # a browser takes the first <source> it supports: smallest first


@dataclass(frozen=True)
class Shown:
    """An archived image as a page can show it."""

    width: int | None  # intrinsic size after EXIF orientation; None: unknown (SVG)
    height: int | None
    original: str  # the original's archive URL
    renditions: Mapping[str, tuple[tuple[int, str], ...]]  # format -> ((pixel width, archive URL), ...), narrowest first
    animated: bool = False  # renditions are of the first frame: never offered instead of the original


@dataclass(frozen=True)
class Options:
    sizes: str = "100vw"
    loading: str = "lazy"  # "": not added
    decoding: str = "async"
    picture: bool = False
    formats: tuple[str, ...] = ("webp",)  # [images] formats, in the configured order


@dataclass(frozen=True)
class Insertion:
    """Text inserted at ``at`` (in the text read); ``url``: the archive URL of the image it is for."""

    at: int
    text: str
    url: str


def fallback_format(formats: Sequence[str]) -> str:
    """The rendition format an ``<img srcset>`` lists: the first configured one that is not AVIF (every browser that
    reads srcset shows WebP, JPEG and PNG), else AVIF."""
    return next((f for f in formats if f != "avif"), formats[0] if formats else "webp")


def additions(text: str, refs: Sequence[ImageRef], shown_for: Callable[[ImageRef], Shown | None],
              opts: Options) -> list[Insertion]:
    """The insertions that make each archived ``<img>`` in ``text`` responsive, by position (one per position)."""
    imgs = img_starts(text)
    by_at: dict[int, list[Insertion]] = {}
    for ref in refs:
        if ref.kind != RefKind.IMG_SRC or ref.field != "src":
            continue
        found = img_tag(text, ref, imgs)
        if found is None:
            continue
        shown = shown_for(ref)
        if shown is None:
            continue
        lt, tag = found
        # the finder's own reading: a <picture> in a comment, an attribute value or a code block is no <picture>
        for ins in _for_img(text, lt, tag, shown, opts, ref.in_picture):
            by_at.setdefault(ins.at, []).append(ins)
    return [Insertion(at, "".join(i.text for i in group), group[0].url) for at, group in sorted(by_at.items())]


def img_tag(text: str, ref: ImageRef, starts: Sequence[int] | None = None) -> tuple[int, Tag] | None:
    """The ``<img>`` tag whose ``src`` value holds ``ref``'s span, and where it starts; None if it is in none.
    ``starts``: where each ``<img`` of the text starts (``img_starts``), when several refs are looked up."""
    starts = img_starts(text) if starts is None else starts
    i = bisect.bisect_left(starts, ref.start)
    limit = min(len(text), ref.end + _LOOK_AHEAD)
    for lt in reversed(starts[max(0, i - _CANDIDATES) : i]):  # the nearest first; an alt="<img …" may come between
        if ref.start - lt > _LOOK_BACK:
            return None
        tag = parse_tag(text, lt, limit)
        if tag is not None and not tag.closing:
            src = tag.get("src")
            if src is not None and src.start <= ref.start and ref.end <= src.end:
                return lt, tag
    return None


def img_starts(text: str) -> list[int]:
    """Where each ``<img`` tag may start, in order (one pass over the text)."""
    return [m.start() for m in _IMG.finditer(text)]


def _for_img(text: str, lt: int, tag: Tag, shown: Shown, opts: Options, in_picture: bool) -> list[Insertion]:
    has = {a.name for a in tag.attrs}
    value = {a.name: text[a.start : a.end] for a in tag.attrs}
    attrs: list[tuple[str, str]] = []
    w, h = shown.width, shown.height
    if w and h:
        if "width" not in has and "height" not in has:
            attrs += [("width", str(w)), ("height", str(h))]
        elif "height" not in has and (aw := _number(value["width"])):
            attrs.append(("height", str(max(1, round(aw * h / w)))))
        elif "width" not in has and (ah := _number(value["height"])):
            attrs.append(("width", str(max(1, round(ah * w / h)))))
    fallback = fallback_format(opts.formats)
    own_srcset = False
    if w and not shown.animated and "srcset" not in has and not has.intersection(LAZY_SRCSET):
        candidates = [(pw, url) for pw, url in _distinct(shown.renditions.get(fallback, ())) if pw < w]
        if candidates:
            own_srcset = True
            attrs.append(("srcset", _srcset([*candidates, (w, shown.original)])))
            if "sizes" not in has:
                attrs.append(("sizes", opts.sizes))
    if opts.loading and "loading" not in has:
        attrs.append(("loading", opts.loading))
    if opts.decoding and "decoding" not in has:
        attrs.append(("decoding", opts.decoding))
    out: list[Insertion] = []
    if opts.picture and own_srcset and not in_picture:
        sizes = value.get("sizes", opts.sizes)
        sources = "".join(
            f'<source type="{_MIME[fmt]}" srcset="{_srcset(_distinct(shown.renditions[fmt]))}" sizes="{sizes}">'
            for fmt in _SOURCE_ORDER
            if fmt in opts.formats and fmt != fallback and shown.renditions.get(fmt)
        )
        if sources:
            out.append(Insertion(lt, f"<picture>{sources}", shown.original))
            out.append(Insertion(tag.end, "</picture>", shown.original))
    if attrs:
        at = tag.end - 1  # before ">", or before "/>" when the "/" is not the end of an unquoted value
        if text[at - 1] == "/" and text[at - 2] in _WS + "\"'":
            at -= 1
        body = " ".join(f'{name}="{escape(val)}"' for name, val in attrs)
        out.append(Insertion(at, f"{body} " if text[at - 1] in _WS else f" {body}", shown.original))
    return out


def _number(raw: str) -> int | None:
    """An author's width or height as a whole number of pixels ("640", " 640 "), else None ("50%", "auto")."""
    m = _NUMBER.fullmatch(raw)
    return int(m.group(1)) or None if m else None


def _distinct(candidates: Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
    """One candidate per pixel width (renditions of widths beyond the image's own are the image at its size)."""
    seen: dict[int, str] = {}
    for pw, url in candidates:
        seen.setdefault(pw, url)
    return sorted(seen.items())


def _srcset(candidates: Sequence[tuple[int, str]]) -> str:
    return ", ".join(f"{escape(url)} {pw}w" for pw, url in candidates)
