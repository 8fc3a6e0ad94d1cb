"""The local-folder backend: one file per key, written atomically (temp file + fsync + os.replace).

Temp files live in a scratch folder of this process inside ROOT (``archiver.scratch``: same file system, so
the rename is atomic), never beside objects; it is removed by ``close()``, and a later run removes the scratch
folders of processes that no longer exist, so a killed run leaves nothing behind in the archive. Nothing else
in ROOT is ever deleted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from archiver import scratch
from archiver.errors import StorageError
from archiver.faults import crash_point
from archiver.storage import Stored
from archiver.storage.keys import check_key, public_url
from archiver.terminal import shown_path

log = logging.getLogger("archiver")

_CHUNK = 1 << 20


class LocalStore:
    """Objects as files under ``root``; the content type follows from the extension, so no metadata is kept."""

    def __init__(self, root: Path, public_base_url: str) -> None:
        self.root = Path(os.path.abspath(root))
        self.public_base_url = public_base_url
        self._tmp: Path | None = None  # this process's scratch folder, made at the first put
        self._tmp_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        check_key(key)
        path = self.root / key
        # A symlink inside the folder could still lead out of it: compare the resolved paths.
        resolved, root = Path(os.path.realpath(path)), Path(os.path.realpath(self.root))  # never raises on a loop
        if not resolved.is_relative_to(root) or resolved == root:
            raise StorageError(f"refusing object key {key!r}: it leads outside {self.root}")
        return path

    def check(self, write: bool = True) -> None:
        """The folder exists (created if missing) and we can write in it; for reading only, nothing to check."""
        if not write:
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temp_dirs()
            fd, probe = tempfile.mkstemp(dir=self.root, prefix=".archiver-check-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise StorageError(f"local store {self.root}: cannot write: {exc.strerror or exc}") from exc

    def _remove_stale_temp_dirs(self) -> None:
        """Remove the scratch folders of runs on this host whose process is gone (killed mid-write)."""
        for path in scratch.remove_stale(self.root):
            log.info("removed %s left by an interrupted run", shown_path(path))

    def _scratch(self) -> Path:
        with self._tmp_lock:
            if self._tmp is None or not self._tmp.is_dir():
                self._tmp = scratch.create(self.root)
            return self._tmp

    def close(self) -> None:
        """Remove this process's scratch folder (only the files it wrote there)."""
        with self._tmp_lock:
            if self._tmp is not None:
                scratch.remove(self._tmp)
                self._tmp = None

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def local_root(self) -> Path | None:
        return self.root

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def stat(self, key: str) -> Stored | None:
        """The file's size; no checksum is kept (``prove`` hashes the file instead) and no type (the web server's)."""
        path = self._path(key)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"local store: cannot read {path}: {exc.strerror or exc}") from exc
        return Stored(st.st_size) if stat.S_ISREG(st.st_mode) else None

    def put(self, key: str, data: bytes | Path, content_type: str, metadata: Mapping[str, str],
            sha256: str | None = None) -> None:
        path = self._path(key)
        tmp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._scratch(), prefix=f"{path.name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                if isinstance(data, Path):
                    with data.open("rb") as src:
                        shutil.copyfileobj(src, out, _CHUNK)
                else:
                    out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; a web server must be able to read the archive
            crash_point("store-temp")
            os.replace(tmp, path)
            tmp = None
        except OSError as exc:
            raise StorageError(f"local store: cannot write {path}: {exc.strerror or exc}") from exc
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise StorageError(f"local store: no object {key!r} in {self.root}") from exc
        except OSError as exc:
            raise StorageError(f"local store: cannot read {path}: {exc.strerror or exc}") from exc

    def copy(self, source: str, key: str) -> None:
        """A copy of the file, written as any object is (temp file, fsync, rename)."""
        src = self._path(source)
        if not src.is_file():
            raise StorageError(f"local store: no object {source!r} in {self.root}")
        self.put(key, src, "", {})

    def delete(self, keys: Sequence[str]) -> None:
        """Unlink each object's file, then the shard folders (``ab/cd/``) left empty; a folder that still holds
        anything, and every file not named by ``keys``, stays."""
        folders: set[Path] = set()
        for key in keys:
            path = self._path(key)
            try:
                if path.is_symlink() or not path.is_file():
                    if not path.exists():
                        continue
                    raise StorageError(f"local store: refusing to delete {path}: not a regular file")
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StorageError(f"local store: cannot delete {path}: {exc.strerror or exc}") from exc
            folders.add(path.parent)
        for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
            while folder != self.root and folder.is_relative_to(self.root):
                try:
                    folder.rmdir()  # only an empty folder: never anything else in it
                except OSError:
                    break
                folder = folder.parent

    def url_for(self, key: str) -> str:
        return public_url(self.public_base_url, key)
