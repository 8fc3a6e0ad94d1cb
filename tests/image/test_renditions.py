"""Renditions in several widths and formats (AVIF included) from one decode; formats Pillow cannot write are left
out with a message."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, JpegImagePlugin

from archiver.config import ImagesConfig
from archiver.image.formats import writable
from archiver.image.process import process
from archiver.model import ImageFormat
from tests.support.paths import FIXTURES_DIR

JPEG = ImageFormat("jpeg", "image/jpeg", "jpg")
BIG = FIXTURES_DIR / "images" / "pillow_junk_jpeg_header.jpg"  # 1024 x 768
CFG = ImagesConfig(thumbnails=(160, 320, 640, 4000), formats=("avif", "webp", "jpeg"))


def _process(cfg: ImagesConfig, path: Path = BIG) -> object:
    return process(str(path), JPEG, "0" * 64, path.stat().st_size, cfg)


def test_every_width_in_every_format_never_upscaled() -> None:
    asset = _process(CFG)
    got = [(r.format.name, r.width, r.pixel_width, r.pixel_height) for r in asset.renditions]  # type: ignore[attr-defined]
    sizes = [(160, 160, 120), (320, 320, 240), (640, 640, 480), (4000, 1024, 768)]
    assert got == [(fmt, *s) for fmt in ("avif", "webp", "jpeg") for s in sizes]
    for r in asset.renditions:  # type: ignore[attr-defined]
        with Image.open(io.BytesIO(r.data)) as im:
            im.load()
            assert (im.format.lower(), im.size) == (r.format.name, (r.pixel_width, r.pixel_height))
            assert not {"exif", "icc_profile", "xmp"} & set(im.info)
    # the same input gives the same bytes, AVIF included (one encoder thread)
    assert _process(CFG) == asset


def test_one_decode_at_the_largest_size_needed_and_each_size_resized_once(monkeypatch: pytest.MonkeyPatch) -> None:
    drafts: list[tuple[int, int]] = []
    resized: list[tuple[tuple[int, int], tuple[int, int]]] = []
    draft, resize = JpegImagePlugin.JpegImageFile.draft, Image.Image.resize

    def spy_draft(self: Image.Image, mode: str | None, size: tuple[int, int] | None) -> object:
        assert size is not None
        drafts.append(size)
        return draft(self, mode, size)  # type: ignore[arg-type]

    def spy_resize(self: Image.Image, size: tuple[int, int], *args: object, **kwargs: object) -> Image.Image:
        if size[0] > 64:  # not the hash inputs (8 x 8 to 32 x 32) nor the colour sample
            resized.append((self.size, size))
        return resize(self, size, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy_draft)
    monkeypatch.setattr(Image.Image, "resize", spy_resize)
    asset = _process(ImagesConfig(thumbnails=(160, 320), formats=("avif", "webp", "png")))
    assert len(asset.renditions) == 6  # type: ignore[attr-defined]
    assert drafts == [(320, 240)]  # one decode for all six renditions, asked at the largest size needed
    # decoded at 1/2 scale (512 x 384), resized once to the largest rendition, the smaller one made from that
    assert resized == [((512, 384), (320, 240)), ((320, 240), (160, 120))]


def test_avif_left_out_with_a_message_where_pillow_cannot_write_it() -> None:
    cfg = ImagesConfig(formats=("avif", "webp"))
    assert writable(cfg, lambda fmt: True) == (cfg, [])
    fixed, messages = writable(cfg, lambda fmt: fmt != "avif")
    assert fixed.output_formats == ("webp",)
    assert len(messages) == 1 and "cannot write AVIF" in messages[0] and "made in webp only" in messages[0]
    only, messages = writable(ImagesConfig(thumbnail_format="avif"), lambda fmt: fmt != "avif")
    assert only.output_formats == ("webp",) and messages
    asset = _process(only)
    assert {r.format.name for r in asset.renditions} == {"webp"}  # type: ignore[attr-defined]


def test_single_format_configs_work_as_before() -> None:
    old = ImagesConfig(thumbnails=(320,), thumbnail_format="jpeg")
    assert old.output_formats == ("jpeg",)
    asset = _process(old)
    assert [(r.format.name, r.width) for r in asset.renditions] == [("jpeg", 320)]  # type: ignore[attr-defined]
