"""The SSRF guard: private addresses in every spelling are refused before any connection is made."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from archiver.config import FetchConfig
from archiver.errors import DeadLink, Refused, TransientFetchError
from archiver.fetch.client import Fetcher
from archiver.fetch.guard import AddressRefused, Guard, GuardedResolver, legacy_ipv4
from archiver.model import Download
from tests.support.fetching import StaticResolver
from tests.support.origin import JPEG, Server
from tests.support.proxy import ForwardProxy

PRIVATE = [
    "127.0.0.1", "127.255.255.254", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",
    "169.254.169.254", "100.64.0.1", "100.127.255.255", "0.0.0.0", "0.1.2.3", "224.0.0.1", "239.1.1.1",
    "255.255.255.255", "240.0.0.1", "192.0.2.1", "198.18.0.1", "192.0.0.8",
    "::1", "::", "[::1]", "fe80::1", "fe80::1%eth0", "fc00::1", "fd12:3456::1", "ff02::1", "fec0::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:7f00:1", "::127.0.0.1",
    "64:ff9b::10.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::", "2002:a00:1::1", "2002:c0a8:101::",
    "2001:0:4136:e378:8000:63bf:80ff:fffe", "2001:db8::1",
]  # fmt: skip
PUBLIC = ["8.8.8.8", "93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"]


@pytest.mark.parametrize("ip", PRIVATE)
def test_private_addresses_are_refused(ip: str) -> None:
    with pytest.raises(Refused, match="refused by the SSRF guard") as info:
        Guard(()).check_address(ip)
    assert info.value.outcome == "rejected"


@pytest.mark.parametrize("ip", PUBLIC)
def test_public_addresses_pass(ip: str) -> None:
    Guard(()).check_address(ip)


def test_allow_networks_opens_exactly_what_they_list() -> None:
    guard = Guard(["127.0.0.1/32", "10.1.0.0/16", "fd00::/8"])
    for ip in ("127.0.0.1", "::ffff:127.0.0.1", "10.1.2.3", "fd00::5"):
        guard.check_address(ip)
    for ip in ("127.0.0.2", "10.2.0.1", "169.254.169.254", "::1", "fc00::1"):
        with pytest.raises(Refused):
            guard.check_address(ip)


def test_not_an_address_is_refused() -> None:
    with pytest.raises(Refused, match="not an IP address"):
        Guard(()).check_address("example.com")


@pytest.mark.parametrize(
    ("host", "ip"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7F.0.0.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0177.0.0.01", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("0", "0.0.0.0"),
        ("169.254.43518", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("127.0.0.1.", "127.0.0.1"),
    ],
)
def test_legacy_ipv4_spellings(host: str, ip: str) -> None:
    assert str(legacy_ipv4(host)) == ip


@pytest.mark.parametrize("host", ["example.com", "img.example.test", "1a.example", "cdn-7.example.com"])
def test_host_names_are_not_ipv4(host: str) -> None:
    assert legacy_ipv4(host) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/", "http://2130706433/", "http://0x7f.1/", "http://017700000001/", "http://127.1/",
        "http://0/", "http://0.0.0.0:8080/", "http://[::1]/", "http://[::]/", "http://[::ffff:127.0.0.1]/",
        "http://[0:0:0:0:0:ffff:7f00:1]/", "http://localhost/", "http://LOCALHOST./", "http://a.localhost/",
        "http://169.254.169.254/latest/meta-data/", "http://0xa9fea9fe/", "http://10.0.0.1/",
        "http://1.2.3.4.5/", "http://256.1.1.1/", "http://08.1/",
    ],
)  # fmt: skip
def test_check_url_host_refuses_private_spellings(url: str) -> None:
    with pytest.raises(Refused):
        Guard(()).check_url_host(url)


def test_check_url_host_lets_names_through_to_the_resolver() -> None:
    Guard(()).check_url_host("https://img.example.com/a.jpg")
    Guard(()).check_url_host("https://8.8.8.8/a.jpg")


def test_check_url_host_never_shows_credentials() -> None:
    with pytest.raises(Refused) as info:
        Guard(()).check_url_host("http://admin:hunter2@127.0.0.1/")
    assert "hunter2" not in str(info.value)


def _resolve(resolver: GuardedResolver, host: str, port: int = 80) -> list[ResolveResult]:
    return asyncio.run(resolver.resolve(host, port))


def test_resolver_keeps_only_allowed_addresses() -> None:
    base = StaticResolver({"mixed.test": ["10.0.0.1", "93.184.216.34"], "inside.test": ["192.168.0.9"]})
    resolver = GuardedResolver(Guard(()), {}, base=base)
    assert [r["host"] for r in _resolve(resolver, "mixed.test")] == ["93.184.216.34"]
    with pytest.raises(AddressRefused, match="inside.test resolves to a private address 192.168.0.9"):
        _resolve(resolver, "inside.test")


def test_resolver_connect_to_maps_host_and_port() -> None:
    resolver = GuardedResolver(Guard(["127.0.0.1/32"]), {"img.example.test": "127.0.0.1:8123"})
    [result] = _resolve(resolver, "IMG.example.test.")
    assert (result["host"], result["port"], result["hostname"]) == ("127.0.0.1", 8123, "IMG.example.test.")
    refusing = GuardedResolver(Guard(()), {"img.example.test": "127.0.0.1:8123"})
    with pytest.raises(AddressRefused, match="loopback"):
        _resolve(refusing, "img.example.test")


def test_resolver_real_localhost_is_refused() -> None:
    with pytest.raises(AddressRefused, match="loopback"):
        _resolve(GuardedResolver(Guard(()), {}), "localhost")


# --- through the fetcher, against real loopback servers ------------------------------------------------

FAST = {"timeout": 2.0, "connect_timeout": 1.0, "retries": 1, "backoff": 0.01, "max_backoff": 0.05}


def _fetch(cfg: FetchConfig, url: str, tmp_path: Path, resolver: AbstractResolver | None = None) -> Download:
    async def run() -> Download:
        async with Fetcher(cfg, tmp_path, resolver=resolver) as fetcher:
            return await fetcher.fetch(url)

    return asyncio.run(run())


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "2130706433", "0x7f.1", "017700000001", "127.1", "0.0.0.0", "[::ffff:127.0.0.1]",
     "[::ffff:7f00:1]"],
)  # fmt: skip
def test_canary_is_never_reached_with_default_config(canary: Server, tmp_path: Path, host: str) -> None:
    with pytest.raises(Refused, match="SSRF guard"):
        _fetch(FetchConfig(**FAST), f"http://{host}:{canary.port}/secret", tmp_path)
    assert canary.total_hits() == 0
    assert list(tmp_path.iterdir()) == []


def test_dns_name_pointing_inside_is_refused(canary: Server, tmp_path: Path) -> None:
    dns = StaticResolver({"evil.example.test": ["127.0.0.1"]})
    with pytest.raises(Refused, match="evil.example.test resolves to a loopback address"):
        _fetch(FetchConfig(**FAST), f"http://evil.example.test:{canary.port}/", tmp_path, dns)
    assert canary.total_hits() == 0


def test_redirect_to_inside_is_refused(origin: Server, canary: Server, tmp_path: Path) -> None:
    cfg = FetchConfig(**FAST, allow_networks=("127.0.0.1/32",))
    for target in (f"http://0.0.0.0:{canary.port}/", f"http://[::1]:{canary.port}/", "http://10.0.0.1/"):
        with pytest.raises(Refused, match="redirect to .*SSRF guard"):
            _fetch(cfg, origin.url(f"/redirect-to?url={target}"), tmp_path)
    assert canary.total_hits() == 0
    assert origin.hits("/redirect-to") == 3


def test_connect_to_serves_a_made_up_host_from_loopback(origin: Server, tmp_path: Path) -> None:
    cfg = FetchConfig(
        **FAST, allow_networks=("127.0.0.1/32",), connect_to={"img.example.test": f"127.0.0.1:{origin.port}"}
    )
    download = _fetch(cfg, "http://img.example.test/image.jpg", tmp_path)
    assert download.path.read_bytes() == JPEG
    assert download.final_url == "http://img.example.test/image.jpg"
    assert origin.hits("/image.jpg") == 1
    assert origin.last_headers("/image.jpg")["Host"] == "img.example.test"


def test_connect_to_follows_redirects_on_the_mapped_host(origin: Server, tmp_path: Path) -> None:
    cfg = FetchConfig(
        **FAST, allow_networks=("127.0.0.1/32",), connect_to={"img.example.test": f"127.0.0.1:{origin.port}"}
    )
    download = _fetch(cfg, "http://img.example.test/redirect/1", tmp_path)
    assert download.final_url == "http://img.example.test/redirect/0"


def test_connect_to_loopback_still_needs_allow_networks(origin: Server, tmp_path: Path) -> None:
    cfg = FetchConfig(**FAST, connect_to={"img.example.test": f"127.0.0.1:{origin.port}"})
    with pytest.raises(Refused, match="loopback"):
        _fetch(cfg, "http://img.example.test/image.jpg", tmp_path)
    assert origin.total_hits() == 0


def test_unknown_host_is_a_dead_link(tmp_path: Path) -> None:
    dns = StaticResolver({})
    with pytest.raises(DeadLink, match="host not found") as info:
        _fetch(FetchConfig(**FAST), "http://gone.example.test/a.jpg", tmp_path, dns)
    assert info.value.attempts == 1
    assert dns.asked == ["gone.example.test"]


def test_dns_failure_is_retried_then_transient(tmp_path: Path) -> None:
    dns = StaticResolver({"flaky.example.test": None})
    with pytest.raises(TransientFetchError, match="DNS lookup failed") as info:
        _fetch(FetchConfig(**FAST), "http://flaky.example.test/a.jpg", tmp_path, dns)
    assert info.value.attempts == 2


def test_proxy_target_is_checked_before_the_proxy_sees_it(
    fake_proxy: Server, canary: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", fake_proxy.base)
    dns = StaticResolver({"img.example.test": ["93.184.216.34"], "evil.example.test": ["169.254.169.254"]})
    cfg = FetchConfig(**FAST)  # no allow_networks: the proxy on loopback is trusted, targets are not
    download = _fetch(cfg, "http://img.example.test/a.jpg", tmp_path, dns)
    assert download.path.read_bytes() == JPEG
    assert fake_proxy.hits("http://img.example.test/a.jpg") == 1
    for url in ("http://evil.example.test/latest/meta-data/", f"http://127.0.0.1:{canary.port}/"):
        with pytest.raises(Refused, match="SSRF guard"):
            _fetch(cfg, url, tmp_path, dns)
    assert fake_proxy.total_hits() == 1
    assert canary.total_hits() == 0


def test_no_proxy_hosts_go_direct(
    origin: Server, fake_proxy: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", fake_proxy.base)
    monkeypatch.setenv("NO_PROXY", "img.example.test")
    cfg = FetchConfig(
        **FAST, allow_networks=("127.0.0.1/32",), connect_to={"img.example.test": f"127.0.0.1:{origin.port}"}
    )
    _fetch(cfg, "http://img.example.test/image.jpg", tmp_path)
    assert origin.hits("/image.jpg") == 1
    assert fake_proxy.total_hits() == 0


class SilentResolver(AbstractResolver):
    """A DNS server that never answers."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("connect_to", [{}, {"img.example.test": "cdn.example.test:8080"}])
