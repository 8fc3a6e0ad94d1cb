"""Near-duplicate signals and the pair decision, on real photos (tests/fixtures/images) and copies made here."""

from __future__ import annotations

import itertools
from pathlib import Path

import imagehash
import pytest
from PIL import Image, ImageDraw, ImageFont, ImageOps

import archiver.image.process
from archiver.config import ImagesConfig
from archiver.image import similarity
from archiver.image.similarity import TRANSFORMS, Signature, compare, signature
from archiver.model import ImageFormat
from tests.support.images import make_rgb
from tests.support.paths import FIXTURES_DIR

FIXTURES = FIXTURES_DIR / "images"
FORMATS = {".jpg": ImageFormat("jpeg", "image/jpeg", "jpg"), ".png": ImageFormat("png", "image/png", "png"),
           ".webp": ImageFormat("webp", "image/webp", "webp")}
PHOTOS = ("skimage_astronaut.png", "skimage_rocket.jpg", "pillow_hopper.jpg", "pillow_flower2.jpg",
          "pillow_junk_jpeg_header.jpg")
MAX = 10  # the default [dedupe] max_distance
T = Image.Transpose
PIL_TRANSPOSE = {"rot90": T.ROTATE_90, "rot180": T.ROTATE_180, "rot270": T.ROTATE_270, "flip-h": T.FLIP_LEFT_RIGHT,
                 "flip-v": T.FLIP_TOP_BOTTOM, "transpose": T.TRANSPOSE, "transverse": T.TRANSVERSE}
INVERSE = {"identity": "identity", "rot90": "rot270", "rot270": "rot90", "rot180": "rot180", "flip-h": "flip-h",
           "flip-v": "flip-v", "transpose": "transpose", "transverse": "transverse"}
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
ORIGINALS: dict[str, Signature] = {}  # pipeline signatures of the fixture photos, computed once


def upright(name: str) -> Image.Image:
    with Image.open(FIXTURES / name) as im:
        return ImageOps.exif_transpose(im).convert("RGB")


def pipeline_signature(path: Path, monkeypatch: pytest.MonkeyPatch) -> Signature:
    """The Signature archiver.image.process.process computes for the file (caught on its way into the Asset)."""
    caught: list[Signature] = []

    def catch(im: Image.Image, box: tuple[int, int, int, int] | None = None) -> Signature:
        caught.append(similarity.signature(im, box=box))
        return caught[-1]

    monkeypatch.setattr(archiver.image.process, "signature", catch)
    asset = archiver.image.process.process(str(path), FORMATS[path.suffix], "0" * 64, path.stat().st_size, ImagesConfig())
    monkeypatch.undo()
    (sig,) = caught
    assert asset.phash_variants == sig.phash and asset.dhash_variants == sig.dhash
    assert (asset.phash, asset.dhash) == (sig.phash[0], sig.dhash[0])
    return sig


def saved(tmp_path: Path, im: Image.Image, name: str, **params: object) -> Path:
    path = tmp_path / name
    im.save(path, **params)
    return path


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.truetype(FONT, size)
    except OSError:
        return ImageFont.load_default(size)


