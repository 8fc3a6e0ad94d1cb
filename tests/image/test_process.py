"""The image stage on real files (tests/fixtures/images) and on images generated here."""

from __future__ import annotations

import contextlib
import io
import random
import resource
import struct
import time
import warnings
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from archiver.config import ImagesConfig
from archiver.errors import ImageError
from archiver.image.process import process
from archiver.model import Asset, ImageFormat
from tests.support.images import hamming, make_scan_bomb
from tests.support.paths import FIXTURES_DIR

FIXTURES = FIXTURES_DIR / "images"
JPEG = ImageFormat("jpeg", "image/jpeg", "jpg")
PNG = ImageFormat("png", "image/png", "png")
GIF = ImageFormat("gif", "image/gif", "gif")
WEBP = ImageFormat("webp", "image/webp", "webp")
SVG = ImageFormat("svg", "image/svg+xml", "svg", raster=False)
BY_EXT = {".jpg": JPEG, ".png": PNG, ".gif": GIF, ".webp": WEBP}
CFG = ImagesConfig()


def run(path: Path, cfg: ImagesConfig = CFG, fmt: ImageFormat | None = None) -> Asset:
    return process(str(path), fmt or BY_EXT[path.suffix], "0" * 64, path.stat().st_size, cfg)


def fixture(name: str, cfg: ImagesConfig = CFG) -> Asset:
    return run(FIXTURES / name, cfg)


def thumb(asset: Asset, i: int = -1) -> Image.Image:
    """The decoded rendition, checking that its recorded size is its real size."""
    r = asset.renditions[i]
    im = Image.open(io.BytesIO(r.data))
    im.load()
    assert im.size == (r.pixel_width, r.pixel_height)
    return im


def save(tmp_path: Path, im: Image.Image, name: str, **params: object) -> Path:
    path = tmp_path / name
    im.save(path, **params)
    return path


