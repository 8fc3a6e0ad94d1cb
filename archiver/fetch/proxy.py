"""Which proxy a request goes through: HTTP_PROXY/HTTPS_PROXY/NO_PROXY, read once, with their own credentials.

This is the only thing the fetcher takes from the environment. ``~/.netrc`` is never read (aiohttp's
``trust_env`` would send its ``default`` login to every image host, and a proxy's too): credentials go only
where the user wrote them, ``user:password@`` in an article's URL (for that host) or ``[fetch] headers`` (for
that host), and a proxy's ``user:password@`` in its own variable (to that proxy only, as Proxy-Authorization).

Only ``http://`` proxies are used (aiohttp's own rule for the environment); a value without a scheme is read as
``http://``, one with another scheme is ignored with a warning. The fetcher connects to the proxy by the address
its name resolves to (``Proxy.url``), so the guard never has to trust a host name: a target URL on the proxy's
host name, at any port, is checked like any other.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit
from urllib.request import getproxies, proxy_bypass

from yarl import URL

from archiver.errors import ConfigError
from archiver.redaction import redact

log = logging.getLogger(__name__)

SCHEMES = ("http", "https")  # the target schemes a proxy variable may name


@dataclass(frozen=True)
class Proxy:
    """One configured proxy: where it is and the credentials it gets (Proxy-Authorization)."""

    host: str  # lower case, no brackets
    port: int
    authorization: str | None = None  # the Proxy-Authorization value ("Basic ...") from its user:password@

    def url(self, address: str) -> URL:
        """The proxy as aiohttp connects to it: by ``address`` (an IP literal: no name to resolve, nothing to trust)."""
        return URL.build(scheme="http", host=address, port=self.port)


def parse(value: str) -> Proxy | None:
    """A proxy variable's value (``http://user:pw@proxy.example:3128``, ``proxy.example:3128``) as a Proxy; None
    when it cannot be used (not a URL, not http://, no host, port 0)."""
    text = value.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() != "http" or not parts.hostname or port == 0:
        return None
    authorization = None
    if parts.username is not None or parts.password is not None:
        login = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(login.encode("utf-8")).decode("ascii")
    return Proxy(parts.hostname.lower(), port or 80, authorization)


def _shown(value: str) -> str:
    """A proxy setting as printed: everything before its last '@' is credentials, however malformed the value
    (``user:pw@host:port`` without a scheme reads as a URL of scheme ``user``, whose userinfo redact cannot see)."""
    if "@" in value:
        scheme, sep, rest = value.partition("://")
        value = f"{scheme}{sep}***@{rest.rsplit('@', 1)[1]}" if sep and "@" in rest else "***@" + value.rsplit("@", 1)[1]
    return redact(value)


class Proxies:
    """The proxies the environment configures, by target scheme; ``for_url`` says which one a request uses."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        found = getproxies() if environ is None else environ
        self._by_scheme: dict[str, Proxy] = {}
        for scheme in SCHEMES:
            value = found.get(scheme)
            if not value:
                continue
            proxy = parse(value)
            if proxy is None:  # a proxy the user set and we would silently not use: stop at start-up instead
                raise ConfigError(f"{scheme}_proxy in the environment: {_shown(value)!r} is not a proxy URL such as "
                                  "http://proxy.example:3128")
            self._by_scheme[scheme] = proxy

    def __bool__(self) -> bool:
        return bool(self._by_scheme)

    def for_url(self, scheme: str, host: str) -> Proxy | None:
        """The proxy for a request to ``scheme://host``; None to connect directly (no proxy, or NO_PROXY)."""
        proxy = self._by_scheme.get(scheme)
        if proxy is None or proxy_bypass(host):
            return None
        return proxy
