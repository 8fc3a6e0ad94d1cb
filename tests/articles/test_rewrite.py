"""Splicing replacements into article text and writing articles back atomically (real files, no mocks)."""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver import scratch
from archiver.articles.files import iter_article_paths, load_article
from archiver.articles.rewrite import (
    TEMP_PREFIX,
    Replacement,
    remove_stale_temp_files,
    render,
    splice,
    unified_diff,
    write_atomic,
)
from archiver.errors import ArticleError
from archiver.model import Article
from tests.support.files import CORPUS_NAMES, run_unprivileged
from tests.support.paths import FIXTURES_DIR

# Characters that break naive line or offset handling, mixed into otherwise arbitrary text.
AWKWARD = st.sampled_from(["\r", "\n", "\r\n", "\x85", "\u2028", "\u2029", "\ufeff", "\u00a0", "😀", "𠀀", "&#123;"])
TEXT = st.lists(AWKWARD | st.text(max_size=8), max_size=30).map("".join)


def _article(path: Path, text: str, encoding: str = "utf-8") -> Article:
    return Article(path=path, raw=text.encode(encoding), text=text, encoding=encoding, format="markdown")


def _temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(f"{TEMP_PREFIX}*"))


# ---- splice -----------------------------------------------------------------------------------------


def test_splice_changes_exactly_the_spans() -> None:
    text = '![a](http://x/1.png) and <img src="http://x/2.png">\r\n'
    first, second = text.index("http://x/1.png"), text.index("http://x/2.png")
    reps = [Replacement(second, second + 14, "s3://b/2.webp"), Replacement(first, first + 14, "s3://b/1")]
    assert splice(text, reps) == '![a](s3://b/1) and <img src="s3://b/2.webp">\r\n'


def test_splice_empty_list_is_identity_and_insertions_work() -> None:
    assert splice("a\r\nb", []) == "a\r\nb"
    assert splice("ab", [Replacement(1, 1, "X"), Replacement(0, 1, "")]) == "Xb"
    assert splice("ab", [Replacement(0, 1, "1"), Replacement(1, 2, "2")]) == "12"  # adjacent spans


@pytest.mark.parametrize(
    "reps",
    [
        [Replacement(0, 3, "x"), Replacement(2, 4, "y")],
        [Replacement(1, 3, "x"), Replacement(0, 5, "y")],
        [Replacement(2, 2, "x"), Replacement(2, 2, "y")],  # two insertions at one place: no defined order
        [Replacement(2, 2, "x"), Replacement(2, 4, "y")],
    ],
)
def test_splice_refuses_overlaps(reps: list[Replacement]) -> None:
    with pytest.raises(ValueError, match="overlaps"):
        splice("abcdef", reps)


@pytest.mark.parametrize("rep", [Replacement(-1, 2, "x"), Replacement(3, 2, "x"), Replacement(4, 7, "x")])
def test_splice_refuses_spans_outside_the_text(rep: Replacement) -> None:
    with pytest.raises(ValueError, match="outside"):
        splice("abcdef", [rep])


@st.composite
def text_and_spans(draw: st.DrawFn) -> tuple[str, list[Replacement]]:
    """Any text and any set of non-overlapping spans (some empty = insertions), in random order."""
    text = draw(TEXT)
    starts = draw(st.lists(st.integers(0, len(text)), unique=True).map(sorted))
    reps = []
    for index, start in enumerate(starts):
        limit = starts[index + 1] if index + 1 < len(starts) else len(text)
        end = draw(st.integers(start, limit))
        reps.append(Replacement(start, end, draw(TEXT)))
    return text, draw(st.permutations(reps))


@settings(max_examples=300, deadline=None)
@given(text_and_spans())
def test_splice_keeps_everything_outside_the_spans(case: tuple[str, list[Replacement]]) -> None:
    text, reps = case
    out = splice(text, reps)
    at = 0  # walk the output, checking kept pieces against the input and new pieces against the replacements
    kept_until = 0
    for rep in sorted(reps, key=lambda r: r.start):
        kept = text[kept_until : rep.start]
        assert out[at : at + len(kept)] == kept
        at += len(kept)
        assert out[at : at + len(rep.new)] == rep.new
        at += len(rep.new)
        kept_until = rep.end
    assert out[at:] == text[kept_until:]


OLD_URLS = ("http://old.test/1.jpg", "http://old.test/2.png", "http://old.test/3 x.gif", "http://old.test/4")
NEW_URLS = {old: f"s3://bucket/{index:02d}ab{index}.webp" for index, old in enumerate(OLD_URLS)}
FIND_OLD = re.compile("|".join(re.escape(url) for url in sorted(OLD_URLS, key=len, reverse=True)))