def full_size_hashes(path: Path) -> tuple[str, str]:
    """Hashes the straightforward way: full decode, orientation applied, transparency on white."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGBA")
    flat = Image.new("RGB", im.size, (255, 255, 255))
    flat.paste(im, mask=im.getchannel("A"))
    return str(imagehash.phash(flat)), str(imagehash.dhash(flat))


def mean_rgb(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB"), dtype=float).reshape(-1, 3).mean(axis=0)


# --- dimensions, orientation, renditions -------------------------------------------------------------


def test_a_photo_gets_dimensions_hashes_and_a_webp_thumbnail() -> None:
    a = fixture("skimage_rocket.jpg")
    assert (a.width, a.height, a.frames) == (640, 427, 1)
    assert a.format == JPEG and a.size == (FIXTURES / "skimage_rocket.jpg").stat().st_size
    assert len(a.phash) == 16 and len(a.dhash) == 16
    (r,) = a.renditions
    assert (r.width, r.pixel_width, r.pixel_height) == (320, 320, 214)
    assert r.format == ImageFormat("webp", "image/webp", "webp")
    assert thumb(a).format == "WEBP"


@pytest.mark.parametrize("orientation", range(2, 9))
def test_every_exif_orientation_of_the_hopper_displays_like_the_upright_one(orientation: int) -> None:
    upright = fixture("pillow_hopper.jpg")
    a = fixture(f"pillow_hopper_orientation_{orientation}.jpg")
    assert (a.width, a.height) == (128, 128)
    assert hamming(a.phash, upright.phash) <= 4
    assert hamming(imagehash_of(thumb(a)), imagehash_of(thumb(upright))) <= 4


def imagehash_of(im: Image.Image) -> str:
    return str(imagehash.phash(im))


# The transpose that stores a displayed picture under each EXIF orientation (inverse of the display one).
STORE_AS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_of_a_non_square_image_gives_displayed_dimensions(tmp_path: Path, orientation: int) -> None:
    displayed = Image.open(FIXTURES / "skimage_rocket.jpg").convert("RGB")  # 640×427, upright
    stored = displayed.transpose(STORE_AS[orientation]) if orientation > 1 else displayed
    exif = Image.Exif()
    exif[0x0112] = orientation
    a = run(save(tmp_path, stored, "o.jpg", quality=90, exif=exif))
    reference = run(save(tmp_path, displayed, "up.jpg", quality=90))
    assert (a.width, a.height) == (640, 427)
    assert (a.renditions[0].pixel_width, a.renditions[0].pixel_height) == (320, 214)
    assert hamming(a.phash, reference.phash) <= 4
    assert hamming(a.dhash, reference.dhash) <= 4


def test_real_photo_stored_rotated_with_tag_6_is_upright() -> None:
    a = fixture("derived_rocket_exif_orientation6.jpg")  # stored 427×640
    assert (a.width, a.height) == (640, 427)
    assert hamming(a.phash, fixture("skimage_rocket.jpg").phash) <= 4


def test_one_rendition_per_configured_width_never_upscaled(tmp_path: Path) -> None:
    cfg = ImagesConfig(thumbnails=(640, 160, 320))
    small = run(save(tmp_path, Image.new("RGB", (50, 30), "red"), "s.png"), cfg)
    assert [(r.width, r.pixel_width, r.pixel_height) for r in small.renditions] == [
        (160, 50, 30), (320, 50, 30), (640, 50, 30)
    ]
    assert len({r.data for r in small.renditions}) == 1  # the same pixels, encoded once
    mid = fixture("derived_astronaut_256_q40.jpg", cfg)  # 256 px wide
    assert [(r.width, r.pixel_width, r.pixel_height) for r in mid.renditions] == [
        (160, 160, 160), (320, 256, 256), (640, 256, 256)
    ]
    big = fixture("pillow_junk_jpeg_header.jpg", cfg)  # 1024×768
    assert [(r.width, r.pixel_width, r.pixel_height) for r in big.renditions] == [
        (160, 160, 120), (320, 320, 240), (640, 640, 480)
    ]
    for i in range(3):
        thumb(big, i)


@pytest.mark.parametrize(("fmt", "pil"), [("webp", "WEBP"), ("jpeg", "JPEG"), ("png", "PNG")])
def test_same_input_gives_identical_rendition_bytes_without_metadata(fmt: str, pil: str) -> None:
    cfg = ImagesConfig(thumbnails=(100, 200), thumbnail_format=fmt)
    one, two = fixture("skimage_rocket.jpg", cfg), fixture("skimage_rocket.jpg", cfg)
    assert one == two
    for i in range(2):
        im = thumb(one, i)
        assert im.format == pil
        assert not {"exif", "icc_profile", "xmp"} & set(im.info)


# --- colour modes -------------------------------------------------------------------------------------


def test_cmyk_jpeg_gives_rgb_thumbnail_with_the_colours_of_the_rgb_original() -> None:
    cmyk, rgb = fixture("derived_flower2_cmyk.jpg"), fixture("pillow_flower2.jpg")
    got, want = thumb(cmyk), thumb(rgb)
    assert got.mode == "RGB"
    assert np.abs(mean_rgb(got) - mean_rgb(want)).max() < 8  # an inverted CMYK would be ~255 - mean
    assert hamming(cmyk.phash, rgb.phash) <= 4


def test_adobe_rgb_photo_is_converted_to_srgb_since_the_profile_is_stripped() -> None:
    path = FIXTURES / "skimage_rocket.jpg"  # embedded "Adobe RGB (1998)" profile
    got = np.asarray(thumb(fixture("skimage_rocket.jpg", ImagesConfig(thumbnail_format="png"))), dtype=float)
    with Image.open(path) as im:
        src = ImageCms.ImageCmsProfile(io.BytesIO(im.info["icc_profile"]))
        srgb = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        raw = im.convert("RGB")
    size = (320, 214)
    want = np.asarray(srgb.resize(size, Image.Resampling.LANCZOS), dtype=float)
    unconverted = np.asarray(raw.resize(size, Image.Resampling.LANCZOS), dtype=float)
    assert np.abs(got - want).mean() < 1.5 < 4 < np.abs(got - unconverted).mean()


@pytest.mark.parametrize("name", ["pillow_pil123p.png", "pillow_transparent.gif"])
def test_palette_with_transparency_keeps_alpha_in_webp_and_png(name: str) -> None:
    for fmt in ("webp", "png"):
        im = thumb(fixture(name, ImagesConfig(thumbnail_format=fmt)))
        assert im.mode == "RGBA"
        assert im.getchannel("A").getextrema()[0] == 0  # transparent pixels survive
    jpeg = thumb(fixture(name, ImagesConfig(thumbnail_format="jpeg")))
    assert jpeg.mode == "RGB"


def test_rgba_is_hashed_on_white_whatever_hides_under_transparent_pixels(tmp_path: Path) -> None:
    base = Image.open(FIXTURES / "skimage_astronaut.png").convert("RGB")
    alpha = Image.new("L", base.size, 255)
    alpha.paste(0, (0, 0, 256, 512))  # left half fully transparent
    hidden_a, hidden_b = base.copy(), base.copy()
    hidden_b.paste((0, 0, 0), (0, 0, 256, 512))  # different colours under alpha 0
    hidden_a.putalpha(alpha)
    hidden_b.putalpha(alpha)
    a = run(save(tmp_path, hidden_a, "a.png"))
    b = run(save(tmp_path, hidden_b, "b.png"))
    assert (a.phash, a.dhash) == (b.phash, b.dhash)
    on_white = Image.new("RGB", base.size, "white")
    on_white.paste(hidden_a, mask=alpha)
    assert hamming(a.phash, run(save(tmp_path, on_white, "w.png")).phash) <= 2
    assert thumb(a).mode == "RGBA"


def test_16_bit_greyscale_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 400, dtype=np.uint16), (300, 1))  # dark left, bright right
    path = tmp_path / "sixteen.png"
    Image.fromarray(ramp).save(path)  # mode I;16, 16-bit PNG
    assert Image.open(path).mode.startswith("I")
    a = run(path)
    im = thumb(a).convert("L")
    assert (a.width, a.height) == (400, 300)
    assert 115 < np.asarray(im, dtype=float).mean() < 140  # clipping to 255 would give ~250
    eight = Image.fromarray((ramp // 257).astype(np.uint8))
    assert hamming(a.phash, run(save(tmp_path, eight, "eight.png")).phash) <= 2


# --- animation, awkward JPEGs ------------------------------------------------------------------------


def test_animated_gif_counts_frames_and_thumbnails_frame_0() -> None:
    a = fixture("skimage_no_time_for_that_tiny.gif", ImagesConfig(thumbnail_format="png"))
    assert (a.frames, a.width, a.height) == (24, 14, 25)
    with Image.open(FIXTURES / "skimage_no_time_for_that_tiny.gif") as gif:
        first = gif.convert("RGB")
        gif.seek(5)
        later = gif.convert("RGB")
    assert thumb(a).convert("RGB").tobytes() == first.tobytes() != later.tobytes()


def test_animated_webp_counts_frames_and_thumbnails_frame_0(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (64, 48), colour) for colour in ("red", "lime", "blue")]
    path = save(tmp_path, frames[0], "anim.webp", save_all=True, append_images=frames[1:], lossless=True)
    a = run(path, ImagesConfig(thumbnail_format="png"))
    assert (a.frames, a.width, a.height) == (3, 64, 48)
    assert thumb(a).convert("RGB").getpixel((10, 10)) == (255, 0, 0)


def test_progressive_jpeg_is_the_same_picture() -> None:
    a = fixture("derived_hopper_progressive.jpg")
    assert (a.width, a.height) == (128, 128)
    assert hamming(a.phash, fixture("pillow_hopper.jpg").phash) <= 2


def test_junk_before_soi_and_junk_inside_the_header_are_tolerated(tmp_path: Path) -> None:
    assert (fixture("pillow_junk_jpeg_header.jpg").width, 768) == (1024, 768)
    path = tmp_path / "junk.jpg"
    path.write_bytes(b"<br />\nWarning: headers already sent\n" + (FIXTURES / "pillow_hopper.jpg").read_bytes())
    a = run(path)
    assert a.phash == fixture("pillow_hopper.jpg").phash and a.renditions


# --- hashes ---------------------------------------------------------------------------------------------


def test_near_duplicates_are_close_and_unrelated_photos_are_far() -> None:
    astronaut, hopper = fixture("skimage_astronaut.png"), fixture("pillow_hopper.jpg")
    assert hamming(astronaut.phash, fixture("derived_astronaut_256_q40.jpg").phash) <= 8
    assert hamming(hopper.phash, fixture("derived_hopper_progressive.jpg").phash) <= 8
    unrelated = [astronaut, hopper, fixture("skimage_rocket.jpg"), fixture("pillow_flower2.jpg"),
                 fixture("pillow_junk_jpeg_header.jpg")]
    for i, x in enumerate(unrelated):
        for y in unrelated[i + 1:]:
            assert hamming(x.phash, y.phash) > 20


@pytest.mark.parametrize(
    "name",
    ["skimage_astronaut.png", "skimage_rocket.jpg", "pillow_junk_jpeg_header.jpg", "pillow_flower2.jpg",
     "derived_rocket_exif_orientation6.jpg", "pillow_pil123p.png", "derived_flower2_cmyk.jpg"],
)
def test_hashes_from_the_thumbnail_match_hashes_of_the_full_size_decode(name: str) -> None:
    phash, dhash = full_size_hashes(FIXTURES / name)
    for cfg in (ImagesConfig(), ImagesConfig(thumbnails=(160,))):
        a = fixture(name, cfg)
        assert hamming(a.phash, phash) <= 3
        assert hamming(a.dhash, dhash) <= 3


def test_hamming() -> None:
    assert hamming("0000000000000000", "ffffffffffffffff") == 64
    assert hamming("8c977c0983ce9e8d", "8c977c0983ce9e8c") == 1
    with pytest.raises(ValueError):
        hamming("00", "0000")


# --- refusals ----------------------------------------------------------------------------------------------


def png_bomb(path: Path, width: int = 30_000, height: int = 30_000) -> Path:
    """A tiny PNG whose header claims width×height RGB pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 10_000)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    path = png_bomb(tmp_path / "bomb.png")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.process_time()  # CPU time: a loaded machine does not stretch it
    with pytest.raises(ImageError, match="max_pixels"):
        run(path)
    assert time.process_time() - started < 0.5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB: no 2.7 GB canvas


