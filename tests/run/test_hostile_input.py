"""Bad input through the real CLI: hostile articles, URLs and images, served by the loopback origin.

Every article either comes out correctly rewritten (only the URL spans changed, every other byte kept)
or is reported in the summary with its file, line and reason and left byte-identical. Every URL is
fetched once, or reported as rejected and never fetched. Every image is archived with a thumbnail
that decodes, or reported; no worker crashes, and a worker's memory stays flat over 1 000 broken
images. Made-up hosts (img.news.test, ...) reach the origin through ``[fetch] connect_to``.
"""

from __future__ import annotations

import hashlib
import io
import random
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from archiver.articles.files import DEFAULT_MAX_BYTES
from archiver.cli import main
from archiver.config import ImagesConfig
from archiver.errors import ImageError, UrlError, WorkerDied
from archiver.fetch.sniff import sniff
from archiver.image import process as imaging
from archiver.run.pipeline import make_pool
from archiver.urls import MAX_URL_LENGTH, resolve
from tests.support.images import make_jpeg, make_png
from tests.support.origin import Server
from tests.support.paths import FIXTURES_DIR
from tests.support.site import write_config as site_config

FIXTURES = FIXTURES_DIR / "images"
HOSTS = ("img.news.test", "blog.test", "xn--bcher-kva.test")
IMG = "http://img.news.test"
A_JPG = make_jpeg(64, 48, seed=301)
B_PNG = make_png(40, 30, seed=302)


def key_url(data: bytes, ext: str) -> str:
    h = hashlib.sha256(data).hexdigest()
    return f"/archive/{h[:2]}/{h[2:4]}/{h}.{ext}"


A_NEW = key_url(A_JPG, "jpg")
B_NEW = key_url(B_PNG, "png")


def write_config(tmp: Path, origin: Server, extra: str = "") -> Path:
    return site_config(tmp, origin, extra, hosts=HOSTS, base_url="http://blog.test/posts/", retries=0, timeout=10)


