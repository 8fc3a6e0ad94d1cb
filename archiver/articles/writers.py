"""Whether another process has a file open for writing: replacing the file then would lose what it writes later.

On Linux the kernel answers exactly: it grants a read lease (``F_SETLEASE``) only while no process has the file open
for writing. The lease is taken and released at once (4-8 µs); its break signal is set to SIGURG, ignored by
default, so a writer opening the file in that instant cannot kill us with SIGIO. A lease needs the file to be ours
(or CAP_LEASE) and a file system that has leases (not NFS or FUSE): otherwise the open files in /proc/*/fd are
searched, as far as we may see them (our own processes; every process as root), at 10-17 µs per file descriptor
open on the machine (7.6-12 ms for 700: bench/bench_article_writes.py). On other systems nothing is checked.

What this cannot see: a writer that opens the file between this check and the rename (microseconds), and one that
opens, writes and closes the file each time (it is not open at the check; its next write goes to the new file, so
nothing is lost).
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

_PROC = Path("/proc")


def open_for_writing(fd: int) -> str | None:
    """Why the file behind ``fd`` (which we opened read-only) must not be replaced now, or None: no other process
    has it open for writing, or the platform cannot tell."""
    lease = _lease_refused(fd)
    if lease is not None:
        return "another program has it open for writing" if lease else None
    return _proc_writer(fd)


def _lease_refused(fd: int) -> bool | None:
    """True: the kernel refused a read lease because the file is open for writing; False: granted (and released);
    None: a lease cannot tell here."""
    if fcntl is None or not hasattr(fcntl, "F_SETLEASE"):
        return None
    try:
        if hasattr(fcntl, "F_SETSIG"):
            fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except BlockingIOError:  # EAGAIN: open for writing somewhere
        return True
    except OSError:  # EACCES (not our file), EINVAL (no leases on this file system), ...
        return None
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    return False


def _proc_writer(fd: int) -> str | None:
    """Search /proc for another descriptor of the same file opened for writing (the processes we may see)."""
    try:
        st = os.fstat(fd)
        pids = [p for p in os.listdir(_PROC) if p.isdigit()]
    except OSError:
        return None
    me = str(os.getpid())
    for pid in pids:
        try:
            fds = os.listdir(_PROC / pid / "fd")
        except OSError:
            continue  # gone, or another user's
        for name in fds:
            if pid == me and name == str(fd):
                continue
            try:
                other = os.stat(_PROC / pid / "fd" / name)
            except OSError:
                continue
            if (other.st_dev, other.st_ino) != (st.st_dev, st.st_ino) or not _writable(pid, name):
                continue
            return f"process {pid}{_command(pid)} has it open for writing"
    return None


def _writable(pid: str, fd: str) -> bool:
    try:
        info = (_PROC / pid / "fdinfo" / fd).read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    for line in info.splitlines():
        if line.startswith("flags:"):
            return (int(line.split()[1], 8) & os.O_ACCMODE) in (os.O_WRONLY, os.O_RDWR)
    return False


def _command(pid: str) -> str:
    try:
        name = (_PROC / pid / "comm").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
    return f" ({name})" if name.isprintable() else ""
