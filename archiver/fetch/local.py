"""Images on disk (a post's asset folder, the site's own ``/images/``): read into the run's scratch folder under
the checks a download gets (regular file, ``max_bytes``, magic bytes; hashed as it is copied), never through HTTP.

A ``file://`` URL here only ever comes from archiver.run.local, which found the file inside the allowed folders;
it is read only if its real path (symlinks resolved) is inside them too, unless symlinks leading outside are
allowed (``[articles] follow_symlinks_outside``), as for articles. Errors are the fetcher's: DeadLink (no such
file), Refused (outside, not a regular file), TooLarge, NotAnImage, TransientFetchError (cannot read it now).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, unquote, urlsplit

from archiver.errors import DeadLink, NotAnImage, Refused, TooLarge, TransientFetchError
from archiver.fetch.sniff import SNIFF_BYTES, describe, sniff
from archiver.model import Download, ImageFormat

LOCAL_PREFIX = "file://"
_CHUNK = 1 << 16


def file_url(path: Path) -> str:
    """The URL a local image is known by (absolute path, percent-encoded as a browser writes file URLs)."""
    return LOCAL_PREFIX + quote(os.fsencode(path), safe="/")


def file_path(url: str) -> Path:
    return Path(os.fsdecode(unquote(urlsplit(url).path, encoding="utf-8", errors="surrogateescape")))


def read_local(url: str, workdir: Path, max_bytes: int, real_roots: Sequence[Path] | None) -> Download:
    """Copy the image ``url`` names into ``workdir`` (the caller deletes ``Download.path``). ``real_roots``: the
    real folders it must be in; None: anywhere a symlink leads."""
    path = file_path(url)
    try:
        real = Path(os.path.realpath(path, strict=True))
    except FileNotFoundError:
        why = "a broken symlink: its target does not exist" if path.is_symlink() else "no such file"
        raise DeadLink(url, why) from None
    except OSError as exc:
        raise Refused(url, f"cannot be opened: {exc.strerror or exc}") from None
    if real_roots is not None and not any(real == r or real.is_relative_to(r) for r in real_roots):
        raise Refused(url, "a symlink leading outside the allowed folders (articles.follow_symlinks_outside "
                           "allows it): never read")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise DeadLink(url, "no such file") from None
    except OSError as exc:
        raise TransientFetchError(url, f"cannot read: {exc.strerror or exc}") from None
    with open(fd, "rb", closefd=True) as src:
        st = os.fstat(src.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise Refused(url, "not a regular file")
        if st.st_size > max_bytes:
            raise TooLarge(url, f"file of {st.st_size} bytes is over max_bytes {max_bytes}")
        head = src.read(SNIFF_BYTES)
        fmt = sniff(head)
        if fmt is None:
            raise NotAnImage(url, f"not an image ({describe(head)})")
        return _copy(url, src, head, fmt, workdir, max_bytes, real)


def _copy(url: str, src: BinaryIO, head: bytes, fmt: ImageFormat, workdir: Path, max_bytes: int, real: Path) -> Download:
    sha = hashlib.sha256(head)
    size = len(head)
    fd, name = tempfile.mkstemp(dir=workdir, prefix="local-", suffix=".part")
    out_path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(head)
            while chunk := src.read(_CHUNK):
                size += len(chunk)
                if size > max_bytes:  # grown since it was measured
                    raise TooLarge(url, f"file is over max_bytes {max_bytes}")
                sha.update(chunk)
                out.write(chunk)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            out_path.unlink()
        if isinstance(exc, OSError):
            raise TransientFetchError(url, f"cannot copy to {workdir}: {exc.strerror or exc}") from None
        raise
    return Download(url=url, final_url=file_url(real), path=out_path, size=size, sha256=sha.hexdigest(),
                    format=fmt, status=200)