def run(cfg: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = main(["run", "--config", str(cfg), "-q", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def problem_line(out: str, needle: Path | str) -> str:
    """The one summary line that names ``needle`` (an article path, ``path:line`` or a URL)."""
    lines = [line for line in out.splitlines() if line.lstrip().startswith("[") and f"{needle}" in line]
    assert len(lines) == 1, (needle, out[-3000:])
    return lines[0]


@pytest.fixture
def site(tmp_path: Path, origin: Server) -> Path:
    origin.add("/a.jpg", A_JPG, "image/jpeg")
    origin.add("/b.png", B_PNG, "image/png")
    folder = tmp_path / "site"
    folder.mkdir()
    return folder


# --- articles ------------------------------------------------------------------------------------

ZH = (
    "# 新闻标题\n\n今天北京的天气很好，我们去公园散步。这是一篇关于中国历史和文化的文章，内容非常丰富。\n\n"
    f"![图片]({IMG}/a.jpg)\n\n第二段：春节是中国最重要的传统节日，家家户户贴春联、放鞭炮、吃饺子。\n"
)
JA = (
    "# ニュース\n\n今日は東京の天気がとても良いです。私たちは公園を散歩しました。日本の歴史と文化についての記事です。\n\n"
    f"![画像]({IMG}/a.jpg)\n\n桜の季節になると、多くの人々が花見を楽しみます。\n"
)
HTML_GBK = f'<html><head><meta charset="gbk"><title>中文</title></head><body><p>你好，世界</p><img src="{IMG}/a.jpg"></body></html>'
HTML_SJIS = (
    '<html><head><meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS"></head>'
    f'<body><p>日本語のページ</p><img src="{IMG}/a.jpg"></body></html>'
)
# name -> (bytes on disk, the encoding the URL is written in, or None when the article must be refused)
ARTICLES: dict[str, tuple[bytes, str | None]] = {
    "gbk-detected.md": (ZH.encode("gbk"), "gbk"),
    "gb18030-detected.md": ((ZH + "罕见字：𠀀𠀁\n").encode("gb18030"), "gb18030"),
    "shift-jis-detected.md": (JA.encode("shift_jis"), "shift_jis"),
    "gbk-declared.html": (HTML_GBK.encode("gbk"), "gbk"),
    "shift-jis-declared.html": (HTML_SJIS.encode("shift_jis"), "shift_jis"),
    "utf-16-le-bom.md": (b"\xff\xfe" + ZH.encode("utf-16-le"), "utf-16-le"),
    "utf-16-be-bom.md": (b"\xfe\xff" + ZH.encode("utf-16-be"), "utf-16-be"),
    "utf-8-bom.md": (b"\xef\xbb\xbf" + ZH.encode(), "utf-8"),
    "mixed-line-endings.md": (f"a\r\n![x]({IMG}/a.jpg)\rb\n\r\n\n\r<img src='{IMG}/a.jpg'>\r\n\r".encode(), "utf-8"),
    "legacy-latin.md": (f"Caf\xe9 cr\xe8me br\xfbl\xe9e\n\n![x]({IMG}/a.jpg)\n".encode("cp1252"), "cp1252"),
    # refused, left byte-identical
    "invalid-utf-8.md": (ZH.encode() + b"a character cut short: \xe4\xb8 here\n", None),
    "nul-bytes.md": (f"![x]({IMG}/a.jpg)\nline two\x00\n".encode(), None),
    "utf-16-odd-length.md": (b"\xff\xfe" + ZH.encode("utf-16-le") + b"\x00", None),
    "png-renamed.md": ((FIXTURES / "pillow_pil123p.png").read_bytes(), None),
    "jpeg-renamed.md": ((FIXTURES / "pillow_hopper.jpg").read_bytes(), None),
    "webp-renamed.markdown": ((FIXTURES / "pillow_hopper.webp").read_bytes(), None),
}
REFUSED_REASONS = {  # name -> (line shown, reason)
    "invalid-utf-8.md": (8, "invalid UTF-8: byte 0xe4 is not valid here, in a file that is otherwise UTF-8"),
    "nul-bytes.md": (2, "looks binary (contains NUL bytes), not a text article"),
    "utf-16-odd-length.md": (None, "cannot decode byte-exactly: starts with a UTF-16LE byte-order mark but is not valid UTF-16LE"),
    "png-renamed.md": (3, "looks binary"),
    "jpeg-renamed.md": (1, "looks binary"),
    "webp-renamed.markdown": (1, "looks binary"),
}


def test_encodings_line_endings_and_binaries(site: Path, origin: Server, capsys: pytest.CaptureFixture[str]) -> None:
    for name, (raw, _) in ARTICLES.items():
        (site / name).write_bytes(raw)
    big = site / "over-the-limit.md"  # sparse: costs nothing on disk, refused from its size alone
    with big.open("wb") as handle:
        handle.truncate(DEFAULT_MAX_BYTES + 1)

    code, out, err = run(write_config(site.parent, origin), capsys)

    assert code == 0, out + err  # a refused article is reported, not a failure a re-run could fix
    assert "Traceback" not in out + err
    assert origin.hits("/a.jpg") == 1  # one fetch however many articles use it
    for name, (raw, encoding) in ARTICLES.items():
        after = (site / name).read_bytes()
        if encoding is None:
            assert after == raw, name
            line = problem_line(out, site / name)
            number, reason = REFUSED_REASONS[name]
            where = f"{site / name}:{number}  — " if number else f"{site / name}  — "
            assert line.lstrip().startswith(f"[skipped] {where}{reason}"), line
        else:
            old, new = f"{IMG}/a.jpg".encode(encoding), A_NEW.encode(encoding)
            assert raw.count(old) >= 1
            assert after == raw.replace(old, new), name  # only the URL spans changed, in the file's encoding
            assert f"{site / name}" not in out, name
    assert "larger than the 67108864-byte limit" in problem_line(out, big)
    assert big.stat().st_size == DEFAULT_MAX_BYTES + 1
    assert "10 articles scanned" in out  # the 7 refused files are not counted as scanned


def test_front_matter_a_site_generator_would_refuse_is_archived_with_a_warning_at_file_and_line(
    site: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unclosed block, invalid YAML, invalid TOML and YAML that is not a mapping: each is warned about with its
    file and line, and the article is processed as before (the run's outcome and exit code are unchanged)."""
    articles = {
        "unclosed.md": (f"\n---\ntitle: never closed\n\n![x]({IMG}/a.jpg)\n", 2, "front matter opened with --- is never closed"),
        "bad-yaml.md": (f"---\ntitle: x\ntags: [a, b\ncover: {IMG}/b.png\n---\n![x]({IMG}/a.jpg)\n", 4,
                        "front matter is not valid YAML (expected ',' or ']', but got ':')"),
        "tab-yaml.md": (f"---\r\ntitle: x\r\n\tcover: y\r\n---\r\n![x]({IMG}/a.jpg)\r\n", 3,
                        "front matter is not valid YAML"),
        "bad-toml.md": (f"+++\ntitle = 'x'\ntitle = 'again'\n+++\n![x]({IMG}/a.jpg)\n", 3,
                        "front matter is not valid TOML (Cannot overwrite a value)"),
        "not-a-mapping.md": (f"---\njust a sentence\n---\n![x]({IMG}/a.jpg)\n", 2,
                             "front matter is not a YAML mapping"),
    }
    for name, (text, _, _) in articles.items():
        (site / name).write_bytes(text.encode())
    (site / "fine.md").write_text(f"---\ntitle: fine\ncover: {IMG}/b.png\n---\n![x]({IMG}/a.jpg)\n")
    code, out, err = run(write_config(site.parent, origin), capsys)
    assert code == 0, out + err  # warnings are not failures
    assert "Traceback" not in out + err
    assert f"Warnings ({len(articles)}; these articles were archived all the same):" in out
    for name, (text, line, message) in articles.items():
        warning = next(x for x in out.splitlines() if f"{site / name}:" in x and "front matter" in x)
        assert warning.startswith(f"  {site / name}:{line}  — {message}"), warning
        expected = text.replace(f"{IMG}/a.jpg", A_NEW).replace(f"{IMG}/b.png", B_NEW)  # as before (line scan)
        assert (site / name).read_bytes() == expected.encode(), name
    assert "fine.md" not in out
    assert "unclosed.md:2: front matter opened with --- is never closed" not in err  # -q: the summary only


def test_a_50_mb_article_is_processed_in_bounded_time(
    site: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under the 64 MiB limit, so processed: a real 50 MB article is mostly an image pasted as a data: URI."""
    prose = "".join(f"Paragraph {i}: lorem ipsum dolor sit amet, *consectetur* [adipiscing](/x) elit.\n\n" for i in range(20_000))
    pasted = "A" * (48 * 1024 * 1024)
    text = (
        f"---\ntitle: big\nheadimg: {IMG}/b.png\n---\n\n![first]({IMG}/a.jpg)\n\n{prose}"
        f"![pasted](data:image/png;base64,{pasted})\n\n<img src=\"data:image/png;base64,{pasted[:1_000_000]}\">\n\n"
        f"last ![last]({IMG}/a.jpg)\n"
    )
    raw = text.encode()
    assert 50_000_000 < len(raw) < DEFAULT_MAX_BYTES
    path = site / "big.md"
    path.write_bytes(raw)
    started = time.monotonic()
    code, out, err = run(write_config(site.parent, origin), capsys)
    elapsed = time.monotonic() - started
    assert code == 0, out + err
    expected = raw.replace(f"{IMG}/a.jpg".encode(), A_NEW.encode()).replace(f"{IMG}/b.png".encode(), B_NEW.encode())
    assert path.read_bytes() == expected
    assert origin.hits("/a.jpg") == 1 and origin.hits("/b.png") == 1
    assert "Not archived" not in out  # data: URIs are never reported
    assert elapsed < 120, f"{elapsed:.1f} s for a 50 MB article"


@pytest.mark.parametrize(
    "tags", [20_000, pytest.param(100_000, marks=pytest.mark.slow)], ids=["20k-bounded", "100k-slow"]
)
def test_100_000_image_tags_in_one_article(
    tags: int, site: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """100 000 tags take ~20 s (two full scans: before fetching and at the rewrite); CI runs 20 000, the default
    [articles] max_refs."""
    unique = 300
    bodies = {f"/many/{i}.jpg": make_jpeg(16, 12, seed=1000 + i, quality=50) for i in range(unique)}
    for path, body in bodies.items():
        origin.add(path, body, "image/jpeg")
    lines = []
    for n in range(tags):
        url = f"{IMG}/many/{n % unique}.jpg"
        lines.append(f'<img src="{url}" alt="{n}">' if n % 2 else f"![{n}]({url})")
    raw = "\n\n".join(lines).encode() + b"\n"
    article = site / "many.md"
    article.write_bytes(raw)
    cfg = write_config(site.parent, origin)
    if tags > 20_000:  # past the default [articles] max_refs
        cfg.write_text(cfg.read_text().replace("[articles]\n", f"[articles]\nmax_refs = {tags}\n", 1))
    code, out, err = run(cfg, capsys)
    assert code == 0, out + err
    assert f"{tags} image references" in out and f"{unique} unique image URLs: {unique} archived" in out
    assert all(origin.hits(path) == 1 for path in bodies)  # one fetch per unique URL
    new = {f"{IMG}{path}".encode(): key_url(body, "jpg").encode() for path, body in bodies.items()}
    expected = re.sub(rb"http://img\.news\.test/many/\d+\.jpg", lambda m: new[m.group(0)], raw)
    assert article.read_bytes() == expected
    assert IMG.encode() not in expected


def test_deeply_nested_tags_quotes_and_lists(site: Path, origin: Server, capsys: pytest.CaptureFixture[str]) -> None:
    depth = 10_000
    md = (
        "<div>" * depth + f'<img src="{IMG}/a.jpg">' + "</div>" * depth + "\n\n"
        + ">" * depth + f" ![quoted]({IMG}/b.png)\n\n"
        + "".join("  " * i + "- item\n" for i in range(300)) + "\n\n"
        + f"![after the list]({IMG}/a.jpg)\n\n"
        + "[" * depth + f"![in brackets]({IMG}/b.png)" + "]" * depth + "\n"
    )
    html = "<picture>" * depth + f'<source srcset="{IMG}/b.png 2x">' + "<span>" * depth + f"<img src={IMG}/a.jpg>"
    (site / "deep.md").write_text(md, encoding="utf-8")
    (site / "deep.html").write_text(html, encoding="utf-8")
    code, out, err = run(write_config(site.parent, origin), capsys)
    assert code == 0, out + err
    assert origin.hits("/a.jpg") == 1 and origin.hits("/b.png") == 1
    new_md = md.replace(f"{IMG}/a.jpg", A_NEW).replace(f"{IMG}/b.png", B_NEW)
    assert (site / "deep.md").read_text(encoding="utf-8") == new_md
    assert (site / "deep.html").read_text(encoding="utf-8") == html.replace(f"{IMG}/a.jpg", A_NEW).replace(
        f"{IMG}/b.png", B_NEW
    )
    assert "6 image references" in out


UNTERMINATED = {
    # a browser drops a tag or comment that runs to the end of the file: nothing in it is an image
    "tag.html": f'<p><img src="{IMG}/a.jpg"></p>\n<img src="{IMG}/u1.jpg',
    "comment.html": f'<img src="{IMG}/a.jpg">\n<!-- old version: <img src="{IMG}/u2.jpg">\n<p>still comment</p>\n',
    "quote.html": f"<img src=\"{IMG}/a.jpg\">\n<img alt='it is broken src=\"{IMG}/u3.jpg\">\n<p>text</p>\n",
    "doctype.html": f'<img src="{IMG}/a.jpg"><!DOCTYPE html <img src="{IMG}/u4.jpg">',
    # Markdown: an unclosed image or HTML tag is literal text
    "unterminated.md": (
        f"![ok]({IMG}/a.jpg)\n\n![broken]({IMG}/u5.jpg\n\n<img src=\"{IMG}/u6.jpg\n\n"
        f"<!-- <img src=\"{IMG}/u7.jpg\">\n\n`![code]({IMG}/u8.jpg)\n"
    ),
}


def test_unterminated_tags_comments_and_quotes(site: Path, origin: Server, capsys: pytest.CaptureFixture[str]) -> None:
    for name, text in UNTERMINATED.items():
        (site / name).write_text(text, encoding="utf-8")
    code, out, err = run(write_config(site.parent, origin), capsys)
    assert code == 0, out + err
    assert origin.hits("/a.jpg") == 1
    for n in range(1, 9):
        assert origin.hits(f"/u{n}.jpg") == 0, n
    for name, text in UNTERMINATED.items():
        after = (site / name).read_text(encoding="utf-8")
        assert after == text.replace(f"{IMG}/a.jpg", A_NEW, 1), name
    assert "Not archived" not in out


def test_front_matter_that_is_invalid_yaml_or_toml(site: Path, origin: Server, capsys: pytest.CaptureFixture[str]) -> None:
    articles = {
        "yaml.md": (
            "---\ntitle: 'unclosed quote\ntags: [a, b\n\tdate: 2021-13-45\n"
            f"headimg: {IMG}/a.jpg\ncover: \"{IMG}/b.png\"\n---\nBody ![x]({IMG}/a.jpg)\n"
        ),
        "anchors.md": f"---\nimage: &img {IMG}/b.png\nthumbnail: *img\nbanner: *missing\n---\n",
        "toml.md": (
            f"+++\ntitle = \"unclosed\ndate = 2021-13-45T99\nthumbnail = \"{IMG}/a.jpg\"\n[cover\n"
            "weird = = =\n+++\nBody\n"
        ),
        "unclosed.md": f"---\ntitle: x\nheadimg: {IMG}/u9.jpg\n\n![body]({IMG}/b.png)\n",
    }
    for name, text in articles.items():
        (site / name).write_text(text, encoding="utf-8")
    code, out, err = run(write_config(site.parent, origin), capsys)
    assert code == 0, out + err
    assert origin.hits("/a.jpg") == 1 and origin.hits("/b.png") == 1 and origin.hits("/u9.jpg") == 0
    for name, text in articles.items():
        expected = text.replace(f"{IMG}/a.jpg", A_NEW).replace(f"{IMG}/b.png", B_NEW)
        assert (site / name).read_text(encoding="utf-8") == expected, name


# --- URLs ----------------------------------------------------------------------------------------

LONG_PATH = "/long/" + "x" * (8000 - len(IMG) - 10) + ".jpg"
TOO_LONG_PATH = "/long/" + "y" * (MAX_URL_LENGTH + 10) + ".jpg"
# (line as written, served path or None, its line after the run); None: reported as rejected, left as is
URL_LINES: list[tuple[str, str | None, str]] = [
    (f"![8 KB URL]({IMG}{LONG_PATH})", LONG_PATH, "![8 KB URL](NEW)"),
    ("<img src=\"http://bücher.test/u.jpg\">", "/u.jpg", "<img src=\"NEW\">"),
    (f"![unicode path]({IMG}/图片/文.jpg)", "/图片/文.jpg", "![unicode path](NEW)"),
    (f"<img src=\"{IMG}/a b.jpg\">", "/a b.jpg", "<img src=\"NEW\">"),
    (f"![angle brackets](<{IMG}/a b.jpg>)", "/a b.jpg", "![angle brackets](<NEW>)"),
    (f"<img src=\"{IMG}/odd[1]{{2}}^|`.jpg\">", "/odd[1]{2}^|`.jpg", "<img src=\"NEW\">"),
    (f"<img src=\"{IMG}/q.jpg?a=1&amp;b=&lt;2&gt;\">", "/q.jpg", "<img src=\"NEW\">"),
    (f"![fragment]({IMG}/a.jpg#top)", "/a.jpg", "![fragment](NEW#top)"),  # the fragment follows the archive URL
    (f"![dot segments]({IMG}/x/../y/./../a.jpg)", "/a.jpg", "![dot segments](NEW)"),
    (f"![encoded dots]({IMG}/x/%2e%2E/a.jpg)", "/a.jpg", "![encoded dots](NEW)"),
    ("![relative](../img/rel.jpg)", "/img/rel.jpg", "![relative](NEW)"),
    ("![above the root](../../../../../img/rel.jpg)", "/img/rel.jpg", "![above the root](NEW)"),
    (f"![too long]({IMG}{TOO_LONG_PATH})", None, "URL longer than 8192 characters"),
    ("![js](javascript:alert(1))", None, "javascript: URLs are never fetched"),
    ("<img src=\"JaVaScRiPt:alert(document.cookie)\">", None, "javascript: URLs are never fetched"),
    ("<img src=\"vbscript:msgbox(1)\">", None, "vbscript: URLs are never fetched"),
    ("![file](file:///etc/passwd.jpg)", None, "file: URLs are never fetched"),
    (f"![ftp](ftp://{IMG[7:]}/f.jpg)", None, "ftp: URLs are never fetched"),
    ("<img src=\"http://img news.test/a.jpg\">", None, "invalid character in host"),
]


def test_urls_through_the_cli(site: Path, origin: Server, capsys: pytest.CaptureFixture[str]) -> None:
    served = {path: make_jpeg(24, 16, seed=400 + i) for i, path in enumerate(sorted({p for _, p, _ in URL_LINES if p}))}
    for path, body in served.items():
        origin.add(path, body, "image/jpeg")
    data_uri = "![pasted](data:image/png;base64,iVBORw0KGgoAAAANSUhEUg==)"
    text = "\n\n".join([line for line, _, _ in URL_LINES] + [data_uri]) + "\n"
    article = site / "urls.md"
    article.write_text(text, encoding="utf-8")

    code, out, err = run(write_config(site.parent, origin), capsys)

    assert code == 0, out + err  # rejected URLs are reported, not failures
    expected = []
    for n, (line, path, after) in enumerate(URL_LINES):
        if path is None:
            expected.append(line)
            reported = problem_line(out, f"{article}:{2 * n + 1}  ")
            assert reported.lstrip().startswith("[rejected]") and after in reported, reported
        else:
            expected.append(after.replace("NEW", key_url(served[path], "jpg")))
    assert article.read_text(encoding="utf-8") == "\n\n".join([*expected, data_uri]) + "\n"
    for path in served:
        assert origin.hits(path) == 1, path  # fetched once, however it was spelled
    assert origin.total_hits() == len(served)  # nothing rejected was fetched
    assert "data:" not in out  # a data: URI is content, not a reference: never reported


SECRET = "FAKE-SECRET-7c1d93"


def test_credentials_in_urls_are_never_logged(site: Path, origin: Server, capsys: pytest.CaptureFixture[str]) -> None:
    text = (
        f"![with credentials](http://user:{SECRET}@img.news.test/a.jpg)\n\n"
        f"![gone](http://admin:{SECRET}@img.news.test/gone.jpg)\n\n"
        f"<img src=\"{IMG}/b.png?token={SECRET}&amp;w=2\">\n\n"
        f"![refused scheme](ftp://user:{SECRET}@img.news.test/c.jpg)\n\n"
        f"![bad port](http://user:{SECRET}@img.news.test:99999/d.jpg)\n"
    )
    article = site / "secrets.md"
    article.write_text(text, encoding="utf-8")
    code, out, err = run(write_config(site.parent, origin), capsys, "-v")  # -v: every request logged
    assert code == 0, out + err
    assert origin.hits("/a.jpg") == 1 and origin.hits("/gone.jpg") == 1 and origin.hits("/b.png") == 1
    assert "a.jpg" not in out and "[dead]" in problem_line(out, f"{article}:3  ")
    assert "[rejected]" in problem_line(out, f"{article}:7  ")
    assert "[rejected]" in problem_line(out, f"{article}:9  ")
    assert SECRET not in out and SECRET not in err
    assert "***" in out  # the URLs are still shown, redacted
    for path in (site.parent / ".archiver").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path  # manifest, WAL
    for path in (site.parent / "archive").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path  # object metadata of the local store
    after = article.read_text(encoding="utf-8")
    assert f"({A_NEW})" in after and f"\"{B_NEW}\"" in after  # the archived spans no longer carry secrets


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("http://bücher.test/x.jpg", "http://xn--bcher-kva.test/x.jpg"),
        ("http://☃.net/a.jpg", "http://xn--n3h.net/a.jpg"),
        ("HTTP://Img.News.Test:80/a b.jpg", "http://img.news.test/a%20b.jpg"),
        ("https://h.test:443/a.jpg", "https://h.test/a.jpg"),
        ("http://img.news.test/图片/文.jpg?q=文#frag", "http://img.news.test/%E5%9B%BE%E7%89%87/%E6%96%87.jpg?q=%E6%96%87"),
        ("http://h.test/x/../y/./../a.jpg", "http://h.test/a.jpg"),
        ("http://h.test/x/%2E%2e/.%2e/%2e./a.jpg", "http://h.test/a.jpg"),
        ("http://h.test/a%2F..%2Fb.jpg", "http://h.test/a%2F..%2Fb.jpg"),  # an encoded slash is not a separator
        ("http://h.test/a/..", "http://h.test/"),
        ("../../../../etc/a.jpg", "http://blog.test/etc/a.jpg"),  # never above the root
        ("//cdn.test/a.jpg", "http://cdn.test/a.jpg"),
        (" \t\nhttp://h.test/a\n.jpg\r\n ", "http://h.test/a.jpg"),
        ("http://h.test/%zz%41.jpg", "http://h.test/%25zz%41.jpg"),
        ("http://h.test/a.jpg?x=1|2&y=<3>", "http://h.test/a.jpg?x=1%7C2&y=%3C3%3E"),
        ("http://h.test/a\"b'c`.jpg", "http://h.test/a%22b'c%60.jpg"),
        ("http://h.test/\x00.jpg", "http://h.test/%00.jpg"),
        ("http:\\\\h.test\\a.jpg", "http://h.test/a.jpg"),
        ("http://[::FFFF:127.0.0.1]/a.jpg", "http://[::ffff:7f00:1]/a.jpg"),
        ("http://u:p%40ss@h.test/a.jpg", "http://u:p%40ss@h.test/a.jpg"),
        ("http://h.test/a.jpg#", "http://h.test/a.jpg"),
        ("#only-a-fragment", "http://blog.test/posts/a/"),
        ("http://h.test/" + "a" * (MAX_URL_LENGTH - 20), "http://h.test/" + "a" * (MAX_URL_LENGTH - 20)),
    ],
)
def test_resolve_table(raw: str, expected: str) -> None:
    assert resolve(raw, "http://blog.test/posts/a/") == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("javascript:alert(1)", "javascript: URLs are never fetched"),
        ("java\nscript:alert(1)", "javascript: URLs are never fetched"),  # browsers drop the newline too
        (" JAVASCRIPT:alert(1)", "javascript: URLs are never fetched"),
        ("vbscript:msgbox(1)", "vbscript: URLs are never fetched"),
        ("file:///etc/passwd", "file: URLs are never fetched"),
        ("ftp://h.test/a.jpg", "ftp: URLs are never fetched"),
        ("data:image/png;base64," + "A" * 100_000, "data: URLs are never fetched"),
        ("http://h.test/" + "a" * MAX_URL_LENGTH, f"URL longer than {MAX_URL_LENGTH} characters"),
        ("http://h.test:99999/a.jpg", "invalid port"),
        ("http://h te.st/a.jpg", "invalid character in host"),
        ("http://\u200b.test/a.jpg", "not a valid international domain name"),
        ("http:///", "URL has no host"),
        ("http://[::1/a.jpg", "malformed"),
        ("", "empty URL"),
    ],
)
def test_resolve_refuses(raw: str, reason: str) -> None:
    with pytest.raises(UrlError) as info:
        resolve(raw, "http://blog.test/")
    assert reason in info.value.reason
    assert len(str(info.value)) < 400  # a huge URL is never echoed whole


def test_resolve_never_shows_credentials_in_its_errors() -> None:
    for raw in (
        f"ftp://u:{SECRET}@h.test/a.jpg",
        f"http://u:{SECRET}@h te.st/",
        f"http://u:{SECRET}@h.test:99999/",
        f"http://u:{SECRET}@h.test/" + "a" * MAX_URL_LENGTH,
        f"http://u:{SECRET}@[::1/",
    ):
        with pytest.raises(UrlError) as info:
            resolve(raw, "")
        assert SECRET not in str(info.value), raw


# --- images --------------------------------------------------------------------------------------


def _generated() -> dict[str, bytes]:
    """Equivalents of corpus files not copied into the fixtures: RGBA and greyscale PNGs, 16-bit grey."""
    out = {"gen_rgba.png": make_png(300, 200, seed=501, alpha=True)}
    for name, mode in (("gen_grey.png", "L"), ("gen_grey16.png", "I;16")):
        buf = io.BytesIO()
        Image.open(io.BytesIO(make_png(500, 300, seed=502))).convert("L").convert(mode).save(buf, "PNG")
        out[name] = buf.getvalue()
    return out


def valid_images() -> dict[str, bytes]:
    files = {p.name: p.read_bytes() for p in sorted(FIXTURES.iterdir()) if p.suffix != ".md"}
    return {**files, **_generated()}


def broken_versions(name: str, data: bytes, flips: int = 2) -> Iterator[tuple[str, bytes]]:
    """Truncated at 10 %, 50 % and 90 %, and ``flips`` corrupted copies (seeded random byte flips)."""
    for pct in (10, 50, 90):
        yield f"cut{pct}-{name}", data[: len(data) * pct // 100]
    for n in range(flips):
        rng = random.Random(f"{name}/{n}")
        buf = bytearray(data)
        for _ in range(max(8, len(buf) // 2000)):
            at = rng.randrange(16, len(buf))  # past the magic number: the decoder, not the sniffer, meets them
            buf[at] ^= rng.randrange(1, 256)
        yield f"flip{n}-{name}", bytes(buf)


def test_every_image_and_its_broken_versions(site: Path, origin: Server, capsys: pytest.CaptureFixture[str]) -> None:
    valid = valid_images()
    broken = {bname: bdata for name, data in valid.items() for bname, bdata in broken_versions(name, data)}
    for name, data in {**valid, **broken}.items():
        origin.add(f"/img/{name}", data, "image/jpeg")
    lines = [f"![{name}]({IMG}/img/{name})" for name in [*valid, *broken]]
    article = site / "images.md"
    article.write_text("\n\n".join(lines) + "\n", encoding="utf-8")

    code, out, err = run(write_config(site.parent, origin), capsys)

    assert "Traceback" not in out + err and "internal error" not in out, out[-3000:]
    assert code == 0, out[-3000:] + err  # a broken image is rejected, never a failure or a crash
    rewritten = article.read_text(encoding="utf-8")
    archive = site.parent / "archive"
    for name, data in valid.items():
        assert f"{IMG}/img/{name})" not in rewritten, f"{name} was not archived"
        stored = key_url(data, sniff(data[:1024]).ext).removeprefix("/archive/")  # type: ignore[union-attr]
        assert (archive / stored).read_bytes() == data, name
        with Image.open(archive / (stored.rsplit(".", 1)[0] + "-320w.webp")) as thumb:
            thumb.load()  # decodes
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "malformed MPO file": the point of that fixture
                with Image.open(io.BytesIO(data)) as original:
                    width, height = original.size
                    if imaging._orientation(original) in (5, 6, 7, 8):
                        width, height = height, width
            assert thumb.width == min(320, width), name
            assert abs(thumb.height - round(height * thumb.width / width)) <= 1, name
    reported = 0
    for name, data in broken.items():
        if f"{IMG}/img/{name})" in rewritten:  # not archived: must be reported, with a reason
            line = problem_line(out, f"{IMG}/img/{name}  — ")
            assert line.lstrip().startswith("[rejected]"), line
            reported += 1
        else:  # the decoder made sense of it (a flipped byte in pixel data): a thumbnail that decodes
            stored = key_url(data, sniff(data[:1024]).ext).removeprefix("/archive/")  # type: ignore[union-attr]
            with Image.open(archive / (stored.rsplit(".", 1)[0] + "-320w.webp")) as thumb:
                thumb.load()
                assert thumb.width <= 320
    # Every truncated image is refused, GIFs included (Pillow decodes a GIF cut after a few frames). The
    # exception: the bad-MPO file holds two pictures, and the first, complete one ends before the 50 % cut.
    cut = [name for name in broken if name.startswith("cut") and not name.endswith("bad_mpo_header.jpg")]
    assert [name for name in cut if f"{IMG}/img/{name})" not in rewritten] == []
    assert reported >= len(cut), (reported, len(broken))


def _rss_kb(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        out.append(int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1)))  # type: ignore[union-attr]
    return out


def _broken_files(folder: Path, count: int, max_size: int) -> list[tuple[str, object, str, int]]:
    """``count`` broken images (cycling over truncated and corrupted versions of the fixtures) on disk."""
    pool = [
        (bname, bdata)
        for name, data in valid_images().items()
        if len(data) <= max_size
        for bname, bdata in broken_versions(name, data, flips=3)
        if sniff(bdata[:1024]) is not None
    ]
    jobs = []
    for i in range(count):
        name, data = pool[i % len(pool)]
        path = folder / f"{i}-{name}"
        path.write_bytes(data)
        jobs.append((str(path), sniff(data[:1024]), hashlib.sha256(data).hexdigest(), len(data)))
    return jobs


def _run_broken(tmp_path: Path, count: int, max_size: int) -> None:
    jobs = _broken_files(tmp_path, count, max_size)
    cfg = ImagesConfig()
    rejected = 0
    with make_pool(cfg.max_decode_seconds) as pool:
        rss: dict[int, list[int]] = {}
        for done in range(0, count, 50):
            futures = [pool.submit(imaging.process, *job, cfg) for job in jobs[done : done + 50]]
            for future in futures:
                try:
                    future.result(timeout=60)
                except ImageError as exc:
                    assert not isinstance(exc, WorkerDied), exc  # a crashed worker
                    rejected += 1
            if done + 50 in (100, count):
                rss[done + 50] = _rss_kb(sorted(pool.worker_pids()))  # the pool's worker processes
    print(f"worker RSS kB after 100 and {count}: {rss}; rejected {rejected}")
    assert rejected >= count // 2  # most are refused; a byte flip in pixel data can still decode
    for early, late in zip(rss[100], rss[count], strict=True):
        # flat: what a worker holds after 100 images it still holds after all of them, give or take
        assert late <= early * 1.2 + 16 * 1024, (rss, count)


def test_broken_images_do_not_crash_or_grow_workers(tmp_path: Path) -> None:
    """1 000 broken images through imaging.process in the pipeline's own process pool (bounded: ~10 s)."""
    _run_broken(tmp_path, 1_000, max_size=120_000)


@pytest.mark.slow
def test_soak_broken_images_do_not_grow_workers(tmp_path: Path) -> None:
    _run_broken(tmp_path, 10_000, max_size=10_000_000)
