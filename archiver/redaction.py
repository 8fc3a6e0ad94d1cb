"""The one rule for secrets in URLs: what counts as one, and the form of a URL that may be logged, shown or stored.

A URL carries a secret when it has credentials (``user:password@``) or a query, fragment or path parameter
whose name is a secret's (``is_secret_name``: token, key, api_key, sig, signature, password, auth, session,
every ``X-Amz-*``/``X-Goog-*``, names ending in token, secret, password, key, signature, …), or a parameter
whose percent-encoded value is itself such a URL or query (``?url=https%3A%2F%2F…%3Ftoken%3D…``). The names
are compared after percent-decoding and without case, ``-`` or ``_``, and the URL is judged in every spelling
an article may use and a browser would still read as that URL: HTML character references (``&#64;``,
``&amp;token=``), Markdown backslash escapes, tabs and newlines inside it, surrounding whitespace, ``\\`` for
``/`` and any number of slashes after an http(s) scheme (``http:\\\\user:pw@host``, ``http:user:pw@host``).
``redact`` replaces credentials by ``***@`` and each secret value by ``***``; everything else stays, so a
reader can still find the image. ``redact_text`` does the same to every URL inside a free text (an error
message, a log line). The manifest, object metadata, logs, the summary, ``status`` and reports all pass
through them (the terminal's output functions apply ``redact_text`` to everything they print); a span that
``has_secret`` is never stored as written.
"""

from __future__ import annotations

import functools
import html
import re
from urllib.parse import unquote, unquote_plus

MASK = "***"

# Compared after lower-casing and removing everything but letters and digits ("X-Amz-Signature" -> "xamzsignature").
# Names that merely identify (a cache-busting "hash", a "client_id") are not secrets: a span holding a secret is not
# stored, so `restore` could not put it back.
_SECRET_NAMES = frozenset({
    "token", "key", "apikey", "sig", "signature", "secret", "password", "passwd", "pwd", "pass", "passphrase",
    "auth", "authorization", "session", "sid", "jsessionid", "phpsessid", "aspsessionid", "credential", "hmac",
    "jwt", "bearer", "otp", "awsaccesskeyid", "clientsecret", "hdnts", "hdnea", "policy",
})  # fmt: skip
_SECRET_PREFIXES = ("xamz", "xgoog", "xmssig", "xoss", "aspsessionid")
_SECRET_SUFFIXES = ("token", "secret", "password", "passwd", "apikey", "signature", "sessionid", "sessid",
                    "accesskey", "accesskeyid", "secretkey", "privatekey", "subscriptionkey", "sessionkey",
                    "passkey", "sharedkey", "accountkey", "masterkey", "clientkey", "credential", "credentials",
                    "authkey", "sig")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
