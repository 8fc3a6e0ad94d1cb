"""The one rule for secrets in URLs: what counts as one, and the form of a URL that may be logged, shown or stored.

A URL carries a secret when it has credentials (``user:password@``) or a query, fragment or path parameter
whose name is a secret's (``is_secret_name``: token, key, api_key, sig, signature, password, auth, session,
every ``X-Amz-*``/``X-Goog-*``, names ending in token, secret, password, key, signature, …). The names are
compared after percent-decoding and without case, ``-`` or ``_``, and the URL is judged in every spelling an
article may use: HTML character references (``&#64;``, ``&amp;token=``) and Markdown backslash escapes are
decoded first. ``redact`` replaces credentials by ``***@`` and each secret value by ``***``; everything else
stays, so a reader can still find the image. Logs, the summary, ``status``, reports, the manifest and object
metadata all use ``redact``; a span that ``has_secret`` is never stored as written.
"""

from __future__ import annotations

import html
import re
from urllib.parse import unquote_plus

MASK = "***"

# Compared after lower-casing and removing everything but letters and digits ("X-Amz-Signature" -> "xamzsignature").
# Names that merely identify (a cache-busting "hash", a "client_id") are not secrets: a span holding a secret is not
# stored, so `restore` could not put it back.
_SECRET_NAMES = frozenset({
    "token", "key", "apikey", "sig", "signature", "secret", "password", "passwd", "pwd", "pass", "passphrase",
    "auth", "authorization", "session", "sid", "jsessionid", "phpsessid", "aspsessionid", "credential", "hmac",
    "jwt", "bearer", "otp", "awsaccesskeyid", "clientsecret",
})  # fmt: skip
_SECRET_PREFIXES = ("xamz", "xgoog", "xmssig", "xoss")
_SECRET_SUFFIXES = ("token", "secret", "password", "passwd", "apikey", "signature", "sessionid", "accesskey",
                    "secretkey", "privatekey", "subscriptionkey", "credential", "credentials", "authkey", "sig")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
_MD_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_SCHEME_AUTHORITY = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*:)?//")


def is_secret_name(name: str) -> bool:
    """Whether a parameter of this name holds a secret (its value is never shown or stored)."""
    norm = _NOT_ALNUM.sub("", unquote_plus(name).lower())
    if not norm:
        return False
    return (norm in _SECRET_NAMES or norm.startswith(_SECRET_PREFIXES) or norm.endswith(_SECRET_SUFFIXES))


def decoded(text: str) -> str:
    """``text`` with HTML character references and Markdown backslash escapes decoded: the URL a browser or a
    Markdown renderer would see, which is the one judged."""
    if "&" in text:
        text = html.unescape(text)
    if "\\" in text:
        text = _MD_ESCAPE.sub(r"\1", text)
    return text


def _redact_params(part: str, separators: str) -> str:
    out: list[str] = []
    for piece in re.split(f"([{re.escape(separators)}])", part):
        if piece in separators and piece:
            out.append(piece)
            continue
        name, eq, _value = piece.partition("=")
        out.append(f"{name}={MASK}" if eq and is_secret_name(name) else piece)
    return "".join(out)


def redact(url: str) -> str:
    """``url`` (in any spelling) safe to log, show or store: ``user:password@`` becomes ``***@`` and the value of
    every secret parameter ``***``. A URL with no secret comes back exactly as given. Never raises."""
    text = decoded(url)
    out = text
    m = _SCHEME_AUTHORITY.match(out)
    if m:
        start = m.end()
        end = len(out)
        for stop in "/?#\\":
            at = out.find(stop, start)
            if 0 <= at < end:
                end = at
        at = out.rfind("@", start, end)
        if at >= 0:
            out = out[:start] + MASK + out[at:]
    head, hash_, fragment = out.partition("#")
    path, q, query = head.partition("?")
    if ";" in path:
        path = _redact_params(path, ";")
    if query:
        query = _redact_params(query, "&;")
    if fragment:
        fragment = _redact_params(fragment, "&;")
    out = path + q + query + hash_ + fragment
    return url if out == text else out


_URL_IN_TEXT = re.compile(r"""[A-Za-z][A-Za-z0-9+.-]*://[^\s'"<>()\[\]{}]+""")


def redact_text(text: str) -> str:
    """Free text (an error message) with every URL in it redacted."""
    return _URL_IN_TEXT.sub(lambda m: redact(m.group(0)), text)


def has_secret(text: str) -> bool:
    """Whether ``text`` (a URL as written, in any spelling) carries credentials or a secret parameter."""
    return redact(text) != text
