"""Credentials go only where the user configured them: never from ~/.netrc, a URL's ``user:pw@`` to its own host,
``[fetch] headers`` to their host, a proxy's ``user:pw@`` (from HTTP_PROXY) to that proxy only."""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.config import FetchConfig
from tests.support.fetching import LOOPBACK, StaticResolver, fetch_with
from tests.support.images import make_jpeg
from tests.support.origin import JPEG, Server
from tests.support.proxy import ForwardProxy

NETRC_SECRET = "NETRC-SEKRET-51d2"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def netrc_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real home folder whose ~/.netrc has a ``default`` login (it matches every host) and a login for
    127.0.0.1 (the origin's and the proxy's address)."""
    home = tmp_path / "home"
    home.mkdir()
    netrc = home / ".netrc"
    netrc.write_text(
        f"machine 127.0.0.1 login machine-user password {NETRC_SECRET}\n"
        f"default login default-user password {NETRC_SECRET}\n",
        encoding="utf-8",
    )
    netrc.chmod(0o600)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("NETRC", raising=False)
    return home


def _cfg(origin: Server, **kw: object) -> FetchConfig:
    return replace(LOOPBACK, connect_to={"img.example.test": f"127.0.0.1:{origin.port}",
                                          "other.example.test": f"127.0.0.1:{origin.port}"}, **kw)


def _no_netrc(*header_sets: object) -> None:
    for headers in header_sets:
        assert NETRC_SECRET not in str(headers) and basic("default-user", NETRC_SECRET) not in str(headers)


def test_netrc_is_never_read(netrc_home: Path, origin: Server, tmp_path: Path) -> None:
    fetch_with(_cfg(origin), "http://img.example.test/image.jpg", tmp_path)
    fetch_with(_cfg(origin), origin.url("/image.png"), tmp_path)  # "machine 127.0.0.1" matches this one
    for path in ("/image.jpg", "/image.png"):
        headers = origin.last_headers(path)
        assert "Authorization" not in headers, headers
        _no_netrc(headers)


def test_a_whole_run_sends_no_netrc_login(netrc_home: Path, origin: Server, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    origin.add("/n.jpg", make_jpeg(120, 90, seed=71), "image/jpeg")
    site = tmp_path / "site"
    site.mkdir()
    (site / "a.md").write_text("![a](http://img.example.test/n.jpg)\n", encoding="utf-8")
    cfg = tmp_path / "archiver.toml"
    cfg.write_text(f'[fetch]\nallow_networks = ["127.0.0.1/32"]\n'
                   f'connect_to = {{ "img.example.test" = "127.0.0.1:{origin.port}" }}\n', encoding="utf-8")
    assert main(["run", str(site), "--config", str(cfg), "-v"]) == 0
    assert origin.hits("/n.jpg") == 1 and "Authorization" not in origin.last_headers("/n.jpg")
    out = capsys.readouterr()
    assert NETRC_SECRET not in out.out + out.err


def test_url_credentials_go_to_their_host_only(netrc_home: Path, origin: Server, tmp_path: Path) -> None:
    url = "http://alice:pw-9@img.example.test/redirect-to?url=http://other.example.test/image.jpg"
    assert fetch_with(_cfg(origin), url, tmp_path).path.read_bytes() == JPEG
    assert origin.last_headers("/redirect-to")["Authorization"] == basic("alice", "pw-9")
    assert "Authorization" not in origin.last_headers("/image.jpg")  # another host: nothing, not even netrc's


def test_configured_headers_go_to_their_host_only(netrc_home: Path, origin: Server, tmp_path: Path) -> None:
    cfg = _cfg(origin, headers={"img.example.test": {"Authorization": "Bearer H-77"}})
    fetch_with(cfg, "http://img.example.test/redirect-to?url=http://other.example.test/image.jpg", tmp_path)
    assert origin.last_headers("/redirect-to")["Authorization"] == "Bearer H-77"
    assert "Authorization" not in origin.last_headers("/image.jpg")


@pytest.mark.parametrize("proxy_login", ["", "proxy-user:proxy%20pw@"])
def test_a_proxy_gets_its_own_credentials_and_no_one_elses(
    netrc_home: Path, origin: Server, forward_proxy: ForwardProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    proxy_login: str,
) -> None:
    """HTTP_PROXY keeps working, with the login written in it (sent to the proxy only); the proxy's address has a
    netrc ``machine`` entry and the ``default`` one matches too: neither is sent anywhere."""
    forward_proxy.hosts["img.example.test"] = f"127.0.0.1:{origin.port}"
    monkeypatch.setenv("HTTP_PROXY", f"http://{proxy_login}127.0.0.1:{forward_proxy.port}")
    cfg = replace(LOOPBACK, allow_networks=())  # the target is "public" to our guard through the proxy
    dns = StaticResolver({"img.example.test": ["93.184.216.34"]})
    assert fetch_with(cfg, "http://img.example.test/image.jpg", tmp_path, resolver=dns).path.read_bytes() == JPEG
    (seen,) = forward_proxy.seen
    assert seen.target == "http://img.example.test/image.jpg"
    assert seen.proxy_authorization == (basic("proxy-user", "proxy pw") if proxy_login else None)
    assert "authorization" not in seen.headers
    headers = origin.last_headers("/image.jpg")
    assert "Authorization" not in headers and "Proxy-Authorization" not in headers
    _no_netrc(seen, headers)


def test_an_https_target_through_the_proxy_gets_the_login_on_the_connect_only(
    origin: Server, forward_proxy: ForwardProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For https the proxy's login belongs on CONNECT; the tunnelled request (TLS to the origin, here a plain
    HTTP server, so the handshake fails: a transient failure) never carries it."""
    from archiver.errors import TransientFetchError
    forward_proxy.hosts["img.example.test:443"] = f"127.0.0.1:{origin.port}"
    monkeypatch.setenv("HTTPS_PROXY", f"http://proxy-user:pw@127.0.0.1:{forward_proxy.port}")
    cfg = replace(LOOPBACK, allow_networks=(), retries=0)
    with pytest.raises(TransientFetchError):
        fetch_with(cfg, "https://img.example.test/image.jpg", tmp_path,
                   resolver=StaticResolver({"img.example.test": ["93.184.216.34"]}))
    (seen,) = forward_proxy.seen
    assert (seen.method, seen.target) == ("CONNECT", "img.example.test:443")
    assert seen.proxy_authorization == basic("proxy-user", "pw")


@pytest.mark.parametrize("value", ["user:s3cretpw@proxy.example:31x28", "http://user:s3cretpw@proxy.example:31x28",
                                   "socks9://user:s3cretpw@proxy.example", "us@er:s3cretpw@proxy.example:bad"])
def test_a_malformed_proxy_setting_never_prints_its_password(value: str) -> None:
    """Found by review: without a scheme, ``user:`` read as one and the password was printed in the error."""
    from archiver.errors import ConfigError
    from archiver.fetch.proxy import Proxies

    with pytest.raises(ConfigError) as caught:
        Proxies({"http": value})
    assert "s3cretpw" not in caught.value.message and "proxy.example" in caught.value.message
