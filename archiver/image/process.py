"""The image stage: one reduced-size decode per image gives its dimensions, thumbnails and perceptual hashes.

``process`` runs in a worker of archiver.image.pool, which bounds its CPU time from outside; it is pure (no shared state besides Pillow's own
``Image.MAX_IMAGE_PIXELS``, which it sets to ``cfg.max_pixels`` in the worker) and deterministic: the
same bytes and config give byte-identical renditions (all metadata stripped, fixed encoder settings).

Pipeline, from ONE decode: a JPEG with more than ``max_jpeg_scans`` scans is refused (libjpeg makes a pass over
the whole image per scan, and gives no limit of its own) → open (header only) → refuse over ``max_pixels`` → read EXIF orientation →
``draft()`` at the exact size the largest rendition needs (JPEG decodes at 1/2, 1/4, 1/8) → normalise
the mode to 8-bit L/RGB/RGBA (CMYK and non-sRGB profiles converted to sRGB) → resize to the largest
rendition → orient → pHash/dHash from that image (transparency flattened on white) → smaller
renditions resized from it → encode.

One rendition per configured width (``Rendition.width``), never upscaled: for widths at or above the
image's displayed width the rendition is the image at its own size; such duplicates are encoded once
and share the same bytes, so every configured width can be looked up (and its storage key checked).
"""

from __future__ import annotations

import io
import mmap
import re
import warnings
from contextlib import suppress
from typing import BinaryIO

from PIL import Image, ImageCms, UnidentifiedImageError

from archiver.config import ImagesConfig
from archiver.errors import ImageError, TooManyPixels
from archiver.image.similarity import content_box, content_share, signature
from archiver.model import Asset, ImageFormat, Rendition

