"""The SSRF guard: which addresses a download may connect to, and the aiohttp resolver that enforces it.

Only public unicast addresses are allowed, plus whatever ``[fetch] allow_networks`` lists. Refused: private,
loopback, link-local (169.254.169.254 is the cloud metadata service), multicast, unspecified, reserved,
shared 100.64.0.0/10, benchmarking, documentation ranges (everything ``ipaddress`` does not call global),
and IPv6 addresses that embed such an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible
``::a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo ``2001::/32``).

aiohttp never calls the resolver for IP-literal hosts, so the fetcher calls ``check_url_host`` for every hop;
it also reads the legacy IPv4 spellings (``2130706433``, ``0x7f.1``, ``017700000001``, ``127.1``) that
``inet_aton`` and browsers accept.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from archiver.errors import GuardRefused, Refused
from archiver.redaction import redact

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")
# Not public, though some Python versions' ``is_global`` tables miss them.
_EXTRA_NON_GLOBAL = tuple(
    ipaddress.ip_network(n) for n in ("192.0.0.0/24", "198.18.0.0/15", "2001::/23", "2001:db8::/32")
)
_V4_COMPAT = ipaddress.ip_network("::/96")


class AddressRefused(OSError):
    """Raised inside aiohttp's connector when no resolved address may be used; fetch.py turns it into Refused."""

    def __init__(self, host: str, reason: str, address: str | None = None) -> None:
        super().__init__(reason)
        self.host = host
        self.reason = reason
        self.address = address  # one refused address, for the allow_networks hint


def _parse_ipv4_part(part: str) -> int | None:
    try:
        if part[:2].lower() == "0x":
            return int(part[2:] or "0", 16)
        if len(part) > 1 and part.startswith("0"):
            return int(part, 8)
        return int(part, 10) if part.isascii() and part.isdigit() else None
    except ValueError:
        return None