def test_resolver_timeout_is_a_temporary_dns_failure(connect_to: dict[str, str]) -> None:
    resolver = GuardedResolver(Guard(()), connect_to, base=SilentResolver(), timeout=0.05)
    with pytest.raises(socket.gaierror, match="DNS lookup timed out after 0.05s") as info:
        _resolve(resolver, "img.example.test")
    assert info.value.errno == socket.EAI_AGAIN


# --- the proxy's own host name -------------------------------------------------------------------------


def _proxy_name_setup(forward_proxy: ForwardProxy, origin: Server, monkeypatch: pytest.MonkeyPatch) -> StaticResolver:
    """HTTP_PROXY names proxy.test, which resolves to loopback (where the canary also listens, on another port);
    the proxy itself reaches img.example.test at the origin. Nothing is in allow_networks."""
    forward_proxy.hosts.update({"proxy.test": "127.0.0.1", "img.example.test": f"127.0.0.1:{origin.port}"})
    monkeypatch.setenv("HTTP_PROXY", f"http://proxy.test:{forward_proxy.port}")
    return StaticResolver({"proxy.test": ["127.0.0.1"], "proxy.test.": ["127.0.0.1"], "img.example.test": ["93.184.216.34"]})


@pytest.mark.parametrize("no_proxy", ["", "proxy.test"])
def test_a_target_on_the_proxys_host_name_is_guarded_like_any_other(
    forward_proxy: ForwardProxy, origin: Server, canary: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    no_proxy: str,
) -> None:
    """The proxy's address is trusted for the connection to the proxy, not for targets that share its name: at any
    port, through the proxy, directly (NO_PROXY names it too) or after a redirect, they are refused."""
    dns = _proxy_name_setup(forward_proxy, origin, monkeypatch)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    cfg = FetchConfig(**FAST)
    download = _fetch(cfg, "http://img.example.test/image.jpg", tmp_path, dns)  # the proxy itself works
    assert download.path.read_bytes() == JPEG and origin.hits("/image.jpg") == 1
    assert forward_proxy.targets() == ["http://img.example.test/image.jpg"]
    for url in (
        f"http://proxy.test:{canary.port}/latest/meta-data/",
        f"http://proxy.test:{forward_proxy.port}/",
        f"http://PROXY.test.:{canary.port}/",
        f"http://img.example.test/redirect-to?url=http://proxy.test:{canary.port}/x",
    ):
        with pytest.raises(Refused, match="loopback address 127.0.0.1 refused by the SSRF guard"):
            _fetch(cfg, url, tmp_path, dns)
    assert canary.total_hits() == 0
    assert forward_proxy.targets()[1:] == [f"http://img.example.test/redirect-to?url=http://proxy.test:{canary.port}/x"]


