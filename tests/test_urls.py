"""urls.resolve turns what an article says into the URL we fetch (redaction: tests/test_redaction.py)."""

from __future__ import annotations

import pytest

from archiver.errors import UrlError
from archiver.urls import MAX_URL_LENGTH, resolve

BASE = "https://blog.example.com/posts/2021/hello.html"


@pytest.mark.parametrize(
    ("raw", "base", "expected"),
    [
        # absolute URLs are kept, lightly normalised
        ("https://img.example.com/a.jpg", "", "https://img.example.com/a.jpg"),
        ("  https://img.example.com/a.jpg\n", "", "https://img.example.com/a.jpg"),
        ("HTTPS://IMG.Example.COM/A.jpg", "", "https://img.example.com/A.jpg"),
        ("http://img.example.com:80/a.jpg", "", "http://img.example.com/a.jpg"),
        ("https://img.example.com:443/a.jpg", "", "https://img.example.com/a.jpg"),
        ("https://img.example.com:8443/a.jpg", "", "https://img.example.com:8443/a.jpg"),
        ("https://img.example.com", "", "https://img.example.com/"),
        ("https://img.example.com/a.jpg#section", "", "https://img.example.com/a.jpg"),
        ("https://img.example.com/a/../b/./c.jpg", "", "https://img.example.com/b/c.jpg"),
        ("https://img.example.com/../../a.jpg", "", "https://img.example.com/a.jpg"),
        ("https://img.example.com/dir/..", "", "https://img.example.com/"),
        # percent-encoding: spaces and non-ASCII encoded once, existing escapes kept, stray % fixed
        ("https://img.example.com/my photo.jpg", "", "https://img.example.com/my%20photo.jpg"),
        ("https://img.example.com/my%20photo.jpg", "", "https://img.example.com/my%20photo.jpg"),
        ("https://img.example.com/画像/ä.png", "", "https://img.example.com/%E7%94%BB%E5%83%8F/%C3%A4.png"),
        ("https://img.example.com/%E7%94%BB.png", "", "https://img.example.com/%E7%94%BB.png"),
        ("https://img.example.com/100%.png", "", "https://img.example.com/100%25.png"),
        ("https://img.example.com/a.jpg?w=1 0&q=ü", "", "https://img.example.com/a.jpg?w=1%200&q=%C3%BC"),
        ("https://img.example.com/a.jpg?x=%2F&y=a/b?c", "", "https://img.example.com/a.jpg?x=%2F&y=a/b?c"),
        ("https://img.example.com/a.jpg?imageView2/2/w/800|q", "", "https://img.example.com/a.jpg?imageView2/2/w/800%7Cq"),
        # CORS-proxy wrapped URLs keep their inner URL as the query
        ("https://proxy.example/?http://h.example/i.jpg", "", "https://proxy.example/?http://h.example/i.jpg"),
        # IDNA hosts
        ("https://münchen.example/a.jpg", "", "https://xn--mnchen-3ya.example/a.jpg"),
        ("https://bücher.example/ü.jpg", "", "https://xn--bcher-kva.example/%C3%BC.jpg"),
        ("http://[::1]:8080/a.jpg", "", "http://[::1]:8080/a.jpg"),
        # relative, root-relative and protocol-relative
        ("/assets/a.jpg", BASE, "https://blog.example.com/assets/a.jpg"),
        ("a.jpg", BASE, "https://blog.example.com/posts/2021/a.jpg"),
        ("./img/a.jpg", BASE, "https://blog.example.com/posts/2021/img/a.jpg"),
        ("../a.jpg", BASE, "https://blog.example.com/posts/a.jpg"),
        ("../../../../a.jpg", BASE, "https://blog.example.com/a.jpg"),
        ("a.jpg?v=2", "https://blog.example.com", "https://blog.example.com/a.jpg?v=2"),
        ("//cdn.example.com/a.jpg", BASE, "https://cdn.example.com/a.jpg"),
        ("//cdn.example.com/a.jpg", "http://blog.example.com/", "http://cdn.example.com/a.jpg"),
        ("//cdn.example.com/a.jpg", "", "https://cdn.example.com/a.jpg"),
        # browser leniency for http URLs
        ("https:\\\\img.example.com\\dir\\a.jpg", "", "https://img.example.com/dir/a.jpg"),
        ("https:/img.example.com/a.jpg", "", "https://img.example.com/a.jpg"),
        ("https:///img.example.com/a.jpg", "", "https://img.example.com/a.jpg"),
        ("https://user:pa ss@img.example.com/a.jpg", "", "https://user:pa%20ss@img.example.com/a.jpg"),
    ],
)
def test_resolve(raw: str, base: str, expected: str) -> None:
    assert resolve(raw, base) == expected


def test_resolve_is_idempotent() -> None:
    once = resolve("https://münchen.example/画 像/../a b.jpg?q=ä#x", "")
    assert resolve(once, "") == once


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("javascript:alert(1)", "javascript: URLs are never fetched"),
        ("JavaScript:alert(1)", "javascript: URLs are never fetched"),
        ("java\tscript:alert(1)", "javascript: URLs are never fetched"),
        ("vbscript:msgbox", "vbscript: URLs are never fetched"),
        ("data:image/png;base64,iVBORw0KGgo=", "data: URLs are never fetched"),
        ("file:///etc/passwd", "file: URLs are never fetched"),
        ("ftp://ftp.example.com/a.jpg", "ftp: URLs are never fetched"),
        ("gopher://example.com/", "gopher: URLs are never fetched"),
        ("C:\\pictures\\a.jpg", "c: URLs are never fetched"),
        ("https:///", "URL has no host"),
        ("http://", "URL has no host"),
        ("https://img.example.com:99999/a.jpg", "invalid port"),
        ("https://img.example.com:8x/a.jpg", "invalid port"),
        ("https://[::1/a.jpg", "malformed host"),
        ("https://img example.com/a.jpg", "invalid character in host"),
        ("", "empty URL"),
    ],
)
def test_refused(raw: str, reason: str) -> None:
    with pytest.raises(UrlError) as info:
        resolve(raw, BASE)
    assert reason in info.value.reason
    assert info.value.outcome == "rejected"


@pytest.mark.parametrize("raw", ["/assets/a.jpg", "a.jpg", "../a.jpg", "?v=1"])
def test_relative_without_base_is_reported_not_guessed(raw: str) -> None:
    with pytest.raises(UrlError, match=r"relative URL and no \[articles\] base_url"):
        resolve(raw, "")


def test_too_long_url_is_refused_and_not_echoed_whole() -> None:
    raw = "https://img.example.com/" + "a" * MAX_URL_LENGTH
    with pytest.raises(UrlError, match="longer than 8192") as info:
        resolve(raw, "")
    assert len(str(info.value)) < 400


def test_huge_data_url_is_not_echoed_whole() -> None:
    with pytest.raises(UrlError) as info:
        resolve("data:image/png;base64," + "A" * 5000, "")
    assert len(str(info.value)) < 200


def test_credentials_never_appear_in_url_errors() -> None:
    with pytest.raises(UrlError) as info:
        resolve("https://alice:s3cret@img.example.com:99999/a.jpg", "")
    assert "s3cret" not in str(info.value)
