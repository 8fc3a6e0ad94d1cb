"""Fleet-wide politeness between separate processes, each with its own Fetcher and fleet gate on one manifest
(archiver.run.fleet): per_host and concurrency hold in total, a 429 seen by one pauses the others, and a killed
holder's slot comes free after its lease. A real origin counts what it sees; real PostgreSQL (and SQLite)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from archiver.config import FetchConfig
from archiver.manifest.sqlite import Manifest
from tests.support.origin import Server
from tests.support.paths import ROOT_DIR
from tests.support.postgres import manifest_db

FAST = FetchConfig(allow_networks=("127.0.0.1/32",), connect_timeout=2.0, retries=3, backoff=0.05, max_backoff=10.0)


class Worker:
    """One fetching process (tests/support/fleet_fetcher.py)."""

    def __init__(self, target: Path | str, urls: list[str], cfg: FetchConfig, workdir: Path, **spec: Any) -> None:
        names = ("concurrency", "per_host", "retries", "backoff", "max_backoff", "connect_timeout", "timeout",
                 "allow_networks", "connect_to")
        fields = {k: getattr(cfg, k) for k in names}
        fields["connect_to"] = dict(fields["connect_to"])
        body = {"manifest": str(target), "urls": urls, "fetch": fields, "workdir": str(workdir), **spec}
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.support.fleet_fetcher", json.dumps(body)],
                                     cwd=ROOT_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", line + self.proc.stderr.read() if self.proc.stderr else ""

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def results(self) -> dict[str, str]:
        out, err = self.proc.communicate(timeout=120)
        assert self.proc.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=30)


@pytest.fixture
def fleet_manifest(manifest_target: Path | str) -> Path | str:
    Manifest.open(manifest_target, lock=False).close()  # created and migrated once, before the workers start
    return manifest_target


def _all_ok(results: dict[str, str]) -> None:
    assert {u: r for u, r in results.items() if r != "ok"} == {}


def test_per_host_holds_across_processes(origin: Server, fleet_manifest: Path | str, tmp_path: Path) -> None:
    cfg = replace(FAST, per_host=3, concurrency=16)
    workers = [Worker(fleet_manifest, [origin.url(f"/hold/{w}-{i}?s=0.15") for i in range(10)], cfg,
                      tmp_path / f"w{w}", wait=True) for w in range(3)]
    for w in workers:
        w.go()
    for w in workers:
        _all_ok(w.results())
    host = f"127.0.0.1:{origin.port}"
    assert origin.max_in_flight(host) == 3  # each alone may open 3: together, still 3 (and 3 were reached)
    with manifest_db(fleet_manifest) as db:  # every slot given back
        assert db.execute("SELECT COUNT(*) FROM host_slots WHERE holder IS NOT NULL").fetchone()[0] == 0


def test_concurrency_holds_across_processes(origin: Server, fleet_manifest: Path | str, tmp_path: Path) -> None:
    hosts = ["a.fleet.test", "b.fleet.test"]
    cfg = replace(FAST, per_host=2, concurrency=2,
                  connect_to={h: f"127.0.0.1:{origin.port}" for h in hosts})
    workers = [Worker(fleet_manifest, [f"http://{h}:{origin.port}/hold/{w}-{h}-{i}?s=0.15" for i in range(4)
                                       for h in hosts], cfg, tmp_path / f"w{w}", wait=True) for w in range(2)]
    for w in workers:
        w.go()
    for w in workers:
        _all_ok(w.results())
    assert origin.max_in_flight() == 2  # two hosts, two processes, each allowed 2: the fleet's 2 in all


def _wait_for(predicate: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_429_seen_by_one_process_pauses_the_others(origin: Server, fleet_manifest: Path | str,
                                                      tmp_path: Path) -> None:
    cfg = replace(FAST, per_host=4, concurrency=8)
    host = f"127.0.0.1:{origin.port}"
    a = Worker(fleet_manifest, [origin.url("/retry-after/429/fleet?seconds=3")], cfg, tmp_path / "a", wait=True)
    b = Worker(fleet_manifest, [origin.url(f"/image.jpg?b={i}") for i in range(5)], cfg, tmp_path / "b", wait=True)
    try:
        a.go()
        with manifest_db(fleet_manifest) as db:
            _wait_for(lambda: db.execute("SELECT COUNT(*) FROM host_pauses WHERE host = ?", (host,)).fetchone()[0],
                      "the pause to be recorded")
        b.go()  # ready long before the pause ends: its requests wait for it
        _all_ok(a.results())
        _all_ok(b.results())
    finally:
        a.kill()
        b.kill()
    arrivals = origin.arrivals(host)
    first = arrivals[0]
    assert first.path == "/retry-after/429/fleet"
    later = arrivals[1:]
    assert sorted(x.path for x in later) == ["/image.jpg"] * 5 + ["/retry-after/429/fleet"]
    assert [x for x in later if x.at < first.at + 3.0] == []  # nobody, in either process, before the pause ended


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP])
def test_a_killed_or_stopped_holders_slot_comes_free_after_its_lease(
        origin: Server, fleet_manifest: Path | str, tmp_path: Path, sig: signal.Signals) -> None:
    cfg = replace(FAST, per_host=1, concurrency=4, timeout=60.0)
    host = f"127.0.0.1:{origin.port}"
    a = Worker(fleet_manifest, [origin.url("/gate/held")], cfg, tmp_path / "a", holder="worker-a", lease=1.0)
    b = Worker(fleet_manifest, [origin.url("/image.jpg?after-kill")], cfg, tmp_path / "b", holder="worker-b",
               lease=1.0, wait=True)
    try:
        assert origin.gate_reached("held").wait(30)  # a holds the host's one slot, its request in flight
        os.kill(a.proc.pid, sig)
        stopped_at = time.monotonic()
        with manifest_db(fleet_manifest) as db:  # nobody released it: the row is still a's
            assert db.execute("SELECT holder FROM host_slots WHERE host = ? AND holder IS NOT NULL",
                              (host,)).fetchall() == [("worker-a",)]
        b.go()
        _all_ok(b.results())  # after a's lease passed: a renews nothing while killed or stopped
        if sig == signal.SIGSTOP:
            os.kill(a.proc.pid, signal.SIGCONT)
            origin.open_gate("held")
            _all_ok(a.results())  # a finishes its request; its late release frees nothing of b's
            with manifest_db(fleet_manifest) as db:
                assert db.execute("SELECT COUNT(*) FROM host_slots WHERE holder IS NOT NULL").fetchone()[0] == 0
    finally:
        origin.open_gate("held")
        if a.proc.poll() is None:
            os.kill(a.proc.pid, signal.SIGCONT)
        a.kill()
        b.kill()
    assert [x.at > stopped_at for x in origin.arrivals(host) if x.path == "/image.jpg"] == [True]
