"""`archiver worker` fleets on a PostgreSQL manifest, against the real servers: workers as subprocesses, the loopback
origin counting requests (and holding responses behind a gate, so a worker is caught mid-batch deterministically),
a local store. Each test waits on conditions (rows in the manifest, requests at the origin), never on sleeps."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.manifest.queue import QueueDepth
from archiver.manifest.sqlite import Manifest
from archiver.model import Outcome
from tests.support.images import make_jpeg
from tests.support.origin import Server
from tests.support.paths import ROOT_DIR
from tests.support.postgres import PostgresServer
from tests.support.site import write_config
from tests.support.waiting import until

HOST = "img.fleet.test"


def _corpus(tmp: Path, origin: Server, articles: int = 10, per: int = 4, gate: threading.Event | None = None,
            timeout: float = 5) -> tuple[Path, list[str]]:
    """``articles`` posts of ``per`` images each (one image also used by every post, one dead link); the config; the
    origin paths of the unique URLs."""
    site = tmp / "site"
    site.mkdir(parents=True)
    paths = ["/fleet/shared.jpg", "/fleet/gone.jpg"]
    origin.add(paths[0], make_jpeg(90, 60, seed=7000), "image/jpeg", gate=gate)
    origin.add(paths[1], b"gone", "text/plain", status=404)
    for a in range(articles):
        lines = []
        for i in range(per):
            n = a * per + i
            path = f"/fleet/{n}.jpg"
            origin.add(path, make_jpeg(64 + n % 7, 48, seed=7001 + n), "image/jpeg", gate=gate)
            paths.append(path)
            lines.append(f'<img src="http://{HOST}{path}">')
        lines += [f"![shared](http://{HOST}/fleet/shared.jpg)", f"![gone](http://{HOST}/fleet/gone.jpg)"]
        (site / f"post{a:02}.md").write_text(f"---\ntitle: post {a}\n---\n" + "\n".join(lines) + "\n",
                                             encoding="utf-8")
    return write_config(tmp, origin, hosts=(HOST,), timeout=timeout), paths


def _env(url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ARCHIVER_MANIFEST_URL"}
    env["PYTHONPATH"] = str(ROOT_DIR)
    if url:
        env["ARCHIVER_MANIFEST_URL"] = url
    return env


def _archiver(url: str | None, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "archiver", *args], cwd=ROOT_DIR, env=_env(url), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _worker(cfg: Path, url: str | None, *args: str) -> subprocess.Popen[str]:
    return _archiver(url, "worker", "--config", str(cfg), *args)


def _stop(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM) -> tuple[str, str]:
    if proc.poll() is None:
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    return out, err


@contextmanager
def _processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts: killed at its end, whatever happened."""
    procs: list[subprocess.Popen[str]] = []
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate(timeout=30)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _reference(tmp: Path, origin: Server) -> Path:
    """The same corpus archived by one `archiver run` on a SQLite manifest (the embedded default)."""
    cfg, _ = _corpus(tmp, origin)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    return tmp


def _arrived(origin: Server, paths: list[str]) -> bool:
    """Whether a request for one of the held images reached the origin."""
    return any(origin.hits(p) for p in paths if "gone" not in p)


def _claimed_by(m: Manifest) -> dict[str | None, int]:
    out: dict[str | None, int] = {}
    for _url, holder, _token in m.queued():
        out[holder] = out.get(holder, 0) + 1
    return out


def test_three_workers_and_a_run_that_leaves_processing_to_them_end_like_one_sqlite_run(
    tmp_path: Path, origin: Server, postgres_url: str
) -> None:
    cfg, paths = _corpus(tmp_path / "fleet", origin)
    with _processes() as procs:
        procs += [_worker(cfg, postgres_url, "--batch", "4") for _ in range(3)]
        run = _archiver(postgres_url, "run", "--config", str(cfg), "--no-process", "-q")
        procs.append(run)
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        assert "41 archived" in out and "1 dead" in out, out
        assert "42 URLs settled by `archiver worker` processes" in out, out  # why it fetched nothing itself
        for worker in procs[:3]:
            _, werr = _stop(worker)
            assert worker.returncode == 0, werr
            assert "Traceback" not in werr
    assert {p: origin.hits(p) for p in paths} == {p: 1 for p in paths}  # each URL requested once, fleet-wide
    with Manifest.open(postgres_url, lock=False) as m:
        assert m.queue_depth() == QueueDepth(0, 0, 0)
        assert m.workers() == []  # each removed its row on its way out
        states = m.url_states(f"http://{HOST}{p}" for p in paths)
        assert sorted(s.attempts for s in states.values()) == [1] * len(paths)  # recorded once each

    ref = _reference(tmp_path / "ref", origin)
    fleet = tmp_path / "fleet"
    assert _files(fleet / "site") == _files(ref / "site")  # articles byte-identical
    assert _files(fleet / "archive") == _files(ref / "archive")  # the same objects under the same keys