def test_the_proxy_is_reached_by_the_address_its_name_resolved_to(
    forward_proxy: ForwardProxy, origin: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One lookup of the proxy's name per run, without the guard; aiohttp is given the address, never the name."""
    dns = _proxy_name_setup(forward_proxy, origin, monkeypatch)

    async def two() -> None:
        async with Fetcher(FetchConfig(**FAST), tmp_path, resolver=dns) as fetcher:
            for path in ("/image.jpg", "/image.png"):
                (await fetcher.fetch(f"http://img.example.test{path}")).path.unlink()

    asyncio.run(two())
    assert dns.asked.count("proxy.test") == 1
    assert forward_proxy.targets() == ["http://img.example.test/image.jpg", "http://img.example.test/image.png"]


@pytest.mark.parametrize("address", ["0.0.0.0", "0.1.2.3", "::", "::ffff:0.0.0.0"])
def test_unspecified_addresses_are_refused_even_when_allowed(address: str) -> None:
    """Found by review: connecting to 0.0.0.0 reaches this machine's own services (loopback) on Linux, and the
    run's hint suggested allowing it. It is refused whatever allow_networks says."""
    guard = Guard(["0.0.0.0/8", "::/128", "::ffff:0:0/96"])
    with pytest.raises(Refused, match="unspecified"):
        guard.check_address(address)
