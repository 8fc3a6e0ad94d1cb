"""Scratch folders the archiver creates for itself, and the only rule by which it ever deletes one.

A scratch folder is uniquely named (``.archiver-scratch-<host>-<pid>-<random>``), made with ``mkdtemp`` (so it
never is, or replaces, a folder that existed before) and holds a marker file naming the process that owns it.
Deleting one removes only the files the archiver itself writes there (``OWN_FILES``) and the marker, then the
folder if it is empty: anything else a user (or another program) put inside is left, with the folder. Stale
folders of killed runs are removed by a later run only when their marker names this host and a process that no
longer exists. Nothing else is ever removed by name: not ``tmp/``, not ``.tmp/``, not a folder the user chose.
The same owner rule serves files the archiver writes beside articles (``owner_tag``, ``left_by_dead_process``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import stat
import tempfile
from pathlib import Path

log = logging.getLogger("archiver")

PREFIX = ".archiver-scratch-"
MARKER = ".archiver-scratch"
# What the archiver writes into a scratch folder: downloads in progress, objects being stored.
OWN_FILES = re.compile(r"(?:fetch-[A-Za-z0-9_]+\.part|[A-Za-z0-9._~-]+\.[A-Za-z0-9_]+\.tmp)")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "host"


def create(parent: Path) -> Path:
    """A new scratch folder in ``parent`` (created if missing), owned by this process."""
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{_host()}-{os.getpid()}-", dir=parent))
    (path / MARKER).write_text(
        f"{_host()} {os.getpid()}\narchiver scratch folder: downloads in progress; removed when the run ends\n",
        encoding="utf-8",
    )
    return path


def owner(path: Path) -> tuple[str, int] | None:
    """(host, pid) the folder's marker names, or None when ``path`` is not a scratch folder of ours."""
    if path.is_symlink() or not path.is_dir() or not path.name.startswith(PREFIX):
        return None
    try:
        first = (path / MARKER).read_text(encoding="utf-8").split("\n", 1)[0].split()
    except (OSError, UnicodeDecodeError):
        return None
    if len(first) != 2 or not first[1].isdigit():
        return None
    return first[0], int(first[1])


def remove(path: Path) -> bool:
    """Delete what the archiver wrote in its scratch folder ``path``, then the folder if nothing else is in it.

    Returns True when the folder is gone. A folder without our marker is never touched."""
    if owner(path) is None:
        return False
    try:
        entries = list(os.scandir(path))
    except OSError:
        return False
    for entry in entries:
        if entry.name != MARKER and OWN_FILES.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
    try:
        remaining = [e for e in os.listdir(path) if e != MARKER]
    except OSError:
        return False
    if remaining:
        log.warning("%s: left in place: it holds files the archiver did not write (%s)", path,
                    ", ".join(sorted(remaining)[:3]) + (", ..." if len(remaining) > 3 else ""))
        return False
    with contextlib.suppress(OSError):
        os.unlink(path / MARKER)
    try:
        os.rmdir(path)
    except OSError:
        return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def owner_tag() -> str:
    """``<host>-<pid>``: put in the name of a file the archiver writes outside a scratch folder (an article's temp
    file), so that a later run removes it only once that process is gone (``left_by_dead_process``)."""
    return f"{_host()}-{os.getpid()}"


def left_by_dead_process(tag: str) -> bool:
    """Whether ``tag`` (an ``owner_tag``) names this host and a process that no longer exists (not this one)."""
    host, _, pid = tag.rpartition("-")
    if host != _host() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    return not _alive(int(pid))


def remove_stale(parent: Path) -> list[Path]:
    """Remove the scratch folders in ``parent`` left by killed runs of this host (their process is gone)."""
    removed: list[Path] = []
    try:
        entries = sorted(os.scandir(parent), key=lambda e: e.name)
    except OSError:
        return removed
    host = _host()
    for entry in entries:
        if not entry.name.startswith(PREFIX):
            continue
        path = Path(entry.path)
        who = owner(path)
        if who is None or who[0] != host or who[1] == os.getpid() or _alive(who[1]):
            continue
        if remove(path):
            removed.append(path)
    return removed


def is_ours(path: Path, *, contains: tuple[bytes, ...] = (), starts: tuple[bytes, ...] = ()) -> bool:
    """Whether ``path`` is a regular file (not a symlink) that the archiver wrote, by the mark it writes in its first
    KiB: one of ``contains`` anywhere there, or one of ``starts`` at its start. A report replaces only such a file."""
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return False
        with path.open("rb") as handle:
            head = handle.read(1024)
    except OSError:
        return False
    return any(mark in head for mark in contains) or head.startswith(starts)


FAILURE_PAGE_MARK = b"<title>archiver: images not archived</title>"  # `run --report`, `archiver report`
DEDUPE_PAGE_MARK = b"<title>archiver: duplicate images</title>"  # `archiver dedupe --report`


def is_report_page(path: Path) -> bool:
    """Whether ``path`` is an HTML report the archiver wrote: never read as an article (its links are the failed
    images' URLs), wherever the user put it."""
    return path.suffix.lower() in (".html", ".htm") and is_ours(path, contains=(FAILURE_PAGE_MARK, DEDUPE_PAGE_MARK))