def test_a_worker_killed_mid_batch_loses_its_urls_to_another_after_the_lease(
    tmp_path: Path, origin: Server, postgres_url: str
) -> None:
    gate = threading.Event()
    try:
        cfg, paths = _corpus(tmp_path / "fleet", origin, articles=2, per=3, gate=gate)
        with _processes() as procs, Manifest.open(postgres_url, lock=False) as m:
            run = _archiver(postgres_url, "run", "--config", str(cfg), "--no-process", "-q")
            procs.append(run)
            until(lambda: m.queue_depth().waiting == len(paths), "the run queued its URLs")
            a = _worker(cfg, postgres_url, "--batch", "10", "--lease", "2")
            procs.append(a)
            until(lambda: m.queue_depth().waiting == 0, "worker A claimed every URL")
            until(lambda: _arrived(origin, paths), "A's requests arrived")
            a.kill()  # SIGKILL mid-batch: its requests are held at the origin, nothing of it recorded
            a.communicate(timeout=30)
            assert m.url_states(f"http://{HOST}{p}" for p in paths if "gone" not in p) == {}
            gate.set()
            b = _worker(cfg, postgres_url, "--lease", "2")
            procs.append(b)
            out, err = run.communicate(timeout=120)
            assert run.returncode == 0, err
            _, berr = _stop(b)
            assert b.returncode == 0, berr
            assert m.queue_depth() == QueueDepth(0, 0, 0)
            states = m.url_states(f"http://{HOST}{p}" for p in paths)
            assert sorted(s.status for s in states.values()) == sorted(
                [Outcome.ARCHIVED] * (len(paths) - 1) + [Outcome.DEAD])
            assert all(s.attempts == 1 for s in states.values())  # recorded once, by B
    finally:
        gate.set()
    ref = tmp_path / "ref"
    cfg_ref, _ = _corpus(ref, origin, articles=2, per=3)
    assert main(["run", "--config", str(cfg_ref), "-q"]) == 0
    assert _files(tmp_path / "fleet" / "site") == _files(ref / "site")
    assert _files(tmp_path / "fleet" / "archive") == _files(ref / "archive")


def test_a_paused_worker_past_its_lease_has_its_late_results_refused(
    tmp_path: Path, origin: Server, postgres_url: str
) -> None:
    gate = threading.Event()
    try:
        cfg, paths = _corpus(tmp_path, origin, articles=1, per=4, gate=gate, timeout=60)
        urls = [f"http://{HOST}{p}" for p in paths if "gone" not in p]
        with _processes() as procs, Manifest.open(postgres_url, lock=False) as m:
            m.enqueue(urls)
            a = _worker(cfg, postgres_url, "--batch", "10", "--lease", "2")
            procs.append(a)
            until(lambda: any(w.pid == a.pid and w.held == len(urls) for w in m.workers()), "A holds every URL")
            until(lambda: _arrived(origin, paths), "A's requests arrived")
            a.send_signal(signal.SIGSTOP)
            until(lambda: m.queue_depth().expired == len(urls), "A's leases passed")
            b = _worker(cfg, postgres_url, "--lease", "30")
            procs.append(b)
            until(lambda: m.queue_depth().claimed == len(urls), "B claimed A's URLs")
            gate.set()
            until(lambda: m.queue_depth() == QueueDepth(0, 0, 0), "B settled every URL")
            a.send_signal(signal.SIGCONT)
            until(lambda: any(w.pid == a.pid and w.held == 0 for w in m.workers()), "A dropped its late work")
            _, aerr = _stop(a)
            assert a.returncode == 0, aerr
            assert f"stopped: 0 URLs done, {len(urls)} results refused because their lease had passed" in aerr
            assert "lease lost" in aerr
            _, berr = _stop(b)
            assert b.returncode == 0, berr
            states = m.url_states(urls)
            assert [s.status for s in states.values()] == [Outcome.ARCHIVED] * len(urls)
            assert all(s.attempts == 1 for s in states.values())  # nothing recorded twice
            recorded = {o.key for o in m.objects()}
        stored = set(_files(tmp_path / "archive"))
        assert stored == recorded  # no object without its record: A's late uploads were the same objects
    finally:
        gate.set()


