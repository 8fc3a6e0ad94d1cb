"""Splicing new URLs into an article's text and writing the bytes back atomically (plus dry-run diffs)."""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import secrets
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from archiver import scratch
from archiver.articles.writers import open_for_writing
from archiver.errors import ArticleError
from archiver.faults import crash_point
from archiver.model import Article, FileState
from archiver.terminal import shown_path

TEMP_PREFIX = ".archiver-tmp-"  # hidden, so editors and the article walk ignore it; never a real article
_SKIPPED_WHEN_CLEANING = frozenset({".git", ".hg", ".svn"})
_TOKEN = re.compile("[0-9a-f]{16}")


@dataclass(frozen=True)
class Replacement:
    """Put ``new`` in place of ``text[start:end]`` (character offsets into ``Article.text``)."""

    start: int
    end: int
    new: str


def splice(text: str, replacements: Sequence[Replacement]) -> str:
    """``text`` with every span replaced and every other character kept; an empty list gives ``text``.

    Raises ValueError for a span outside the text, overlapping spans, or two spans starting at the
    same offset (two insertions there would have no defined order).
    """
    pieces: list[str] = []
    done = 0  # text[:done] is already in pieces
    previous_start = -1
    for rep in sorted(replacements, key=lambda r: (r.start, r.end)):
        if not 0 <= rep.start <= rep.end <= len(text):
            raise ValueError(f"replacement {rep.start}:{rep.end} is outside the text (length {len(text)})")
        if rep.start < done or rep.start == previous_start:
            raise ValueError(f"replacement {rep.start}:{rep.end} overlaps another one")
        pieces.append(text[done : rep.start])
        pieces.append(rep.new)
        done = rep.end
        previous_start = rep.start
    pieces.append(text[done:])
    return "".join(pieces)


def render(article: Article, replacements: Sequence[Replacement]) -> bytes:
    """The article's new bytes, in its own encoding; ArticleError if the new text cannot be written in it."""
    new_text = splice(article.text, replacements)
    try:
        data = new_text.encode(article.encoding)
    except UnicodeEncodeError as exc:
        char = new_text[exc.start]
        line = new_text.count("\n", 0, exc.start) + 1
        reason = f"the new text contains {char!r} (U+{ord(char):04X}), which {article.encoding} cannot encode"
        raise ArticleError(article.path, reason, line) from None
    if data.decode(article.encoding) != new_text:
        raise ArticleError(article.path, f"the new text would not read back identically in {article.encoding}")
    return data


def write_atomic(
    path: Path,
    data: bytes,
    *,
    expected: bytes | None = None,
    state: FileState | None = None,
    before_rename: Callable[[], None] | None = None,
) -> None:
    """Replace the file's content with ``data`` so that a reader sees the old or the new bytes, never a mix.

    The file keeps its permission bits (and owner, where allowed); a symlink keeps pointing at the
    file it named, whose content is replaced. With ``expected``, the write is refused if, right before the rename,
    the file no longer holds those bytes, is no longer the file read in ``state`` (same inode, size and mtime), or
    another process has it open for writing (``writers``: its later writes would go to the replaced file and be
    lost). ``before_rename`` runs once the new bytes are durable in the temp file, before those checks and the
    rename (the write-ahead record: archiver.articles.journal); if it raises, nothing is renamed. Every failure of
    the write itself is an ArticleError, leaving the original and no temp file.
    """
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        original: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        original = None
    except OSError as exc:
        raise ArticleError(path, f"cannot write: {exc.strerror or exc}") from None
    if original is None and expected is not None:
        raise ArticleError(path, "changed since it was read: it no longer exists; not written")
    if original is not None:
        if not stat.S_ISREG(original.st_mode):
            raise ArticleError(path, "cannot write: not a regular file")
        # No write bit for anyone means the user marked it read-only: respected even when running as root.
        if not original.st_mode & 0o222 or not os.access(target, os.W_OK):
            raise ArticleError(path, "cannot write: the file is read-only")
    temp = target.parent / new_temp_name()
    try:
        _write_then_replace(temp, target, data, original, _Expect(expected, state, path), before_rename)
    except OSError as exc:
        raise ArticleError(path, f"cannot write: {exc.strerror or exc}") from None
    _fsync_folder(target.parent)


@dataclass(frozen=True)
class _Expect:
    data: bytes | None
    state: FileState | None
    shown: Path


