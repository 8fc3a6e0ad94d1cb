"""Hotlink-protected sources: a per-host Referer from ``[fetch] headers`` and cookies from ``[fetch] cookies`` (a
Netscape cookie file) get past a host that answers 403 without them; a 403 says so; a cookie goes only to the
domain and path it names, never across hosts or redirects; a cookie file that cannot work is refused at start-up."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.config import FetchConfig, from_mapping
from archiver.errors import ConfigError, Forbidden
from archiver.model import Cause
from tests.support.fetching import LOOPBACK, fetch_with, run
from tests.support.origin import GATE_COOKIE, JPEG, Server

HINT = "403 Forbidden — the host may need a Referer or cookie, see [fetch] headers"
HOSTS = ("cdn.hotlink.test", "img.cdn.hotlink.test", "xcdn.hotlink.test", "other.test", "blog.test")
SECRET = GATE_COOKIE


def _cfg(origin: Server, **kw: object) -> FetchConfig:
    return replace(LOOPBACK, connect_to={h: f"127.0.0.1:{origin.port}" for h in HOSTS}, **kw)


def _fail(cfg: FetchConfig, url: str, tmp_path: Path) -> BaseException:
    async def body(fetcher):  # type: ignore[no-untyped-def]
        try:
            await fetcher.fetch(url)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            return exc
        raise AssertionError("fetched")

    return run(cfg, tmp_path, body)


def cookie_file(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "cookies.txt"
    path.write_text("# Netscape HTTP Cookie File\n# exported for the test\n\n" + "\n".join(lines) + "\n",
                    encoding="utf-8")
    return path


def test_a_host_that_wants_its_referer_gets_it_from_fetch_headers(origin: Server, tmp_path: Path) -> None:
    url = "http://cdn.hotlink.test/hotlink/a.jpg"
    err = _fail(_cfg(origin), url, tmp_path)
    assert isinstance(err, Forbidden) and err.reason == HINT and err.status == 403 and err.cause == Cause.FORBIDDEN
    assert "Referer" not in origin.last_headers("/hotlink/a.jpg")  # no Referer by default

    cfg = _cfg(origin, headers={"cdn.hotlink.test": {"Referer": "http://blog.test/post/1"}})
    assert fetch_with(cfg, url, tmp_path).path.read_bytes() == JPEG
    assert origin.last_headers("/hotlink/a.jpg")["Referer"] == "http://blog.test/post/1"
    # the header is the host's own: another host gets none, and fails with the hint
    err = _fail(cfg, "http://other.test/hotlink/b.jpg", tmp_path)
    assert isinstance(err, Forbidden) and "Referer" not in origin.last_headers("/hotlink/b.jpg")


def test_cookies_go_only_to_the_domain_and_path_they_name(origin: Server, tmp_path: Path) -> None:
    jar = cookie_file(
        tmp_path,
        f".cdn.hotlink.test\tTRUE\t/\tFALSE\t0\tgate\t{SECRET}",  # a session cookie (expiry 0), subdomains too
        "other.test\tFALSE\t/only-here\tFALSE\t\thost\tonly",  # host-only, one path
        f"#HttpOnly_.cdn.hotlink.test\tTRUE\t/\tTRUE\t4102444800\tsecure\t{SECRET}",  # https only
        f".cdn.hotlink.test\tTRUE\t/\tFALSE\t1000\texpired\t{SECRET}",  # expired in 1970: never sent
    )
    cfg = _cfg(origin, cookies=str(jar))
    for host, name in (("cdn.hotlink.test", "a"), ("img.cdn.hotlink.test", "b")):
        assert fetch_with(cfg, f"http://{host}/cookie-gate/{name}.jpg", tmp_path).path.read_bytes() == JPEG
        assert origin.last_headers(f"/cookie-gate/{name}.jpg")["Cookie"] == f"gate={SECRET}"

    err = _fail(cfg, "http://other.test/cookie-gate/c.jpg", tmp_path)  # another host: none of those cookies
    assert isinstance(err, Forbidden) and "Cookie" not in origin.last_headers("/cookie-gate/c.jpg")
    err = _fail(cfg, "http://xcdn.hotlink.test/cookie-gate/d.jpg", tmp_path)  # a name ending alike is not a subdomain
    assert isinstance(err, Forbidden) and origin.hits("/cookie-gate/d.jpg") == 1
    assert "Cookie" not in origin.last_headers("/cookie-gate/d.jpg")
    origin.add("/only-here/x.jpg", JPEG, "image/jpeg")
    fetch_with(cfg, "http://other.test/only-here/x.jpg", tmp_path)  # the host-only cookie, under its path only
    assert origin.last_headers("/only-here/x.jpg")["Cookie"] == "host=only"

    # a redirect from the cookie's host to another host: the next hop carries no cookie
    fetch_with(cfg, "http://cdn.hotlink.test/redirect-to?url=http://other.test/image.jpg", tmp_path)
    assert origin.last_headers("/redirect-to")["Cookie"] == f"gate={SECRET}"
    assert "Cookie" not in origin.last_headers("/image.jpg")


def test_a_cookie_joins_a_configured_cookie_header(origin: Server, tmp_path: Path) -> None:
    jar = cookie_file(tmp_path, f"cdn.hotlink.test\tFALSE\t/\tFALSE\t0\tgate\t{SECRET}")
    cfg = _cfg(origin, cookies=str(jar), headers={"cdn.hotlink.test": {"Cookie": "lang=en"}})
    fetch_with(cfg, "http://cdn.hotlink.test/cookie-gate/e.jpg", tmp_path)
    assert origin.last_headers("/cookie-gate/e.jpg")["Cookie"] == f"lang=en; gate={SECRET}"
    fetch_with(cfg, "http://img.cdn.hotlink.test/image.gif", tmp_path)  # host-only: not a subdomain
    assert "Cookie" not in origin.last_headers("/image.gif")


@pytest.mark.parametrize(("content", "why"), [
    (None, "cannot read the cookie file"),
    ("gate\topen\n", 'its first line must be "# Netscape HTTP Cookie File"'),
    (f"# Netscape HTTP Cookie File\n.a.test\tTRUE\t/\tFALSE\t0\tgate {SECRET}\n", "line 2 has 6 tab-separated fields"),
    (f"# Netscape HTTP Cookie File\n\na.test\tTRUE\t/\tFALSE\t0\tgate\t{SECRET}\n",
     "line 3: include subdomains is TRUE but the domain does not start with a dot"),
    (f"# Netscape HTTP Cookie File\n.a.test\tTRUE\t/\tno\t0\tgate\t{SECRET}\n", "must be TRUE or FALSE"),
    (f"# Netscape HTTP Cookie File\n.a.test\tTRUE\t/\tFALSE\tsoon\tgate\t{SECRET}\n", "the expiry must be a number"),
    # a browser never sends a cookie set for a public suffix to every site under it (the standard library would)
    *((f"# Netscape HTTP Cookie File\n.{suffix}\tTRUE\t/\tFALSE\t0\tgate\t{SECRET}\n",
       f"line 2: .{suffix} is a public suffix") for suffix in ("com", "co.uk", "github.io", "CO.UK")),
])
def test_a_cookie_file_that_cannot_work_is_refused_at_start_up(tmp_path: Path, content: str | None, why: str) -> None:
    jar = tmp_path / "cookies.txt"
    if content is not None:
        jar.write_text(content, encoding="utf-8")
    cfg_file = tmp_path / "archiver.toml"
    with pytest.raises(ConfigError) as info:
        from_mapping({"fetch": {"cookies": "cookies.txt"}}, str(cfg_file), source=cfg_file)
    message = str(info.value)
    assert message.startswith(f"{cfg_file}: [fetch] cookies: {jar}: ") and why in message
    assert SECRET not in message  # never a cookie's value


def test_the_cli_refuses_a_bad_cookie_file_before_fetching(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.md").write_text(f"![a]({origin.url('/image.jpg')})\n", encoding="utf-8")
    (tmp_path / "cookies.txt").write_text(f"# Netscape HTTP Cookie File\nx\t{SECRET}\n", encoding="utf-8")
    cfg = tmp_path / "archiver.toml"
    cfg.write_text('[fetch]\nallow_networks = ["127.0.0.1/32"]\ncookies = "cookies.txt"\n', encoding="utf-8")
    assert main(["run", str(tmp_path / "a.md"), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "[fetch] cookies" in err and "cookies.txt: line 2 has 2 tab-separated fields" in err
    assert SECRET not in err and "Traceback" not in err
    assert origin.hits("/image.jpg") == 0


def test_a_run_reports_the_hint_and_tries_again_once_a_referer_or_cookie_is_configured(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.site import write_config

    site = tmp_path / "site"
    site.mkdir()
    (site / "post.md").write_text("# x\n\n![a](http://cdn.hotlink.test/hotlink/run.jpg)\n"
                                  "![b](http://cdn.hotlink.test/cookie-gate/run.jpg)\n", encoding="utf-8")
    cfg = write_config(tmp_path, origin, hosts=HOSTS)
    assert main(["run", "--config", str(cfg)]) == 0  # dead links are reported, not an error
    out = capsys.readouterr().out
    assert out.count(HINT) == 2 and "post.md:3" in out and "post.md:4" in out

    jar = cookie_file(tmp_path, ".cdn.hotlink.test\tTRUE\t/\tFALSE\t0\tgate\tstale")
    cfg = write_config(tmp_path, origin, hosts=HOSTS, extra='headers = { "cdn.hotlink.test" = '
                       '{ Referer = "http://blog.test/" } }\ncookies = "cookies.txt"')
    assert main(["run", "--config", str(cfg)]) == 0  # no --retry-dead: the settings behind the 403s changed
    out = capsys.readouterr().out
    assert "1 archived" in out and out.count(HINT) == 1 and "post.md:4" in out

    cookie_file(tmp_path, f".cdn.hotlink.test\tTRUE\t/\tFALSE\t0\tgate\t{SECRET}")  # a fresh export, same name
    assert main(["run", "--config", str(cfg), "-v"]) == 0  # the file's content is part of the setting
    captured = capsys.readouterr()
    assert "1 archived" in captured.out and HINT not in captured.out
    assert f"gate={SECRET}" not in captured.out + captured.err  # a cookie is never printed, -v included
    assert jar.exists() and "cdn.hotlink.test" not in (site / "post.md").read_text(encoding="utf-8")