def test_sigterm_releases_the_claims_and_exits_0_within_seconds(
    tmp_path: Path, origin: Server, postgres_url: str
) -> None:
    gate = threading.Event()
    try:
        cfg, paths = _corpus(tmp_path, origin, articles=1, per=3, gate=gate)
        urls = [f"http://{HOST}{p}" for p in paths if "gone" not in p]
        with _processes() as procs, Manifest.open(postgres_url, lock=False) as m:
            m.enqueue(urls)
            w = _worker(cfg, postgres_url, "--batch", "10")
            procs.append(w)
            until(lambda: m.queue_depth().claimed == len(urls), "the worker claimed every URL")
            until(lambda: _arrived(origin, paths), "its requests arrived")
            sent = time.monotonic()
            _, err = _stop(w)
            assert time.monotonic() - sent < 15  # 3 s of grace for what is in flight, then released
            assert w.returncode == 0, err
            assert f"released {len(urls)} URLs" in err
            assert m.queue_depth() == QueueDepth(len(urls), 0, 0)  # waiting again at once, not after the lease
            assert _claimed_by(m) == {None: len(urls)}
            assert m.workers() == []
            assert m.url_states(urls) == {}
    finally:
        gate.set()


def test_a_worker_needs_a_postgresql_manifest(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ARCHIVER_MANIFEST_URL", raising=False)
    cfg = write_config(tmp_path, origin)
    (tmp_path / "site").mkdir()
    assert main(["worker", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "archiver worker needs a PostgreSQL manifest" in err and "Traceback" not in err
    assert main(["run", "--config", str(cfg), "--no-process"]) == 2
    assert "--no-process" in capsys.readouterr().err
    assert not (tmp_path / ".archiver").exists() or not list((tmp_path / ".archiver").glob("manifest*"))


def test_status_lists_live_workers_the_queue_and_recent_completions(
    tmp_path: Path, origin: Server, postgres_url: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, _ = _corpus(tmp_path, origin, articles=1, per=2)
    with _processes() as procs, Manifest.open(postgres_url, lock=False) as m:
        m.enqueue([f"http://{HOST}/fleet/0.jpg", f"http://{HOST}/fleet/1.jpg"])
        w = _worker(cfg, postgres_url)
        procs.append(w)
        until(lambda: m.queue_depth() == QueueDepth(0, 0, 0) and m.workers() != [], "the worker did its URLs")
        monkeypatch.setenv("ARCHIVER_MANIFEST_URL", postgres_url)
        assert main(["status", "--config", str(cfg)]) == 0
        out = capsys.readouterr().out
        assert "queue: 0 waiting, 0 claimed by a worker, 0 with a lease that passed" in out
        assert "workers: 1 live; 2 URLs completed in the last minute" in out
        assert f"pid {w.pid}  last heartbeat" in out
        assert "holds 0 URLs  done " in out  # what it holds now, from the queue (its heartbeat may say 2 still)
        _, err = _stop(w)
        assert w.returncode == 0, err
        assert m.workers() == []


def test_a_worker_storing_elsewhere_never_leaves_an_article_pointing_at_a_missing_object(
    tmp_path: Path, origin: Server, postgres_server: PostgresServer
) -> None:
    """A worker whose [storage] differs from the run's (a careless deployment): the run finds the objects the worker
    recorded missing from its own store and stores them there itself, so every archive URL an article holds names
    an object of the run's store (found by review: the run exited 0 with articles pointing at nothing)."""
    url = postgres_server.new_database()
    cfg, _ = _corpus(tmp_path, origin, articles=2, per=2)
    other = tmp_path / "worker.toml"
    other.write_text(cfg.read_text(encoding="utf-8").replace('path = "archive"', 'path = "elsewhere"'),
                     encoding="utf-8")
    with _processes() as procs:
        procs.append(_worker(other, url, "--batch", "1"))
        run = _archiver(url, "run", "--config", str(cfg), "--no-process", "-q")
        procs.append(run)
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, out + err  # the dead link is reported, nothing failed
        assert "images missing or corrupt in storage" in out and "stored again" in out
    archive = tmp_path / "archive"
    for post in (tmp_path / "site").glob("*.md"):
        for key in re.findall(r"/archive/([0-9a-f/]+\.jpg)", post.read_text(encoding="utf-8")):
            assert (archive / key).is_file(), key
