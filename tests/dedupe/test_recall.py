"""What `archiver dedupe` groups, as a user sees it: the edits people make before republishing a photo (a
brightness change, a small crop, a caption bar) join the original; another shot of the same scene does not.

Rule 1 refused the first two (its grey check compared raw grey levels: a 7 % brightness change moves every cell
by 8-10 levels; a 3 % crop by about 6); rule 2 takes the tone out and looks for the framing (issue 11)."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

from archiver.cli import main
from archiver.config import ImagesConfig
from archiver.image import similarity
from archiver.image.process import process
from archiver.image.similarity import Signature, compare
from archiver.model import ImageFormat
from tests.support.origin import Server
from tests.support.paths import FIXTURES_DIR
from tests.support.site import write_config

JPEG = ImageFormat("jpeg", "image/jpeg", "jpg")
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def jpeg(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def fixture(name: str) -> Image.Image:
    with Image.open(FIXTURES_DIR / "images" / name) as src:
        return src.convert("RGB")


def edits() -> dict[str, bytes]:
    """Three photos, each with one edited copy: a 7 % brighter flower, a 3 % crop (per side) of a 70 % window of
    the astronaut photo, a caption bar over a street scene; and two other shots of the astronaut's scene: the
    windows 30 % of the frame to the right and below (a pan, a tilt)."""
    photo = fixture("skimage_astronaut.png")
    w, h = photo.size
    ww, wh = round(0.7 * w), round(0.7 * h)
    window = photo.crop((0, 0, ww, wh))
    cx, cy = round(ww * 0.03), round(wh * 0.03)
    flower, street = fixture("pillow_flower2.jpg"), fixture("pillow_junk_jpeg_header.jpg")
    captioned = street.copy()
    draw = ImageDraw.Draw(captioned)
    sw, sh = street.size
    draw.rectangle((0, round(sh * 0.9), sw, sh), fill=(0, 0, 0))
    try:
        font: ImageFont.FreeTypeFont | ImageFont.ImageFont = ImageFont.truetype(FONT, sh // 20)
    except OSError:
        font = ImageFont.load_default(sh // 20)
    draw.text((10, round(sh * 0.91)), "Main Street on Tuesday", fill=(255, 255, 255), font=font)
    return {
        "flower.jpg": jpeg(flower, 92),
        "flower-brighter.jpg": jpeg(ImageEnhance.Brightness(flower).enhance(1.07)),
        "crew.jpg": jpeg(window, 92),
        "crew-cropped.jpg": jpeg(window.crop((cx, cy, ww - cx, wh - cy))),
        "street.jpg": jpeg(street, 92),
        "street-captioned.jpg": jpeg(captioned),
        "crew-panned.jpg": jpeg(photo.crop((w - ww, 0, w, wh))),
        "crew-tilted.jpg": jpeg(photo.crop((0, h - wh, ww, h))),
    }


def test_edited_copies_join_the_original_and_another_shot_of_the_scene_does_not(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    bodies = edits()
    for name, body in bodies.items():
        origin.add(f"/r/{name}", body, "image/jpeg")
    site = tmp_path / "site"
    site.mkdir()
    (site / "post.md").write_text("".join(f"![{n}](http://photos.test/r/{n})\n" for n in bodies), encoding="utf-8")
    cfg = write_config(tmp_path, origin, storage='[storage]\nbackend = "local"\npath = "archive"\n')
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    capsys.readouterr()

    assert main(["dedupe", "--config", str(cfg)]) == 0
    assert "3 near-duplicate groups (6 images)" in capsys.readouterr().out
    report = json.loads((tmp_path / "report" / "dedupe.json").read_text(encoding="utf-8"))
    sha = {hashlib.sha256(body).hexdigest(): name for name, body in bodies.items()}
    groups = [{sha[m["sha256"]] for m in g["members"]} for g in report["groups"]]
    assert sorted(groups, key=sorted) == [{"crew.jpg", "crew-cropped.jpg"}, {"flower.jpg", "flower-brighter.jpg"},
                                          {"street.jpg", "street-captioned.jpg"}]
    for g in report["groups"]:
        assert all(m["transform"] == "identity" for m in g["members"] if not m["canonical"])


def signatures(tmp_path: Path) -> dict[str, Signature]:
    """The signatures the image stage stores for each file (hash variants and grey thumbnail)."""
    out = {}
    for name, body in edits().items():
        path = tmp_path / name
        path.write_bytes(body)
        a = process(str(path), JPEG, hashlib.sha256(body).hexdigest(), len(body), ImagesConfig())
        out[name] = Signature(a.phash_variants, a.dhash_variants, a.grey)
    return out


def test_rule_1_refused_the_tone_and_crop_copies_that_rule_2_accepts(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The copies above, decided by compare(): the new confirmations (C: tone taken out, D: framing found) are what
    accepts them; switched off, the rule is rule 1 again and refuses them. The other shots stay refused."""
    sigs = signatures(tmp_path)
    pairs = {"flower-brighter.jpg": "flower.jpg", "crew-cropped.jpg": "crew.jpg", "street-captioned.jpg": "street.jpg",
             "crew-panned.jpg": "crew.jpg", "crew-tilted.jpg": "crew.jpg"}

    def accepted() -> set[str]:
        found = {copy for copy, original in pairs.items() if compare(sigs[original], sigs[copy], 10)}
        assert found == {copy for copy, original in pairs.items() if compare(sigs[copy], sigs[original], 10)}
        return found

    assert accepted() == {"flower-brighter.jpg", "crew-cropped.jpg", "street-captioned.jpg"}
    monkeypatch.setattr(similarity, "TONE_CONFIRMED", -1.0)
    monkeypatch.setattr(similarity, "FRAMED_CONFIRMED", -1.0)
    assert accepted() == {"street-captioned.jpg"}  # rule 1
