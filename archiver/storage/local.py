"""The local-folder backend: one file per key, written atomically (temp file + fsync + os.replace).

Temp files live in ``ROOT/.tmp/<host>-<pid>/`` (same file system, so the rename is atomic), never
beside objects; a later run removes the folders of processes that no longer exist, so a killed run
leaves nothing behind in the archive.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Mapping
from pathlib import Path

from archiver.errors import StorageError
from archiver.faults import crash_point
from archiver.storage.keys import check_key

_CHUNK = 1 << 20
TMP_DIR = ".tmp"


class LocalStore:
    """Objects as files under ``root``; the content type follows from the extension, so no metadata is kept."""

    def __init__(self, root: Path, public_base_url: str) -> None:
        self.root = Path(os.path.abspath(root))
        self.public_base_url = public_base_url
        self._host = socket.gethostname()
        self._tmp = self.root / TMP_DIR / f"{self._host}-{os.getpid()}"

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        check_key(key)
        path = self.root / key
        # A symlink inside the folder could still lead out of it: compare the resolved paths.
        resolved, root = path.resolve(), self.root.resolve()
        if not resolved.is_relative_to(root) or resolved == root:
            raise StorageError(f"refusing object key {key!r}: it leads outside {self.root}")
        return path

    def check(self) -> None:
        """The folder exists (created if missing) and we can write in it."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temp_dirs()
            fd, probe = tempfile.mkstemp(dir=self.root, prefix=".archiver-check-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise StorageError(f"local store {self.root}: cannot write: {exc.strerror or exc}") from exc

    def _remove_stale_temp_dirs(self) -> None:
        """Remove the temp folders of runs on this host whose process is gone (killed mid-write)."""
        base = self.root / TMP_DIR
        if not base.is_dir():
            return
        for entry in base.iterdir():
            host, _, pid = entry.name.rpartition("-")
            if host != self._host or not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                shutil.rmtree(entry, ignore_errors=True)
            except PermissionError:
                pass  # alive, another user's

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def put(self, key: str, data: bytes | Path, content_type: str, metadata: Mapping[str, str]) -> None:
        path = self._path(key)
        tmp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._tmp, prefix=f"{path.name}.", suffix=".tmp")
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

    def url_for(self, key: str) -> str:
        return self.public_base_url + check_key(key)
