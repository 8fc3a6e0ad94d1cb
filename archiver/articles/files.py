"""Finding article files on disk and decoding each one to text that encodes back to exactly its bytes."""

from __future__ import annotations

import codecs
import errno
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from charset_normalizer import from_bytes

from archiver.articles.rewrite import TEMP_PREFIX
from archiver.errors import ArticleError
from archiver.model import Article, FileState
from archiver.scratch import is_report_page
from archiver.terminal import shown_path

log = logging.getLogger("archiver")

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DECLARATION_WINDOW = 2048  # a <meta charset> further into the file is not looked for

# (byte-order mark, codecs to try in order). The first codec of each pair strips the BOM from the text
# and writes it back; the explicit-endian fallback keeps U+FEFF as the first character of the text
# (needed when the BOM's byte order is not this machine's: Python's "utf-16" encodes in native order).
# UTF-32 comes first: its little-endian BOM starts with the UTF-16 one.
_BOMS: tuple[tuple[bytes, str, tuple[str, ...]], ...] = (
    (codecs.BOM_UTF32_LE, "UTF-32LE", ("utf-32", "utf-32-le")),
    (codecs.BOM_UTF32_BE, "UTF-32BE", ("utf-32", "utf-32-be")),
    (codecs.BOM_UTF8, "UTF-8", ("utf-8-sig",)),
    (codecs.BOM_UTF16_LE, "UTF-16LE", ("utf-16", "utf-16-le")),
    (codecs.BOM_UTF16_BE, "UTF-16BE", ("utf-16", "utf-16-be")),
)

