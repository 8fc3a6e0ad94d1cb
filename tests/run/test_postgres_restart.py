"""`archiver run` on a PostgreSQL manifest whose server restarts mid-run finishes with the same result as a run
without the restart; a server that stays away ends the run with one clear line, exit 1, and nothing recorded as
archived that is not stored. The origin holds one image's request to place the restart (or the stop) while the run
is busy; the server is this module's own (the session's stays up for the other tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.images import make_jpeg
from tests.support.origin import Server
from tests.support.paths import ROOT_DIR
from tests.support.postgres import PostgresServer, manifest_db, own_postgres
from tests.support.site import LOCAL_STORAGE, write_config

N = 12


@pytest.fixture(scope="module")
def own_server() -> Iterator[PostgresServer]:
    with own_postgres("archiver-pg-run-") as server:
        yield server


@pytest.fixture
def server(own_server: PostgresServer) -> Iterator[PostgresServer]:
    yield own_server
    own_server.start_if_stopped()


def _site(tmp: Path, origin: Server, reconnect_for: float = 60) -> Path:
    for i in range(N):
        origin.add(f"/i/{i}.jpg", make_jpeg(200, 150, seed=4200 + i), "image/jpeg")
    site = tmp / "site"
    site.mkdir(parents=True)
    for a in range(0, N, 3):
        body = "".join(f'<img src="http://img.test/i/{i}.jpg">\n' for i in range(a, a + 3))
        if a == 3:
            body += '<img src="http://img.test/gate/restart">\n'  # held by the origin until the test says
        (site / f"p{a:02}.md").write_text(f"---\ntitle: p{a}\n---\n{body}", encoding="utf-8")
    return write_config(tmp, origin, "concurrency = 2\nper_host = 2", hosts=("img.test",),
                        storage=f"{LOCAL_STORAGE}\n[manifest]\nreconnect_for = {reconnect_for}")


def _start(cfg: Path, url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # not -q: the warnings say when the connection was lost and back
        [sys.executable, "-m", "archiver", "run", "--config", str(cfg)], cwd=ROOT_DIR,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT_DIR), "ARCHIVER_MANIFEST_URL": url},
    )


def _articles(tmp: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((tmp / "site").glob("*.md"))}


def _urls(url: str) -> list[tuple[str, str, str | None]]:
    with manifest_db(url) as db:
        return db.execute("SELECT url, status, asset FROM urls ORDER BY url").fetchall()  # type: ignore[attr-defined]


def _reference(tmp: Path, origin: Server, server: PostgresServer) -> tuple[dict[str, bytes], list[object]]:
    cfg = _site(tmp, origin)
    url = server.new_database()
    origin.open_gate("restart")
    run = _start(cfg, url)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    return _articles(tmp), _urls(url)


def test_a_restart_mid_run_changes_nothing_in_the_result(origin: Server, server: PostgresServer,
                                                         tmp_path: Path) -> None:
    articles, urls = _reference(tmp_path / "reference", origin, server)
    origin.reset()
    cfg = _site(tmp_path / "restarted", origin)
    url = server.new_database()
    run = _start(cfg, url)
    try:
        assert origin.gate_reached("restart").wait(60)  # the run is mid-way: one image held, others flowing
        server.stop("fast")  # every session ends, the run's writer's lock with it
        server.start()
        origin.open_gate("restart")
        out, err = run.communicate(timeout=120)
    finally:
        origin.open_gate("restart")
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 0, err
    assert _articles(tmp_path / "restarted") == articles
    assert _urls(url) == urls
    assert len([u for u in urls if u[1] == "archived"]) == N + 1
    # one line each way per connection: the run's manifest, and the fleet gate's own (make_fetcher wires it in)
    lost, back = re.findall("PostgreSQL connection lost", err), re.findall("PostgreSQL connection back", err)
    assert 1 <= len(lost) <= 2 and len(back) == len(lost), err


def test_a_server_gone_for_good_ends_the_run_with_one_clear_line(origin: Server, server: PostgresServer,
                                                                 tmp_path: Path) -> None:
    cfg = _site(tmp_path, origin, reconnect_for=2)
    url = server.new_database()
    run = _start(cfg, url)
    try:
        assert origin.gate_reached("restart").wait(60)
        server.stop("fast")
        origin.open_gate("restart")
        out, err = run.communicate(timeout=120)
    finally:
        origin.open_gate("restart")
        if run.poll() is None:
            run.kill()
            run.communicate()
        server.start()
    assert run.returncode == 1, err
    assert re.search(r"^archiver: PostgreSQL unavailable for 2 s: postgresql://\S+: ", err, re.M), err
    assert "Traceback" not in err
    archive = tmp_path / "archive"
    with manifest_db(url) as db:  # every URL recorded as archived has its object stored
        keys = db.execute(  # type: ignore[attr-defined]
            "SELECT a.key FROM urls u JOIN assets a ON a.sha256 = u.asset WHERE u.status = 'archived'").fetchall()
    assert [k for (k,) in keys if not (archive / k).is_file()] == []
    for text in _articles(tmp_path).values():  # and every archive URL an article holds is stored
        for key in re.findall(rb"/archive/([0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}\.\w+)", text):
            assert (archive / key.decode()).is_file()
