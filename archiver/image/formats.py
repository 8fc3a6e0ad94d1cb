"""Which rendition formats the installed Pillow can write: AVIF needs a Pillow built with libavif."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from archiver.config import ImagesConfig


def _pillow_writes(fmt: str) -> bool:
    if fmt != "avif":
        return True  # WebP, JPEG and PNG: every Pillow wheel and distribution build has them
    from PIL import features  # here: a run that makes no AVIF never loads Pillow in this process

    try:
        return bool(features.check("avif"))
    except Exception:  # an older Pillow that does not know the feature
        return False


def writable(cfg: ImagesConfig, check: Callable[[str], bool] = _pillow_writes) -> tuple[ImagesConfig, list[str]]:
    """``cfg`` without the rendition formats this Pillow cannot write (webp if none is left), and the messages saying
    so (empty: every format can be written)."""
    wanted = cfg.output_formats
    missing = [fmt for fmt in wanted if not check(fmt)]
    if not missing:
        return cfg, []
    left = tuple(fmt for fmt in wanted if fmt not in missing) or ("webp",)
    try:
        from PIL import __version__ as pillow
    except ImportError:  # pragma: no cover - Pillow is a dependency
        pillow = "?"
    messages = [
        f"[images] formats: the installed Pillow ({pillow}) cannot write {fmt.upper()} (built without its encoder); "
        f"renditions are made in {', '.join(left)} only" for fmt in missing
    ]
    return replace(cfg, formats=left, thumbnail_format=left[0]), messages