_MD_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_TAB_NEWLINE = re.compile(r"[\t\n\r]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
# Schemes whose authority starts after any run of "/" or "\" (WHATWG "special" schemes; urls.resolve does the same)
_SPECIAL = frozenset({"http", "https", "ws", "wss", "ftp"})
_STRIP = "".join(chr(c) for c in range(0x21))  # C0 controls and space: a browser strips them around a URL
# A token of free text that may be a URL (or a part of one with a query, fragment, path parameter or credentials)
_TEXT_TOKEN = re.compile(r"[^\s\"'<>`\x00-\x1f\x7f]+")
_URL_START = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*:[/\\]|(?<![:/\\])[/\\]{2}")
_DATABASE = re.compile(r"(?i)postgres(?:ql)?://")
_URLISH = re.compile(r"[?#;@]|[:/\\][/\\]|%[0-9A-Fa-f]{2}")


@functools.lru_cache(maxsize=4096)  # a few names (w, h, token, ...) make up nearly every query
def is_secret_name(name: str) -> bool:
    """Whether a parameter of this name holds a secret (its value is never shown or stored)."""
    norm = _NOT_ALNUM.sub("", unquote_plus(name).lower())
    if not norm:
        return False
    return norm in _SECRET_NAMES or norm.startswith(_SECRET_PREFIXES) or norm.endswith(_SECRET_SUFFIXES)


def decoded(text: str, *, markdown: bool = True) -> str:
    """``text`` as a browser or a Markdown renderer would read the URL it spells, which is the one judged: HTML
    character references decoded, Markdown backslash escapes too (unless not ``markdown``), tabs and newlines
    removed, surrounding whitespace and control characters stripped."""
    if "&" in text:
        text = html.unescape(text)
    if markdown and "\\" in text:
        text = _MD_ESCAPE.sub(r"\1", text)
    return _TAB_NEWLINE.sub("", text).strip(_STRIP)


def _authority(text: str) -> tuple[int, int] | None:
    """Where the authority (``user:pw@host:port``) of the URL ``text`` starts and ends; None if it has none."""
    m = _SCHEME.match(text)
    start = m.end() if m else 0
    if m and m.group(1).lower() in _SPECIAL:
        while start < len(text) and text[start] in "/\\":
            start += 1
    elif text.startswith(("//", "\\\\", "/\\", "\\/"), start):
        start += 2
    else:
        return None
    end = len(text)
    for stop in "/\\?#":
        at = text.find(stop, start)
        if 0 <= at < end:
            end = at
    return start, end


def _redact_value(value: str, depth: int) -> str:
    """A parameter value that is not a secret's, with the secrets of a URL or query percent-encoded inside it
    (``url=https%3A%2F%2Fh%2Fa.jpg%3Ftoken%3Dx``) masked; the value as given when it holds none."""
    if "%" not in value or depth > 4:
        return value
    inner = unquote(value)
    if inner == value:
        return value
    shown = _redact(inner, depth + 1) if _authority(inner) or "?" in inner else _redact_params(inner, "&;", depth + 1)
    return value if shown == inner else shown


def _redact_params(part: str, separators: str, depth: int) -> str:
    out: list[str] = []
    for piece in re.split(f"([{re.escape(separators)}])", part):
        if piece and piece in separators:
            out.append(piece)
            continue
        name, eq, value = piece.partition("=")
        if eq and is_secret_name(name):
            out.append(f"{name}={MASK}")
        elif eq:
            out.append(f"{name}={_redact_value(value, depth)}")
        else:
            out.append(piece)
    return "".join(out)


def _redact(text: str, depth: int) -> str:
    out = text
    span = _authority(out)
    if span is not None:
        at = out.rfind("@", *span)
        if at >= 0:
            user, colon, _password = out[span[0] : at].partition(":")
            if _DATABASE.match(out):  # a database's user name is not a secret (its password is): "user:***@"
                out = out[: span[0]] + user + (colon + MASK if colon else "") + out[at:]
            else:  # a user name alone can be a token (https://TOKEN@host)
                out = out[: span[0]] + MASK + out[at:]
    head, hash_, fragment = out.partition("#")
    path, q, query = head.partition("?")
    if ";" in path or "=" in path:
        span = _authority(path)
        cut = span[1] if span else 0
        path = path[:cut] + _redact_params(path[cut:], ";/", depth)
    if query:
        query = _redact_params(query, "&;", depth)
    if fragment:
        fragment = _redact_params(fragment, "&;", depth)
    return path + q + query + hash_ + fragment


def redact(url: str) -> str:
    """``url`` (in any spelling) safe to log, show or store: ``user:password@`` becomes ``***@`` and the value of
    every secret parameter ``***``. A URL with no secret comes back exactly as given; one with a secret comes back
    decoded (character references, escapes) with its secrets masked. Never raises."""
    text = decoded(url)
    out = _redact(text, 0)
    if out == text and "\\" in url:  # "\\" is "\" in Markdown, but "//" in an HTML attribute: judge both readings
        text = decoded(url, markdown=False)
        out = _redact(text, 0)
    return url if out == text else out


def has_secret(text: str) -> bool:
    """Whether ``text`` (a URL as written, in any spelling) carries credentials or a secret parameter."""
    return redact(text) != text


def redact_text(text: str) -> str:
    """``text`` (a message, a reason, a log line) with every URL in it redacted; the same text when none has a
    secret."""
    if not _URLISH.search(text):
        return text

    def one(m: re.Match[str]) -> str:
        token = m.group()
        if not _URLISH.search(token):
            return token
        start = _URL_START.search(token)  # "![alt](http://…)": the URL starts inside the token
        head, rest = (token[: start.start()], token[start.start() :]) if start else ("", token)
        core = rest.rstrip(").,:!]}")  # the sentence's punctuation, not the URL's
        return head + redact(core) + rest[len(core) :]

    return _TEXT_TOKEN.sub(one, text)
