"""`archiver run --watch`: after the first run, wait for articles to appear or change and run again over those.

Changes come from the operating system (inotify on Linux, through the ``watchfiles`` package, the optional extra
``archiver[watch]``), or from polling: ``--poll SECONDS``, for folders whose changes the kernel does not see (NFS,
SMB, some container mounts), and whenever ``watchfiles`` is not installed or cannot watch (the inotify watch limit).
Events are only hints: each cycle walks the folders with the run's own rules (hidden folders, symlinks, extensions)
and keeps the files an event named, so a file the run would not read is never read because it changed. The run's
own rewrites show up as changes too; the next cycle finds those articles fully archived by their bytes and does
nothing, so watching converges.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from archiver.articles.files import iter_article_paths
from archiver.articles.rewrite import TEMP_PREFIX

log = logging.getLogger("archiver")

DEBOUNCE_MS = 400  # changes arriving together (an editor's save, a generator writing many posts) make one cycle


def article_key(path: Path | str) -> str:
    """How a changed file and a walked article are compared: the real path (an event may name a file through a
    symlinked folder or a relative path, the walk through another)."""
    return os.path.realpath(path)


class Watcher:
    """Yields the set of changed files (absolute paths) under ``paths``, one batch per cycle."""

    def __init__(self, paths: Sequence[Path], extensions: Sequence[str], *, poll: float | None,
                 follow_outside: bool) -> None:
        self.paths = list(paths)
        self.endings = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
        self.poll = poll
        self.follow_outside = follow_outside
        self._native = poll is None
        self._stats: dict[str, tuple[int, int, int, int]] = {}
        self._stop = asyncio.Event()
        self._pending: set[str] = set()
        self._arrived = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None

    def describe(self) -> str:
        how = "the operating system's change events" if self._native else f"polling every {self._interval():g} s"
        return f"watching {', '.join(str(p) for p in self.paths)} for new and changed articles ({how}; Ctrl-C stops)"

    def _interval(self) -> float:
        return self.poll if self.poll is not None else 2.0

    def _wanted(self, path: str) -> bool:
        name = os.path.basename(path)
        return not name.startswith((TEMP_PREFIX, ".")) and (
            not self.endings or name.lower().endswith(self.endings) or article_key(path) in self._given_files())

    def _given_files(self) -> set[str]:
        return {article_key(p) for p in self.paths if not p.is_dir()}

    async def start(self, stop: asyncio.Event) -> None:
        """Begin watching (before the first run, so that nothing written during it is missed)."""
        self._stop = stop
        if self._native:
            try:
                import watchfiles  # noqa: F401
            except ImportError:
                log.warning("watch: the watchfiles package is not installed (pip install watchfiles, or -e '.[watch]' in the checkout); "
                            "polling every %g s instead", self._interval())
                self._native = False
        if self._native:
            self._pump = asyncio.create_task(self._pump_events(stop))
        else:
            self._stats = await asyncio.to_thread(self._snapshot)

    async def _pump_events(self, stop: asyncio.Event) -> None:
        from watchfiles import Change, awatch

        try:
            # a file given is watched through its folder: an editor's save, or the run's own atomic rewrite, puts a
            # new file in its place, and a watch on the old one would see nothing more
            watched = list(dict.fromkeys(p if p.is_dir() else p.parent for p in self.paths))
            async for changes in awatch(*watched, stop_event=stop, debounce=DEBOUNCE_MS, step=50,
                                        recursive=True, ignore_permission_denied=True):
                changed = {article_key(p) for kind, p in changes if kind != Change.deleted and self._wanted(p)}
                if changed:
                    self._pending |= changed
                    self._arrived.set()
        except (OSError, RuntimeError) as exc:  # e.g. the inotify watch limit: poll instead, said once
            log.warning("watch: change events unavailable (%s); polling every %g s instead", exc, self._interval())
            self._native = False
            self._stats = await asyncio.to_thread(self._snapshot)
            self._arrived.set()

    async def next(self) -> set[str] | None:
        """The files that appeared or changed since the last call (waits for at least one); None once stopped."""
        stop = self._stop
        while not stop.is_set():
            if not self._native:
                return await self._poll_next(stop)
            waiter = asyncio.create_task(self._arrived.wait())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
            self._arrived.clear()
            if self._pending and not stop.is_set():
                changed, self._pending = self._pending, set()
                return changed
        return None

    def _snapshot(self) -> dict[str, tuple[int, int, int, int]]:
        out = {}
        for path in iter_article_paths(self.paths, [e.lstrip(".") for e in self.endings],
                                       follow_outside=self.follow_outside, on_skip=lambda _p, _why: None):
            try:
                st = path.stat()
            except OSError:
                continue
            out[article_key(path)] = (st.st_mtime_ns, st.st_size, st.st_ctime_ns, st.st_ino)
        return out

    async def _poll_next(self, stop: asyncio.Event) -> set[str] | None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self._interval())
                return None
            except TimeoutError:
                pass
            now = await asyncio.to_thread(self._snapshot)
            changed = {p for p, st in now.items() if self._stats.get(p) != st}
            self._stats = now
            if changed:
                return changed
        return None