def test_a_jpeg_with_thousands_of_scans_is_refused_before_decoding(tmp_path: Path) -> None:
    """A valid 7000×7000 progressive JPEG of 2 647 tiny scans: ~30 s of CPU in libjpeg, which has no limit of its
    own. Counted (not decoded) and refused, also behind junk before its SOI marker."""
    bomb = make_scan_bomb()
    for name, data in (("scans.jpg", bomb), ("junk-first.jpg", b"\x00junk" + bomb)):
        path = tmp_path / name
        path.write_bytes(data)
        started = time.process_time()
        with pytest.raises(ImageError) as info:
            run(path, fmt=JPEG)
        assert info.value.reason.startswith("too costly to decode: more than images.max_jpeg_scans (100) JPEG scans")
        assert info.value.outcome == "rejected"
        assert time.process_time() - started < 1.0  # CPU seconds, whatever the machine's load


def test_the_scan_limit_counts_real_scans(tmp_path: Path) -> None:
    progressive = FIXTURES / "derived_hopper_progressive.jpg"  # libjpeg's standard progression: 10 scans
    assert run(progressive, ImagesConfig(max_jpeg_scans=10)).width == 128
    with pytest.raises(ImageError, match="max_jpeg_scans"):
        run(progressive, ImagesConfig(max_jpeg_scans=9))
    assert fixture("skimage_rocket.jpg", ImagesConfig(max_jpeg_scans=1)).width == 640  # baseline: one scan
    small = tmp_path / "scans.jpg"
    small.write_bytes(make_scan_bomb(96, 64))  # a real picture, once the limit allows its 2 647 scans
    asset = run(small, ImagesConfig(max_jpeg_scans=2647))
    assert (asset.width, asset.height) == (96, 64)
    assert thumb(asset).convert("L").getextrema() == (128, 128)


