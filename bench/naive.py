"""The naive baseline: what a careful person writes first, one image at a time.

For each URL: GET it (urllib), SHA-256 it, decode it fully with Pillow, apply the EXIF orientation, make a
320 px thumbnail and encode it as WebP with Pillow's defaults, compute pHash and dHash with imagehash on the
full image, PUT the original and the thumbnail with boto3; at the end, replace the URLs in the articles with
str.replace. Same origin, same storage, same outputs as the archiver, no concurrency.
"""

from __future__ import annotations

import hashlib
import io
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import imagehash
from PIL import Image, ImageOps


@dataclass
class NaiveResult:
    images: int
    seconds: float
    cpu_seconds: float
    failed: int


def run(urls: Sequence[str], port: int, s3: object, bucket: str, public_base: str = "/archive/") -> NaiveResult:
    """Archive ``urls`` (served by the loopback origin on ``port`` whatever their host) into ``bucket``."""
    started, cpu0 = time.perf_counter(), time.process_time()
    failed = 0
    done: dict[str, str] = {}
    for url in urls:
        parts = urlsplit(url)
        request = urllib.request.Request(f"http://127.0.0.1:{port}{parts.path}" + (f"?{parts.query}" if parts.query else ""),
                                         headers={"Host": parts.netloc})
        try:
            data = urllib.request.urlopen(request, timeout=30).read()
            sha = hashlib.sha256(data).hexdigest()
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                fmt = (im.format or "jpeg").lower()
                full = ImageOps.exif_transpose(im).convert("RGB")
            thumb = full.copy()
            thumb.thumbnail((320, max(1, round(320 * full.height / full.width))))
            buf = io.BytesIO()
            thumb.save(buf, "WEBP")
            imagehash.phash(full)
            imagehash.dhash(full)
            ext = "png" if fmt == "png" else "jpg"
            key = f"{sha[:2]}/{sha[2:4]}/{sha}.{ext}"
            s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=f"image/{fmt}")  # type: ignore[attr-defined]
            s3.put_object(Bucket=bucket, Key=f"{sha[:2]}/{sha[2:4]}/{sha}-320w.webp", Body=buf.getvalue(),  # type: ignore[attr-defined]
                          ContentType="image/webp")
            done[url] = public_base + key
        except Exception:  # noqa: BLE001 - a baseline: count and go on
            failed += 1
    return NaiveResult(len(done), time.perf_counter() - started, time.process_time() - cpu0, failed)


def rewrite(texts: dict[str, str], done: dict[str, str]) -> dict[str, str]:
    """The naive rewrite: str.replace of every archived URL in every article."""
    out = {}
    for name, text in texts.items():
        for url, new in done.items():
            text = text.replace(url, new)
        out[name] = text
    return out
