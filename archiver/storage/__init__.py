"""Where archived objects go: the Store protocol and open_store(), which picks the backend from the config.

Backends: ``local`` (a folder, local.py), ``s3`` (AWS or S3-compatible, s3.py), and NullStore (null.py) for
dry runs. Methods are synchronous and thread-safe; the pipeline calls them through ``asyncio.to_thread``.
Keys come from keys.py and are checked again by every backend, so no key can leave its folder or prefix.
An object under a content-addressed key is trusted only once ``prove`` has matched its size, type and checksum.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from archiver.config import Config, StorageConfig
from archiver.errors import ConfigError, StorageError
from archiver.storage.keys import check_config


@dataclass(frozen=True)
class Stored:
    """What a store says about an object without reading its bytes (one HEAD)."""

    size: int
    sha256: str | None = None  # hex; the content's SHA-256 as the store vouches for it (a checksum it checked at
    # upload and keeps: S3 ChecksumSHA256), None when it keeps none (an upload without one, a multipart upload)
    content_type: str | None = None  # as the store serves it (None: decided by whoever serves the files)


@dataclass(frozen=True)
class Proof:
    """Whether a key holds exactly the bytes expected (``prove``)."""

    state: str  # "ok" | "missing" | "different" | "unproven" (the size and type match, no checksum to compare)
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "ok"


class Store(Protocol):
    def check(self, write: bool = True) -> None:
        """At start-up: one clear StorageError for wrong credentials, a missing bucket, no access, no endpoint.
        ``write=False`` (commands that only read): nothing is created, and a local folder that does not exist
        is not an error (its objects are simply missing)."""

    def exists(self, key: str) -> bool:
        """Whether there is an object under ``key`` (HEAD). Existence proves nothing about its bytes: see ``prove``."""

    def stat(self, key: str) -> Stored | None:
        """Size, vouched-for checksum and type of the object under ``key`` (one HEAD), None if there is none."""

    def put(self, key: str, data: bytes | Path, content_type: str, metadata: Mapping[str, str],
            sha256: str | None = None) -> None:
        """Store the bytes (or the file's contents) under ``key``, all or nothing, replacing what is there.
        ``sha256`` (hex, of the bytes; computed when not given) goes with the upload where the store can check
        and keep it (S3 ``x-amz-checksum-sha256``): an upload that does not match it fails."""

    def get(self, key: str) -> bytes:
        """The object's bytes (for verify and tests)."""

    def delete(self, keys: Sequence[str]) -> None:
        """Remove the objects under ``keys`` (`archiver gc`, only keys the manifest records as ours); a key with no
        object is not an error (a re-run after a kill deletes again what is already gone)."""

    def copy(self, source: str, key: str) -> None:
        """Copy the object under ``source`` to ``key`` (`archiver rekey`), on the server where the store can (S3
        CopyObject), all or nothing; the caller proves the copy."""

    def url_for(self, key: str) -> str:
        """The public URL a rewritten article uses: ``public_base_url + key``, the key checked first
        (``keys.check_key``: StorageError for a key that is not a safe relative one). The dedupe report relies on
        that check for the relative paths it builds from the same key."""

    def local_path(self, key: str) -> Path | None:
        """Where the object is on this machine's disk, for a store that is a local folder; None otherwise."""

    def local_root(self) -> Path | None:
        """The folder a local store keeps its objects in (``local_path(key)`` is this folder / key); None for a store
        that is not a local folder."""

    def close(self) -> None:
        """Release what the store holds (a local store's scratch folder); the store is not used afterwards."""


def file_sha256(path: Path) -> str:
    """The SHA-256 (hex) of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def prove(store: Store, key: str, size: int | None, sha256: str | None, content_type: str | None = None,
          *, read_local: bool = True) -> Proof:
    """Whether ``key`` holds exactly the expected bytes (any expectation may be unknown: None), without a download:
    the size and type the store reports, and the checksum it vouches for; a store that keeps none but is a local
    folder has its file hashed when ``read_local`` (local disk: as cheap as the write it may spare). An object
    that exists is never proof by itself: content-addressed keys are only as good as the bytes under them."""
    try:
        stored = store.stat(key)
        if stored is None:
            return Proof("missing", "not in storage")
        if size is not None and stored.size != size:
            return Proof("different", f"it holds {stored.size} bytes, not the {size} expected")
        if content_type and stored.content_type and stored.content_type.split(";")[0].strip() != content_type:
            return Proof("different", f"it is served as {stored.content_type!r}, not {content_type!r}")
        got = stored.sha256
        if got is None and read_local and (path := store.local_path(key)) is not None:
            got = file_sha256(path)
    except OSError as exc:
        raise StorageError(f"cannot read {key}: {exc.strerror or exc}") from exc
    if got is None:
        return Proof("unproven", "the store keeps no checksum for it: its size was checked, not its content")
    if sha256 is not None and got != sha256:
        return Proof("different", f"its content hashes to {got[:16]}…, not to the {sha256[:16]}… expected")
    return Proof("ok")


def open_store(cfg: Config) -> Store:
    """The configured backend. A relative local ``path`` is relative to the config file's folder (else the cwd).
    A prefix or public base URL that cannot work is refused here, before anything is fetched (ConfigError)."""
    check_config(cfg)
    st = cfg.storage
    if st.backend == "local":
        from archiver.storage.local import LocalStore

        root = cfg.resolve_path(st.path)
        if os.path.realpath(root) == os.path.realpath("/"):
            where = f"{cfg.source}: " if cfg.source else ""
            raise ConfigError(f"{where}[storage] path: {st.path!r} is the root of the file system; give the archive "
                              "a folder of its own (e.g. \"archive\")")
        return LocalStore(root, st.public_base_url)
    if st.backend == "s3":
        return _DeferredS3(st)
    raise StorageError(f'[storage] backend: {st.backend!r} is not "local" or "s3"')


class _DeferredS3:
    """The S3 store, made at its first use: a command that ends up storing and reading nothing (a run with nothing
    new) neither loads boto3 nor contacts the endpoint. Public URLs need neither."""

    def __init__(self, cfg: StorageConfig) -> None:
        self._cfg = cfg
        self._real: Store | None = None

    def _store(self) -> Store:
        if self._real is None:
            from archiver.storage.s3 import S3Store

            self._real = S3Store(self._cfg)
        return self._real

    def url_for(self, key: str) -> str:
        from archiver.storage.keys import public_url

        return public_url(self._cfg.public_base_url, key)

    def local_root(self) -> Path | None:
        return None  # never a local folder: asking needs no client (`dedupe` asks even with no group to show)

    def close(self) -> None:
        if self._real is not None:
            self._real.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store(), name)

    def __repr__(self) -> str:
        return repr(self._store())


__all__ = ["Proof", "Store", "Stored", "file_sha256", "open_store", "prove"]