def _write_then_replace(
    temp: Path, target: Path, data: bytes, original: os.stat_result | None, expect: _Expect,
    before_rename: Callable[[], None] | None,
) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(temp, flags, 0o666 if original is None else 0o600)  # a new file gets 0o666 minus the umask
    try:
        with open(fd, "wb", closefd=True) as handle:
            if original is not None:
                os.fchmod(fd, stat.S_IMODE(original.st_mode))
                if (original.st_uid, original.st_gid) != (os.geteuid(), os.getegid()):
                    with contextlib.suppress(OSError):
                        os.fchown(fd, original.st_uid, original.st_gid)
            handle.write(data)
            handle.flush()
            os.fsync(fd)
        if before_rename is not None:
            before_rename()
        if expect.data is not None:
            _check_unchanged(target, expect)
        crash_point("article-temp")
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _check_unchanged(target: Path, expect: _Expect) -> None:
    """Right before the rename: the file is still the one read, holding the same bytes, and nobody is writing it."""
    shown, expected = expect.shown, expect.data or b""
    try:
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ArticleError(shown, "changed since it was read: it no longer exists; not written") from None
    try:
        st, state = os.fstat(fd), expect.state
        if state is not None and (st.st_dev, st.st_ino) != (state.device, state.inode):
            raise ArticleError(shown, "replaced by another file since it was read; not written (run again)")
        if st.st_size != len(expected) or (state is not None and st.st_mtime_ns != state.mtime_ns):
            raise ArticleError(shown, "changed since it was read; not written (run again to pick up the edit)")
        with open(fd, "rb", closefd=False) as handle:
            current = handle.read(len(expected) + 1)
        if current != expected:
            raise ArticleError(shown, "changed since it was read; not written (run again to pick up the edit)")
        writer = open_for_writing(fd)
        if writer is not None:
            raise ArticleError(shown, f"{writer}; not written, so none of its writes are lost (run again once it "
                                      "has closed the file)")
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable. Best effort: the new content is already in place if this fails."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def new_temp_name() -> str:
    """A temp file's name beside an article: hidden, and naming this host and process (archiver.scratch)."""
    return f"{TEMP_PREFIX}{scratch.owner_tag()}-{secrets.token_hex(8)}"


def is_stale_temp(name: str) -> bool:
    """Whether ``name`` is one of our temp files whose writer is gone: named by ``new_temp_name`` for a process of
    this host that no longer exists, or in the form older versions used (``.archiver-tmp-`` and 16 hex digits).
    A user's file that merely starts with the prefix is neither."""
    rest = name.removeprefix(TEMP_PREFIX)
    if rest == name:
        return False
    if _TOKEN.fullmatch(rest):
        return True
    tag, _, token = rest.rpartition("-")
    return bool(_TOKEN.fullmatch(token)) and scratch.left_by_dead_process(tag)


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete the temp files killed runs left anywhere under ``folder`` (``is_stale_temp``); returns them, sorted."""
    if not folder.is_dir():
        raise ArticleError(folder, "no such folder")
    removed: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):  # does not follow symlinks: no loops
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_WHEN_CLEANING)
        for name in sorted(filenames):
            candidate = Path(dirpath, name)
            if not is_stale_temp(name) or candidate.is_symlink():
                continue
            try:
                candidate.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise ArticleError(candidate, f"cannot remove stale temp file: {exc.strerror or exc}") from None
            removed.append(candidate)
    return removed


def remove_stale_temp_files_beside(articles: Sequence[Path]) -> list[Path]:
    """Delete the temp files killed writers left in the folders of ``articles`` (not below them): what `restore`
    and `dedupe` clean up before they write, as `run` does for its whole tree."""
    removed: list[Path] = []
    for folder in sorted({Path(p).parent for p in articles}):
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for name in names:
            candidate = folder / name
            if is_stale_temp(name) and not candidate.is_symlink():
                try:
                    candidate.unlink()
                except OSError:
                    continue
                removed.append(candidate)
    return removed


def unified_diff(article: Article, new_text: str) -> str:
    """A unified diff (no context lines) from the article's text to ``new_text``; "" when nothing changed.

    Lines are split on "\\n" only; a CRLF ending is shown as a plain line end, a lone CR as ``\\r``, and
    a last line without newline is marked as diff does.
    """
    name = shown_path(article.path)
    old_lines, new_lines = _lines(article.text), _lines(new_text)
    out: list[str] = []
    diff = difflib.unified_diff(old_lines, new_lines, fromfile=name, tofile=name, n=0, lineterm="")
    for index, line in enumerate(diff):
        if index < 2 or line.startswith("@@"):
            out.append(line + "\n")
            continue
        body, ended = line[1:], line.endswith("\n")
        body = body.removesuffix("\n").removesuffix("\r") if ended else body
        out.append(line[0] + body.replace("\r", "\\r") + "\n")
        if not ended:
            out.append("\\ No newline at end of file\n")
    return "".join(out)


def _lines(text: str) -> list[str]:
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines
