"""Where archived objects go: the Store protocol and open_store(), which picks the backend from the config.

Backends: ``local`` (a folder, local.py), ``s3`` (AWS or S3-compatible, s3.py), and NullStore (null.py) for
dry runs. Methods are synchronous and thread-safe; the pipeline calls them through ``asyncio.to_thread``.
Keys come from keys.py and are checked again by every backend, so no key can leave its folder or prefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from archiver.config import Config
from archiver.errors import StorageError
from archiver.storage.keys import check_config


class Store(Protocol):
    def check(self, write: bool = True) -> None:
        """At start-up: one clear StorageError for wrong credentials, a missing bucket, no access, no endpoint.
        ``write=False`` (commands that only read): nothing is created, and a local folder that does not exist
        is not an error (its objects are simply missing)."""

    def exists(self, key: str) -> bool:
        """Whether the object is already stored (HEAD); content-addressed keys never need uploading twice."""

    def put(self, key: str, data: bytes | Path, content_type: str, metadata: Mapping[str, str]) -> None:
        """Store the bytes (or the file's contents) under ``key``, all or nothing."""

    def get(self, key: str) -> bytes:
        """The object's bytes (for verify and tests)."""

    def url_for(self, key: str) -> str:
        """The public URL a rewritten article uses: ``public_base_url + key``."""

    def local_path(self, key: str) -> Path | None:
        """Where the object is on this machine's disk, for a store that is a local folder; None otherwise."""

    def close(self) -> None:
        """Release what the store holds (a local store's scratch folder); the store is not used afterwards."""


def open_store(cfg: Config) -> Store:
    """The configured backend. A relative local ``path`` is relative to the config file's folder (else the cwd).
    A prefix or public base URL that cannot work is refused here, before anything is fetched (ConfigError)."""
    check_config(cfg)
    st = cfg.storage
    if st.backend == "local":
        from archiver.storage.local import LocalStore

        return LocalStore(cfg.resolve_path(st.path), st.public_base_url)
    if st.backend == "s3":
        from archiver.storage.s3 import S3Store

        return S3Store(st)
    raise StorageError(f'[storage] backend: {st.backend!r} is not "local" or "s3"')


__all__ = ["Store", "open_store"]
