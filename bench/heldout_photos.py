"""A held-out set of real photos for bench_dedupe_accuracy.py: 23 photographs from Debian's wallpaper packages, none
of which the decision rule was tuned on (the corpus's photos were), scaled to at most 1600 px like a blog's images.

Usage, from the repository's root (the packages are public, from Debian's archive; any folders will do):
    mkdir -p /tmp/heldout && (cd /tmp/heldout && apt-get download mate-backgrounds plasma-workspace-wallpapers)
    python bench/heldout_photos.py --debs /tmp/heldout --out /tmp/heldout/photos
    python -W ignore bench/bench_dedupe_accuracy.py --corpus /tmp/heldout/photos \\
        --photos /tmp/heldout/photos/photos.txt --generated 0 --distinct 800 --seed 31

Only photographs are taken (not the packages' drawings and gradients): landscapes, water, fog, flowers, leaves,
grass, insects, a building facade, cups. Each file is read from the package's ``/usr/share`` tree, its largest
size for a wallpaper with several, converted to RGB and saved as JPEG quality 92.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

PLASMA = ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey", "Kite",
          "OneStandsOut", "Path", "summer_1am")  # usr/share/wallpapers/<name>/contents/images/<size>.<ext>
MATE = ("Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
        "TwoWings", "Wood", "YellowFlower")  # usr/share/backgrounds/mate/nature/<name>.jpg
SIDE = 1600


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--debs", required=True, help="folder holding mate-backgrounds_*.deb and "
                    "plasma-workspace-wallpapers_*.deb")
    ap.add_argument("--out", required=True, help="folder to write the photos and photos.txt into")
    args = ap.parse_args()
    debs, out = Path(args.debs), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for pattern in ("mate-backgrounds_*.deb", "plasma-workspace-wallpapers_*.deb"):
            found = sorted(debs.glob(pattern))
            if not found:
                sys.exit(f"{debs}: no {pattern} (apt-get download it first)")
            subprocess.run(["dpkg-deb", "-x", str(found[-1]), tmp], check=True)
        root = Path(tmp) / "usr" / "share"
        sources = {name: max((root / "wallpapers" / name / "contents" / "images").iterdir(),
                             key=lambda f: f.stat().st_size) for name in PLASMA}
        sources |= {name: root / "backgrounds" / "mate" / "nature" / f"{name}.jpg" for name in MATE}
        names = []
        for name, path in sources.items():
            with Image.open(path) as im:
                im = im.convert("RGB")
                im.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
                im.save(out / f"{name}.jpg", quality=92)
            names.append(f"{name}.jpg")
    (out / "photos.txt").write_text("\n".join(names) + "\n")
    print(f"{len(names)} photos in {out}")


if __name__ == "__main__":
    main()
