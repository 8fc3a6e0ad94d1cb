"""The one rule for secrets in URLs (archiver.redaction): every name, every place in a URL, every spelling."""

from __future__ import annotations

import itertools

import pytest

from archiver.find.scan import decode_html, decode_markdown
from archiver.redaction import has_secret, is_secret_name, redact, redact_text
from archiver.urls import resolve

SECRET = "SEKRET-7f3a9c"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://alice:s3cret@img.example.com/a.jpg", "https://***@img.example.com/a.jpg"),
        ("https://alice@img.example.com/a.jpg", "https://***@img.example.com/a.jpg"),
        ("https://a:b@c@img.example.com/x@y.jpg", "https://***@img.example.com/x@y.jpg"),
        ("https://img.example.com/a@b.jpg", "https://img.example.com/a@b.jpg"),
        (
            "https://b.s3.amazonaws.com/k.jpg?X-Amz-Credential=AKIA&X-Amz-Signature=abc&w=300",
            "https://b.s3.amazonaws.com/k.jpg?X-Amz-Credential=***&X-Amz-Signature=***&w=300",
        ),
        ("https://img.example.com/a.jpg?token=t0k&size=l", "https://img.example.com/a.jpg?token=***&size=l"),
        ("https://img.example.com/a.jpg?w=300#frag", "https://img.example.com/a.jpg?w=300#frag"),
        ("not a url", "not a url"),
        # other spellings come back decoded, secrets masked
        ("http://img.test/a.jpg?w=1&amp;token=x", "http://img.test/a.jpg?w=1&token=***"),
        ("http://img.test/a.jpg?&#116;oken=x", "http://img.test/a.jpg?token=***"),
        ("http://img.test/a.jpg?%74oken=x&w=1", "http://img.test/a.jpg?%74oken=***&w=1"),
        ("http://img.test/a.jpg?w=1\\&token\\=x", "http://img.test/a.jpg?w=1&token=***"),
        ("http://u:p&#64;img.test/a.jpg", "http://***@img.test/a.jpg"),
        ("http:\\\\u:p@img.test\\a.jpg", "http:\\***@img.test\\a.jpg"),  # "\\\\": "//" in HTML, "\\" in Markdown
        ("http:u:p@img.test/a.jpg", "http:***@img.test/a.jpg"),
        (" http://u:p@img.test/a.jpg\n", "http://***@img.test/a.jpg"),
        ("http://img.test/a;jsessionid=x/b.jpg?w=1", "http://img.test/a;jsessionid=***/b.jpg?w=1"),
        ("http://img.test/a.jpg#access_token=x&state=1", "http://img.test/a.jpg#access_token=***&state=1"),
        ("http://p.test/?url=http%3A%2F%2Fi.test%2Fa.jpg%3Fsig%3Dx", "http://p.test/?url=http://i.test/a.jpg?sig=***"),
        # no secret: exactly as given, whatever the spelling
        ("http://img.test/a.jpg?w=1&amp;h=2", "http://img.test/a.jpg?w=1&amp;h=2"),
        ("http://img.test/a.jpg?hash=abc&client_id=7&v=%E2%82%AC", "http://img.test/a.jpg?hash=abc&client_id=7&v=%E2%82%AC"),
        ("data:image/png;base64,iVBORw0KGgo=", "data:image/png;base64,iVBORw0KGgo="),
        ("mailto:someone@example.com", "mailto:someone@example.com"),
    ],
)
def test_redact(url: str, expected: str) -> None:
    assert redact(url) == expected
    assert has_secret(url) == (expected != url)


NAMES = [
    "token", "access_token", "__token__", "id_token", "key", "api_key", "apiKey", "API-KEY", "X-Api-Key",
    "subscription-key", "Ocp-Apim-Subscription-Key", "sig", "signature", "oauth_signature", "X-Amz-Signature",
    "X-Amz-Credential", "X-Amz-Security-Token", "X-Goog-Signature", "X-Goog-Credential", "AWSAccessKeyId",
    "OSSAccessKeyId", "Policy", "password", "passwd", "pwd", "auth", "auth_key", "authorization", "session",
    "session_id", "sessionid", "sid", "PHPSESSID", "JSESSIONID", "ASPSESSIONIDQQGGGNCQ", "ASP.NET_SessionId",
    "client_secret", "secret", "hmac", "jwt", "hdnts", "private_key", "secret_key",
]  # fmt: skip
NOT_SECRETS = ["w", "width", "size", "format", "hash", "v", "client_id", "id", "keyword", "monkey", "page", "s"]


