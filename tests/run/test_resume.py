"""A run killed with SIGKILL at any moment, then run again, ends exactly where an uninterrupted run ends.

Two ways to pick the moment: 16 deterministic crash points (``ARCHIVER_CRASH_AT=name:n``, see
archiver/faults.py) between every pair of durable steps — after a download, after decoding, mid object write,
after an object is stored, after each manifest commit, mid article write, after an article's write-ahead record,
after the rename and after its confirmation — and kills at wall-clock times spread over whole runs, which land
wherever the run happens to be. Every article rewritten is recorded: `archiver restore` then gives back the
original site byte for byte.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archiver.articles.rewrite import TEMP_PREFIX
from archiver.cli import main
from tests.support.images import make_jpeg
from tests.support.origin import Server
from tests.support.paths import ROOT_DIR
from tests.support.postgres import PostgresServer

ROOT = ROOT_DIR
N_IMAGES = 40


def _site(folder: Path, origin: Server) -> Path:
    posts = folder / "site"
    posts.mkdir(parents=True)
    for a in range(10):
        refs = [f"http://img.test/k/{(a * 4 + j) % N_IMAGES}.jpg" for j in range(5)]
        body = f"---\r\ntitle: 'post {a}'\r\nheadimg: {refs[0]}\r\n---\r\n"
        body += "".join(f'<p><img src="{u}" referrerpolicy="no-referrer">  </p>\r\n' for u in refs[1:])
        (posts / f"post-{a}.md").write_bytes(body.encode())
    cfg = folder / "archiver.toml"
    cfg.write_text(
        f'[articles]\nroot = "site"\n'
        f'[fetch]\nallow_networks = ["127.0.0.1/32"]\nconnect_to = {{ "img.test" = "127.0.0.1:{origin.port}" }}\n'
        f"concurrency = 4\nper_host = 4\nretries = 0\n"
        f'[storage]\npath = "archive"\n',
        encoding="utf-8",
    )
    return cfg


def _start(cfg: Path, crash_at: str = "", manifest_url: str = "") -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ARCHIVER_CRASH_AT", None)
    env.pop("ARCHIVER_MANIFEST_URL", None)
    if manifest_url:
        env["ARCHIVER_MANIFEST_URL"] = manifest_url
    if crash_at:
        env["ARCHIVER_CRASH_AT"] = crash_at
    return subprocess.Popen(
        [sys.executable, "-m", "archiver", "run", "--config", str(cfg), "-q"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )


def _files(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder``, hidden ones (temp files) included."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _restores_to(cfg: Path, originals: dict[str, bytes], what: object) -> None:
    """`archiver restore` puts back every original byte for byte: every rewrite of every run was recorded."""
    assert main(["restore", "--config", str(cfg), "-q"]) == 0, what
    assert _files(cfg.parent / "site") == originals, f"{what}: an article was rewritten but never recorded"


def test_sigkill_at_many_points_then_rerun_matches_uninterrupted_run(tmp_path: Path, origin: Server) -> None:
    for i in range(N_IMAGES):
        origin.add(f"/k/{i}.jpg", make_jpeg(640, 480, seed=500 + i), "image/jpeg", delay=0.03)

    ref_cfg = _site(tmp_path / "ref", origin)
    started = time.monotonic()
    proc = _start(ref_cfg)
    assert proc.wait(120) == 0, proc.stderr.read().decode() if proc.stderr else ""
    duration = time.monotonic() - started

    ref = tmp_path / "ref"
    kills = 0
    points = 5
    for i in range(points):
        # a fresh site each time, so every kill lands in a different phase of a full run:
        # fetching, processing, uploading, manifest writes and article writes all happen throughout
        folder = tmp_path / f"killed-{i}"
        cfg = _site(folder, origin)
        originals = _files(folder / "site")
        proc = _start(cfg)
        time.sleep(duration * (0.3 + 0.65 * i / (points - 1)))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(60)
        if i % 3 == 0:  # and sometimes kill the resumed run too
            proc = _start(cfg)
            time.sleep(duration * 0.5)
            proc.kill()
            proc.wait(60)
        proc = _start(cfg)
        assert proc.wait(120) == 0, proc.stderr.read().decode() if proc.stderr else ""

        assert _files(folder / "site") == _files(ref / "site"), i  # article bytes identical
        assert _files(folder / "archive") == _files(ref / "archive"), i  # same objects, same bytes
        leftovers = [p for p in (folder / "site").rglob("*") if p.name.startswith(TEMP_PREFIX)]
        assert leftovers == []
        for text in (p.read_text() for p in (folder / "site").rglob("*.md")):
            for url in re.findall(r"/archive/[0-9a-f/]+\.jpg", text):
                assert (folder / "archive" / url.removeprefix("/archive/")).is_file()
            assert "http://img.test/" not in text
        _restores_to(cfg, originals, i)
        shutil.rmtree(folder)
    assert kills >= points // 2, f"the run finished before the kill points ({kills} kills; run takes {duration:.1f}s)"
    shutil.rmtree(tmp_path / "ref")


# every durable step, at the first time it happens or later in the run (both for the steps whose first time is
# special: nothing stored yet, the first article); 16 cases keep the suite's time (24 before: the same verdicts)
CRASH_POINTS = [
    ("fetched", 7),
    ("processed", 1), ("processed", 9),
    ("store-temp", 1), ("store-temp", 15),
    ("stored", 2), ("stored", 20),
    ("recorded-asset", 12),
    ("recorded-url", 1), ("recorded-url", 25),
    ("article-temp", 4),
    ("article-intended", 1), ("article-intended", 6),
    ("article-replaced", 5),
    ("recorded-article", 8),
    ("article-temp", 10),  # the last article
]


def _serve_reference_images(origin: Server) -> None:
    for i in range(N_IMAGES):
        origin.add(f"/k/{i}.jpg", make_jpeg(320, 240, seed=700 + i), "image/jpeg")


@pytest.fixture(scope="module")
def uninterrupted(origin_server: Server, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """The site and archive an uninterrupted SQLite run ends with: what every resumed run must equal. Computed once
    for this module's crash-point tests (each of them serves the same images again: its origin starts empty)."""
    origin_server.reset()
    _serve_reference_images(origin_server)
    ref = tmp_path_factory.mktemp("uninterrupted")
    proc = _start(_site(ref, origin_server))
    assert proc.wait(120) == 0, proc.stderr.read().decode() if proc.stderr else ""
    expected = _files(ref / "site"), _files(ref / "archive")
    origin_server.reset()
    shutil.rmtree(ref)
    return expected


