"""Walking article trees and decoding articles byte-exactly (real files on disk, no mocks)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.articles.files import detect_format, iter_article_paths, load_article
from archiver.articles.rewrite import TEMP_PREFIX, render
from archiver.errors import ArticleError
from tests.support.files import CORPUS_NAMES, run_unprivileged
from tests.support.paths import FIXTURES_DIR

FIXTURES = FIXTURES_DIR / "articles"
EXTENSIONS = (".md", ".markdown", ".html", ".htm")
JA = "日本語のテキストです。これはテストのための文章で、画像の参照を含みます。\n"
ZH = "这是一个测试文章，包含图片链接。我们需要检测编码。"

# name -> (bytes on disk, encodings acceptable for it, the text a reader must get)
ROUND_TRIPS: dict[str, tuple[bytes, tuple[str, ...], str]] = {
    "crlf.md": (b"---\r\ntitle: a\r\n---\r\nbody\r\n", ("utf-8",), "---\r\ntitle: a\r\n---\r\nbody\r\n"),
    "mixed-endings.md": (b"a\r\nb\nc\rd\r\n\n", ("utf-8",), "a\r\nb\nc\rd\r\n\n"),
    "no-final-newline.md": (b"---\ntitle: x\n---\nend", ("utf-8",), "---\ntitle: x\n---\nend"),
    "trailing-spaces.md": (b"line   \n   \n\t \n", ("utf-8",), "line   \n   \n\t \n"),
    "nbsp.md": ("a\u00a0b\u3000c\n".encode(), ("utf-8",), "a\u00a0b\u3000c\n"),
    "entities.html": (b"<p>&#123;x&#125; &amp; &nbsp;</p>", ("utf-8",), "<p>&#123;x&#125; &amp; &nbsp;</p>"),
    "newline-before-front-matter.md": (b"\n---\ntitle: x\n---\n", ("utf-8",), "\n---\ntitle: x\n---\n"),
    "empty.md": (b"", ("utf-8",), ""),
    "bom.md": (b"\xef\xbb\xbf---\ntitle: x\n---\n", ("utf-8-sig",), "---\ntitle: x\n---\n"),
    "utf16le.md": (b"\xff\xfe" + "title: 文\r\n".encode("utf-16-le"), ("utf-16", "utf-16-le"), "title: 文\r\n"),
    "utf16be.md": (b"\xfe\xff" + "title: 文\r\n".encode("utf-16-be"), ("utf-16", "utf-16-be"), "title: 文\r\n"),
    "utf32le.md": (b"\xff\xfe\x00\x00" + "a 😀\n".encode("utf-32-le"), ("utf-32", "utf-32-le"), "a 😀\n"),
    "gbk.html": (
        f'<html><head><meta charset="gbk"></head><body>{ZH}</body></html>'.encode("gbk"),
        ("gb18030",),
        f'<html><head><meta charset="gbk"></head><body>{ZH}</body></html>',
    ),
    "gb2312-http-equiv.html": (
        f'<meta http-equiv="Content-Type" content="text/html; charset=gb2312">\n<p>{ZH}</p>'.encode("gb2312"),
        ("gb18030",),
        f'<meta http-equiv="Content-Type" content="text/html; charset=gb2312">\n<p>{ZH}</p>',
    ),
    "shift-jis-undeclared.md": ((JA * 3).encode("shift_jis"), ("shift_jis", "cp932"), JA * 3),
    "cp1252.md": ("Café “déjà vu” naïve résumé\n".encode("cp1252"), ("cp1252",), "Café “déjà vu” naïve résumé\n"),
}


@pytest.mark.parametrize("name", sorted(ROUND_TRIPS))
def test_load_then_render_unchanged_gives_the_same_bytes(tmp_path: Path, name: str) -> None:
    raw, encodings, text = ROUND_TRIPS[name]
    path = tmp_path / name
    path.write_bytes(raw)
    article = load_article(path)
    assert article.raw == raw
    assert article.encoding in encodings
    assert article.text.removeprefix("\ufeff") == text  # a BOM of the other byte order stays in the text
    assert article.text.encode(article.encoding) == raw
    assert render(article, []) == raw


@pytest.mark.parametrize(
    "fixture", sorted(p.relative_to(FIXTURES).as_posix() for p in FIXTURES.rglob("*.md")), ids=str
)
def test_fixture_articles_round_trip(fixture: str) -> None:
    article = load_article(FIXTURES / fixture)
    assert article.encoding == "utf-8"
    assert render(article, []) == article.raw == (FIXTURES / fixture).read_bytes()


def test_hexo_shape_fixture_kept_its_odd_bytes() -> None:
    raw = (FIXTURES / "hexo-shape-crlf.md").read_bytes()  # guards against end-of-line conversion by git
    assert raw.startswith(b"\n---\r\n") and b"\xc2\xa0" in raw and b"line\r\n" in raw
    assert raw.endswith(b"no newline   ")


def test_declared_charset_that_does_not_round_trip_is_not_used(tmp_path: Path) -> None:
    # 0x87 0x90 decodes in cp932 to a character that cp932 encodes differently: never written back that way.
    path = tmp_path / "nec.html"
    path.write_bytes(b'<meta charset="shift_jis">' + ("文字".encode("cp932") + b"\x87\x90") * 20)
    try:
        article = load_article(path)
    except ArticleError as exc:
        assert "byte-exactly" in exc.reason
    else:
        assert article.encoding not in ("shift_jis", "cp932")
        assert article.text.encode(article.encoding) == article.raw


def test_front_matter_charset_key_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_bytes("---\ncharset: latin-1\n---\nnaïve\n".encode())
    assert load_article(path).encoding == "utf-8"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"abc\x00def", "looks binary"),
        (b"\xef\xbb\xbfabc\xff\xfe", "cannot decode byte-exactly"),
        (bytes(range(1, 256)) * 4, "cannot decode byte-exactly"),
    ],
    ids=["nul-bytes", "bom-then-invalid-utf8", "random-bytes"],
)
def test_undecodable_files_are_refused_with_a_reason(tmp_path: Path, raw: bytes, reason: str) -> None:
    path = tmp_path / "bad.md"
    path.write_bytes(raw)
    with pytest.raises(ArticleError) as info:
        load_article(path)
    assert reason in str(info.value) and str(path) in str(info.value)


def test_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.md"
    path.write_bytes(b"x" * 11)
    with pytest.raises(ArticleError, match="limit"):
        load_article(path, max_bytes=10)
    assert load_article(path, max_bytes=11).text == "x" * 11


def test_an_article_is_read_whole_whatever_size_the_system_gave_for_it(tmp_path: Path) -> None:
    """An article is read in calls of about the size its metadata gives (not into a buffer of the 64 MB limit), so
    the bytes must still all come, and the limit still hold, when that size is wrong: a file that grew after it was
    measured, or one whose size is given as 0 (a file of /proc, a FUSE file)."""
    big = tmp_path / "big.md"
    raw = ("".join(f"line {i}: ![x](https://img.example/{i}.jpg)\n" for i in range(20_000))).encode()
    big.write_bytes(raw)
    assert len(raw) > 4 * 65536 and load_article(big).raw == raw  # several read calls
    status = Path("/proc/self/status")
    if status.exists():
        assert status.stat().st_size == 0
        assert b"Name:" in load_article(status).raw  # the size said 0: read until its end all the same
        with pytest.raises(ArticleError, match="limit"):
            load_article(status, max_bytes=10)  # and the limit holds on what was read


def test_missing_folder_and_fifo_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ArticleError, match="no such file"):
        load_article(tmp_path / "missing.md")
    with pytest.raises(ArticleError, match="folder"):
        load_article(tmp_path)
    os.mkfifo(tmp_path / "pipe.md")
    with pytest.raises(ArticleError, match="not a regular file"):
        load_article(tmp_path / "pipe.md")  # must not hang waiting for a writer


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder an unprivileged user can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="archiver-test-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder)


def test_unreadable_file_is_an_article_error(open_dir: Path) -> None:
    path = open_dir / "secret.md"
    path.write_bytes(b"hello")
    path.chmod(0o000)

    def attempt() -> str:
        try:
            load_article(path)
        except ArticleError as exc:
            return f"ArticleError: {exc}"
        return "read it"

    assert run_unprivileged(attempt) == f"ArticleError: {path}: cannot read: permission denied"


def test_detect_format() -> None:
    assert detect_format(Path("a/b.HTML")) == "html"
    assert detect_format(Path("a/b.htm")) == "html"
    assert detect_format(Path("a/b.md")) == "markdown"
    assert detect_format(Path("a/index.html.md")) == "markdown"
    assert detect_format(Path("README")) == "markdown"


def _touch(path: Path, data: bytes = b"x\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_walk_is_sorted_filtered_and_skips_hidden_temp_and_loops(tmp_path: Path) -> None:
    root = tmp_path / "posts"
    for name in ["b.md", "a.md", "Z.HTML", "sub/c.markdown", "sub/deeper/d.htm", "notes.txt",
                 ".hidden.md", ".git/x.md", ".archiver/y.md", f"{TEMP_PREFIX}0123.md", f"sub/{TEMP_PREFIX}x"]:
        _touch(root / name)
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)
    (root / "same-as-a.md").symlink_to(root / "a.md")
    (root / "broken.md").symlink_to(root / "nowhere.md")

    found = list(iter_article_paths([root], EXTENSIONS))
    assert [p.relative_to(root).as_posix() for p in found] == [
        "Z.HTML", "a.md", "b.md", "sub/c.markdown", "sub/deeper/d.htm"
    ]
    assert list(iter_article_paths([root], EXTENSIONS)) == found
    assert [p.name for p in iter_article_paths([root], ["md"])] == ["a.md", "b.md"]


def test_files_named_directly_are_yielded_whatever_their_extension(tmp_path: Path) -> None:
    notes = _touch(tmp_path / "notes.txt")
    folder = tmp_path / "posts"
    post = _touch(folder / "p.md")
    assert list(iter_article_paths([notes, folder, post], EXTENSIONS)) == [notes, post]


def test_missing_path_fails_before_anything_is_yielded(tmp_path: Path) -> None:
    _touch(tmp_path / "a.md")
    walk = iter_article_paths([tmp_path, tmp_path / "typo"], EXTENSIONS)
    with pytest.raises(ArticleError) as info:
        next(walk)
    assert info.value.reason == "no such file or folder" and info.value.path == tmp_path / "typo"




def test_walk_and_load_file_names_from_the_corpus(tmp_path: Path) -> None:
    for index, name in enumerate(CORPUS_NAMES):
        _touch(tmp_path / "新媒体" / name, f"---\ntitle: {index}\n---\n".encode())
    found = list(iter_article_paths([tmp_path], EXTENSIONS))
    assert [p.name for p in found] == sorted(CORPUS_NAMES)
    for path in found:
        assert load_article(path).text.startswith("---\ntitle: ")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=400) | st.text(max_size=200).map(lambda s: s.encode("utf-8")))
def test_any_bytes_are_decoded_exactly_or_refused(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "fuzz.md"
    path.write_bytes(raw)
    try:
        article = load_article(path)
    except ArticleError as exc:
        assert exc.path == path and exc.reason
        return
    assert article.text.encode(article.encoding) == raw
    assert render(article, []) == raw