def legacy_ipv4(host: str) -> ipaddress.IPv4Address | None | bool:
    """The IPv4 address a numeric host spells (inet_aton rules: 1-4 parts, decimal/octal/hex).

    Returns the address, ``None`` for a host name, or ``False`` for a numeric-looking host that is not a
    valid address (``1.2.3.4.5``, ``09.1``): browsers refuse those, and so do we."""
    name = host[:-1] if host.endswith(".") else host
    parts = name.split(".")
    last = parts[-1].lower()
    numeric_last = last.isdigit() or (last.startswith("0x") and all(c in "0123456789abcdef" for c in last[2:]))
    if not parts or not numeric_last:
        return None
    values = [_parse_ipv4_part(p) for p in parts]
    if len(parts) > 4 or any(v is None for v in values):
        return False
    nums = [v for v in values if v is not None]
    *head, tail = nums
    if any(v > 255 for v in head) or tail >= 256 ** (5 - len(nums)):
        return False
    value = tail
    for i, v in enumerate(head):
        value |= v << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _embedded_v4(addr: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found: list[ipaddress.IPv4Address] = []
    if addr.ipv4_mapped is not None:
        found.append(addr.ipv4_mapped)
    if addr.sixtofour is not None:
        found.append(addr.sixtofour)
    if addr.teredo is not None:
        found.extend(addr.teredo)
    if addr in _NAT64 or (addr in _V4_COMPAT and int(addr) > 1):
        found.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    return found


def _unspecified(addr: IPAddress) -> bool:
    """0.0.0.0/8 ("this network") and ::, also inside IPv6 forms that carry an IPv4 address."""
    if isinstance(addr, ipaddress.IPv6Address):
        return addr.is_unspecified or any(_unspecified(v4) for v4 in _embedded_v4(addr))
    return addr in _THIS_NETWORK


_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")


def _why_unsafe(addr: IPAddress) -> str | None:
    if addr.is_loopback:
        return "loopback address"
    if addr.is_link_local:
        return "link-local address (cloud metadata service range)"
    if addr.is_unspecified:
        return "unspecified address"
    if addr.is_multicast:
        return "multicast address"
    if isinstance(addr, ipaddress.IPv4Address) and addr in _SHARED:
        return "shared address space (carrier-grade NAT)"
    if addr.is_private:
        return "private address"
    if addr.is_reserved:
        return "reserved address"
    if isinstance(addr, ipaddress.IPv6Address) and addr.is_site_local:
        return "site-local address"
    if not addr.is_global or any(addr.version == n.version and addr in n for n in _EXTRA_NON_GLOBAL):
        return "non-public address"
    return None


class Guard:
    """Decides whether an address may be connected to."""

    def __init__(self, allow_networks: Sequence[str]) -> None:
        self._allowed = tuple(ipaddress.ip_network(n, strict=False) for n in allow_networks)

    def _is_allowed(self, addr: IPAddress) -> bool:
        return any(addr.version == net.version and addr in net for net in self._allowed)

    def check_address(self, ip: str) -> None:
        """Raise Refused (its ``url`` is the address) unless ``ip`` is public or inside allow_networks."""
        text = ip.strip("[]").split("%", 1)[0]
        try:
            addr: IPAddress = ipaddress.ip_address(text)
        except ValueError:
            raise Refused(ip, f"{ip!r} is not an IP address") from None
        if _unspecified(addr):  # "this host": connecting to it reaches the machine's own services (loopback)
            raise Refused(ip, "unspecified address (it reaches this machine itself) refused by the SSRF guard, "
                              "whatever [fetch] allow_networks says")
        if self._is_allowed(addr):
            return
        candidates: list[IPAddress] = [addr]
        if isinstance(addr, ipaddress.IPv6Address):
            embedded = _embedded_v4(addr)
            if addr.ipv4_mapped is not None or addr in _NAT64:
                # ::ffff:a.b.c.d is the IPv4 socket a.b.c.d; NAT64 reaches a.b.c.d: judge the IPv4 address.
                if self._is_allowed(embedded[0]):
                    return
                candidates = embedded
            else:
                candidates.extend(embedded)
        for cand in candidates:
            why = _why_unsafe(cand)
            if why is not None:
                shown = str(addr) if cand is addr else f"{addr} (embeds {cand})"
                raise GuardRefused(ip, f"{why} {shown} refused by the SSRF guard (see [fetch] allow_networks)", address=str(addr))

    def check_url_host(self, url: str) -> None:
        """Check a URL whose host is an IP literal in any spelling (or ``localhost``); host names pass here
        and are checked after resolution by GuardedResolver."""
        try:
            host = urlsplit(url).hostname or ""
        except ValueError:
            raise Refused(redact(url), "malformed host") from None
        host = host.lower()
        try:
            if ":" in host:
                self.check_address(host)
                return
            if host.rstrip(".") == "localhost" or host.rstrip(".").endswith(".localhost"):
                self.check_address("127.0.0.1")
                return
            v4 = legacy_ipv4(host)
            if v4 is False:
                raise Refused(host, f"numeric host {host!r} is not a valid IPv4 address")
            if isinstance(v4, ipaddress.IPv4Address):
                self.check_address(str(v4))
        except GuardRefused as exc:
            raise GuardRefused(redact(url), exc.reason, address=exc.address) from None
        except Refused as exc:
            raise Refused(redact(url), exc.reason) from None


def parse_target(target: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"`` / ``"[::1]:8080"`` / ``"name:8080"`` → (host, port) (a connect_to value)."""
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


class GuardedResolver(AbstractResolver):
    """aiohttp resolver: applies ``connect_to`` (host → "address:port", like curl --connect-to), resolves the
    rest with aiohttp's ThreadedResolver (getaddrinfo: /etc/hosts, then DNS), and keeps only the addresses the
    Guard allows; when none is left it raises AddressRefused, so no connection is ever attempted.

    No host name is trusted: ``resolve_unguarded`` is for the one lookup that may skip the guard, the configured
    proxy's (the fetcher then connects to that address, never to the name). A lookup taking longer than ``timeout`` seconds fails like a DNS timeout (``gaierror`` EAI_AGAIN: transient).

    Rebinding: aiohttp connects to exactly the addresses this resolver returns (and caches those), so the
    address checked is the address connected to; there is no second lookup for an answer to change in.
    """

    def __init__(
        self,
        guard: Guard,
        connect_to: Mapping[str, str],
        *,
        base: AbstractResolver | None = None,
        timeout: float | None = None,
    ) -> None:
        self._guard = guard
        self._timeout = timeout
        self._connect_to = {k.lower().rstrip("."): parse_target(v) for k, v in connect_to.items()}
        self._base = base
        self._owns_base = base is None

    def mapped(self, host: str) -> bool:
        return host.lower().rstrip(".") in self._connect_to

    async def _lookup(self, host: str, port: int, family: socket.AddressFamily) -> list[ResolveResult]:
        if self._base is None:
            self._base = ThreadedResolver()
        target = self._connect_to.get(host.lower().rstrip("."))
        if target is None:
            return await self._base_resolve(host, port, family)
        to_host, to_port = target
        try:
            addr = ipaddress.ip_address(to_host)
        except ValueError:
            found = await self._base_resolve(to_host, to_port, family)
            return [{**r, "hostname": host, "port": to_port} for r in found]
        fam = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
        return [{"hostname": host, "host": str(addr), "port": to_port, "family": fam, "proto": 0, "flags": 0}]

    async def _base_resolve(self, host: str, port: int, family: socket.AddressFamily) -> list[ResolveResult]:
        assert self._base is not None
        try:
            return await asyncio.wait_for(self._base.resolve(host, port, family), self._timeout)
        except TimeoutError:
            raise socket.gaierror(socket.EAI_AGAIN, f"DNS lookup timed out after {self._timeout:g}s") from None

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._lookup(host, port, family)
        allowed: list[ResolveResult] = []
        refusal: GuardRefused | None = None
        for result in results:
            try:
                self._guard.check_address(result["host"])
            except GuardRefused as exc:
                refusal = refusal or exc
                continue
            allowed.append(result)
        if not allowed:
            reason = refusal.reason if refusal else "the host resolved to no address"
            raise AddressRefused(host, f"{host} resolves to a {reason}" if refusal else reason,
                                 refusal.address if refusal else None)
        return allowed

    async def resolve_unguarded(self, host: str, port: int) -> list[ResolveResult]:
        """The addresses of ``host`` (connect_to applies) without the guard: only for the configured proxy."""
        return await self._lookup(host, port, socket.AF_UNSPEC)

    async def close(self) -> None:
        if self._base is not None and self._owns_base:
            await self._base.close()
