"""Turns a URL as written in an article into the absolute, normalised http(s) URL we fetch.

Normalisation (what a browser would request): surrounding whitespace and embedded tabs/newlines removed,
scheme and host lower-cased, host IDNA-encoded (IDNA 2008 with UTS #46 via the ``idna`` package that
yarl already depends on; Python's IDNA 2003 codec as a fallback), default port dropped, ``\\`` in the path
read as ``/`` (as browsers do for http URLs), ``.``/``..`` segments resolved, spaces, non-ASCII and other
characters not allowed in a URL percent-encoded as UTF-8 while existing ``%XX`` escapes stay untouched
(a stray ``%`` becomes ``%25``), and the fragment dropped (it is never sent to the server).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit, urlunsplit

import idna

from archiver.errors import NoBaseUrl, UrlError
from archiver.redaction import redact

MAX_URL_LENGTH = 8192

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_STRIP = " \t\n\r\f\v\x00"
_HEX = set("0123456789abcdefABCDEF")
_DOT_SEGMENTS = {".": 1, "%2e": 1, "..": 2, ".%2e": 2, "%2e.": 2, "%2e%2e": 2}  # lower-cased
_UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PATH_SAFE = _UNRESERVED | set("!$&'()*+,;=:@/")
_QUERY_SAFE = _PATH_SAFE | set("?")
_USERINFO_SAFE = _UNRESERVED | set("!$&'()*+,;=:")

def _quote(text: str, safe: set[str]) -> str:
    """Percent-encode what is not in ``safe``; keep existing ``%XX`` escapes, encode a stray ``%``."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "%" and i + 2 < len(text) and text[i + 1] in _HEX and text[i + 2] in _HEX:
            out.append(text[i : i + 3])
            i += 3
            continue
        if ch in safe:
            out.append(ch)
        else:
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass")))
        i += 1
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4: resolve ``.`` and ``..`` segments (never above the root); as browsers do,
    ``%2e`` counts as a dot (``/%2e%2e/`` is ``/../``), so the server sees what a browser would send."""
    if not path:
        return "/"
    segments = path.split("/")
    out: list[str] = []
    for seg in segments[1:]:
        dots = _DOT_SEGMENTS.get(seg.lower())
        if dots == 1:
            continue
        if dots == 2:
            if out:
                out.pop()
            continue
        out.append(seg)
    trailing = segments[-1].lower() in _DOT_SEGMENTS
    result = "/" + "/".join(out)
    if trailing and not result.endswith("/"):
        result += "/"
    return result


def _encode_host(raw: str, host: str) -> str:
    host = host.lower()
    if host.startswith("["):
        if not host.endswith("]"):
            raise UrlError(raw, "malformed IPv6 host")
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            raise UrlError(raw, "malformed IPv6 host") from None
    if any(c in host for c in " <>\\^|%\"'`{}") or any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in host):
        raise UrlError(raw, f"invalid character in host {host!r}")
    if host.isascii():
        _check_punycode(raw, host)
        return host
    trailing_dot = host.endswith(".")
    try:
        encoded = idna.encode(host.rstrip("."), uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        try:
            encoded = host.rstrip(".").encode("idna").decode("ascii")
        except UnicodeError:
            raise UrlError(raw, f"host {host!r} is not a valid international domain name") from None
    _check_punycode(raw, encoded)
    return encoded + ("." if trailing_dot else "")


def _check_punycode(raw: str, host: str) -> None:
    """An ASCII host whose ``xn--`` labels do not decode (``xn--zz.test``) is refused here, as the HTTP client
    would refuse it later (it decodes the host the same two ways: IDNA 2008, then Python's IDNA 2003 codec)."""
    if "xn--" not in host:
        return
    try:
        idna.decode(host.encode("ascii"))
    except (idna.IDNAError, UnicodeError):
        try:
            host.encode("ascii").decode("idna")
        except UnicodeError:
            raise UrlError(raw, f"host {host!r} is not a valid international domain name") from None


def _join(raw: str, base_url: str) -> str:
    """An absolute URL for ``raw`` (scheme already known to be http(s) or absent)."""
    if _SCHEME.match(raw):
        return raw
    if raw.startswith(("//", "\\\\")):
        scheme = urlsplit(base_url).scheme.lower() if base_url else ""
        return f"{scheme if scheme in ('http', 'https') else 'https'}:{raw}"
    if not base_url:
        raise NoBaseUrl(raw, "relative URL and no [articles] base_url")
    base = urlsplit(base_url)
    if raw.startswith(("/", "\\")):
        return urlunsplit((base.scheme, base.netloc, raw, "", ""))
    if raw.startswith("?"):
        return urlunsplit((base.scheme, base.netloc, base.path or "/", raw[1:], ""))
    if raw.startswith("#") or raw == "":
        return urlunsplit((base.scheme, base.netloc, base.path or "/", base.query, ""))
    directory = (base.path or "/").rsplit("/", 1)[0] + "/"
    return urlunsplit((base.scheme, base.netloc, directory, "", "")) + raw


def resolve(raw: str, base_url: str) -> str:
    """The absolute, normalised http(s) URL for ``raw`` (entity-decoded, as written) relative to ``base_url``."""
    text = raw.strip(_STRIP).replace("\t", "").replace("\n", "").replace("\r", "")
    shown = text[:200] + ("..." if len(text) > 200 else "")
    if not text:
        raise UrlError(raw, "empty URL")
    scheme_match = _SCHEME.match(text)
    if scheme_match:
        scheme = scheme_match.group(1).lower()
        if scheme not in ("http", "https"):
            # data: URLs can be huge; never echo them whole.
            raise UrlError(redact(shown[:60]), f"{scheme}: URLs are never fetched")
    if len(text) > MAX_URL_LENGTH:
        raise UrlError(redact(shown), f"URL longer than {MAX_URL_LENGTH} characters")
    absolute = _join(text, base_url)
    scheme_end = absolute.index(":")
    scheme = absolute[:scheme_end].lower()
    rest = absolute[scheme_end + 1 :]
    # Browsers read "\" as "/" in the authority and path of http URLs.
    query_at = rest.find("?")
    head, tail = (rest, "") if query_at < 0 else (rest[:query_at], rest[query_at:])
    head = head.replace("\\", "/")
    head = "//" + head.lstrip("/")  # "http:host/x", "http:/host/x", "http:///host/x": http://host/x in browsers
    try:
        parts = urlsplit(f"{scheme}:{head}{tail}")
    except ValueError as exc:  # unbalanced [ ] in the host
        raise UrlError(redact(shown), f"malformed host ({exc})") from None
    netloc = parts.netloc
    userinfo, _, hostport = netloc.rpartition("@")
    if hostport.startswith("["):
        close = hostport.find("]")
        host, port_text = (hostport, "") if close < 0 else (hostport[: close + 1], hostport[close + 1 :])
        port_text = port_text[1:] if port_text.startswith(":") else port_text
    else:
        host, _, port_text = hostport.partition(":")
    if not host or host == "[]":
        raise UrlError(redact(shown), "URL has no host")
    host = _encode_host(redact(shown), host)
    port = ""
    if port_text:
        if not port_text.isdigit() or int(port_text) > 65535:
            raise UrlError(redact(shown), f"invalid port {port_text!r}")
        if int(port_text) != {"http": 80, "https": 443}[scheme]:
            port = f":{int(port_text)}"
    if userinfo:
        user, sep, password = userinfo.partition(":")
        userinfo = _quote(user, _USERINFO_SAFE) + sep + _quote(password, _USERINFO_SAFE) + "@"
    path = _quote(_remove_dot_segments(parts.path), _PATH_SAFE)
    query = _quote(parts.query, _QUERY_SAFE)
    return urlunsplit((scheme, f"{userinfo}{host}{port}", path, query, ""))


_KEPT_FRAGMENT = re.compile(r"#[A-Za-z0-9._~!$*+,;=:@/?%-]+\Z")


def kept_fragment(raw: str) -> str:
    """The ``#fragment`` of a URL as written (``#center``, an SVG sprite's ``#icon``), to follow the archive URL that
    replaces it; "" when there is none, or when it holds a character that could change the meaning of the text
    around it (quotes, ``&``, brackets, spaces: then it is dropped, as the fetch dropped it), or a secret value."""
    at = raw.find("#")
    if at < 0:
        return ""
    fragment = raw[at:].rstrip(_STRIP)
    if not _KEPT_FRAGMENT.match(fragment) or redact("http://h/" + fragment) != "http://h/" + fragment:
        return ""  # "#access_token=…": a secret never goes into the archive URL (nor the manifest's record of it)
    return fragment
