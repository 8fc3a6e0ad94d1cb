"""sniff() recognises images by their first bytes only, and nothing else passes as an image."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from archiver.fetch.sniff import FORMATS, SNIFF_BYTES, describe, sniff
from tests.support.images import make_gif, make_jpeg, make_png, make_png_bomb, make_rgb, make_webp


def _pillow(fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    make_rgb(32, 24, seed=7).save(buf, fmt, **params)
    return buf.getvalue()


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body + b"\x00\x00\x00\x08meta"


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (make_jpeg(64, 48, seed=1), "jpeg"),
        (make_png(64, 48, seed=1), "png"),
        (make_png(64, 48, seed=1, alpha=True), "png"),
        (make_gif(32, 24, seed=1), "gif"),
        (make_gif(32, 24, seed=1, frames=3), "gif"),
        (make_webp(64, 48, seed=1), "webp"),
        (_pillow("BMP"), "bmp"),
        (_pillow("TIFF"), "tiff"),
        (_pillow("TIFF", compression="tiff_lzw"), "tiff"),
        (_pillow("ICO"), "ico"),
        (b"GIF87a" + b"\x00" * 20, "gif"),
        (b"MM\x00*" + b"\x00" * 20, "tiff"),
        (_ftyp(b"avif", b"mif1", b"miaf"), "avif"),
        (_ftyp(b"mif1", b"avif", b"miaf"), "avif"),
        (_ftyp(b"avis", b"msf1"), "avif"),
        (_ftyp(b"heic", b"mif1"), "heic"),
        (_ftyp(b"mif1", b"heic"), "heic"),
        (make_png_bomb(), "png"),  # a bomb is still a PNG; the image stage refuses its pixel count
    ],
)
def test_image_formats(data: bytes, name: str) -> None:
    fmt = sniff(data[:SNIFF_BYTES])
    assert fmt is not None and fmt.name == name
    assert fmt == FORMATS[name]


def test_first_bytes_are_enough() -> None:
    assert sniff(make_jpeg(64, 48)[:3]) == FORMATS["jpeg"]
    assert sniff(make_png(64, 48)[:8]) == FORMATS["png"]


def test_jpeg_with_junk_after_soi_is_a_jpeg_but_junk_before_soi_is_not() -> None:
    jpeg = make_jpeg(64, 48)
    comment = b"\xff\xfe\x00\x10CREATOR: junk!!"
    assert sniff(jpeg[:2] + comment + jpeg[2:]) == FORMATS["jpeg"]
    assert sniff(b"junk" + jpeg) is None


SVGS = [
    b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>',
    b"<svg>\n</svg>",
    b'\xef\xbb\xbf<?xml version="1.0" encoding="UTF-8"?><svg xmlns="http://www.w3.org/2000/svg"></svg>',
    b'  \r\n\t<?xml version="1.0" standalone="no"?>\n<!-- Generator: Adobe Illustrator 24.0 -->\n'
    b'<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n'
    b'<svg version="1.1" xmlns="http://www.w3.org/2000/svg">',
    b'<?xml version="1.0"?>\n<!DOCTYPE svg [ <!ENTITY ns "http://www.w3.org/2000/svg"> ]>\n<svg xmlns="&ns;">',
    b'<?xml version="1.0"?><?xml-stylesheet href="s.css"?><!-- a -- comment --><svg viewBox="0 0 1 1">',
    b'<svg:svg xmlns:svg="http://www.w3.org/2000/svg"></svg:svg>',
    '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>'.encode("utf-16"),
]


@pytest.mark.parametrize("data", SVGS)
def test_svg_variants(data: bytes) -> None:
    fmt = sniff(data)
    assert fmt is not None and fmt.name == "svg" and not fmt.raster


@pytest.mark.parametrize(
    ("data", "looks_like"),
    [
        (b"", "empty body"),
        (b"<!DOCTYPE html><html><head><title>404</title></head></html>", "text/html page"),
        (b"\n\n  <html lang=en><body><svg></svg></body></html>", "text/html page"),
        (b'{"error": "not found"}', "JSON document"),
        (b"[1, 2, 3]", "JSON document"),
        (b'<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>', "XML document"),
        (b"<?xml version='1.0'?><!-- <svg> in a comment -->", "XML document"),
        (b"<!-- unterminated comment <svg", "XML document"),
        (b"<svgfoo/>", "XML document"),
        (b"Access denied", "plain text"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3", "PDF document"),
        (b"\x1f\x8b\x08\x00" + b"\x00" * 10, "gzip archive"),
        (_ftyp(b"isom", b"mp41"), "ISO-BMFF brand 'isom'"),
        (b"BM not really a bitmap header", "plain text"),
        (b"\xff\xd8", "unknown binary data"),  # cut before the third byte of a JPEG signature
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "unknown binary data"),
    ],
)
def test_not_images(data: bytes, looks_like: str) -> None:
    assert sniff(data) is None
    assert looks_like in describe(data)


def test_svg_prologue_longer_than_sniff_window_is_not_an_image() -> None:
    data = b"<!--" + b"x" * SNIFF_BYTES + b"--><svg/>"
    assert sniff(data[:SNIFF_BYTES]) is None


def test_what_sniff_accepts_pillow_can_open() -> None:
    for data in (make_jpeg(16, 16), make_png(16, 16), make_webp(16, 16), make_gif(16, 16), _pillow("BMP")):
        fmt = sniff(data)
        assert fmt is not None
        assert Image.open(io.BytesIO(data)).format.lower() in (fmt.name, "jpeg")
