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


def edits() -> dict[str, bytes]:
    """A 70 % window of the astronaut photo (the original), three edited copies of it, and two other shots of the
    same scene: the windows 30 % of the frame to the right and below (a pan, a tilt)."""
    with Image.open(FIXTURES_DIR / "images" / "skimage_astronaut.png") as src:
        photo = src.convert("RGB")
    w, h = photo.size
    ww, wh = round(0.7 * w), round(0.7 * h)
    original = photo.crop((0, 0, ww, wh))
    captioned = original.copy()
    draw = ImageDraw.Draw(captioned)
    draw.rectangle((0, round(wh * 0.9), ww, wh), fill=(0, 0, 0))
    try:
        font: ImageFont.FreeTypeFont | ImageFont.ImageFont = ImageFont.truetype(FONT, wh // 20)
    except OSError:
        font = ImageFont.load_default(wh // 20)
    draw.text((10, round(wh * 0.91)), "The crew before launch", fill=(255, 255, 255), font=font)
    cx, cy = round(ww * 0.03), round(wh * 0.03)
    return {
        "original.jpg": jpeg(original, 92),
        "brighter.jpg": jpeg(ImageEnhance.Brightness(original).enhance(1.07)),
        "cropped.jpg": jpeg(original.crop((cx, cy, ww - cx, wh - cy))),
        "captioned.jpg": jpeg(captioned),
        "panned.jpg": jpeg(photo.crop((w - ww, 0, w, wh))),
        "tilted.jpg": jpeg(photo.crop((0, h - wh, ww, h))),
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
    assert "1 near-duplicate groups (4 images)" in capsys.readouterr().out
    report = json.loads((tmp_path / "report" / "dedupe.json").read_text(encoding="utf-8"))
    sha = {hashlib.sha256(body).hexdigest(): name for name, body in bodies.items()}
    (group,) = report["groups"]
    members = {sha[m["sha256"]]: m for m in group["members"]}
    assert set(members) == {"original.jpg", "brighter.jpg", "cropped.jpg", "captioned.jpg"}
    assert all(m["transform"] == "identity" for m in members.values() if not m["canonical"])


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
    original = sigs.pop("original.jpg")
    accepted = {name for name, s in sigs.items() if compare(original, s, 10)}
    assert accepted == {"brighter.jpg", "cropped.jpg", "captioned.jpg"}
    assert accepted == {name for name, s in sigs.items() if compare(s, original, 10)}  # symmetric
    monkeypatch.setattr(similarity, "TONE_CONFIRMED", -1.0)
    monkeypatch.setattr(similarity, "FRAMED_CONFIRMED", -1.0)
    assert {name for name, s in sigs.items() if compare(original, s, 10)} == {"captioned.jpg"}