# The Pillow plugins allowed for each sniffed format: nothing else is ever tried (no EPS/Ghostscript, ...).
_PILLOW_FORMATS: dict[str, tuple[str, ...]] = {
    "jpeg": ("JPEG", "MPO"),
    "png": ("PNG",),
    "gif": ("GIF",),
    "webp": ("WEBP",),
    "avif": ("AVIF",),
    "bmp": ("BMP", "DIB"),
    "tiff": ("TIFF",),
    "ico": ("ICO", "CUR"),
}
_ANIMATED_FORMATS = frozenset({"gif", "png", "webp", "avif"})  # elsewhere n_frames means pages/sizes
_OUTPUT_FORMATS: dict[str, ImageFormat] = {
    "webp": ImageFormat("webp", "image/webp", "webp"),
    "jpeg": ImageFormat("jpeg", "image/jpeg", "jpg"),
    "png": ImageFormat("png", "image/png", "png"),
    "avif": ImageFormat("avif", "image/avif", "avif"),
}
_MAX_SIDE = {"webp": 16383, "jpeg": 65500, "png": 1 << 24, "avif": 16384}  # encoder limits per side
# libwebp method 0-6 trades encode time for size; bench/bench_imaging.py measures it: method 2 is
# ~2x faster than the default 4 on 320 px thumbnails for a few % more bytes, 6 can take 0.9 s on RGBA.
WEBP_METHOD = 2
# libavif/aom speed 0-10 trades encode time for size; bench/bench_imaging.py measures it: speed 8 is ~3x faster than
# the default 6 for a few % more bytes. One thread: the pool already keeps every core busy, and the bytes stay the same.
AVIF_SPEED = 8
# After a scan's header its entropy-coded data runs to the next marker: 0xFF then anything but a stuffed 0x00, a
# restart marker (0xD0-0xD7) or a fill byte (0xFF).
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start of frame, by coding process
_PROGRESSIVE_SOF = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_SCAN_HEAD = 64 * 1024  # read to settle a baseline JPEG's scan count; a progressive one is mapped whole
_JUNK_SCAN = 1024  # bytes searched for a JPEG SOI when something precedes it
_BACKGROUND = (255, 255, 255)  # transparency is flattened onto this before hashing and for JPEG output
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def process(path: str, fmt: ImageFormat, sha256: str, size: int, cfg: ImagesConfig) -> Asset:
    """Dimensions, hashes and renditions of the downloaded file at ``path``; ImageError if it is unusable."""
    if not fmt.raster:  # SVG: stored as is, never parsed or rasterised
        return Asset(sha256=sha256, format=fmt, size=size, width=None, height=None, phash=None, dhash=None)
    plugins = _PILLOW_FORMATS.get(fmt.name)
    if plugins is None:
        raise ImageError(f"cannot make thumbnails of {fmt.name} images")
    Image.MAX_IMAGE_PIXELS = cfg.max_pixels  # Pillow's own check in open() then agrees with ours
    with _source(path, fmt) as fp:
        if fmt.name == "gif" and not _gif_complete(fp):
            raise ImageError("truncated or corrupt GIF: its blocks end before the trailer")
        if fmt.name == "jpeg" and _jpeg_scans(fp, cfg.max_jpeg_scans) > cfg.max_jpeg_scans:
            raise ImageError(
                f"too costly to decode: more than images.max_jpeg_scans ({cfg.max_jpeg_scans}) JPEG scans "
                "(progressive passes over the whole image; real JPEGs have 1-20)"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # corrupt-EXIF chatter etc.: not the user's concern
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(fp, formats=plugins) as im:
                    return _process_open(im, fmt, sha256, size, cfg)
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise TooManyPixels(f"more than images.max_pixels ({cfg.max_pixels:,}) pixels: refused") from exc
        except UnidentifiedImageError as exc:
            raise ImageError(f"not a {fmt.name} image that can be decoded") from exc
        except EOFError as exc:
            raise ImageError("truncated image") from exc
        except OSError as exc:
            if "truncated" in str(exc):
                raise ImageError("truncated image") from exc
            raise ImageError(f"corrupt image: {exc}") from exc
        except Exception as exc:  # any decoder failure on hostile bytes (SyntaxError, ValueError, ...)
            raise ImageError(f"corrupt image: {type(exc).__name__}: {exc}") from exc


def _source(path: str, fmt: ImageFormat) -> BinaryIO:
    """The file, or for a JPEG with junk before its SOI marker (up to 1 KiB), the bytes from SOI on."""
    fp = open(path, "rb")  # noqa: SIM115 - returned to the caller's with-block
    if fmt.name != "jpeg":
        return fp
    head = fp.read(_JUNK_SCAN + 3)
    start = head.find(b"\xff\xd8\xff")
    if start <= 0:
        fp.seek(0)
        return fp
    with fp:
        data = fp.read()
    return io.BytesIO(head[start:] + data)


def _jpeg_scans(fp: BinaryIO, limit: int) -> int:
    """How many scans (SOS segments) the first image of the JPEG in ``fp`` has, counted up to ``limit + 1``: marker
    segments are skipped by their length, entropy-coded data up to the next marker; nothing is decoded. A baseline
    JPEG is settled by its first 64 KiB (one scan holds every component: libjpeg reads no other)."""
    if isinstance(fp, io.BytesIO):
        with fp.getbuffer() as view:
            return _count_scans(view, limit, whole=True) or 0
    head = fp.read(_SCAN_HEAD)
    fp.seek(0)
    counted = _count_scans(head, limit, whole=len(head) < _SCAN_HEAD)
    if counted is not None:
        return counted
    with mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return _count_scans(data, limit, whole=True) or 0


def _count_scans(data: bytes | memoryview | mmap.mmap, limit: int, *, whole: bool) -> int | None:
    """The scans in ``data`` (a JPEG from its SOI), or None if it ends before that is settled and is not ``whole``."""
    pos, end, scans = 2, len(data), 0  # after SOI
    components, progressive = 0, True
    while scans <= limit:
        if pos + 4 > end:
            return scans if whole else None
        if data[pos] != 0xFF:  # entropy-coded data, or junk between segments
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                return scans if whole else None
            pos = found.start()
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # EOI: what follows (an MPO's other images) is not decoded
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length field
            pos += 2
            continue
        if marker in _SOF and pos + 10 <= end:
            components, progressive = data[pos + 9], marker in _PROGRESSIVE_SOF
        elif marker == 0xDA:
            scans += 1
            if scans == 1 and not progressive and pos + 5 <= end and data[pos + 4] == components:
                return 1  # sequential with every component in one scan: libjpeg reads no other scan
        pos += 2 + ((data[pos + 2] << 8) | data[pos + 3])
    return scans


def _gif_complete(fp: BinaryIO) -> bool:
    """True if the GIF's blocks run to its trailer byte (0x3B). Pillow decodes a GIF cut short after a few
    frames without complaint, and an archived copy of it would be broken for good."""
    data = fp.read()
    fp.seek(0)
    if len(data) < 13:
        return False
    pos = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)  # header, global colour table
    while pos < len(data):
        block = data[pos]
        if block == 0x3B:
            return True
        if block == 0x21:  # extension: label, then sub-blocks
            pos += 2
        elif block == 0x2C:  # image: descriptor, local colour table, LZW code size, then sub-blocks
            if pos + 10 > len(data):
                return False
            flags = data[pos + 9]
            pos += 11 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
        else:  # a stray byte: Pillow skips it too
            pos += 1
            continue
        while pos < len(data) and data[pos]:
            pos += 1 + data[pos]
        pos += 1  # the zero-length block ending the sub-blocks
    return False


