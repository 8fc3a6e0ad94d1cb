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


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def make_scan_bomb(width: int = 7000, height: int = 7000, top_bit: int = 13) -> bytes:
    """A valid progressive JPEG (flat grey, three components) with thousands of tiny scans: every AC coefficient
    of every component gets its own first scan at bit ``top_bit`` and one refinement scan per lower bit, 63 × 3 ×
    (top_bit + 1) + 1 scans (2 647 by default), a few bytes each (end-of-band runs over every block). libjpeg makes
    a pass over the whole image per scan: at 7000×7000 (just under the default max_pixels) about 10 ms of CPU each,
    half a minute for the image; Pillow gives no limit. About 530 KB; a decoder sees a 128-grey image."""
    blocks = -(-width // 8) * -(-height // 8)
    out = [b"\xff\xd8", _segment(0xDB, b"\x00" + bytes([1] * 64))]  # quantisation table 0: all ones
    out.append(_segment(0xC2, struct.pack(">BHHB", 8, height, width, 3) + b"".join(bytes([c, 0x11, 0]) for c in (1, 2, 3))))
    out.append(_segment(0xC4, b"\x00" + bytes([1] + [0] * 15) + b"\x00"))  # DC table: category 0, code "0"
    out.append(_segment(0xC4, b"\x10" + bytes([0, 0, 0, 15] + [0] * 12) + bytes(r << 4 for r in range(15))))  # EOB0-14
    out.append(_segment(0xDA, b"\x03\x01\x00\x02\x00\x03\x00\x00\x00\x00"))  # DC first scan, every difference 0
    bits = blocks * 3
    out.append(bytes(bits // 8) + (bytes([(1 << (8 - bits % 8)) - 1]) if bits % 8 else b""))
    eob = _bits(_eob_runs(blocks))
    for c in (1, 2, 3):
        for k in range(1, 64):
            for ah, al in [(0, top_bit)] + [(a, a - 1) for a in range(top_bit, 0, -1)]:
                out.append(_segment(0xDA, bytes([1, c, 0x00, k, k, (ah << 4) | al])) + eob)
    out.append(b"\xff\xd9")
    return b"".join(out)


def _eob_runs(blocks: int) -> list[tuple[int, int]]:
    """(value, bit length) codes of end-of-band runs covering ``blocks`` blocks: EOBr has the 4-bit code r, then r
    bits that add to 2**r."""
    codes = []
    while blocks:
        run = min(blocks, 32767)
        r = run.bit_length() - 1
        codes += [(r, 4), (run - (1 << r), r)]
        blocks -= run
    return codes


def _bits(codes: list[tuple[int, int]]) -> bytes:
    """Entropy-coded bytes: the codes MSB first, padded with 1 bits, 0xFF stuffed with 0x00."""
    text = "".join(format(value, f"0{length}b") if length else "" for value, length in codes)
    text += "1" * (-len(text) % 8)
    out = bytearray()
    for i in range(0, len(text), 8):
        out.append(int(text[i : i + 8], 2))
        if out[-1] == 0xFF:
            out.append(0)
    return bytes(out)