def _rewrite_urls(article: Article) -> bytes:
    """The rewrite stage in miniature: find every old URL's span, map it to its archived URL, render."""
    reps = [Replacement(m.start(), m.end(), NEW_URLS[m.group()]) for m in FIND_OLD.finditer(article.text)]
    return render(article, reps)


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.tuples(TEXT, st.sampled_from(OLD_URLS)), max_size=8),
    tail=TEXT,
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "gb18030"]),
)
def test_rewriting_twice_equals_rewriting_once(pieces: list[tuple[str, str]], tail: str, encoding: str) -> None:
    text = "".join(filler + url for filler, url in pieces) + tail
    once = _rewrite_urls(_article(Path("a.md"), text, encoding))
    reread = _article(Path("a.md"), once.decode(encoding), encoding)
    assert not FIND_OLD.search(reread.text)
    assert _rewrite_urls(reread) == once
    assert reread.text.count("s3://bucket/") >= len(pieces)


@settings(max_examples=300, deadline=None)
@given(
    case=text_and_spans(),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-be", "utf-32", "gb18030"]),
)
def test_rendered_bytes_decode_to_the_spliced_text(case: tuple[str, list[Replacement]], encoding: str) -> None:
    text, reps = case
    data = render(_article(Path("a.md"), text, encoding), reps)
    assert data.decode(encoding) == splice(text, reps)


def test_render_refuses_text_the_encoding_cannot_hold(tmp_path: Path) -> None:
    article = _article(tmp_path / "a.md", "---\nheadimg: http://x/1.png\n---\n", "shift_jis")
    start = article.text.index("http")
    with pytest.raises(ArticleError) as info:
        render(article, [Replacement(start, start + 14, "https://cdn/😀.png")])
    assert "shift_jis cannot encode" in info.value.reason and info.value.line == 2


def test_render_keeps_the_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bom.md"
    path.write_bytes(b"\xef\xbb\xbf![a](http://x/1.png)\r\n")
    article = load_article(path)
    assert render(article, [Replacement(5, 19, "s3://b/1")]) == b"\xef\xbb\xbf![a](s3://b/1)\r\n"


def test_rewrite_of_a_real_fixture_changes_only_the_url_bytes(tmp_path: Path) -> None:
    source = FIXTURES_DIR / "articles" / "hexo-shape-crlf.md"
    path = tmp_path / source.name
    shutil.copyfile(source, path)
    article = load_article(path)
    old = "https://img.example.com/a.png"
    start = article.text.index(old)
    data = render(article, [Replacement(start, start + len(old), "https://cdn.test/b.webp")])
    write_atomic(path, data, expected=article.raw)
    assert path.read_bytes() == article.raw.replace(old.encode(), b"https://cdn.test/b.webp")


# ---- write_atomic --------------------------------------------------------------------------------------