def _process_open(im: Image.Image, fmt: ImageFormat, sha256: str, size: int, cfg: ImagesConfig) -> Asset:
    w, h = im.size
    if w * h > cfg.max_pixels:
        raise TooManyPixels(f"{w}×{h} is more than images.max_pixels ({cfg.max_pixels:,}) pixels: refused")
    if w < 1 or h < 1:
        raise ImageError(f"corrupt image: {w}×{h} pixels")
    frames = getattr(im, "n_frames", 1) if fmt.name in _ANIMATED_FORMATS else 1
    colours = palette_colours(im)
    orientation = _orientation(im)
    swap = orientation in (5, 6, 7, 8)
    dw, dh = (h, w) if swap else (w, h)
    plans = {name: _plan(dw, dh, cfg, name) for name in cfg.output_formats}
    tw, th = max(((rw, rh) for plan in plans.values() for _, rw, rh in plan), key=lambda s: s[0] * s[1])
    im.draft("RGB", (th, tw) if swap else (tw, th))  # JPEG: decode at the smallest scale still >= target
    icc = im.info.get("icc_profile")
    base = _eight_bit(im)
    big = base.resize((th, tw) if swap else (tw, th), Image.Resampling.LANCZOS, reducing_gap=3.0)
    if orientation in _ORIENT:
        big = big.transpose(_ORIENT[orientation])
    # Hashes see the stored pixel values (before any profile conversion), like a hash of the full decode.
    grey = flatten(big.convert("RGB") if big.mode == "CMYK" else big).convert("L")
    box = content_box(grey)  # inside a frame or bars added around the picture
    sig = signature(grey, box=box)  # pHash/dHash of the 8 dihedral transforms; variant 0 is imagehash's own
    phash, dhash = sig.phash[0], sig.dhash[0]
    big = _srgb(big, icc)
    chroma = mean_chroma(big)
    sized: dict[tuple[int, int], Image.Image] = {}  # each size resized once, whatever the formats
    encoded: dict[tuple[str, int, int], bytes] = {}
    renditions = []
    for name, plan in plans.items():
        for width, rw, rh in plan:
            if (name, rw, rh) not in encoded:
                if (rw, rh) not in sized:
                    sized[rw, rh] = big if (rw, rh) == big.size else big.resize((rw, rh), Image.Resampling.LANCZOS)
                encoded[name, rw, rh] = encode(sized[rw, rh], name, cfg.thumbnail_quality)
            renditions.append(Rendition(width, rw, rh, _OUTPUT_FORMATS[name], encoded[name, rw, rh]))
    return Asset(sha256=sha256, format=fmt, size=size, width=dw, height=dh, phash=phash, dhash=dhash,
                 frames=frames, renditions=tuple(renditions), phash_variants=sig.phash, dhash_variants=sig.dhash,
                 grey=sig.grey, colours=colours, chroma=chroma,
                 content=content_share(box, grey.size))


def palette_colours(im: Image.Image) -> int:
    """How many palette entries a palette image uses (a GIF, an indexed PNG: 256 at most); 0 for any other image.
    Costs one pass over an image that is decoded anyway (palettes are never drafted)."""
    if im.mode == "1":
        return 2
    if im.mode not in ("P", "PA"):
        return 0
    return sum(1 for n in im.histogram()[:256] if n)