@pytest.mark.parametrize("name", NAMES)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", NOT_SECRETS)
def test_names_that_only_identify_are_kept(name: str) -> None:
    assert not is_secret_name(name)
    url = f"http://img.test/a.jpg?{name}=1"
    assert redact(url) == url


def _entity(ch: str) -> str:
    return f"&#{ord(ch)};"


# Each spelling turns a URL as written in plain text into how an article may write it.
SPELLINGS = {
    "plain": lambda u: u,
    "html &amp;": lambda u: u.replace("&", "&amp;"),
    "html &#38;": lambda u: u.replace("&", "&#38;"),
    "html named &#x": lambda u: u.replace("=", "&#x3D;").replace("@", "&#x40;"),
    "first letter as char ref": lambda u: u.replace("?", "?" + "\x00").replace("\x00" + u.split("?", 1)[1][:1],
                                                                              _entity(u.split("?", 1)[1][:1]))
    if "?" in u else u,
    "credentials &#64;": lambda u: u.replace("@", "&#64;"),
    "markdown escapes": lambda u: u.replace("&", "\\&").replace("=", "\\=").replace("_", "\\_"),
    "tab and newline inside": lambda u: u.replace("=", "\n=").replace("@", "\t@"),
    "whitespace around": lambda u: f"  {u}\n",
    "backslashes": lambda u: u.replace("://", ":\\\\"),
    "no slashes": lambda u: u.replace("://", ":"),
    "upper-case scheme": lambda u: "HTTP" + u[4:],
    "protocol-relative": lambda u: u[5:],
}
PLACES = {
    "userinfo": "http://editor:{s}@img.test/a.jpg?w=300",
    "user only": "http://{s}@img.test/a.jpg",
    "query": "http://img.test/a.jpg?w=300&{n}={s}",
    "first query parameter": "http://img.test/a.jpg?{n}={s}&w=300",
    "percent-encoded name": "http://img.test/a.jpg?w=1&%{hex}{rest}={s}",
    "fragment": "http://img.test/a.jpg#{n}={s}",
    "path parameter": "http://img.test/a.jpg;{n}={s}",
    "nested URL": "http://proxy.test/?url=http%3A%2F%2Fimg.test%2Fa.jpg%3F{n}%3D{s}",
}


@pytest.mark.parametrize(("place", "spelling", "name"), [
    (p, s, n) for p, s in itertools.product(PLACES, SPELLINGS) for n in ("token", "api_key", "X-Amz-Signature", "sig")
])  # fmt: skip
def test_every_spelling_of_every_place_is_redacted(place: str, spelling: str, name: str) -> None:
    url = PLACES[place].format(n=name, s=SECRET, hex=f"{ord(name[0]):02X}", rest=name[1:])
    written = SPELLINGS[spelling](url)
    assert has_secret(written), written
    assert SECRET not in redact(written), written
    # what is fetched: the reference as find/ reads it (Markdown escapes or HTML character references decoded)
    as_read = decode_markdown(written) if spelling == "markdown escapes" else decode_html(written)[0]
    try:
        fetched = resolve(as_read, "https://blog.test/")
    except Exception:  # noqa: BLE001 - not every spelling is a URL resolve accepts; those are never fetched
        return
    assert SECRET not in redact(fetched) and redact(redact(fetched)) == redact(fetched), fetched


def test_redact_never_raises_and_keeps_what_it_cannot_read() -> None:
    for text in ("", "http://", "http://[::1", "//", "?", "#", "@", "http://@", "a=b", "&#xZZ;", "%", "%zz=1",
                 "\udcff", "http://h/?%=x", "\\" * 50, "http:" + "/" * 1000, "http://h/?" + "&" * 1000):
        redact(text)
        redact_text(text)


def test_redact_text_masks_every_url_in_a_message() -> None:
    message = (f"redirect to http://u:{SECRET}@h.test/x: refused (see 'http://h.test/a?token={SECRET}'); "
               f"earlier (http://h.test/?sig={SECRET}), then /a.jpg?api_key={SECRET}.")
    shown = redact_text(message)
    assert SECRET not in shown
    assert shown == ("redirect to http://***@h.test/x: refused (see 'http://h.test/a?token=***'); "
                     "earlier (http://h.test/?sig=***), then /a.jpg?api_key=***.")
    assert redact_text("3 URLs: 2 archived, 1 dead (404 Not Found) in 1.2 s") == (
        "3 URLs: 2 archived, 1 dead (404 Not Found) in 1.2 s")
