"""Checking stored objects against what their keys and the manifest say they are: without a download (size, type
and the checksum the store keeps: ``prove``), or by reading them (``--deep``: an original hashes to its key, a
thumbnail decodes at its recorded format and size); concurrently, with a status line. Used by `archiver verify`."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TextIO

from PIL import Image

from archiver.errors import StorageError
from archiver.storage import Store, prove
from archiver.storage.keys import parse_key
from archiver.terminal import StatusLine

_EXT_FORMAT = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "webp": "webp", "gif": "gif", "avif": "avif"}


@dataclass(frozen=True)
class Target:
    """One object to check. ``width`` is set for a thumbnail (whose key names its original's hash)."""

    key: str
    sha256: str
    width: int | None = None
    format: str | None = None  # a thumbnail's expected format ("webp"), when known
    size: tuple[int, int] | None = None  # a thumbnail's expected pixel size, when known (from the manifest)
    of: str | None = None  # a thumbnail's original's key, when known (from the manifest)
    length: int | None = None  # expected bytes, when known (from the manifest)
    digest: str | None = None  # expected SHA-256 of the object's own bytes (an original's: its key's)
    mime: str | None = None  # expected Content-Type, when known
    known: bool = False  # the manifest records it (so it can be marked lost, and repaired)


@dataclass(frozen=True)
class Finding:
    """What one check found. Bad: "missing", "corrupt", "unchecked" (a storage error). Not bad: "unproven" (its
    size and type match, its content was not read: a local folder without --deep), "intact" (read and proven,
    reported only when ``read`` says why it was read without --deep, or that the store keeps no checksum)."""

    target: Target
    status: str
    reason: str
    read: str = ""  # "no checksum": the store vouches for none, so its bytes were read; "recorded": the
    # manifest records it missing or corrupt, so its bytes were read to prove it (or not)


def target_for_key(key: str) -> Target | None:
    """A Target for a content-addressed key (``…/ab/cd/abcd….jpg`` or ``…-320w.webp``), else None."""
    parsed = parse_key(key)
    if parsed is None:
        return None
    fmt = _EXT_FORMAT.get(parsed.ext) if parsed.width else None
    return Target(key, parsed.sha256, parsed.width, fmt, digest=None if parsed.width else parsed.sha256)


def check_object(store: Store, target: Target, deep: bool, recorded: bool = False) -> Finding | None:
    """Size, type and the checksum the store keeps, without a download; the bytes themselves too with ``deep``,
    or when the store keeps no checksum for the object (an S3 object uploaded without one: its size alone proves
    nothing), or when the manifest records it missing or corrupt (``recorded``: only proof ends that record).
    A local folder keeps no checksum: there, without ``deep`` and unless ``recorded``, its size is what is checked
    ("unproven"). None: proven by the store's checksum or by its bytes."""
    read = ""
    try:
        proof = prove(store, target.key, target.length, target.digest, target.mime, read_local=False)
        if proof.state == "missing":
            return Finding(target, "missing", "not in storage")
        if proof.state == "different" and not deep:
            return Finding(target, "corrupt", proof.reason)
        local = store.local_path(target.key) is not None
        if proof.state == "unproven" and not local:
            read = "no checksum"
        elif recorded and proof.state != "ok":
            read = "recorded"
        if not deep and not read:
            return Finding(target, "unproven", proof.reason) if proof.state == "unproven" else None
        data = store.get(target.key)
    except StorageError as exc:
        return Finding(target, "unchecked", exc.message, read)
    except Exception as exc:  # a fault no store translated: this object's finding, the other checks go on
        return Finding(target, "unchecked", f"internal error: {type(exc).__name__}: {exc}", read)
    reason = corruption(target, data) or (proof.reason if proof.state == "different" else None)
    if reason:
        return Finding(target, "corrupt", reason, read)
    return Finding(target, "intact", "its bytes were read", read) if read else None


def corruption(target: Target, data: bytes) -> str | None:
    """Why these bytes are not the object the key names, or None when they are."""
    if target.width is None:
        got = hashlib.sha256(data).hexdigest()
        if got != target.sha256:
            return f"its {len(data)} bytes hash to {got[:16]}…, not to the {target.sha256[:16]}… its key names"
        return None
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, size = (im.format or "?").lower(), im.size
            im.load()
    except Exception as exc:  # Pillow raises many types for bad data (OSError, SyntaxError, ValueError, ...)
        return f"not a readable image ({type(exc).__name__}: {exc})"
    if target.format and fmt != target.format:
        return f"a {fmt} image, expected {target.format}"
    if target.size and size != target.size:
        return f"{size[0]}x{size[1]} pixels, expected {target.size[0]}x{target.size[1]}"
    if size[0] > target.width:
        return f"{size[0]} pixels wide, more than the {target.width} its key names"
    if target.digest and hashlib.sha256(data).hexdigest() != target.digest:
        return f"its {len(data)} bytes are not the thumbnail recorded (sha256 {target.digest[:16]}…)"
    return None


class VerifyStatus(StatusLine):
    """verify's status line: objects checked, and what was found so far."""

    def __init__(self, total: int, enabled: bool, stream: TextIO | None = None) -> None:
        super().__init__(self._line, stream, enabled=enabled)
        self.total = total
        self.done = 0
        self.counts = {"missing": 0, "corrupt": 0, "unchecked": 0}

    def _line(self) -> str:
        elapsed = self.elapsed
        rate = self.done / elapsed if elapsed > 0 else 0.0
        c = self.counts
        return (f"verify: {self.done}/{self.total} objects · {c['missing']} missing · {c['corrupt']} corrupt"
                f" · {c['unchecked']} unchecked · {rate:.0f} objects/s")

    def update(self, done: int = 0, counts: dict[str, int] | None = None) -> None:  # type: ignore[override]
        self.done = done
        self.counts = dict(counts or self.counts)
        super().update()


def check_all(
    store: Store, targets: Iterable[Target], deep: bool, workers: int, status: VerifyStatus,
    recorded: frozenset[str] = frozenset(),
) -> list[Finding]:
    """Check every target with ``workers`` threads (at most 4 per worker queued at a time); ``recorded``: the keys
    the manifest records as missing or corrupt (read unless the store's checksum proves them)."""
    findings: list[Finding] = []
    counts = {"missing": 0, "corrupt": 0, "unchecked": 0, "unproven": 0, "intact": 0}
    done = 0
    pending: set[Future[Finding | None]] = set()

    def collect(finished: Iterable[Future[Finding | None]]) -> None:
        nonlocal done
        for future in finished:
            done += 1
            finding = future.result()
            if finding:
                findings.append(finding)
                counts[finding.status] += 1
        status.update(done, counts)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="verify") as pool:
        for target in targets:
            if len(pending) >= workers * 4:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                collect(finished)
            pending.add(pool.submit(check_object, store, target, deep, target.key in recorded))
        collect(wait(pending).done)
    status.clear()
    return sorted(findings, key=lambda f: (f.status, f.target.key))