def watermark(im: Image.Image) -> Image.Image:
    over = Image.new("RGBA", im.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(over)
    d.text((im.width * 0.55, im.height * 0.9), "© Agency 2024", font=font(max(8, im.height // 20)),
           fill=(255, 255, 255, 200))
    return Image.alpha_composite(im.convert("RGBA"), over).convert("RGB")


def caption(im: Image.Image) -> Image.Image:
    out = im.copy()
    strip = round(im.height * 0.1)
    d = ImageDraw.Draw(out)
    d.rectangle([0, im.height - strip, im.width, im.height], fill=(0, 0, 0))
    d.text((im.width * 0.03, im.height - strip * 0.8), "Sunrise over the valley", font=font(max(8, strip // 2)),
           fill=(255, 255, 255))
    return out


def crop(im: Image.Image) -> Image.Image:
    w, h = im.size
    return im.crop((round(w * 0.03), round(h * 0.02), w - round(w * 0.02), h - round(h * 0.03)))


# (family, how the copy is made from the upright photo, how it is saved, transform expected)
COPIES = [
    ("resize", lambda im: im.resize((im.width * 2 // 5, im.height * 2 // 5), Image.Resampling.LANCZOS),
     ("copy.jpg", {"quality": 90}), "identity"),
    ("recompress q30", lambda im: im, ("copy.jpg", {"quality": 30}), "identity"),
    ("format webp", lambda im: im, ("copy.webp", {"quality": 80}), "identity"),
    ("format png", lambda im: im, ("copy.png", {"compress_level": 1}), "identity"),
    ("crop", crop, ("copy.jpg", {"quality": 90}), "identity"),
    ("watermark", watermark, ("copy.jpg", {"quality": 90}), "identity"),
    ("caption strip", caption, ("copy.jpg", {"quality": 90}), "identity"),
] + [(name, lambda im, t=t: im.transpose(t), ("copy.png", {"compress_level": 1}), name) for name, t in PIL_TRANSPOSE.items()]


def assert_match(a: Signature, b: Signature, transform: str) -> None:
    """b is a near-duplicate of a by ``transform``, and the decision is the same from b's side."""
    forward, backward = compare(a, b, MAX), compare(b, a, MAX)
    assert forward is not None and backward is not None, (forward, backward)
    assert forward.transform == transform
    assert backward.transform == INVERSE[transform]
    assert (forward.phash_distance, forward.dhash_distance) == (backward.phash_distance, backward.dhash_distance)


@pytest.mark.parametrize("photo", ["skimage_astronaut.png", "skimage_rocket.jpg", "pillow_flower2.jpg"])
@pytest.mark.parametrize(("family", "make", "save", "transform"), COPIES, ids=[c[0] for c in COPIES])
def test_each_transform_family_is_a_match_with_the_transform_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, photo: str, family: str, make, save, transform: str
) -> None:
    if photo not in ORIGINALS:
        ORIGINALS[photo] = pipeline_signature(FIXTURES / photo, monkeypatch)
    original = ORIGINALS[photo]
    name, params = save
    copy = pipeline_signature(saved(tmp_path, make(upright(photo)), name, **params), monkeypatch)
    assert_match(original, copy, transform)


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_orientation_copies_match_the_upright_photo_as_the_same_picture(
    monkeypatch: pytest.MonkeyPatch, orientation: int
) -> None:
    upright_sig = pipeline_signature(FIXTURES / "pillow_hopper.jpg", monkeypatch)
    tagged = pipeline_signature(FIXTURES / f"pillow_hopper_orientation_{orientation}.jpg", monkeypatch)
    assert_match(upright_sig, tagged, "identity")


def test_a_photo_stored_rotated_with_an_exif_tag_matches_its_plain_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = pipeline_signature(FIXTURES / "skimage_rocket.jpg", monkeypatch)
    tagged = pipeline_signature(FIXTURES / "derived_rocket_exif_orientation6.jpg", monkeypatch)
    assert_match(plain, tagged, "identity")


def test_distinct_photos_never_match_under_any_transform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sigs = {name: pipeline_signature(FIXTURES / name, monkeypatch) for name in PHOTOS}
    rotated = {f"{name} rot90": signature(upright(name).transpose(T.ROTATE_90)) for name in PHOTOS}
    for (na, a), (nb, b) in itertools.combinations({**sigs, **rotated}.items(), 2):
        if na.split()[0] == nb.split()[0]:
            continue
        assert compare(a, b, MAX) is None, (na, nb)
        assert compare(b, a, MAX) is None, (nb, na)


def test_smooth_photo_like_images_are_told_apart() -> None:
    """Gradients with soft blobs: 157 of these 780 pairs have dHashes within 10 (none a pHash within 10)."""
    sigs = [signature(make_rgb(320, 240, seed)) for seed in range(40)]
    matched = [(i, j) for i, j in itertools.combinations(range(len(sigs)), 2) if compare(sigs[i], sigs[j], MAX)]
    assert matched == []


def test_a_phash_match_alone_is_not_enough() -> None:
    """A pair whose pHash agrees exactly but whose dHash and thumbnail belong to another photo is rejected."""
    a, other = signature(upright("skimage_astronaut.png")), signature(upright("skimage_rocket.jpg"))
    assert compare(a, a, MAX) is not None
    chimera = Signature(a.phash, other.dhash, other.grey)
    assert compare(a, chimera, MAX) is None
    assert compare(chimera, a, MAX) is None


def test_without_the_grey_thumbnail_both_hashes_must_agree(tmp_path: Path) -> None:
    """Signatures read from an older manifest have no grey: the hash rule alone still decides."""
    im = upright("skimage_rocket.jpg")
    a = signature(im)
    b = signature(im.resize((320, 213), Image.Resampling.LANCZOS))
    bare_a, bare_b = Signature(a.phash, a.dhash), Signature(b.phash, b.dhash)
    match = compare(bare_a, bare_b, MAX)
    assert match is not None and match.grey_distance == -1.0
    other = signature(upright("skimage_astronaut.png"))
    assert compare(bare_a, Signature(other.phash, other.dhash), MAX) is None


@pytest.mark.parametrize("photo", PHOTOS)
def test_variant_0_is_imagehash_and_the_others_hash_the_transformed_image(photo: str) -> None:
    im = upright(photo)
    im.thumbnail((320, 320))
    sig = signature(im)
    assert sig.phash[0] == str(imagehash.phash(im))
    assert sig.dhash[0] == str(imagehash.dhash(im))
    for i, name in enumerate(TRANSFORMS[1:], start=1):
        moved = im.transpose(PIL_TRANSPOSE[name])
        assert imagehash.hex_to_hash(sig.phash[i]) - imagehash.phash(moved) <= 4, name
        assert imagehash.hex_to_hash(sig.dhash[i]) - imagehash.dhash(moved) <= 4, name
    assert len(sig.grey) == 128


def test_the_pipeline_stores_the_variants_on_the_asset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sig = pipeline_signature(FIXTURES / "pillow_hopper_orientation_6.jpg", monkeypatch)
    assert len(sig.phash) == len(sig.dhash) == len(TRANSFORMS)
    assert len(set(sig.phash)) > 1  # hopper is not symmetric: the variants differ


def test_a_signature_needs_eight_variants_and_a_well_formed_grey() -> None:
    with pytest.raises(ValueError):
        Signature(("0" * 16,) * 7, ("0" * 16,) * 8)
    with pytest.raises(ValueError):
        Signature(("0" * 16,) * 8, ("0" * 16,) * 8, "00")
