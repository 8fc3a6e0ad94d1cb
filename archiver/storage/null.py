"""The store for --dry-run: answers from a real store (read-only) when given one, and never writes."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from archiver.errors import StorageError
from archiver.storage import Store, Stored
from archiver.storage.keys import check_key, public_url


class NullStore:
    """``put`` only records the key (``would_put``); reads go to ``inner`` if there is one."""

    def __init__(self, inner: Store | None = None, public_base_url: str = "") -> None:
        self.inner = inner
        self.public_base_url = public_base_url
        self.would_put: list[str] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"NullStore({self.inner!r})"

    def check(self, write: bool = True) -> None:
        if self.inner is not None:
            self.inner.check(write=False)

    def exists(self, key: str) -> bool:
        check_key(key)
        return self.inner.exists(key) if self.inner is not None else False

    def stat(self, key: str) -> Stored | None:
        check_key(key)
        return self.inner.stat(key) if self.inner is not None else None

    def put(self, key: str, data: bytes | Path, content_type: str, metadata: Mapping[str, str],
            sha256: str | None = None) -> None:
        check_key(key)
        with self._lock:
            self.would_put.append(key)

    def get(self, key: str) -> bytes:
        check_key(key)
        if self.inner is None:
            raise StorageError(f"dry run: no object {key!r} (nothing is stored)")
        return self.inner.get(key)

    def copy(self, source: str, key: str) -> None:
        check_key(source)
        self.put(key, b"", "", {})

    def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            check_key(key)

    def local_path(self, key: str) -> Path | None:
        return self.inner.local_path(key) if self.inner is not None else None

    def local_root(self) -> Path | None:
        return self.inner.local_root() if self.inner is not None else None

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()

    def url_for(self, key: str) -> str:
        return self.inner.url_for(key) if self.inner is not None else public_url(self.public_base_url, key)
