"""Says what a body is from its first bytes (magic numbers), never from Content-Type or the URL.

JPEG must start with its SOI marker (FF D8 FF) at offset 0: Pillow refuses bytes before SOI, so such a body
could not be decoded anyway (junk *after* SOI, as in Pillow's ``junk_jpeg_header.jpg``, is fine).
SVG is recognised as text: optional BOM, whitespace, XML declaration, processing instructions, comments and
DOCTYPE, then a ``<svg`` root element; it is never given to an XML parser.
"""

from __future__ import annotations

import re
import struct

from archiver.model import ImageFormat

SNIFF_BYTES = 1024  # enough for every binary signature and an SVG's XML prologue with a generator comment

JPEG = ImageFormat("jpeg", "image/jpeg", "jpg")
PNG = ImageFormat("png", "image/png", "png")
GIF = ImageFormat("gif", "image/gif", "gif")
WEBP = ImageFormat("webp", "image/webp", "webp")
AVIF = ImageFormat("avif", "image/avif", "avif")
HEIC = ImageFormat("heic", "image/heic", "heic")
BMP = ImageFormat("bmp", "image/bmp", "bmp")
TIFF = ImageFormat("tiff", "image/tiff", "tif")
ICO = ImageFormat("ico", "image/vnd.microsoft.icon", "ico")
SVG = ImageFormat("svg", "image/svg+xml", "svg", raster=False)

FORMATS: dict[str, ImageFormat] = {f.name: f for f in (JPEG, PNG, GIF, WEBP, AVIF, HEIC, BMP, TIFF, ICO, SVG)}

_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
_BMP_DIB_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
_SVG_ROOT = re.compile(rb"<(?:[A-Za-z_][\w.\-]*:)?svg[\s>/]")


def _bmff(head: bytes) -> ImageFormat | None:
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    box_size = struct.unpack(">I", head[:4])[0]
    end = min(len(head), box_size if box_size >= 16 else 16)
    brands = {head[8:12]} | {head[i : i + 4] for i in range(16, end - 3, 4)}
    if brands & _AVIF_BRANDS:
        return AVIF
    if brands & _HEIC_BRANDS:
        return HEIC
    return None


def _text(head: bytes) -> str:
    if head.startswith(b"\xef\xbb\xbf"):
        return head[3:].decode("utf-8", "replace")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return head.decode("utf-16", "replace")
    return head.decode("utf-8", "replace")


def _is_svg(head: bytes) -> bool:
    text = _text(head)
    pos = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n\f":
            pos += 1
        if text.startswith("<?", pos):  # XML declaration, xml-stylesheet, ...
            end = text.find("?>", pos)
            if end < 0:
                return False
            pos = end + 2
        elif text.startswith("<!--", pos):
            end = text.find("-->", pos + 4)
            if end < 0:
                return False
            pos = end + 3
        elif text[pos : pos + 9].upper() == "<!DOCTYPE":
            depth, i = 0, pos + 9
            while i < len(text):
                if text[i] == "[":
                    depth += 1
                elif text[i] == "]":
                    depth -= 1
                elif text[i] == ">" and depth <= 0:
                    break
                i += 1
            else:
                return False
            pos = i + 1
        else:
            return _SVG_ROOT.match(text[pos : pos + 200].encode("utf-8")) is not None


def sniff(head: bytes) -> ImageFormat | None:
    """The image format the first bytes (up to SNIFF_BYTES) announce, or None if they are not an image."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if len(head) >= 12 and head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return WEBP
    fmt = _bmff(head)
    if fmt is not None:
        return fmt
    if len(head) >= 18 and head.startswith(b"BM") and struct.unpack("<I", head[14:18])[0] in _BMP_DIB_SIZES:
        return BMP
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return TIFF
    if len(head) >= 6 and head.startswith(b"\x00\x00\x01\x00") and head[4:6] != b"\x00\x00":
        return ICO
    if _is_svg(head[:SNIFF_BYTES]):
        return SVG
    return None


def describe(head: bytes) -> str:
    """What a non-image body looks like, for the NotAnImage reason: "text/html page", "JSON document", ..."""
    if not head:
        return "empty body"
    text = _text(head[:SNIFF_BYTES]).lstrip().lower()
    if text.startswith(("<!doctype html", "<html", "<head", "<body", "<meta", "<title", "<div", "<script")):
        return "text/html page"
    if text.startswith(("{", "[")):
        return "JSON document"
    if text.startswith("<?xml") or text.startswith("<"):
        return "XML document" if "<html" not in text else "text/html page"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return f"video or other media (ISO-BMFF brand {head[8:12].decode('latin-1')!r})"
    for magic, what in ((b"%PDF", "PDF document"), (b"\x1f\x8b", "gzip archive"), (b"PK\x03\x04", "zip archive")):
        if head.startswith(magic):
            return what
    sample = head[:SNIFF_BYTES]
    if b"\x00" not in sample and sum(32 <= b < 127 or b in b"\t\r\n" for b in sample) > 0.9 * len(sample):
        return "plain text"
    return "unknown binary data"
