"""Deterministic, photo-like test images (gradients, blobs and noise, never flat colours) and a PNG bomb."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def make_rgb(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo-like RGB image: a diagonal colour gradient, a few soft blobs and fine noise, all from ``seed``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    xn, yn = x / max(width - 1, 1), y / max(height - 1, 1)
    base = rng.uniform(40, 200, size=3)
    slope = rng.uniform(-80, 80, size=(3, 2))
    img = np.stack([base[c] + slope[c, 0] * xn + slope[c, 1] * yn for c in range(3)], axis=-1)
    for _ in range(4):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.08, 0.3)
        blob = np.exp(-(((xn - cx) ** 2 + (yn - cy) ** 2) / (2 * r * r)))
        img += blob[..., None] * rng.uniform(-90, 90, size=3)
    img += rng.normal(0, 6, size=img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def _encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def make_jpeg(width: int = 320, height: int = 240, seed: int = 0, quality: int = 85) -> bytes:
    return _encode(make_rgb(width, height, seed), "JPEG", quality=quality)


def make_png(width: int = 320, height: int = 240, seed: int = 0, alpha: bool = False) -> bytes:
    im = make_rgb(width, height, seed)
    if alpha:
        mask = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, axis=0)
        im.putalpha(Image.fromarray(mask.astype(np.uint8), "L"))
    return _encode(im, "PNG")


def make_webp(width: int = 320, height: int = 240, seed: int = 0, quality: int = 80) -> bytes:
    return _encode(make_rgb(width, height, seed), "WEBP", quality=quality)


def make_gif(width: int = 160, height: int = 120, seed: int = 0, frames: int = 1) -> bytes:
    ims = [make_rgb(width, height, seed + i).convert("P", palette=Image.Palette.ADAPTIVE) for i in range(frames)]
    if frames == 1:
        return _encode(ims[0], "GIF")
    return _encode(ims[0], "GIF", save_all=True, append_images=ims[1:], duration=100, loop=0)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def make_png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny, well-formed PNG header declaring ``width`` x ``height`` RGB pixels (a decompression bomb):
    a few hundred bytes on the wire, 2.7 GB if anyone decoded it. Only the first rows are present."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" + b"\x00" * (width * 3), 9)  # one filtered black row
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")


def hamming(hex_a: str, hex_b: str) -> int:
    """Number of differing bits between two stored hex hashes of the same length."""
    if len(hex_a) != len(hex_b):
        raise ValueError(f"hashes of different lengths: {hex_a!r}, {hex_b!r}")
    return (int(hex_a, 16) ^ int(hex_b, 16)).bit_count()
