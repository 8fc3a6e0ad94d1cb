"""Cookies from ``[fetch] cookies``: the ``Cookie`` header a request to one URL may carry, by the standard library's
rules (domain and path matching, secure cookies over https only, expiry); host-only cookies (include subdomains
FALSE) go to that exact host. Asked again for every redirect hop, so a cookie never follows a redirect to a host it
does not name. Cookies the servers set are not kept (the session's jar is a dummy), and a value is never logged."""

from __future__ import annotations

import urllib.request

from archiver.config import read_cookie_file


class Cookies:
    """The configured cookie file, read once (config.read_cookie_file validated it at start-up)."""

    def __init__(self, path: str) -> None:
        self._jar = read_cookie_file(path)

    def header(self, url: str) -> str | None:
        """The ``Cookie`` header value for a request to ``url``, or None when no cookie of the file applies."""
        request = urllib.request.Request(url)
        self._jar.add_cookie_header(request)
        return request.get_header("Cookie")


def with_cookies(headers: dict[str, str], cookie: str | None) -> dict[str, str]:
    """``headers`` plus ``cookie``, after a Cookie header configured in ``[fetch] headers`` for the host."""
    if not cookie:
        return headers
    own = next((k for k in headers if k.lower() == "cookie"), None)
    if own is None:
        return {**headers, "Cookie": cookie}
    return {**headers, own: f"{headers[own]}; {cookie}"}