@pytest.mark.parametrize("max_pixels", [100_000, 200_000])  # over 2× (Pillow's error) and 1-2× (its warning)
def test_max_pixels_applies_to_ordinary_images(max_pixels: int) -> None:
    with warnings.catch_warnings(record=True) as caught, pytest.raises(ImageError, match="max_pixels"):
        warnings.simplefilter("always")
        fixture("skimage_rocket.jpg", ImagesConfig(max_pixels=max_pixels))  # 273 280 pixels
    assert not caught  # Pillow's DecompressionBombWarning is turned into the refusal, never just printed
    assert fixture("skimage_rocket.jpg", ImagesConfig(max_pixels=273_280)).width == 640


@pytest.mark.parametrize("name", ["skimage_rocket.jpg", "skimage_astronaut.png", "derived_hopper_progressive.jpg"])
def test_truncated_files_are_an_image_error(tmp_path: Path, name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    path = tmp_path / f"half{Path(name).suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated|corrupt"):
        run(path)


def test_random_bytes_behind_a_jpeg_magic_are_an_image_error(tmp_path: Path) -> None:
    path = tmp_path / "noise.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + random.Random(1).randbytes(5000))
    with pytest.raises(ImageError):
        run(path)


def test_corrupted_bytes_never_escape_as_pillow_errors(tmp_path: Path) -> None:
    rng = random.Random(7)
    for name in ("pillow_hopper.jpg", "pillow_pil123p.png", "skimage_no_time_for_that_tiny.gif"):
        original = bytearray((FIXTURES / name).read_bytes())
        for i in range(25):
            data = bytearray(original)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            path = tmp_path / f"{i}{Path(name).suffix}"
            path.write_bytes(bytes(data))
            with contextlib.suppress(ImageError):  # an Asset or an ImageError; anything else fails the test
                run(path)