def test_every_durable_step_has_a_crash_point() -> None:
    assert len(CRASH_POINTS) >= 16


# one test per crash point (each ~2 runs and a restore), so that pytest-xdist's workers share them out
@pytest.mark.parametrize(("name", "nth"), CRASH_POINTS, ids=[f"{name}:{nth}" for name, nth in CRASH_POINTS])
def test_sigkill_at_a_crash_point_then_rerun_matches_uninterrupted_run(
    tmp_path: Path, origin: Server, uninterrupted: tuple[dict, dict], name: str, nth: int
) -> None:
    _serve_reference_images(origin)
    folder = tmp_path / f"{name}-{nth}"
    cfg, originals = _killed_then_resumed(folder, origin, name, nth, uninterrupted)
    assert not [p for p in (folder / "site").rglob("*") if p.name.startswith(TEMP_PREFIX)]
    _restores_to(cfg, originals, f"{name}:{nth}")


def _killed_then_resumed(folder: Path, origin: Server, name: str, nth: int, expected: tuple[dict, dict],
                         manifest_url: str = "") -> tuple[Path, dict]:
    """A run SIGKILLed at ``name:nth``, then run again: it ends with ``expected`` (site, archive). Returns the config
    and the articles as they were before the first run (for the restore that follows)."""
    cfg = _site(folder, origin)
    originals = _files(folder / "site")
    proc = _start(cfg, crash_at=f"{name}:{nth}", manifest_url=manifest_url)
    assert proc.wait(120) == -signal.SIGKILL, f"{name}:{nth} was never reached"
    proc = _start(cfg, manifest_url=manifest_url)  # with PostgreSQL: the killed run's lock went with its connection
    assert proc.wait(120) == 0, proc.stderr.read().decode() if proc.stderr else ""
    assert _files(folder / "site") == expected[0], f"{name}:{nth}"
    assert _files(folder / "archive") == expected[1], f"{name}:{nth}: temp files left, or objects differ"
    return cfg, originals


# the points where a PostgreSQL manifest's commits matter: around every manifest write and the article journal
# (the SQLite test above covers every point; three keep this one short: 74 s on the 2 shared, loaded cores)
PG_CRASH_POINTS = [("recorded-url", 25), ("article-intended", 1), ("recorded-article", 8)]


@pytest.mark.timeout(600)
def test_sigkill_at_manifest_crash_points_with_a_postgresql_manifest(
    tmp_path: Path, origin: Server, uninterrupted: tuple[dict, dict], postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """The crash points of the manifest's writes, with the manifest in PostgreSQL (each case its own database): the
    resumed run ends byte-identical to an uninterrupted SQLite run, and restore gives back every article."""
    _serve_reference_images(origin)
    for name, nth in PG_CRASH_POINTS:
        folder = tmp_path / f"{name}-{nth}"
        url = postgres_server.new_database()
        cfg, originals = _killed_then_resumed(folder, origin, name, nth, uninterrupted, manifest_url=url)
        assert not (folder / ".archiver" / "manifest.sqlite3").exists()  # the manifest was in PostgreSQL
        monkeypatch.setenv("ARCHIVER_MANIFEST_URL", url)
        _restores_to(cfg, originals, f"{name}:{nth}")
        monkeypatch.delenv("ARCHIVER_MANIFEST_URL")
        shutil.rmtree(folder)


def _children(pid: int) -> set[int]:
    kids = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            kids |= {int(c) for c in (task / "children").read_text().split()}
    return kids


def test_image_workers_exit_when_the_archiver_is_killed(tmp_path: Path, origin: Server) -> None:
    """SIGKILL (or the OOM killer) gives the archiver no chance to stop its pool: the workers must notice."""
    for i in range(N_IMAGES):
        origin.add(f"/k/{i}.jpg", make_jpeg(320, 240, seed=900 + i), "image/jpeg")
    proc = _start(_site(tmp_path, origin), crash_at="processed:20")
    workers: set[int] = set()
    while proc.poll() is None:
        workers |= _children(proc.pid)
        time.sleep(0.01)
    assert proc.returncode == -signal.SIGKILL and workers, "the run was killed after its workers started"
    deadline = time.monotonic() + 10
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = {w for w in alive if Path(f"/proc/{w}").exists() and "zombie" not in _state(w)}
    assert not alive, f"image workers still running after the archiver was killed: {sorted(alive)}"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:", 1)[1].splitlines()[0].lower()
    except (OSError, IndexError):
        return "zombie"