def test_write_atomic_replaces_content_and_keeps_permission_bits(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_bytes(b"old\r\n")
    path.chmod(0o640)
    write_atomic(path, b"new\r\n", expected=b"old\r\n")
    assert path.read_bytes() == b"new\r\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert _temp_files(tmp_path) == []


def test_write_atomic_through_a_symlink_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real.md"
    real.write_bytes(b"old")
    link = tmp_path / "link.md"
    link.symlink_to(real)
    write_atomic(link, b"new", expected=b"old")
    assert link.is_symlink() and real.read_bytes() == b"new"


def test_write_atomic_long_unicode_file_name(tmp_path: Path) -> None:
    path = tmp_path / ("文" * 80 + ".md")  # 243 bytes: a temp name built from it would be too long
    path.write_bytes(b"old")
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new"


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_write_atomic_corpus_file_names(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"old")
    write_atomic(path, b"new", expected=b"old")
    assert path.read_bytes() == b"new" and _temp_files(tmp_path) == []


def test_write_atomic_refuses_a_file_changed_since_it_was_read(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_bytes(b"edited by the user")
    with pytest.raises(ArticleError, match="changed since it was read"):
        write_atomic(path, b"ours", expected=b"what we read")
    assert path.read_bytes() == b"edited by the user"
    assert _temp_files(tmp_path) == []
    path.unlink()
    with pytest.raises(ArticleError, match="no longer exists"):
        write_atomic(path, b"ours", expected=b"what we read")
    assert not path.exists()


def test_write_atomic_refuses_a_read_only_file(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_bytes(b"old")
    path.chmod(0o444)
    with pytest.raises(ArticleError, match="read-only"):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old" and _temp_files(tmp_path) == []


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder an unprivileged user can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="archiver-test-"))
    folder.chmod(0o777)
    yield folder
    for sub in folder.rglob("*"):
        if sub.is_dir() and not sub.is_symlink():
            sub.chmod(0o755)
    shutil.rmtree(folder)


def test_write_atomic_in_a_read_only_folder(open_dir: Path) -> None:
    folder = open_dir / "posts"
    folder.mkdir()
    path = folder / "a.md"
    path.write_bytes(b"old")
    path.chmod(0o666)  # the file itself is writable: only the folder forbids creating the temp file
    folder.chmod(0o555)

    def attempt() -> str:
        try:
            write_atomic(path, b"new")
        except ArticleError as exc:
            return exc.reason
        return "written"

    assert run_unprivileged(attempt) == "cannot write: Permission denied"
    assert path.read_bytes() == b"old" and _temp_files(folder) == []


def test_write_atomic_failing_midway_leaves_the_original(tmp_path: Path) -> None:
    """A write that fails after the temp file exists (here: the file-size limit, like a full disk)."""
    path = tmp_path / "a.md"
    path.write_bytes(b"old")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(ArticleError, match="cannot write: File too large"):
            write_atomic(path, b"x" * 100_000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert path.read_bytes() == b"old" and _temp_files(tmp_path) == []


def test_stale_temp_files_from_a_killed_run_are_removed_and_never_walked(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host_pid = scratch.owner_tag()
    dead_tag = f"{host_pid.rpartition('-')[0]}-{int(dead.stdout)}"
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.md").write_bytes(b"a")
    stale = [tmp_path / f"{TEMP_PREFIX}0123456789abcdef",  # the form older versions wrote
             tmp_path / "sub" / f"{TEMP_PREFIX}{dead_tag}-fedcba9876543210"]  # of a process that is gone
    kept = [tmp_path / f"{TEMP_PREFIX}77.md",  # a user's file that only starts like ours
            tmp_path / f"{TEMP_PREFIX}notes",
            tmp_path / "sub" / f"{TEMP_PREFIX}{host_pid}-0011223344556677",  # a write in progress (this process)
            tmp_path / f"{TEMP_PREFIX}elsewhere-{int(dead.stdout)}-0011223344556677"]  # another host's
    for path in stale + kept:
        path.write_bytes(b"half-written article")
    assert list(iter_article_paths([tmp_path], [".md"])) == [tmp_path / "a.md"]
    assert remove_stale_temp_files(tmp_path) == stale
    assert not any(path.exists() for path in stale) and all(path.exists() for path in kept)
    assert remove_stale_temp_files(tmp_path) == []
    assert (tmp_path / "a.md").read_bytes() == b"a"


def test_remove_stale_temp_files_needs_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ArticleError, match="no such folder"):
        remove_stale_temp_files(tmp_path / "missing")


# ---- unified_diff ---------------------------------------------------------------------------------------


def test_unified_diff_shows_only_the_changed_line(tmp_path: Path) -> None:
    text = "---\r\ntitle: x\r\nheadimg: http://old/1.png\r\n---\r\nbody\r\n"
    article = _article(tmp_path / "a.md", text)
    diff = unified_diff(article, text.replace("http://old/1.png", "s3://b/1.png"))
    name = str(tmp_path / "a.md")
    assert diff.splitlines() == [
        f"--- {name}",
        f"+++ {name}",
        "@@ -3 +3 @@",
        "-headimg: http://old/1.png",
        "+headimg: s3://b/1.png",
    ]
    assert "\r" not in diff


def test_unified_diff_marks_a_missing_final_newline_and_empty_when_unchanged(tmp_path: Path) -> None:
    article = _article(tmp_path / "a.md", "a\n![x](http://old/1.png)")
    diff = unified_diff(article, "a\n![x](s3://b/1)")
    assert diff.splitlines()[2:] == [
        "@@ -2 +2 @@",
        "-![x](http://old/1.png)",
        "\\ No newline at end of file",
        "+![x](s3://b/1)",
        "\\ No newline at end of file",
    ]
    assert unified_diff(article, article.text) == ""


def test_write_atomic_creates_a_missing_file_with_umask_permissions(tmp_path: Path) -> None:
    path = tmp_path / "new.md"
    write_atomic(path, b"hello")
    umask = os.umask(0)
    os.umask(umask)
    assert path.read_bytes() == b"hello"
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
