"""A tiny preview of an image (at most 16 px on its longer side, WebP, as a ``data:`` URI of a few hundred bytes)
that a theme shows, blurred by the browser's scaling, while the real image loads (`archiver export`).

Made from the smallest stored rendition (already decoded once, small, and written by us), so it costs one small
decode and one tiny encode: no second decode of the original.
"""

from __future__ import annotations

import base64
import io
import warnings

from PIL import Image, UnidentifiedImageError

SIZE = 16
MAX_SOURCE_PIXELS = 4_000_000  # a rendition is far smaller; anything larger is not made a placeholder


def placeholder(data: bytes, size: int = SIZE) -> str | None:
    """``data:image/webp;base64,...`` of the image in ``data`` fitted into ``size`` x ``size`` (aspect kept,
    transparency kept); None if the bytes are not an image Pillow decodes or are larger than a rendition can be."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                if im.width * im.height > MAX_SOURCE_PIXELS:
                    return None
                im.draft("RGB", (size * 2, size * 2))  # a JPEG rendition decodes at 1/8 where it can
                im.seek(0)
                small = im.convert("RGBA" if _has_alpha(im) else "RGB")
                small.thumbnail((size, size), Image.Resampling.BOX)
                out = io.BytesIO()
                small.save(out, "WEBP", quality=40, method=0)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, EOFError):
        return None
    return "data:image/webp;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
