"""Origin faults the fetcher survives, each against real loopback servers: refused, reset, stalls, trickles,
Retry-After, 5xx storms next to healthy hosts, redirect loops, Content-Length lies, encodings, DNS failures and
rebinding, proxies. Every wait is bounded by the config, never by the server."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from archiver.config import FetchConfig, ImagesConfig
from archiver.errors import DeadLink, FetchError, ImageError, Refused, TooLarge, TransientFetchError
from archiver.fetch.client import CHUNK, Fetcher
from archiver.image import process as imaging
from archiver.model import Download
from tests.support.fetching import LOOPBACK, fetch_with, run
from tests.support.origin import JPEG, SLOW_SECONDS, Server, origin_routes

CFG = replace(LOOPBACK, timeout=1.0, min_rate=0)
JPEG_SHA = hashlib.sha256(JPEG).hexdigest()


def fetch(url: str, tmp_path: Path, cfg: FetchConfig = CFG, **kw: Any) -> Download:
    return fetch_with(cfg, url, tmp_path, **kw)


def fail(url: str, tmp_path: Path, cfg: FetchConfig = CFG, **kw: Any) -> tuple[FetchError, float]:
    """The error fetching ``url`` gives, and the seconds it took; no temp file may be left behind."""
    workdir = Path(tempfile.mkdtemp(dir=tmp_path))
    start = time.monotonic()
    with pytest.raises(FetchError) as info:
        fetch(url, workdir, cfg, **kw)
    elapsed = time.monotonic() - start
    assert list(workdir.iterdir()) == [], "temp file left behind after a failure"
    return info.value, elapsed


# --- connection faults ------------------------------------------------------------------------------------


def test_connection_refused_is_retried_then_transient(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, never listening: every connect is refused
        err, elapsed = fail(f"http://127.0.0.1:{s.getsockname()[1]}/a.jpg", tmp_path)
    assert isinstance(err, TransientFetchError) and err.outcome == "failed"
    assert "connection failed" in err.reason and err.attempts == 3
    assert elapsed < 10  # ~0.05 s: backoff is short (0.01 s); generous for a loaded machine


def test_reset_mid_body_is_retried_and_the_retry_is_intact(origin: Server, tmp_path: Path) -> None:
    d = fetch(origin.url("/reset/1/once"), tmp_path)
    assert (d.attempts, d.sha256, d.path.read_bytes()) == (2, JPEG_SHA, JPEG)
    assert origin.hits("/reset/1/once") == 2
    assert [p.name for p in tmp_path.iterdir()] == [d.path.name]  # the half-written first attempt is gone


def test_reset_mid_body_every_time_is_transient(origin: Server, tmp_path: Path) -> None:
    err, _ = fail(origin.url("/reset/9/always"), tmp_path)
    assert isinstance(err, TransientFetchError)
    assert err.reason == "truncated body (connection reset by the server)" and err.attempts == 3


# --- stalls and trickles: bounded by the config ---------------------------------------------------------


def test_stall_before_headers_is_ended_by_the_timeout(origin: Server, tmp_path: Path) -> None:
    cfg = replace(CFG, timeout=0.3, retries=1)
    err, elapsed = fail(origin.url("/slow"), tmp_path, cfg)
    assert isinstance(err, TransientFetchError) and "timed out" in err.reason and err.attempts == 2
    assert 0.6 <= elapsed < SLOW_SECONDS / 3  # two attempts of 0.3 s, not the server's 30 s


def test_stall_mid_body_is_ended_by_the_timeout(origin: Server, tmp_path: Path) -> None:
    cfg = replace(CFG, timeout=0.4, retries=1, min_rate=0)
    err, elapsed = fail(origin.url("/stall-body"), tmp_path, cfg)
    assert isinstance(err, TransientFetchError) and "timed out" in err.reason and err.attempts == 2
    assert 0.8 <= elapsed < SLOW_SECONDS / 3


def test_stall_mid_body_is_ended_by_min_rate_before_the_timeout(origin: Server, tmp_path: Path) -> None:
    cfg = replace(CFG, timeout=25.0, retries=0, min_rate=1024)
    err, elapsed = fail(origin.url("/stall-body"), tmp_path, cfg, rate_window=0.3)
    assert isinstance(err, TransientFetchError) and err.reason.startswith("too slow: 0 bytes in 0.3s")
    assert 0.3 <= elapsed < 10  # the 25 s timeout did not end it


def test_trickle_is_ended_by_min_rate_well_before_the_timeout(origin: Server, tmp_path: Path) -> None:
    cfg = replace(CFG, timeout=30.0, retries=1, min_rate=1024)
    err, elapsed = fail(origin.url("/trickle/100"), tmp_path, cfg, rate_window=0.4)
    assert isinstance(err, TransientFetchError) and err.outcome == "failed"
    assert "under min_rate 1024 bytes/s" in err.reason and err.attempts == 2
    assert elapsed < 20  # ~0.8 s; 40 KB at 100 bytes/s would take 400 s, the timeout alone 60 s


def test_min_rate_zero_leaves_a_trickle_to_the_timeout(origin: Server, tmp_path: Path) -> None:
    cfg = replace(CFG, timeout=0.6, retries=0, min_rate=0)
    err, elapsed = fail(origin.url("/trickle/100"), tmp_path, cfg, rate_window=0.1)
    assert isinstance(err, TransientFetchError) and "timed out" in err.reason
    assert 0.6 <= elapsed < 20  # ended by the 0.6 s timeout, not by a 0.1 s rate window (nor after 400 s)


def test_a_body_faster_than_min_rate_is_kept(origin: Server, tmp_path: Path) -> None:
    cfg = replace(CFG, timeout=5.0, min_rate=1024)
    d = fetch(origin.url("/trickle/100000"), tmp_path, cfg, rate_window=0.3)  # 10 KB every 0.1 s, ~0.4 s
    assert (d.attempts, d.path.read_bytes()) == (1, JPEG)


# --- Retry-After ----------------------------------------------------------------------------------------

RETRY_AFTER = [(status, form) for status in (429, 503) for form in ("seconds", "date")]


def _retry_after_url(status: int, form: str, ahead: int) -> str:
    # An HTTP date has whole seconds: "now + 2" is 1 to 2 s ahead when it is read. Each URL on its own host,
    # so that one host's pause (see below) does not add to another URL's wait.
    value = ahead if form == "seconds" else ahead + 1
    return f"http://r{status}-{form}.example.test/retry-after/{status}/{status}-{form}-{ahead}?{form}={value}"


def _to_origin(cfg: FetchConfig, origin: Server, *hosts: str) -> FetchConfig:
    """``cfg`` with made-up ``hosts`` connected to the loopback origin (each stays its own host)."""
    return replace(cfg, connect_to={h: f"127.0.0.1:{origin.port}" for h in hosts})


def _timed_fetches(cfg: FetchConfig, urls: Sequence[str], tmp_path: Path) -> list[tuple[Download, float]]:
    async def body(f: Fetcher) -> list[tuple[Download, float]]:
        start = time.monotonic()

        async def one(url: str) -> tuple[Download, float]:
            d = await f.fetch(url)
            return d, time.monotonic() - start

        return list(await asyncio.gather(*(one(u) for u in urls)))

    return run(cfg, tmp_path, body)


def test_retry_after_seconds_and_http_date_are_honoured(origin: Server, tmp_path: Path) -> None:
    urls = [_retry_after_url(status, form, 1) for status, form in RETRY_AFTER]
    cfg = _to_origin(replace(CFG, backoff=0.01), origin, *(urlsplit(u).hostname or "" for u in urls))
    results = _timed_fetches(cfg, urls, tmp_path)
    for (status, form), (d, elapsed) in zip(RETRY_AFTER, results, strict=True):
        assert d.attempts == 2 and d.path.read_bytes() == JPEG
        assert 0.95 <= elapsed < 10, (status, form, elapsed)  # backoff alone would be 0.01 s; max_backoff 60


def test_retry_after_is_capped_by_max_backoff(origin: Server, tmp_path: Path) -> None:
    urls = [_retry_after_url(status, form, 30) for status, form in RETRY_AFTER]
    cfg = _to_origin(replace(CFG, max_backoff=0.2), origin, *(urlsplit(u).hostname or "" for u in urls))
    results = _timed_fetches(cfg, urls, tmp_path)
    for d, elapsed in results:
        assert d.attempts == 2 and elapsed < 15  # capped at 0.2 s, not the 30 s asked for


# --- a host that says "slow down" is paused as a whole ---------------------------------------------------

PAUSED, OTHER = "paused.example.test", "other.example.test"


@pytest.fixture
def pause_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="archiver.fetch.pauses")
    return caplog


def _pauses(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("pausing ")]


async def _until(check: Callable[[], object], limit: float = 5.0) -> None:
    async def poll() -> None:
        while not check():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), limit)


async def _done_at(f: Fetcher, url: str) -> float:
    d = await f.fetch(url)
    assert d.path.read_bytes() == JPEG
    return time.monotonic()


def test_a_429_with_retry_after_pauses_its_host_while_other_hosts_flow(
    origin: Server, tmp_path: Path, pause_log: pytest.LogCaptureFixture
) -> None:
    # Two global slots only: if the six URLs queued on the paused host held slots while they wait, the
    # other host could not be served until the pause ends (2 s: ten times what the other host needs, idle).
    cfg = _to_origin(replace(CFG, concurrency=2, per_host=2, max_backoff=5.0), origin, PAUSED, OTHER)

    async def body(f: Fetcher) -> tuple[list[float], list[float]]:
        first = asyncio.create_task(_done_at(f, f"http://{PAUSED}/retry-after/429/first?seconds=2"))
        await _until(lambda: _pauses(pause_log))
        paused = [asyncio.create_task(_done_at(f, f"http://{PAUSED}/hold/p{i}?s=0.02")) for i in range(6)]
        await asyncio.sleep(0.01)  # they queue first
        other = [asyncio.create_task(_done_at(f, f"http://{OTHER}/hold/o{i}?s=0.05")) for i in range(8)]
        return list(await asyncio.gather(first, *paused)), list(await asyncio.gather(*other))

    _, other_done = run(cfg, tmp_path, body)
    first, *later = origin.arrivals(PAUSED)
    assert first.path == "/retry-after/429/first" and len(later) == 7  # its retry and the six others
    assert min(a.at for a in later) >= first.at + 1.95, "a request reached the paused host within Retry-After"
    assert max(other_done) < min(a.at for a in later), "the other host waited for the paused one"
    assert _pauses(pause_log) == [f"pausing {PAUSED}:80 for 2 s (429 Retry-After)"]  # once, host:port only
    assert origin.max_in_flight(PAUSED) <= 2 and origin.max_in_flight(OTHER) <= 2
    assert origin.max_in_flight() <= 2


@pytest.mark.parametrize("form", ["seconds", "date"])
def test_a_host_pause_is_capped_by_max_backoff(
    origin: Server, tmp_path: Path, pause_log: pytest.LogCaptureFixture, form: str
) -> None:
    cfg = _to_origin(replace(CFG, max_backoff=0.3), origin, PAUSED)

    async def body(f: Fetcher) -> list[float]:
        start = time.monotonic()
        first = asyncio.create_task(_done_at(f, f"http://{PAUSED}/retry-after/503/cap?{form}=30"))
        await _until(lambda: _pauses(pause_log))
        later = [_done_at(f, f"http://{PAUSED}/image.jpg") for _ in range(3)]
        return [t - start for t in await asyncio.gather(first, *later)]

    elapsed = run(cfg, tmp_path, body)
    first, *later = origin.arrivals(PAUSED)
    assert min(a.at for a in later) >= first.at + 0.25  # paused for max_backoff ...
    assert max(elapsed) < 15  # ... not the 30 s asked for
    assert _pauses(pause_log) == [f"pausing {PAUSED}:80 for 0.3 s (503 Retry-After)"]


def test_a_503_without_retry_after_backs_off_that_url_only(
    origin: Server, tmp_path: Path, pause_log: pytest.LogCaptureFixture
) -> None:
    origin.add("/busy", b"busy", "text/plain", status=503)
    cfg = _to_origin(replace(CFG, retries=1, backoff=2.0, max_backoff=2.0), origin, PAUSED)  # waits 1-2 s

    async def body(f: Fetcher) -> FetchError:
        busy = asyncio.create_task(f.fetch(f"http://{PAUSED}/busy"))
        await _until(lambda: origin.hits("/busy"))
        await asyncio.gather(*(_done_at(f, f"http://{PAUSED}/image.jpg") for _ in range(4)))
        with pytest.raises(TransientFetchError) as info:
            await busy
        return info.value

    err = run(cfg, tmp_path, body)
    assert (err.status, err.attempts) == (503, 2)
    paths = [a.path for a in origin.arrivals(PAUSED)]
    assert paths == ["/busy"] + ["/image.jpg"] * 4 + ["/busy"]  # the others went on while /busy backed off
    assert _pauses(pause_log) == []


def test_a_429_without_retry_after_pauses_its_host_for_the_backoff_delay(
    origin: Server, tmp_path: Path, pause_log: pytest.LogCaptureFixture
) -> None:
    origin.add("/crowded", b"slow down", "text/plain", status=429)
    cfg = _to_origin(replace(CFG, retries=0, backoff=1.0, max_backoff=1.0), origin, PAUSED)  # 0.5-1 s

    async def body(f: Fetcher) -> None:
        with pytest.raises(TransientFetchError):
            await f.fetch(f"http://{PAUSED}/crowded")  # no retry left: the host is paused all the same
        await _done_at(f, f"http://{PAUSED}/image.jpg")

    run(cfg, tmp_path, body)
    crowded, image = origin.arrivals(PAUSED)
    assert image.at >= crowded.at + 0.45
    [message] = _pauses(pause_log)
    assert message.startswith(f"pausing {PAUSED}:80 for ") and message.endswith(" s (429 without Retry-After)")


def test_a_redirect_into_a_paused_host_waits_for_the_pause(
    origin: Server, tmp_path: Path, pause_log: pytest.LogCaptureFixture
) -> None:
    cfg = _to_origin(replace(CFG, max_backoff=5.0), origin, PAUSED, OTHER)

    async def body(f: Fetcher) -> Download:
        first = asyncio.create_task(f.fetch(f"http://{PAUSED}/retry-after/429/r?seconds=1"))
        await _until(lambda: _pauses(pause_log))
        d = await f.fetch(f"http://{OTHER}/redirect-to?url=http://{PAUSED}/image.jpg")
        await first
        return d

    d = run(cfg, tmp_path, body)
    assert d.path.read_bytes() == JPEG and d.attempts == 2  # the hop into the pause ended its first attempt
    first, *later = origin.arrivals(PAUSED)
    assert len(later) == 2 and min(a.at for a in later) >= first.at + 0.95


# --- a 5xx storm on one host while another keeps flowing ------------------------------------------------


@pytest.mark.parametrize(
    ("concurrency", "per_host"),
    [(4, 4), (4, 2)],  # (4, 4): the storm alone could fill every slot; (4, 2): it could queue in front
)
def test_a_5xx_storm_on_one_host_does_not_hold_up_the_others(
    origin: Server, tmp_path: Path, concurrency: int, per_host: int
) -> None:
    target = f"127.0.0.1:{origin.port}"
    cfg = replace(
        CFG,
        concurrency=concurrency,
        per_host=per_host,
        retries=3,
        backoff=0.5,  # a storm URL waits >= 0.25 + 0.5 + 1 s between its four attempts
        connect_to={"storm.example.test": target, "calm.example.test": target},
    )
    storm = [f"http://storm.example.test/storm/{i}?s=0.05" for i in range(40)]
    calm = [f"http://calm.example.test/hold/{i}?s=0.05" for i in range(40)]

    async def body(f: Fetcher) -> list[FetchError]:
        async def ok(url: str) -> None:
            d = await f.fetch(url)
            assert d.path.read_bytes() == JPEG

        async def failing(url: str) -> FetchError:
            with pytest.raises(TransientFetchError) as info:
                await f.fetch(url)
            return info.value

        bad = asyncio.gather(*(failing(u) for u in storm))  # the storm's URLs queue first
        await asyncio.gather(*(ok(u) for u in calm))
        return list(await bad)

    storm_failed = run(cfg, tmp_path, body)
    assert all(err.attempts == 4 and err.status == 500 for err in storm_failed)
    assert origin.total_hits() == 40 + 40 * 4
    # The order the requests reached the origin, not seconds (a busy machine slows both hosts alike, and once
    # made this test fail on a wall-clock bound): the healthy host's requests went in turn with the storm's, never
    # behind its queue or its retries. Before the healthy host's k-th request, at most k + 2 × concurrency of the
    # storm's had arrived (measured: about k + per_host, idle or with the cores saturated); a healthy host queued
    # behind the storm's first attempts comes after 40 of them, behind its retries after all 160.
    storm_seen = calm_seen = lead = 0
    for arrival in origin.arrivals():
        if arrival.host == "storm.example.test":
            storm_seen += 1
        elif arrival.host == "calm.example.test":
            lead = max(lead, storm_seen - calm_seen)
            calm_seen += 1
    assert calm_seen == 40
    assert lead <= 2 * concurrency, f"the storm host was {lead} requests ahead of the healthy host"
    # The limits held all along: never more than per_host on one host, nor concurrency in total.
    assert origin.max_in_flight("storm.example.test") <= per_host
    assert origin.max_in_flight("calm.example.test") <= per_host
    assert origin.max_in_flight() <= concurrency


# --- redirects -----------------------------------------------------------------------------------------


def test_ten_redirects_are_followed_eleven_are_not(origin: Server, tmp_path: Path) -> None:
    cfg = replace(CFG, max_redirects=FetchConfig().max_redirects)
    assert cfg.max_redirects == 10
    assert fetch(origin.url("/redirect/10"), tmp_path, cfg).final_url == origin.url("/redirect/0")
    origin.reset()
    err, _ = fail(origin.url("/redirect/11"), tmp_path, cfg)
    assert isinstance(err, DeadLink) and "more than 10 redirects" in err.reason and err.attempts == 1
    assert origin.total_hits() == 11 and origin.hits("/redirect/0") == 0


@pytest.mark.parametrize("n", [1, 2, 3])
def test_redirect_cycles_are_dead_at_once(origin: Server, tmp_path: Path, n: int) -> None:
    err, _ = fail(origin.url(f"/loop/{n}/0"), tmp_path)
    assert isinstance(err, DeadLink) and "redirect loop" in err.reason and err.attempts == 1
    assert origin.total_hits() == n  # each URL of the cycle asked once, never retried


# --- Content-Length lies -------------------------------------------------------------------------------


def test_content_length_larger_than_the_body_is_a_transient_truncation(origin: Server, tmp_path: Path) -> None:
    err, _ = fail(origin.url("/truncated"), tmp_path)
    assert isinstance(err, TransientFetchError) and "truncated body" in err.reason and err.attempts == 3


def test_content_length_smaller_than_the_body_gives_the_declared_bytes(origin: Server, tmp_path: Path) -> None:
    """Decision: Content-Length frames the body. The declared bytes are the download; being half a JPEG,
    the image stage rejects them. The surplus never reaches a file, and the connection it arrived on is
    not reused for the next image of that host (or, if it was already, that image is retried)."""

    async def body(f: Fetcher) -> tuple[Download, Download]:
        short = await f.fetch(origin.url("/short-length?later=1"))
        after = await f.fetch(origin.url("/image.png"))
        return short, after

    short, after = run(CFG, tmp_path, body)
    declared = len(JPEG) // 2
    assert short.size == declared and short.path.read_bytes() == JPEG[:declared]
    assert short.sha256 == hashlib.sha256(JPEG[:declared]).hexdigest()
    with pytest.raises(ImageError, match="truncated"):
        imaging.process(str(short.path), short.format, short.sha256, short.size, ImagesConfig())
    assert after.format.name == "png" and origin.hits("/image.png") >= 1


def test_content_length_smaller_arriving_with_the_headers_never_leaks_surplus(
    origin: Server, tmp_path: Path
) -> None:
    """When the surplus arrives in the same read as the response, aiohttp reports a malformed response
    instead (transient, with a one-line reason): either way no byte past Content-Length is kept."""
    declared = len(JPEG) // 2
    for _ in range(5):
        try:
            d = fetch(origin.url("/short-length"), tmp_path, replace(CFG, retries=0))
        except TransientFetchError as err:
            assert err.reason.startswith("bad HTTP response (") and len(err.reason) < 120
        else:
            assert d.size == declared and d.path.read_bytes() == JPEG[:declared]
            d.path.unlink()
    assert list(tmp_path.iterdir()) == []


# --- encodings and chunked bodies ----------------------------------------------------------------------


@pytest.mark.parametrize("chunked", ["", "?chunked=1"])
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "deflate-raw"])
def test_encoded_bodies_are_stored_and_hashed_decoded(
    origin: Server, tmp_path: Path, encoding: str, chunked: str
) -> None:
    d = fetch(origin.url(f"/encoded/{encoding}{chunked}"), tmp_path)
    assert d.path.read_bytes() == JPEG and (d.size, d.sha256, d.format.name) == (len(JPEG), JPEG_SHA, "jpeg")


def test_gzip_bomb_is_capped_by_max_bytes_of_decoded_data(origin: Server, tmp_path: Path) -> None:
    async def body(f: Fetcher) -> int:
        with pytest.raises(TooLarge, match="over max_bytes"):
            await f.fetch(origin.url("/gzip-bomb"))
        return f.stats.bytes_received

    assert run(CFG, tmp_path, body) <= CFG.max_bytes + CHUNK  # of 8 MB it would inflate to
    assert list(tmp_path.iterdir()) == []


def test_chunked_body_arrives_intact(origin: Server, tmp_path: Path) -> None:
    d = fetch(origin.url("/chunked/7"), tmp_path)
    assert (d.path.read_bytes(), d.sha256) == (JPEG, JPEG_SHA)


def test_chunked_body_cut_before_its_last_chunk_is_transient(origin: Server, tmp_path: Path) -> None:
    err, _ = fail(origin.url("/chunked-cut"), tmp_path)
    assert isinstance(err, TransientFetchError) and "truncated body" in err.reason and err.attempts == 3


# --- DNS ----------------------------------------------------------------------------------------------

Answer = Sequence[str] | BaseException | None  # addresses, an error to raise, or None: never answers


class ScriptedResolver(AbstractResolver):
    """Pretend DNS: the n-th lookup of any name gets answers[n] (the last one repeats)."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answer = self.answers[min(len(self.asked), len(self.answers) - 1)]
        self.asked.append(host)
        if answer is None:
            await asyncio.sleep(3600)
        if isinstance(answer, BaseException):
            raise answer
        assert answer is not None
        return [
            {"hostname": host, "host": a, "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}
            for a in answer
        ]

    async def close(self) -> None:
        pass


NXDOMAIN = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
SERVFAIL = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
NONRECOVERABLE = socket.gaierror(socket.EAI_FAIL, "Non-recoverable failure in name resolution")


def test_nxdomain_is_dead_at_once(tmp_path: Path) -> None:
    dns = ScriptedResolver(NXDOMAIN)
    err, _ = fail("http://gone.example.test/a.jpg", tmp_path, resolver=dns)
    assert isinstance(err, DeadLink) and err.reason == "host not found (NXDOMAIN)" and err.attempts == 1
    assert dns.asked == ["gone.example.test"]


@pytest.mark.parametrize("answer", [SERVFAIL, NONRECOVERABLE], ids=["servfail", "eai_fail"])
def test_dns_server_failures_are_retried_then_transient(tmp_path: Path, answer: BaseException) -> None:
    dns = ScriptedResolver(answer)
    err, _ = fail("http://flaky.example.test/a.jpg", tmp_path, resolver=dns)
    assert isinstance(err, TransientFetchError) and "DNS lookup failed" in err.reason and err.attempts == 3
    assert len(dns.asked) == 3


def test_dns_that_never_answers_is_bounded_by_connect_timeout(tmp_path: Path) -> None:
    cfg = replace(CFG, connect_timeout=0.2, timeout=30.0, retries=1)
    err, elapsed = fail("http://silent.example.test/a.jpg", tmp_path, cfg, resolver=ScriptedResolver(None))
    assert isinstance(err, TransientFetchError) and err.attempts == 2
    assert err.reason == "DNS lookup failed: DNS lookup timed out after 0.2s"
    assert 0.4 <= elapsed < 10  # two 0.2 s lookups, well inside the 30 s timeout


def test_dns_recovering_after_a_failure_succeeds(origin: Server, tmp_path: Path) -> None:
    dns = ScriptedResolver(SERVFAIL, ["127.0.0.1"])
    d = fetch(f"http://flaky.example.test:{origin.port}/image.jpg", tmp_path, resolver=dns)
    assert d.attempts == 2 and d.path.read_bytes() == JPEG


# --- DNS rebinding: the address checked is the address connected to ---------------------------------------


@pytest.fixture
def public_twin(canary: Server) -> Iterator[Server]:
    """An origin on 127.0.0.2 at the canary's port, standing in for a public address (allow_networks
    lists only 127.0.0.2): the same name and port reach it or the canary, depending on the DNS answer."""
    server = Server(origin_routes, host="127.0.0.2", port=canary.port).start()
    try:
        yield server
    finally:
        server.stop()


TWIN_CFG = replace(CFG, allow_networks=("127.0.0.2/32",), retries=1)


def test_an_answer_that_changes_after_the_check_never_reaches_the_canary(
    public_twin: Server, canary: Server, tmp_path: Path
) -> None:
    dns = ScriptedResolver(["127.0.0.2"], ["127.0.0.1"])  # public first, then the inside address
    url = f"http://rebind.example.test:{canary.port}/image.jpg"

    async def body(f: Fetcher) -> list[Download]:
        return [await f.fetch(url), await f.fetch(url.replace("image.jpg", "image.png"))]

    downloads = run(TWIN_CFG, tmp_path, body, resolver=dns)
    assert [d.format.name for d in downloads] == ["jpeg", "png"]
    assert dns.asked == ["rebind.example.test"]  # one lookup: checked and connected are the same address
    assert public_twin.hits("/image.jpg") == 1 and canary.total_hits() == 0
    # A new run asks again and now gets the inside address: refused, not connected.
    err, _ = fail(url, tmp_path, TWIN_CFG, resolver=dns)
    assert isinstance(err, Refused) and "loopback address 127.0.0.1" in err.reason and err.attempts == 1
    assert canary.total_hits() == 0


def test_only_allowed_addresses_of_an_answer_are_connected_to(
    public_twin: Server, canary: Server, tmp_path: Path
) -> None:
    # Unfiltered, aiohttp would try the first address (the canary) and succeed there.
    dns = ScriptedResolver(["127.0.0.1", "127.0.0.2"])
    d = fetch(f"http://mixed.example.test:{canary.port}/image.jpg", tmp_path, TWIN_CFG, resolver=dns)
    assert d.path.read_bytes() == JPEG and public_twin.hits("/image.jpg") == 1
    assert canary.total_hits() == 0


def test_a_redirect_hop_is_looked_up_and_checked_again(
    public_twin: Server, canary: Server, tmp_path: Path
) -> None:
    # The first host answers (public) with a redirect to another name; by then DNS says 127.0.0.1.
    dns = ScriptedResolver(["127.0.0.2"], ["127.0.0.1"])
    url = f"http://rebind.example.test:{canary.port}/redirect-to?url=http://other.example.test:{canary.port}/x"
    err, _ = fail(url, tmp_path, TWIN_CFG, resolver=dns)
    assert isinstance(err, Refused) and "redirect to" in err.reason and "loopback" in err.reason
    assert dns.asked == ["rebind.example.test", "other.example.test"]
    assert public_twin.hits("/redirect-to") == 1 and canary.total_hits() == 0


# --- proxies ------------------------------------------------------------------------------------------


def test_private_targets_are_refused_through_a_proxy_also_after_a_redirect(
    fake_proxy: Server, canary: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", fake_proxy.base)
    dns = ScriptedResolver(["93.184.216.34"])  # "public": only the proxy connects, and it answers itself
    cfg = replace(CFG, allow_networks=())
    assert fetch("http://img.example.test/a.jpg", tmp_path, cfg, resolver=dns).path.read_bytes() == JPEG
    inside = ScriptedResolver(["127.0.0.1"])
    for url, resolver in [
        (f"http://127.0.0.1:{canary.port}/", dns),
        (f"http://[::ffff:127.0.0.1]:{canary.port}/", dns),
        (f"http://inside.example.test:{canary.port}/", inside),
        ("http://img.example.test/redirect-to?url=http://169.254.169.254/latest/meta-data/", dns),
        (f"http://img.example.test/redirect-to?url=http://2130706433:{canary.port}/", dns),
    ]:
        err, _ = fail(url, tmp_path, cfg, resolver=resolver)
        assert isinstance(err, Refused) and "SSRF guard" in err.reason, url
    assert fake_proxy.total_hits() == 3  # the image and the two redirects; nothing private
    assert canary.total_hits() == 0