def mean_chroma(im: Image.Image) -> float:
    """Mean distance of the pixels' Cb and Cr from neutral (|Cb - 128| + |Cr - 128|, transparency flattened): 0 for a
    greyscale picture whatever its encoding, 12-70 for colour photos. Sampled on a grid of about 64 x 64 pixels
    (nearest neighbour: the pixels' own values, not averages) through two histograms: ~0.1 ms."""
    if im.mode in ("L", "1", "I", "F", "I;16"):
        return 0.0
    step = max(1, max(im.size) // 64)
    sample = im.resize((max(1, im.width // step), max(1, im.height // step)), Image.Resampling.NEAREST)
    ycc = flatten(sample).convert("RGB").convert("YCbCr")
    total = 0
    for band in (1, 2):
        total += sum(n * abs(v - 128) for v, n in enumerate(ycc.getchannel(band).histogram()))
    return round(total / (sample.width * sample.height), 2)


def _plan(dw: int, dh: int, cfg: ImagesConfig, fmt: str) -> list[tuple[int, int, int]]:
    """(configured width, pixel width, pixel height) per configured width, smallest first; no upscaling."""
    limit = _MAX_SIDE[fmt]
    plan = []
    for width in sorted(set(cfg.thumbnails)):
        scale = min(1.0, width / dw, limit / dh)
        plan.append((width, max(1, min(dw, round(dw * scale))), max(1, min(dh, round(dh * scale)))))
    return plan


def _orientation(im: Image.Image) -> int:
    """EXIF orientation 1-8 (1 when absent or unreadable: broken EXIF is common and harmless)."""
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _eight_bit(im: Image.Image) -> Image.Image:
    """Decode and bring any mode to L, RGB, RGBA or CMYK (CMYK is kept for the profile-aware conversion)."""
    mode = im.mode
    if mode.startswith("I") or mode == "F":  # 16/32-bit grey: scale to 8 bits, don't clip
        im.load()
        wide = mode.startswith("I;16") or im.getextrema()[1] > 255  # type: ignore[index,operator]
        return im.convert("F").point(lambda v: v / 257 if wide else v).convert("L")
    if mode in ("PA", "LA", "La", "RGBa") or (mode in ("P", "1", "L", "RGB") and "transparency" in im.info):
        return im.convert("RGBA")
    if mode in ("L", "RGB", "RGBA", "CMYK"):
        im.load()
        return im
    return im.convert("L" if mode == "1" else "RGB")  # P, RGBX, YCbCr, LAB, HSV


def _srgb(im: Image.Image, icc: bytes | None) -> Image.Image:
    """RGB/CMYK converted to sRGB through the embedded profile when it is not sRGB; others left as they are."""
    if icc and im.mode in ("RGB", "CMYK"):
        with suppress(Exception):  # unusable profiles are common; fall back to Pillow's plain conversion
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            if im.mode == "CMYK" or "srgb" not in ImageCms.getProfileDescription(src).lower():
                out = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
                if out is not None:
                    return out
    return im.convert("RGB") if im.mode == "CMYK" else im


_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "La", "RGBa"})


def flatten(im: Image.Image) -> Image.Image:
    """``im`` without transparency: an image with an alpha channel or a transparent colour is composited onto
    a fixed white background (as RGB), so its hashes do not depend on what hides under the transparent pixels;
    any other image is returned as it is. The one place transparency is flattened (hashing, JPEG output, and
    signatures computed later from stored thumbnails)."""
    if im.mode not in _ALPHA_MODES and "transparency" not in im.info:
        return im
    rgba = im if im.mode == "RGBA" else im.convert("RGBA")
    out = Image.new("RGB", rgba.size, _BACKGROUND)
    out.paste(rgba, mask=rgba.getchannel("A"))
    return out


def encode(im: Image.Image, fmt: str, q: int) -> bytes:
    """Encoded rendition bytes without any metadata (no EXIF, ICC, XMP: sRGB is the web's default)."""
    im.info = {}  # a fresh image from resize/transpose: its copied info must not reach the encoder
    buf = io.BytesIO()
    if fmt == "webp":
        im.save(buf, "WEBP", quality=q, method=WEBP_METHOD)
    elif fmt == "avif":
        im.save(buf, "AVIF", quality=q, speed=AVIF_SPEED, max_threads=1)
    elif fmt == "jpeg":
        flatten(im).save(buf, "JPEG", quality=q, optimize=True)
    else:
        im.save(buf, "PNG", compress_level=6)
    return buf.getvalue()
