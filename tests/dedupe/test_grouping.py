"""Grouping and the canonical choice, on real image files run through the real image stage."""

from __future__ import annotations

import hashlib
import io
import itertools
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from archiver.config import DedupeConfig, ImagesConfig
from archiver.dedupe.grouping import AssetInfo, preference_key
from archiver.dedupe.reference import build_groups, candidate_pairs
from archiver.fetch.sniff import sniff
from archiver.image.process import process
from archiver.image.similarity import Signature, compare
from tests.support.paths import FIXTURES_DIR

FIXTURES = FIXTURES_DIR / "images"
PREFER = ("area", "lossless", "bytes", "first_seen")


def encode(im: Image.Image, fmt: str = "JPEG", **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def asset(tmp: Path, data: bytes, first_seen: float = 0.0) -> AssetInfo:
    """An AssetInfo as `dedupe` builds it: the file through imaging.process, the signature it stores."""
    sha = hashlib.sha256(data).hexdigest()
    path = tmp / sha
    path.write_bytes(data)
    fmt = sniff(data[:64])
    assert fmt is not None
    a = process(str(path), fmt, sha, len(data), ImagesConfig())
    return AssetInfo(sha, fmt.name, len(data), a.width, a.height, first_seen,
                     Signature(a.phash_variants, a.dhash_variants), a.colours, a.chroma)


def photo(name: str = "skimage_astronaut.png") -> Image.Image:
    return Image.open(FIXTURES / name).convert("RGB")


def groups_as_sets(groups) -> list[set[str]]:  # type: ignore[no-untyped-def]
    return [{m.sha256 for m in g.members} for g in groups]


def crop_left(im: Image.Image, fraction: float) -> Image.Image:
    w, h = im.size
    return im.crop((round(w * fraction), 0, w, h))


def test_a_chain_through_a_middle_image_does_not_join_its_ends(tmp_path: Path) -> None:
    """A~B and B~C pass but A~C fails (a ladder of crops): A and C are never in one group, whoever leads."""
    base = photo()
    ladder = [asset(tmp_path, encode(crop_left(base, f), quality=92)) for f in (0, 0.03, 0.06, 0.09, 0.12, 0.15)]
    sig = [a.signature for a in ladder]
    chain = next(
        (i, j, k)
        for i, j, k in itertools.combinations(range(len(ladder)), 3)
        if compare(sig[i], sig[j], 10) and compare(sig[j], sig[k], 10) and not compare(sig[i], sig[k], 10)
        and not compare(sig[k], sig[i], 10)
    )
    a, b, c = (ladder[x] for x in chain)
    # B leads (pinned): both ends are its neighbours, yet only one may join
    (group,) = build_groups([a, b, c], 10, PREFER, pinned=[b.sha256])
    members = {m.sha256 for m in group.members}
    assert group.canonical == b.sha256 and len(members) == 2 and {a.sha256, c.sha256} - members
    # A leads (the default: largest area): B joins, C is not A's neighbour
    for order in ([a, b, c], [c, b, a]):
        for g in build_groups(order, 10, PREFER):
            assert not {a.sha256, c.sha256} <= {m.sha256 for m in g.members}


def test_transform_families_join_the_original_and_a_distinct_photo_does_not(tmp_path: Path) -> None:
    base = photo()
    original = asset(tmp_path, encode(base, "PNG"))
    copies = {
        "resize": encode(base.resize((300, 300)), quality=80),
        "recompress": encode(base, quality=35),
        "webp": encode(base, "WEBP", quality=70),
        "rot90": encode(base.transpose(Image.Transpose.ROTATE_90), quality=90),
        "flip-h": encode(base.transpose(Image.Transpose.FLIP_LEFT_RIGHT), quality=90),
    }
    caption = base.copy()
    ImageDraw.Draw(caption).rectangle((0, 460, 512, 512), fill=(250, 250, 250))
    copies["caption"] = encode(caption, quality=90)
    infos = {name: asset(tmp_path, data) for name, data in copies.items()}
    rocket = asset(tmp_path, encode(photo("skimage_rocket.jpg"), quality=90))
    hopper = asset(tmp_path, (FIXTURES / "pillow_hopper.jpg").read_bytes())
    groups = build_groups([rocket, hopper, original, *infos.values()], 10, PREFER)
    assert groups_as_sets(groups) == [{original.sha256, *(i.sha256 for i in infos.values())}]
    (group,) = groups
    assert group.canonical == original.sha256  # same area as most, lossless
    found = {m.sha256: m.match.transform for m in group.members[1:] if m.match}
    assert found[infos["rot90"].sha256] == "rot90"
    assert found[infos["flip-h"].sha256] == "flip-h"
    assert found[infos["resize"].sha256] == "identity"


def info(sha: str, fmt: str = "jpeg", size: int = 1000, w: int = 100, h: int = 100, seen: float = 0.0,
         sig: Signature | None = None) -> AssetInfo:
    return AssetInfo(sha * 64, fmt, size, w, h, seen, sig)


def test_preference_order_area_then_lossless_then_bytes_then_first_seen() -> None:
    big = info("a", w=200)
    png = info("b", fmt="png", size=10)
    heavy = info("c", size=5000)
    early = info("d", seen=-1.0)
    late = info("e")
    ranked = sorted([late, early, heavy, png, big], key=lambda a: preference_key(a, PREFER))
    assert ranked == [big, png, heavy, early, late]
    by_bytes = sorted([png, heavy, big], key=lambda a: preference_key(a, ("bytes", "area")))
    assert by_bytes == [heavy, big, png]
    for fmt in ("png", "gif", "bmp", "tiff"):
        assert preference_key(info("f", fmt=fmt), ("lossless",)) < preference_key(info("f"), ("lossless",))


def test_canonical_is_the_largest_then_a_pin_overrides_and_an_exclude_leaves(tmp_path: Path) -> None:
    base = photo()
    large = asset(tmp_path, encode(base, quality=90), first_seen=3)
    small_png = asset(tmp_path, encode(base.resize((256, 256)), "PNG"), first_seen=1)
    small_jpeg = asset(tmp_path, encode(base.resize((256, 256)), quality=95), first_seen=2)
    everyone = [small_jpeg, small_png, large]
    (g,) = build_groups(everyone, 10, PREFER)
    assert [m.sha256 for m in g.members][0] == large.sha256
    (g,) = build_groups(everyone, 10, ("lossless", "area"))
    assert g.canonical == small_png.sha256
    (g,) = build_groups(everyone, 10, ("first_seen",))
    assert g.canonical == small_png.sha256
    (g,) = build_groups(everyone, 10, PREFER, pinned=[small_jpeg.sha256])
    assert g.canonical == small_jpeg.sha256 and len(g.members) == 3
    assert g.members[0].match is None and all(m.match for m in g.members[1:])
    (g,) = build_groups(everyone, 10, PREFER, excluded=[large.sha256])
    assert g.canonical == small_png.sha256 and large.sha256 not in {m.sha256 for m in g.members}
    assert build_groups(everyone, 10, PREFER, excluded=[large.sha256, small_png.sha256]) == []


def test_assets_without_a_signature_and_singletons_form_no_group(tmp_path: Path) -> None:
    svg = info("s", fmt="svg", w=0, h=0)
    lone = asset(tmp_path, encode(photo(), quality=90))
    assert build_groups([svg, lone], 10, PREFER) == []
    assert candidate_pairs([], 10) == [] and candidate_pairs([lone.signature], 10) == []  # type: ignore[list-item]


@pytest.mark.parametrize("n", [2, 40])
def test_identical_signatures_group_completely(n: int, tmp_path: Path) -> None:
    """Exact-hash clusters (a blank or templated image archived many times): one group, every member."""
    one = asset(tmp_path, encode(photo(), quality=90))
    many = [AssetInfo(f"{i:064x}", "jpeg", 100 + i, 10, 10, float(i), one.signature) for i in range(n)]
    (g,) = build_groups(many, 10, PREFER)
    assert len(g.members) == n and g.canonical == many[-1].sha256  # same area and format: most bytes


DEFAULT_PREFER = DedupeConfig().prefer


def test_a_full_colour_photo_is_preferred_to_its_256_colour_gif_and_to_a_greyscale_copy(tmp_path: Path) -> None:
    """"lossless" does not make a GIF of a photo (a palette of 256 colours) better than the full-colour JPEG it was
    made from, and a colour copy is preferred to a greyscale one even when the greyscale one is larger."""
    base = photo().resize((384, 384))
    jpeg = asset(tmp_path, encode(base, quality=88))
    gif = asset(tmp_path, encode(base.quantize(256), "GIF"))
    grey = asset(tmp_path, encode(base.convert("L").resize((512, 512)), quality=92))  # larger, greyscale
    assert (gif.colours, jpeg.colours) == (256, 0) and gif.quantised and not jpeg.quantised
    assert grey.greyscale and not jpeg.greyscale and not gif.greyscale
    assert (jpeg.fidelity, gif.fidelity) == (1, 2)
    for order in ([gif, jpeg, grey], [grey, gif, jpeg]):
        (group,) = build_groups(order, 10, DEFAULT_PREFER)
        assert {m.sha256 for m in group.members} == {jpeg.sha256, gif.sha256, grey.sha256}  # one picture
        assert group.canonical == jpeg.sha256
    # the old order ("area" first, then "lossless" by format alone) picked the greyscale copy, then the GIF
    assert sorted([jpeg, gif], key=lambda a: preference_key(a, ("lossless",)))[0] == jpeg


def test_flat_art_in_a_small_palette_and_greyscale_palettes_stay_lossless(tmp_path: Path) -> None:
    art = Image.new("RGB", (240, 160), (250, 250, 245))
    draw = ImageDraw.Draw(art)
    for i, colour in enumerate([(200, 30, 30), (30, 120, 200), (20, 160, 60), (240, 200, 20)]):
        draw.rectangle((20 + 50 * i, 30, 60 + 50 * i, 130), fill=colour)
    png = asset(tmp_path, encode(art.quantize(8), "PNG"))
    jpeg = asset(tmp_path, encode(art, quality=90))
    assert 0 < (png.colours or 0) <= 8 and png.fidelity == 0 and jpeg.fidelity == 1
    (group,) = build_groups([jpeg, png], 10, DEFAULT_PREFER)
    assert group.canonical == png.sha256  # drawn in a few colours: the palette PNG is exact
    grey_gif = asset(tmp_path, encode(photo().convert("L").resize((200, 200)).convert("P"), "GIF"))
    assert grey_gif.greyscale and grey_gif.fidelity == 0  # 256 grey levels are a greyscale picture, exactly


@pytest.mark.parametrize("seed", range(6))
def test_the_class_by_class_pass_forms_the_member_by_member_groups(seed: int) -> None:
    """greedy_class_groups (what groups_from_pairs uses) equals greedy_groups (what the from-scratch reference uses)
    on random graphs: big and small classes, ties in distance, links that break complete linkage, pinned assets."""
    import numpy as np

    from archiver.dedupe.grouping import Classes, greedy_class_groups, greedy_groups
    from archiver.image.similarity import Match

    rng = np.random.default_rng(seed)
    n_classes = 60
    sizes = [int(rng.choice([1, 1, 1, 2, 3, 40])) for _ in range(n_classes)]
    cls = [c for c, k in enumerate(sizes) for _ in range(k)]
    rng.shuffle(cls)
    sig = Signature(("0" * 16,) * 8, ("0" * 16,) * 8)
    usable = [AssetInfo(f"{i:064x}", "jpeg", int(rng.integers(1, 5)), int(rng.integers(1, 4)), 1, float(i), sig)
              for i in range(len(cls))]
    by_class: dict[int, list[int]] = {}
    for k, c in enumerate(cls):
        by_class.setdefault(c, []).append(k)
    classes = Classes(cls, [sig] * n_classes, by_class, {usable[ks[0]].sha256: c for c, ks in by_class.items()})
    links = {(a, b) for a in range(n_classes) for b in range(a + 1, n_classes) if rng.random() < 0.12}
    near: dict[int, list[tuple[int, int, int]]] = {}
    for a, b in sorted(links):
        pd, dd = int(rng.integers(0, 3)), int(rng.integers(0, 3))
        near.setdefault(a, []).append((pd, dd, b))
        near.setdefault(b, []).append((pd, dd, a))

    def linked(a: int, b: int) -> bool:
        return a == b or (min(a, b), max(a, b)) in links

    def match(a: int, b: int) -> Match:
        return Match("identity", a, b, 0.0)

    pinned = {usable[int(k)].sha256 for k in rng.choice(len(usable), 5, replace=False)}
    for pins in (set(), pinned):
        expected = greedy_groups(usable, classes, near, linked, match, PREFER, pins)
        assert greedy_class_groups(usable, classes, near, linked, match, PREFER, pins) == expected
        assert len(expected) > 3
