"""Every URL ends in exactly one recorded outcome, and the counts add up everywhere.

A hostile mix (bad hosts in articles and in a redirect's Location, dead links, HTML as an image, the address
guard, URLs refused before any request, and an unexpected error in the middle of the run) through the real
CLI against the loopback origin: each unique URL is recorded in the manifest or counted as not attempted, the
summary's archived + dead + rejected + failed + not attempted equal the unique URLs, `status` says the same,
an unexpected error is that URL's reported failure (exit 1), and nothing is printed as "Task exception was
never retrieved". Refusals decided by a setting (the address guard, a missing base URL, max_bytes) are tried
again once that setting changes, without --retry-dead.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from archiver.cli import main
from tests.support.images import make_jpeg
from tests.support.origin import Server
from tests.support.paths import ROOT_DIR
from tests.support.site import write_config

SUMMARY = re.compile(
    r"(\d+) unique image URLs?: (\d+) archived \(\d+ by earlier runs\), (\d+) dead, (\d+) rejected, (\d+) failed"
    r"(?:, (\d+) not attempted)?"
)
STATUS = re.compile(r"(\d+) URLs: (\d+) archived, (\d+) dead, (\d+) rejected, (\d+) failed")


def counts(out: str) -> dict[str, int]:
    """The summary's counts; asserts they add up to the unique URLs."""
    m = SUMMARY.search(out)
    assert m, out
    urls, archived, dead, rejected, failed = (int(x) for x in m.groups()[:5])
    left = int(m.group(6) or 0)
    assert archived + dead + rejected + failed + left == urls, m.group(0)
    return {"urls": urls, "archived": archived, "dead": dead, "rejected": rejected, "failed": failed,
            "not attempted": left}


def status_counts(cfg: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, int]:
    assert main(["status", "--config", str(cfg)]) == 0
    m = STATUS.search(capsys.readouterr().out)
    assert m
    total, archived, dead, rejected, failed = (int(x) for x in m.groups())
    assert archived + dead + rejected + failed == total
    return {"urls": total, "archived": archived, "dead": dead, "rejected": rejected, "failed": failed}


def recorded(tmp: Path) -> dict[str, str]:
    with sqlite3.connect(tmp / ".archiver" / "manifest.sqlite3") as db:
        return dict(db.execute("SELECT url, status FROM urls"))


