"""Fetcher against a real loopback origin: images arrive intact, every failure mode gets the right error."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import replace
from pathlib import Path

import pytest

from archiver.config import FetchConfig
from archiver.errors import DeadLink, FetchError, NotAnImage, Refused, TooLarge, TransientFetchError
from archiver.fetch.body import RateMeter
from archiver.fetch.client import ACCEPT, Fetcher, FetchStats
from archiver.fetch.pauses import HostPauses, host_key
from archiver.fetch.retry import retry_after, short
from archiver.fetch.sniff import SNIFF_BYTES
from archiver.model import Download
from tests.support.fetching import LOOPBACK, fetch_with, run
from tests.support.images import make_jpeg, make_png_bomb
from tests.support.origin import JPEG, OVERSIZE_BYTES, SLOW_SECONDS, SVG, Server

CFG = replace(LOOPBACK, timeout=0.5, max_redirects=5)


def fetch(url: str, tmp_path: Path, cfg: FetchConfig = CFG) -> Download:
    return fetch_with(cfg, url, tmp_path)


def fail(url: str, tmp_path: Path, cfg: FetchConfig = CFG) -> FetchError:
    with pytest.raises(FetchError) as info:
        fetch(url, tmp_path, cfg)
    assert list(tmp_path.glob("*.part")) == [], "temp file left behind after a failure"
    return info.value


def test_image_is_streamed_to_a_temp_file_with_its_sha256(origin: Server, tmp_path: Path) -> None:
    d = fetch(origin.url("/image.jpg"), tmp_path)
    assert d.path.parent == tmp_path and d.path.read_bytes() == JPEG
    assert (d.size, d.sha256) == (len(JPEG), hashlib.sha256(JPEG).hexdigest())
    assert (d.format.name, d.status, d.attempts, d.content_type) == ("jpeg", 200, 1, "image/jpeg")
    assert d.url == d.final_url == origin.url("/image.jpg")


@pytest.mark.parametrize(("path", "name"), [("/image.png", "png"), ("/image.webp", "webp"), ("/image.gif", "gif")])
def test_other_formats(origin: Server, tmp_path: Path, path: str, name: str) -> None:
    assert fetch(origin.url(path), tmp_path).format.name == name


def test_svg_smaller_than_the_sniff_window(origin: Server, tmp_path: Path) -> None:
    d = fetch(origin.url("/image.svg"), tmp_path)
    assert d.format.name == "svg" and d.path.read_bytes() == SVG and len(SVG) < SNIFF_BYTES


def test_content_type_is_ignored_bytes_decide(origin: Server, tmp_path: Path) -> None:
    url = origin.add("/photo", JPEG, content_type="text/plain")
    assert fetch(url, tmp_path).format.name == "jpeg"


def test_request_headers(origin: Server, tmp_path: Path) -> None:
    fetch(origin.url("/image.jpg"), tmp_path)
    sent = origin.last_headers("/image.jpg")
    assert sent["User-Agent"] == CFG.user_agent
    assert sent["Accept"] == ACCEPT
    assert "Referer" not in sent and "Cookie" not in sent


def test_per_host_headers_exact_host_match(origin: Server, tmp_path: Path) -> None:
    cfg = replace(CFG, headers={"127.0.0.1": {"Referer": "https://blog.example.com/"}, "127.0.0": {"X-No": "1"}})
    fetch(origin.url("/image.jpg"), tmp_path, cfg)
    sent = origin.last_headers("/image.jpg")
    assert sent["Referer"] == "https://blog.example.com/"
    assert "X-No" not in sent


def test_gzip_encoded_body_is_decoded_and_hashed_decoded(origin: Server, tmp_path: Path) -> None:
    d = fetch(origin.url("/gzip"), tmp_path)
    assert d.path.read_bytes() == JPEG and d.sha256 == hashlib.sha256(JPEG).hexdigest()


def test_server_errors_are_retried_then_succeed(origin: Server, tmp_path: Path) -> None:
    d = fetch(origin.url("/fail/2/a"), tmp_path)
    assert d.attempts == 3 and d.path.read_bytes() == JPEG
    assert origin.hits("/fail/2/a") == 3


def test_server_errors_exhaust_retries(origin: Server, tmp_path: Path) -> None:
    err = fail(origin.url("/fail/9/b"), tmp_path)
    assert isinstance(err, TransientFetchError) and err.outcome == "failed"
    assert (err.attempts, err.status, err.reason) == (3, 500, "500 Internal Server Error")
    assert origin.hits("/fail/9/b") == 3


def test_429_honoursretry_after(origin: Server, tmp_path: Path) -> None:
    start = time.monotonic()
    d = fetch(origin.url("/429/k"), tmp_path)
    assert time.monotonic() - start >= 0.95  # Retry-After: 1, although backoff is 0.01 s
    assert d.attempts == 2


def test_retry_after_is_capped_by_max_backoff(origin: Server, tmp_path: Path) -> None:
    start = time.monotonic()
    d = fetch(origin.url("/retry-after/429/cap?seconds=60"), tmp_path, replace(CFG, max_backoff=0.1))
    assert d.attempts == 2
    assert time.monotonic() - start < 20  # capped at 0.1 s, not the 60 s asked for (a wide margin: busy machines)


@pytest.mark.parametrize(("path", "status"), [("/404", 404), ("/410", 410), ("/403", 403)])
def test_gone_and_forbidden_are_final_at_once(origin: Server, tmp_path: Path, path: str, status: int) -> None:
    err = fail(origin.url(path), tmp_path)
    assert isinstance(err, DeadLink) and err.outcome == "dead"
    assert (err.status, err.attempts) == (status, 1)
    assert origin.hits(path) == 1
    if status == 403:
        assert err.reason == "403 Forbidden — the host may need a Referer or cookie, see [fetch] headers"


def test_other_4xx_is_final(origin: Server, tmp_path: Path) -> None:
    url = origin.add("/teapot", b"short and stout", status=418)
    err = fail(url, tmp_path)
    assert isinstance(err, DeadLink) and err.status == 418 and err.attempts == 1


def test_408_is_retried(origin: Server, tmp_path: Path) -> None:
    url = origin.add("/timeout", b"", status=408)
    err = fail(url, tmp_path)
    assert isinstance(err, TransientFetchError) and err.attempts == 3


def test_html_page_with_image_content_type_is_not_an_image(origin: Server, tmp_path: Path) -> None:
    err = fail(origin.url("/html"), tmp_path)
    assert isinstance(err, NotAnImage) and err.outcome == "rejected"
    assert err.reason == "not an image (text/html page)"
    assert (err.attempts, origin.hits("/html")) == (1, 1)


def test_not_an_image_stops_reading_at_once(origin: Server, tmp_path: Path) -> None:
    url = origin.add("/big.html", b"<html>" + b"x" * 5_000_000, content_type="image/jpeg")

    async def body(f: Fetcher) -> int:
        with pytest.raises(NotAnImage):
            await f.fetch(url)
        return f.stats.bytes_received

    assert run(replace(CFG, max_bytes=10_000_000), tmp_path, body) < 1_000_000


def test_empty_body(origin: Server, tmp_path: Path) -> None:
    err = fail(origin.add("/empty", b"", content_type="image/png"), tmp_path)
    assert isinstance(err, NotAnImage) and "empty body" in err.reason


def test_truncated_body_is_transient(origin: Server, tmp_path: Path) -> None:
    err = fail(origin.url("/truncated"), tmp_path)
    assert isinstance(err, TransientFetchError) and "truncated body" in err.reason
    assert err.attempts == 3 and origin.hits("/truncated") == 3


def test_slow_origin_times_out(origin: Server, tmp_path: Path) -> None:
    start = time.monotonic()
    err = fail(origin.url("/slow"), tmp_path, replace(CFG, timeout=0.3, retries=1))
    assert isinstance(err, TransientFetchError) and "timed out" in err.reason and err.attempts == 2
    assert time.monotonic() - start < SLOW_SECONDS / 3  # two attempts of 0.3 s, not the server's 30 s


@pytest.mark.parametrize("path", ["/oversize", "/oversize-chunked"])
def test_oversize_is_refused_without_reading_it_all(origin: Server, tmp_path: Path, path: str) -> None:
    async def body(f: Fetcher) -> int:
        with pytest.raises(TooLarge) as info:
            await f.fetch(origin.url(path))
        assert info.value.attempts == 1 and info.value.outcome == "rejected"
        return f.stats.bytes_received

    received = run(CFG, tmp_path, body)
    assert received <= CFG.max_bytes + 64 * 1024 < OVERSIZE_BYTES
    assert list(tmp_path.iterdir()) == []


def test_bomb_is_downloaded_as_a_small_png(origin: Server, tmp_path: Path) -> None:
    d = fetch(origin.url("/bomb"), tmp_path)
    assert d.format.name == "png" and d.size == len(make_png_bomb())


def test_redirect_chain_relative_and_absolute(origin: Server, tmp_path: Path) -> None:
    d = fetch(origin.url("/redirect/4"), tmp_path)
    assert d.final_url == origin.url("/redirect/0") and d.url == origin.url("/redirect/4")
    assert [origin.hits(f"/redirect/{n}") for n in range(5)] == [1, 1, 1, 1, 1]


def test_too_many_redirects(origin: Server, tmp_path: Path) -> None:
    err = fail(origin.url("/redirect/9"), tmp_path)
    assert isinstance(err, DeadLink) and "more than 5 redirects" in err.reason
    assert origin.hits("/redirect/4") == 1 and origin.hits("/redirect/3") == 0  # 5 hops followed, no more


def test_redirect_loop(origin: Server, tmp_path: Path) -> None:
    err = fail(origin.url("/redirect-loop"), tmp_path)
    assert isinstance(err, DeadLink) and "redirect loop" in err.reason and origin.hits("/redirect-loop") == 1


def test_redirect_to_metadata_service_is_refused(origin: Server, tmp_path: Path) -> None:
    err = fail(origin.url("/redirect-private"), tmp_path)
    assert isinstance(err, Refused) and err.outcome == "rejected"
    assert "169.254.169.254" in err.reason and "link-local" in err.reason


def test_redirect_to_file_scheme_is_refused(origin: Server, tmp_path: Path) -> None:
    err = fail(origin.url("/redirect-scheme"), tmp_path)
    assert isinstance(err, Refused) and "file: URLs are never fetched" in err.reason


def test_redirect_without_location(origin: Server, tmp_path: Path) -> None:
    err = fail(origin.add("/moved", b"", status=302), tmp_path)
    assert isinstance(err, DeadLink) and "without a Location" in err.reason


def test_connection_refused_is_transient(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        err = fail(f"http://127.0.0.1:{port}/a.jpg", tmp_path)
    assert isinstance(err, TransientFetchError) and "connection failed" in err.reason and err.attempts == 3


def test_credentials_never_appear_in_errors(origin: Server, tmp_path: Path) -> None:
    url = origin.url("/404").replace("http://", "http://alice:s3cret@")
    err = fail(url, tmp_path)
    assert "s3cret" not in str(err) and "alice" not in str(err) and "***@" in err.url


def test_errors_carry_the_cause_but_no_third_party_type(origin: Server, tmp_path: Path) -> None:
    err = fail(origin.url("/truncated"), tmp_path, replace(CFG, retries=0))
    assert type(err).__module__ == "archiver.errors"
    chain, cause = [], err.__cause__
    while cause is not None:
        chain.append(type(cause).__module__.split(".")[0])
        cause = cause.__cause__
    assert "aiohttp" in chain


def test_stats_count_requests_and_bytes(origin: Server, tmp_path: Path) -> None:
    images = [origin.add(f"/many/{i}.jpg", make_jpeg(64, 48, seed=i), content_type="image/jpeg") for i in range(6)]

    async def body(f: Fetcher) -> tuple[list[Download], FetchStats]:
        downloads = list(await asyncio.gather(*(f.fetch(u) for u in [*images, origin.url("/fail/1/s")])))
        return downloads, f.stats

    downloads, stats = run(CFG, tmp_path, body)
    assert len({d.sha256 for d in downloads}) == 7
    assert (stats.requests, stats.retries, stats.downloads) == (8, 1, 7)
    assert stats.bytes_received == sum(d.size for d in downloads)


def test_per_host_limit(origin: Server, tmp_path: Path) -> None:
    cfg = replace(CFG, concurrency=8, per_host=2)
    urls = [origin.url(f"/hold/{i}") for i in range(8)]
    run(cfg, tmp_path, lambda f: asyncio.gather(*(f.fetch(u) for u in urls)))
    assert origin.max_in_flight() == 2


def test_global_limit_across_hosts(origin: Server, tmp_path: Path) -> None:
    hosts = ["127.0.0.1"] + [f"h{i}.example.test" for i in range(3)]
    cfg = replace(
        CFG, concurrency=3, per_host=2, connect_to={h: f"127.0.0.1:{origin.port}" for h in hosts[1:]}
    )
    urls = [f"http://{h}:{origin.port}/hold/{h}-{i}" for h in hosts for i in range(3)]
    run(cfg, tmp_path, lambda f: asyncio.gather(*(f.fetch(u) for u in urls)))
    assert origin.max_in_flight() == 3


def test_no_slot_is_held_while_waiting_to_retry(origin: Server, tmp_path: Path) -> None:
    cfg = replace(CFG, concurrency=1, per_host=1, backoff=0.5, max_backoff=0.5)

    async def body(f: Fetcher) -> list[str]:
        done: list[str] = []

        async def one(url: str) -> None:
            await f.fetch(url)
            done.append(url.rsplit("/", 1)[-1])

        retried = asyncio.create_task(one(origin.url("/fail/1/slot")))
        await asyncio.sleep(0.05)  # the first attempt has failed; it now sleeps 0.25-0.5 s
        await asyncio.wait_for(one(origin.url("/image.jpg")), 0.2)
        await retried
        return done

    assert run(cfg, tmp_path, body) == ["image.jpg", "slot"]


def test_retry_after_parsing() -> None:
    assert retry_after("3") == 3.0
    assert retry_after(None) is None and retry_after("soon") is None
    assert retry_after("²") is None and retry_after("①") is None  # digits to str.isdigit, not numbers (was a crash)
    assert 0 <= (retry_after("Wed, 21 Oct 2015 07:28:00 GMT") or 0) == 0.0
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 < (retry_after(future) or 0) <= 30


def test_unwritable_workdir_is_a_clear_error_not_an_oserror(origin: Server, tmp_path: Path) -> None:
    workdir = tmp_path / "work"

    async def body(f: Fetcher) -> FetchError:
        workdir.rmdir()
        workdir.write_bytes(b"")  # now a file: no temp file can be created inside it
        with pytest.raises(TransientFetchError, match="cannot write a temporary file") as info:
            await f.fetch(origin.url("/image.jpg"))
        return info.value

    assert run(CFG, workdir, body).attempts == 1


def test_rate_meter_measures_a_sliding_window_after_the_first_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("archiver.fetch.body.time.monotonic", lambda: now[0])
    meter = RateMeter(min_rate=100, window=1.0)
    assert meter.wait_limit() is None and meter.too_slow() is None  # before the first byte: timeouts only
    meter.add(50)
    now[0] = 100.5
    assert meter.too_slow() is None and meter.wait_limit() == pytest.approx(0.5)  # first window not over
    meter.add(200)
    now[0] = 101.2
    assert meter.too_slow() is None  # 200 bytes in (100.2, 101.2]: fast enough; the first 50 have left
    now[0] = 101.6
    assert meter.too_slow() == 0  # nothing in (100.6, 101.6]
    assert meter.wait_limit() == pytest.approx(0.25)  # from now on the window is checked every quarter


def test_rate_meter_off_at_zero() -> None:
    meter = RateMeter(min_rate=0, window=1.0)
    meter.add(1)
    assert meter.wait_limit() is None and meter.too_slow() is None


def test_short_reason_is_one_bounded_line() -> None:
    assert short("Bad status line:\n  Expected HTTP/:\n\n  b'" + "\\xff" * 10_000) == (
        "Bad status line: Expected HTTP/: b'" + "\\xff" * 11 + "…"
    )
    assert short("fine") == "fine"


def test_host_key_is_host_and_port_without_credentials_path_or_query() -> None:
    assert host_key("http://user:secret@IMG.Example.test/a.jpg?token=x") == "img.example.test:80"
    assert host_key("https://img.example.test/a.jpg") == "img.example.test:443"
    assert host_key("http://img.example.test:8080/") == "img.example.test:8080"
    assert host_key("http://[::1]:81/a") == "[::1]:81"
    assert host_key("http://a.test/") != host_key("http://b.test/")  # even when connect_to maps both to one address


def test_a_longer_pause_extends_a_shorter_one_never_shortens_it(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    pauses = HostPauses(clock=lambda: now[0])
    with caplog.at_level(logging.DEBUG, logger="archiver.fetch.pauses"):
        assert pauses.pause("a:80", 5, "429 Retry-After") and pauses.remaining("a:80") == 5
        assert not pauses.pause("a:80", 1, "503 Retry-After") and pauses.remaining("a:80") == 5
        assert pauses.pause("a:80", 10, "429 Retry-After") and pauses.remaining("a:80") == 10
        assert pauses.pause("a:80", 10.5, "429 Retry-After")  # a few more ms from another answer: not logged again
        assert pauses.remaining("b:80") == 0.0
        now[0] = 111.0
        assert pauses.remaining("a:80") == 0.0
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert info == ["pausing a:80 for 5 s (429 Retry-After)", "pausing a:80 for 10 s (429 Retry-After)"]


def test_head_follows_the_fetch_rules_and_reads_no_body(origin: Server, tmp_path: Path) -> None:
    """verify --public asks each archive URL with HEAD: same guard, redirects, statuses and retries as a download."""
    body = make_jpeg(64, 48, seed=5)
    origin.add("/h/a.jpg", body, "image/jpeg")
    head = run(CFG, tmp_path, lambda f: f.head(origin.url("/h/a.jpg")))
    assert (head.status, head.content_length, head.content_type) == (200, len(body), "image/jpeg")
    assert origin.hits("/h/a.jpg") == 1 and list(tmp_path.iterdir()) == []  # no temp file: nothing downloaded
    redirected = run(CFG, tmp_path, lambda f: f.head(origin.url("/redirect/1")))
    assert redirected.status == 200 and redirected.final_url != origin.url("/redirect/1")
    with pytest.raises(DeadLink, match="404"):
        run(CFG, tmp_path, lambda f: f.head(origin.url("/h/missing.jpg")))
    with pytest.raises(Refused, match="loopback"):
        run(replace(CFG, allow_networks=()), tmp_path, lambda f: f.head(origin.url("/h/a.jpg")))
    assert origin.hits("/h/a.jpg") == 1