# Declared or detected codec (normalised) -> codecs to try, best first. A superset is preferred when
# it reads the same bytes (gb2312/gbk -> gb18030); the round-trip check decides in the end.
_SUPERSETS: dict[str, tuple[str, ...]] = {
    "gb2312": ("gb18030", "gbk", "gb2312"),
    "gbk": ("gb18030", "gbk"),
    "gb18030": ("gb18030", "gbk"),
    "shift_jis": ("shift_jis", "cp932"),
    "euc_kr": ("euc_kr", "cp949"),
    "big5": ("big5", "cp950", "big5hkscs"),
    "iso8859-1": ("cp1252", "iso8859-1"),  # as browsers do: a latin-1 declaration means windows-1252
}
# Never chosen from a declaration or a guess: these need a BOM, or decode plain ASCII as something else.
_REFUSED_GUESSES = frozenset(
    {"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be", "utf-7", "utf-8-sig"}
)
_ESCAPED = re.compile("[\udc80-\udcff]+")  # invalid bytes, as decoded with "surrogateescape"
_UTF8_EVIDENCE = 8
_META_CHARSET = re.compile(rb"""<meta\b[^>]*?\bcharset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def iter_article_paths(
    paths: Sequence[Path],
    extensions: Sequence[str],
    *,
    follow_outside: bool = False,
    on_skip: Callable[[Path, str], None] | None = None,
) -> Iterator[Path]:
    """Yield article files: files named directly (any extension), then matching files under folders.

    Folders are walked recursively in sorted order, skipping hidden entries (``.git``, ``.archiver``, our temp
    files). Symlinks are followed only while they stay inside the given PATHs (their real locations): one leading
    elsewhere on the disk is reported and skipped unless ``follow_outside``. A folder reached twice (a link back
    up the tree) is walked once and a file reached twice is yielded once. A symlink loop, a broken link named like
    an article and a folder that cannot be listed are reported (``on_skip(path, reason)``; default: a warning) and
    skipped: the walk goes on. Every PATH is checked before anything is yielded, so a typo fails fast.
    """
    endings = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    for given in paths:
        _stat_given(given)
    walk = _Walk(endings, [Path(os.path.realpath(p)) for p in paths], follow_outside, on_skip or _warn)
    for given in paths:
        st = _stat_given(given)
        if stat.S_ISDIR(st.st_mode):
            yield from walk.folder(given, top=True)
        elif st.st_nlink > 1 and stat.S_ISREG(st.st_mode):
            walk.on_skip(given, hard_links(st.st_nlink))
        elif is_report_page(given):
            walk.on_skip(given, "a report archiver wrote, not an article")
        elif _first_visit(st, walk.seen_files):
            yield given


def outside_roots(path: Path, roots: Sequence[Path]) -> Path | None:
    """The real location of ``path`` if it is outside every one of ``roots`` (real paths), else None."""
    real = Path(os.path.realpath(path))
    return None if any(real == r or real.is_relative_to(r) for r in roots) else real


def _warn(path: Path, reason: str) -> None:
    log.warning("%s: %s", shown_path(path), reason)


def _stat_given(path: Path) -> os.stat_result:
    try:
        return path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise ArticleError(path, "a broken symlink: its target does not exist") from None
        raise ArticleError(path, "no such file or folder") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ArticleError(path, "a symlink loop (it leads back to itself)") from None
        raise ArticleError(path, f"cannot open: {exc.strerror or exc}") from None


def _first_visit(st: os.stat_result, seen: set[tuple[int, int]]) -> bool:
    key = (st.st_dev, st.st_ino)
    if key in seen:
        return False
    seen.add(key)
    return True


LOOP = "a symlink loop (it leads back to itself); skipped"


def hard_links(n: int) -> str:
    """Why an article with several names (hard links) is skipped: a rewrite is a new file renamed into place,
    which would leave the other names with the old text, and make a second run see them as new articles."""
    return (f"has {n} names (hard links): a rewrite would give this name a new file and leave the others as they "
            "are; skipped, nothing changed (copy it to a file of its own to archive its images)")


@dataclass
class _Walk:
    endings: tuple[str, ...]
    roots: list[Path]
    follow_outside: bool
    on_skip: Callable[[Path, str], None]
    seen_files: set[tuple[int, int]] = field(default_factory=set)
    seen_dirs: set[tuple[int, int]] = field(default_factory=set)

    def folder(self, folder: Path, top: bool = False) -> Iterator[Path]:
        try:
            if not _first_visit(folder.stat(), self.seen_dirs):
                return  # a link back up the tree, or a folder already walked through another link
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as exc:
            if top:
                raise ArticleError(folder, f"cannot list folder: {exc.strerror or exc}") from None
            self.on_skip(folder, f"cannot list folder: {exc.strerror or exc}; skipped")
            return
        for entry in entries:
            if entry.name.startswith((".", TEMP_PREFIX)):
                continue
            path = folder / entry.name
            st = self._follow(entry, path)
            if st is None:
                continue
            if stat.S_ISDIR(st.st_mode):
                yield from self.folder(path)
            elif stat.S_ISREG(st.st_mode) and entry.name.lower().endswith(self.endings):
                if st.st_nlink > 1:
                    self.on_skip(path, hard_links(st.st_nlink))
                elif is_report_page(path):
                    log.debug("%s: a report archiver wrote, not an article", shown_path(path))
                elif _first_visit(st, self.seen_files):
                    yield path

    def _follow(self, entry: os.DirEntry[str], path: Path) -> os.stat_result | None:
        """The entry's status through any symlink, or None (reported when it matters) if it is not to be walked."""
        try:
            st = entry.stat()
        except FileNotFoundError:
            if entry.is_symlink() and entry.name.lower().endswith(self.endings):
                self.on_skip(path, "a broken symlink: its target does not exist; skipped")
            return None  # or vanished while walking
        except OSError as exc:
            self.on_skip(path, LOOP if exc.errno == errno.ELOOP else f"cannot open: {exc.strerror or exc}; skipped")
            return None
        if entry.is_symlink() and not self.follow_outside:
            real = outside_roots(path, self.roots)
            if real is not None:
                self.on_skip(path, f"a symlink to {shown_path(real)}, outside the folders given; skipped, so nothing "
                                   "there is changed ([articles] follow_symlinks_outside = true archives it)")
                return None
        return st


def detect_format(path: Path) -> str:
    """``"html"`` for .html/.htm files, ``"markdown"`` for everything else."""
    return "html" if path.suffix.lower() in (".html", ".htm") else "markdown"


def load_article(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Article:
    """Read and decode one article; raises ArticleError when it cannot be read or decoded byte-exactly."""
    raw, state = _read(path, max_bytes)
    text, encoding = _decode_exactly(path, raw)
    return Article(path=path, raw=raw, text=text, encoding=encoding, format=detect_format(path), state=state)


def read_raw(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """An article's bytes, with load_article's checks (ArticleError), undecoded."""
    return _read(path, max_bytes)[0]


def _read(path: Path, max_bytes: int) -> tuple[bytes, FileState]:
    too_large = f"larger than the {max_bytes}-byte limit for an article"
    try:
        # O_NONBLOCK: opening a FIFO given by mistake must not hang; it is refused below.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ArticleError(path, "no such file") from None
    except PermissionError:
        raise ArticleError(path, "cannot read: permission denied") from None
    except OSError as exc:
        raise ArticleError(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ArticleError(path, "is a folder, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise ArticleError(path, "not a regular file")
        if st.st_size > max_bytes:
            raise ArticleError(path, f"{too_large} ({st.st_size} bytes)")
        raw = _read_up_to(fd, st.st_size, max_bytes + 1)
        st = os.fstat(fd)  # after the read: a file that grew meanwhile no longer matches its bytes, and is not written
    except OSError as exc:
        raise ArticleError(path, f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(raw) > max_bytes:
        raise ArticleError(path, too_large)
    return raw, FileState(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read_up_to(fd: int, expected: int, limit: int) -> bytes:
    """The file's bytes up to ``limit``, read in calls of about its size (``expected``: one byte more, so a file
    that did not grow ends in two calls). A buffered ``read(limit)`` allocates ``limit`` bytes before reading: the
    64 MB limit of an article cost a mapping and its release per file, ~6x the read of a small article."""
    chunks: list[bytes] = []
    total = 0
    size = max(expected + 1, 1 << 16)
    while total < limit:
        chunk = os.read(fd, min(size, limit - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _decode_exactly(path: Path, raw: bytes) -> tuple[str, str]:
    """Return ``(text, encoding)`` with ``text.encode(encoding) == raw``, or raise ArticleError.

    Order: byte-order mark, ``<meta charset>`` in the first 2 KB, strict UTF-8, charset-normalizer.
    """
    for bom, label, choices in _BOMS:
        if raw.startswith(bom):
            found = _first_exact(raw, choices)
            if found is None:
                reason = f"cannot decode byte-exactly: starts with a {label} byte-order mark but is not valid {label}"
                raise ArticleError(path, reason)
            return found
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise ArticleError(path, "looks binary (contains NUL bytes), not a text article", line)
    declared = _declared_charset(raw[:DECLARATION_WINDOW])
    if declared is not None:
        found = _first_exact(raw, _candidates(declared))
        if found is not None:
            return found
    try:
        return raw.decode("utf-8"), "utf-8"  # strict UTF-8 always encodes back to the same bytes
    except UnicodeDecodeError as exc:
        utf8_error = exc
    corrupt = _corrupt_utf8(raw)
    if corrupt and declared is None:
        # A legacy codec "fits" such bytes too (cp1251, johab, ...) but garbles every non-ASCII character,
        # URLs included: refuse, so the user fixes the few bad bytes instead.
        bad = raw[utf8_error.start]
        raise ArticleError(
            path,
            f"invalid UTF-8: byte 0x{bad:02x} is not valid here, in a file that is otherwise UTF-8"
            f" ({corrupt} invalid byte{'s' if corrupt > 1 else ''}); fix or remove them, then run again",
            raw[: utf8_error.start].count(b"\n") + 1,
        )
    for guess in _guesses(raw):
        found = _first_exact(raw, _candidates(guess))
        if found is not None:
            return found
    bad = raw[utf8_error.start]
    line = raw[: utf8_error.start].count(b"\n") + 1
    hint = f"; declared {declared!r} does not fit either" if declared else ""
    raise ArticleError(
        path,
        f"cannot decode byte-exactly: not UTF-8 (byte 0x{bad:02x}) and no detected encoding"
        f" reads back to the same bytes{hint}",
        line,
    )


def _corrupt_utf8(raw: bytes) -> int:
    """How many bytes are invalid, if ``raw`` is evidently UTF-8 with a few corrupt bytes (at least
    ``_UTF8_EVIDENCE`` valid multi-byte characters per invalid byte); 0 if it may be another encoding."""
    text = raw.decode("utf-8", "surrogateescape")
    invalid = sum(len(run) for run in _ESCAPED.findall(text))
    valid = len(text) - len(text.encode("ascii", "ignore")) - invalid
    # Legacy CJK or Latin text read as UTF-8 gives far more invalid bytes than (chance) valid characters.
    return invalid if valid >= _UTF8_EVIDENCE * invalid else 0


def _declared_charset(head: bytes) -> str | None:
    match = _META_CHARSET.search(head)
    return match.group(1).decode("ascii") if match else None


def _guesses(raw: bytes) -> list[str]:
    """charset-normalizer's guesses, best first; among the least chaotic, windows-1252 wins a tie
    (it is the web's most common legacy encoding, and short Latin texts fit cp1250/cp1257 just as well)."""
    matches = list(from_bytes(raw))
    if not matches:
        return []
    least = min(match.chaos for match in matches)
    tied_1252 = [m.encoding for m in matches if m.chaos == least and m.encoding == "cp1252"]
    return tied_1252 + [m.encoding for m in matches]


def _candidates(name: str) -> tuple[str, ...]:
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return ()
    if codec in _REFUSED_GUESSES:
        return ()
    return _SUPERSETS.get(codec, (codec,))


def _first_exact(raw: bytes, choices: Sequence[str]) -> tuple[str, str] | None:
    for codec in choices:
        text = _exact(raw, codec)
        if text is not None:
            return text, codec
    return None


def _exact(raw: bytes, codec: str) -> str | None:
    """``raw`` decoded strictly with ``codec`` if that encodes back to the very same bytes, else None."""
    try:
        text = raw.decode(codec)
        return text if text.encode(codec) == raw else None
    except (UnicodeError, LookupError):
        return None