def test_a_mixed_hostile_run_gives_every_url_exactly_one_recorded_outcome(tmp_path: Path, origin: Server) -> None:
    good = [f"http://img.news.test/k/{i}.jpg" for i in range(8)]
    for i in range(8):
        origin.add(f"/k/{i}.jpg", make_jpeg(96, 64, seed=700 + i), "image/jpeg")
    hostile = [
        "http://xn--zz.test/bad-punycode.jpg",  # not valid IDNA: the HTTP client would raise UnicodeError
        "http://img.news.test/redirect-to?url=http://xn--a.test/x.jpg",  # the same, from a hostile Location
        "http://img.news.test/404",
        "http://img.news.test/html",
        "http://10.1.2.3/private.jpg",  # the address guard
        "javascript:alert(1)",  # refused before any request
        "/relative.jpg",  # no base_url
    ]
    site = tmp_path / "site"
    site.mkdir()
    (site / "a.md").write_text("".join(f"![x]({u})\n" for u in good[:5] + hostile), encoding="utf-8")
    (site / "b.md").write_text("".join(f"![y]({u})\n" for u in good[3:] + hostile[:3]), encoding="utf-8")
    cfg = write_config(tmp_path, origin, "concurrency = 1", base_url="", retries=0)  # 4 in flight at most
    unique = len(set(good + hostile))

    env = {**os.environ, "PYTHONPATH": str(ROOT_DIR), "ARCHIVER_CRASH_AT": "fetched:3:raise"}  # a bug, once
    proc = subprocess.run(
        [sys.executable, "-m", "archiver", "run", "--config", str(cfg), "-q"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120,
    )
    assert "Task exception was never retrieved" not in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the unexpected error is a failure, never silence
    got = counts(proc.stdout)
    assert got["urls"] == unique
    rows = recorded(tmp_path)
    assert len(rows) + got["not attempted"] == unique
    assert got == {"urls": unique, "archived": 7, "dead": 1, "rejected": 6, "failed": 1, "not attempted": 0}
    assert "internal error: RuntimeError: injected fault at fetched" in proc.stdout
    (failed,) = (u for u, s in rows.items() if s == "failed")
    assert failed in good
    assert "host 'xn--zz.test' is not a valid international domain name" in proc.stdout
    assert "redirect to http://xn--a.test/x.jpg: host 'xn--a.test' is not a valid international" in proc.stdout
    # the articles were rewritten for every archived URL; what failed keeps its URL for the re-run
    text = (site / "a.md").read_text() + (site / "b.md").read_text()
    assert text.count("/archive/") == sum(1 for u in good[:5] + good[3:] if u != failed)
    assert failed in text

    # `status` counts what `run` counted (URLs refused before any request included)
    env.pop("ARCHIVER_CRASH_AT")
    status = subprocess.run([sys.executable, "-m", "archiver", "status", "--config", str(cfg)],
                            cwd=tmp_path, capture_output=True, text=True, env=env, timeout=60)
    m = STATUS.search(status.stdout)
    assert m and [int(x) for x in m.groups()] == [unique, 7, 1, 6, 1], status.stdout

    # the re-run fetches the failed URL only (the archived ones are archive URLs now), and the counts add up
    proc = subprocess.run([sys.executable, "-m", "archiver", "run", "--config", str(cfg), "-q"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert counts(proc.stdout) == {"urls": 8, "archived": 1, "dead": 1, "rejected": 6, "failed": 0,
                                   "not attempted": 0}
    assert origin.hits("/404") == 1 and origin.hits(failed.removeprefix("http://img.news.test")) == 2


def test_a_refusal_by_the_address_guard_is_tried_again_once_allow_networks_allows_it(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    origin.add("/local.jpg", make_jpeg(80, 60, seed=801), "image/jpeg")
    site = tmp_path / "site"
    site.mkdir()
    (site / "a.md").write_text("![local](http://img.news.test/local.jpg)\n", encoding="utf-8")
    cfg = write_config(tmp_path, origin)
    allowed = cfg.read_text()
    cfg.write_text(allowed.replace('allow_networks = ["127.0.0.1/32"]', "allow_networks = []"))

    assert main(["run", "--config", str(cfg), "-q"]) == 0
    out = capsys.readouterr().out
    assert counts(out)["rejected"] == 1 and origin.hits("/local.jpg") == 0
    # the whole run was refused by the guard: the summary says how to allow it
    assert 'list it in [fetch] allow_networks, e.g. allow_networks = ["127.0.0.1/32"]' in out

    assert main(["run", "--config", str(cfg), "-q"]) == 0  # same settings: still refused, from the manifest
    out = capsys.readouterr().out
    assert "earlier run; --retry-dead to try again" in out and "allow_networks = [" in out

    cfg.write_text(allowed)  # the user allows the local network: no --retry-dead needed
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    out = capsys.readouterr().out
    assert counts(out)["archived"] == 1 and origin.hits("/local.jpg") == 1
    assert "/archive/" in (site / "a.md").read_text()
    assert status_counts(cfg, capsys) == {"urls": 1, "archived": 1, "dead": 0, "rejected": 0, "failed": 0}


def test_a_relative_url_refused_without_base_url_is_recorded_and_forgotten_once_base_url_is_set(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    origin.add("/assets/c.jpg", make_jpeg(80, 60, seed=802), "image/jpeg")
    site = tmp_path / "site"
    site.mkdir()
    (site / "a.md").write_text("![c](/assets/c.jpg)\n![again](/assets/c.jpg)\n", encoding="utf-8")
    cfg = write_config(tmp_path, origin, base_url="")
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert counts(capsys.readouterr().out) == {"urls": 1, "archived": 0, "dead": 0, "rejected": 1, "failed": 0,
                                              "not attempted": 0}  # two references, one unique URL
    assert status_counts(cfg, capsys)["rejected"] == 1  # `status` says what `run` said

    cfg.write_text(cfg.read_text().replace('base_url = ""', 'base_url = "http://blog.test/"'))
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert counts(capsys.readouterr().out)["archived"] == 1
    assert status_counts(cfg, capsys) == {"urls": 1, "archived": 1, "dead": 0, "rejected": 0, "failed": 0}


def test_a_body_over_max_bytes_is_fetched_again_once_max_bytes_grows_and_not_before(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    body = make_jpeg(400, 300, seed=803)
    origin.add("/big.jpg", body, "image/jpeg")
    site = tmp_path / "site"
    site.mkdir()
    (site / "a.md").write_text("![big](http://img.news.test/big.jpg)\n", encoding="utf-8")
    cfg = write_config(tmp_path, origin, f"max_bytes = {len(body) // 2}")
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert "over max_bytes" in capsys.readouterr().out
    assert main(["run", "--config", str(cfg), "-q"]) == 0  # unchanged settings: no request
    capsys.readouterr()
    assert origin.hits("/big.jpg") == 1
    cfg.write_text(cfg.read_text().replace(f"max_bytes = {len(body) // 2}", f"max_bytes = {len(body) * 2}"))
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert counts(capsys.readouterr().out)["archived"] == 1 and origin.hits("/big.jpg") == 2


def test_a_url_a_bug_left_without_an_outcome_is_reported_failed_never_a_silent_exit_0(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's last guard: a URL that no path gave an outcome (simulated by a scheduler that drops one) is named
    as failed at its line, exit 1, its article keeps its URL; the next run archives it."""
    from archiver.run.pipeline import Run

    urls = [f"http://img.news.test/lost/{i}.jpg" for i in range(3)]
    for i, u in enumerate(urls):
        origin.add(u.removeprefix("http://img.news.test"), make_jpeg(64, 48, seed=900 + i), "image/jpeg")
    site = tmp_path / "site"
    site.mkdir()
    (site / "a.md").write_text("".join(f"![x]({u})\n" for u in urls), encoding="utf-8")
    cfg = write_config(tmp_path, origin)
    settle_here = Run._settle_here

    async def dropping_one(self: Run, fetcher: object, todo: list[str]) -> None:
        await settle_here(self, fetcher, [u for u in todo if not u.endswith("/2.jpg")])  # type: ignore[arg-type]

    monkeypatch.setattr(Run, "_settle_here", dropping_one)
    assert main(["run", "--config", str(cfg), "-q"]) == 1
    out = capsys.readouterr().out
    assert counts(out) == {"urls": 3, "archived": 2, "dead": 0, "rejected": 0, "failed": 1, "not attempted": 0}
    assert "a.md:3  http://img.news.test/lost/2.jpg  — internal error: the run ended without an outcome" in out
    text = (site / "a.md").read_text()
    assert text.count("/archive/") == 2 and urls[2] in text

    monkeypatch.undo()
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert counts(capsys.readouterr().out)["archived"] == 1
    assert urls[2] not in (site / "a.md").read_text() and origin.hits("/lost/2.jpg") == 1
