"""The work queue in the manifest (claims under a lease, fencing tokens), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.manifest.queue import Claim, QueueDepth, UrlResult
from archiver.manifest.sqlite import Manifest
from archiver.model import Outcome

DEAD = UrlResult(Outcome.DEAD, reason="404 Not Found", http_status=404, attempts=1)


def test_claims_are_disjoint_oldest_first_and_completion_records_the_outcome(manifest_target: Path | str) -> None:
    with Manifest.open(manifest_target) as m:
        assert m.enqueue([f"https://x/{i}.jpg" for i in range(5)]) == 5
        assert m.enqueue(["https://x/0.jpg"]) == 0  # already queued
        first = m.claim("w1", 3, lease=60)
        second = m.claim("w2", 3, lease=60)
        assert [c.url for c in first] == [f"https://x/{i}.jpg" for i in range(3)]
        assert [c.url for c in second] == ["https://x/3.jpg", "https://x/4.jpg"]
        assert m.claim("w3", 3, lease=60) == []
        assert m.queue_depth() == QueueDepth(waiting=0, claimed=5, expired=0)
        assert all(c.token == 1 for c in first + second)
        assert m.complete(first[0].url, first[0].token, DEAD)
        assert not m.complete(first[0].url, first[0].token, DEAD)  # done already: nothing recorded twice
        state = m.url_states([first[0].url])[first[0].url]
        assert (state.status, state.attempts, state.http_status) == (Outcome.DEAD, 1, 404)
        m.release(second)
        assert m.queue_depth() == QueueDepth(waiting=2, claimed=2, expired=0)
        assert [c.url for c in m.claim("w3", 5, lease=60)] == ["https://x/3.jpg", "https://x/4.jpg"]


def test_a_small_queue_is_shared_between_the_live_workers(manifest_target: Path | str) -> None:
    """Two live workers and 10 URLs: the first to claim takes its half (5), not all 10, however large its batch; a
    worker alone takes its whole batch; a worker silent for long does not count."""
    with Manifest.open(manifest_target) as m:
        m.enqueue([f"https://x/{i}.jpg" for i in range(10)])
        m.heartbeat("w1", "h", 1, held=0, done=0)
        alone = m.claim("w1", 64, lease=60)
        assert len(alone) == 10  # a worker alone takes its whole batch
        m.release(alone)
        m.heartbeat("w2", "h", 2, held=0, done=0)
        first, second = m.claim("w1", 64, lease=60), m.claim("w2", 64, lease=60)
        assert (len(first), len(second)) == (5, 5)
        assert {c.url for c in first}.isdisjoint(c.url for c in second)
        m.release(first + second)
        with m._tx() as db:  # w2 silent for long: not live
            db.execute("UPDATE workers SET heartbeat_at = heartbeat_at - 3600 WHERE id = 'w2'")
        assert len(m.claim("w1", 64, lease=60)) == 10


def test_an_expired_lease_is_claimed_again_and_the_late_result_is_refused(manifest_target: Path | str) -> None:
    with Manifest.open(manifest_target) as m:
        m.enqueue(["https://x/a.jpg", "https://x/b.jpg"])
        (a, b) = m.claim("w1", 2, lease=0.4)
        assert m.claim("w2", 2, lease=60) == []  # still held
        assert m.renew("w1", [b], lease=60) == [b]  # w1 keeps b alive; a lapses
        time.sleep(0.6)
        assert m.queue_depth() == QueueDepth(waiting=0, claimed=1, expired=1)
        (taken,) = m.claim("w2", 2, lease=60)
        assert taken == Claim(a.url, a.token + 1)  # a new fencing token
        assert m.renew("w1", [a, b], lease=60) == [b]  # w1 learns it lost a
        assert not m.complete(a.url, a.token, UrlResult(Outcome.ARCHIVED, asset=None, attempts=1))  # stale: refused
        assert m.url_states([a.url]) == {}
        assert m.complete(taken.url, taken.token, DEAD)
        assert m.url_states([a.url])[a.url].attempts == 1  # recorded once, by the holder of the live claim
        assert m.complete(b.url, b.token, DEAD)
        assert m.queue_depth() == QueueDepth(0, 0, 0)


def test_workers_claiming_at_once_settle_every_url_exactly_once(manifest_target: Path | str) -> None:
    urls = [f"https://x/{i:03}.jpg" for i in range(120)]
    with Manifest.open(manifest_target) as m:
        m.enqueue(urls)
    done: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            with Manifest.open(manifest_target, lock=False) as w:
                while claims := w.claim(name, 5, lease=60):
                    for c in claims:
                        assert w.complete(c.url, c.token, UrlResult(Outcome.DEAD, reason=name, attempts=1))
                        with lock:
                            done.append(c.url)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(done) == urls  # each once
    with Manifest.open_readonly(manifest_target) as m:
        assert m.counts()["dead"] == 120 and m.queue_depth() == QueueDepth(0, 0, 0)
        assert {s.attempts for s in m.url_states(urls).values()} == {1}


def test_status_shows_the_queue(
    manifest_target: Path | str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with Manifest.open(manifest_target) as m:
        m.enqueue(["https://x/a.jpg", "https://x/b.jpg", "https://x/c.jpg"])
        m.claim("w1", 1, lease=60)
    config = tmp_path / "archiver.toml"
    key = f'url = "{manifest_target}"' if isinstance(manifest_target, str) else f'path = "{manifest_target}"'
    config.write_text(f"[manifest]\n{key}\n", encoding="utf-8")
    monkeypatch.delenv("ARCHIVER_MANIFEST_URL", raising=False)
    assert main(["status", "--config", str(config)]) == 0
    assert "queue: 2 waiting, 1 claimed by a worker, 0 with a lease that passed" in capsys.readouterr().out