def test_only_the_sniffed_format_is_decoded(tmp_path: Path) -> None:
    with pytest.raises(ImageError):
        run(FIXTURES / "pillow_hopper.jpg", fmt=PNG)
    eps = tmp_path / "x.png"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    with pytest.raises(ImageError):
        run(eps)
    with pytest.raises(ImageError):
        run(FIXTURES / "pillow_hopper.jpg", fmt=ImageFormat("heic", "image/heic", "heic"))


def test_svg_is_never_parsed_or_rasterised(tmp_path: Path) -> None:
    path = tmp_path / "laughs.svg"
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    path.write_text(f'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY l0 "lol">{lol}]><svg>&l9;</svg>')
    a = run(path, fmt=SVG)
    assert a == Asset(sha256="0" * 64, format=SVG, size=path.stat().st_size, width=None, height=None,
                      phash=None, dhash=None, frames=1, renditions=())


def test_runs_in_a_process_pool_and_its_errors_cross_back(tmp_path: Path) -> None:
    bomb = png_bomb(tmp_path / "bomb.png")
    path = FIXTURES / "pillow_hopper.jpg"
    with ProcessPoolExecutor(max_workers=1) as pool:
        asset = pool.submit(process, str(path), JPEG, "0" * 64, path.stat().st_size, CFG).result()
        refused = pool.submit(process, str(bomb), PNG, "0" * 64, bomb.stat().st_size, CFG).exception()
    assert asset == fixture("pillow_hopper.jpg")
    assert isinstance(refused, ImageError) and "max_pixels" in refused.reason
