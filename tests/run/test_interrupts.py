"""Stops the run must survive: SIGINT/SIGTERM (also Ctrl-C to the whole process group during a long decode), the
S3 server going away mid-run, a second run on the same manifest, and articles that cannot be written (read-only,
disk full)."""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.image.pool import cpu_seconds
from tests.support.images import make_jpeg, make_scan_bomb
from tests.support.origin import Server
from tests.support.paths import ROOT_DIR

ROOT = ROOT_DIR


def _site(tmp: Path, origin: Server, n: int, delay: float, extra: str = "", storage: str = "") -> Path:
    for i in range(n):
        origin.add(f"/i/{i}.jpg", make_jpeg(320, 240, seed=900 + i), "image/jpeg", delay=delay)
    posts = tmp / "site"
    posts.mkdir(parents=True, exist_ok=True)
    for a in range(0, n, 3):
        body = "".join(f'<img src="http://img.test/i/{i}.jpg">\n' for i in range(a, min(a + 3, n)))
        (posts / f"p{a:03}.md").write_text(f"---\ntitle: p{a}\n---\n{body}", encoding="utf-8")
    cfg = tmp / "archiver.toml"
    cfg.write_text(
        f'[articles]\nroot = "site"\n'
        f'[fetch]\nallow_networks = ["127.0.0.1/32"]\nconnect_to = {{ "img.test" = "127.0.0.1:{origin.port}" }}\n'
        f"concurrency = 2\nper_host = 2\nretries = 0\n{extra}\n"
        f"{storage or '[storage]' + chr(10) + 'path = ' + chr(34) + 'archive' + chr(34)}\n",
        encoding="utf-8",
    )
    return cfg


def _start(cfg: Path, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "archiver", "run", "--config", str(cfg), "-q"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, **kw,  # type: ignore[arg-type]
    )


def _wait_for_progress(cfg: Path, at_least: int, timeout: float = 30) -> None:
    """Until the run has archived ``at_least`` URLs (read from its manifest)."""
    import sqlite3

    db_path = cfg.parent / ".archiver" / "manifest.sqlite3"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db_path.exists():
            try:
                with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
                    if db.execute("SELECT COUNT(*) FROM urls WHERE status='archived'").fetchone()[0] >= at_least:
                        return
            except sqlite3.Error:
                pass
        time.sleep(0.05)
    raise AssertionError(f"the run did not archive {at_least} URLs in {timeout}s")


def _original_urls_left(site: Path) -> int:
    return sum(len(re.findall(r"http://img\.test/", p.read_text())) for p in site.glob("*.md"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_run_within_seconds_with_a_summary_and_a_rerun_finishes(
    tmp_path: Path, origin: Server, sig: signal.Signals
) -> None:
    cfg = _site(tmp_path, origin, n=30, delay=0.3)
    proc = _start(cfg)
    _wait_for_progress(cfg, 4)
    sent = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 10  # in-flight items get 3 s of grace, then are abandoned
    assert proc.returncode == 130, err
    assert f"stopped early: interrupted ({sig.name})" in out and re.search(r"\d+ URLs? not attempted", out)
    assert "Traceback" not in err
    left = _original_urls_left(tmp_path / "site")
    assert 0 < left < 30  # stopped part way; articles whose images were archived are rewritten already
    assert not list((tmp_path / "site").glob(".archiver-tmp-*"))

    proc = _start(cfg)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert _original_urls_left(tmp_path / "site") == 0


def _group(pgid: int) -> list[int]:
    """The processes (zombies aside) of process group ``pgid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            out.append(int(stat.parent.name))
    return out


def _summary_counts(out: str) -> dict[str, int]:
    line = next(x for x in out.splitlines() if "unique image URLs:" in x)
    counts = {"urls": int(line.split()[0])}
    counts.update({word: int(n) for n, word in re.findall(r"(\d+) (archived|dead|rejected|failed)", line)})
    counts["not attempted"] = int(re.search(r"(\d+) URLs? not attempted", out).group(1))  # type: ignore[union-attr]
    return counts


@pytest.mark.parametrize(
    ("sig", "to_group"),
    [(signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["ctrl-c-to-the-process-group", "sigterm-to-the-run"],
)
def test_a_signal_during_a_long_decode_stops_within_seconds(
    tmp_path: Path, origin: Server, sig: signal.Signals, to_group: bool
) -> None:
    """A worker is inside a decode that would take half a minute (the scan bomb, limits lifted) when the run is
    stopped: by Ctrl-C in a terminal, which sends SIGINT to the run AND its image workers (one process group), or by
    SIGTERM to the run alone. The workers ignore signals, the run abandons that image (its worker is killed, not
    waited for) and stops: exit 130 within seconds, no traceback, nothing "failed": the image in flight and every URL
    not started are "not attempted"; no worker is left; a re-run finishes."""
    lifted = "[images]\nmax_jpeg_scans = 100000\nmax_decode_seconds = 600"
    cfg = _site(tmp_path, origin, n=12, delay=0.0, extra=lifted)
    for i in range(6):  # slow to fetch: some in flight, most not started when the signal comes
        origin.add(f"/s/{i}.jpg", make_jpeg(64, 48, seed=950 + i), "image/jpeg", delay=30.0)  # still in flight
    origin.add("/i/bomb.jpg", make_scan_bomb(), "image/jpeg")
    slow = "".join(f'<img src="http://img.test/s/{i}.jpg">\n' for i in range(6))
    (tmp_path / "site" / "bomb.md").write_text(f'<img src="http://img.test/i/bomb.jpg">\n{slow}', encoding="utf-8")
    proc = _start(cfg, start_new_session=True)  # its own process group, as a shell job has
    deadline = time.monotonic() + 60
    while not any((cpu_seconds(pid) or 0) > 1.0 for pid in _group(proc.pid) if pid != proc.pid):
        assert time.monotonic() < deadline and proc.poll() is None, "no worker ever got deep into the decode"
        time.sleep(0.05)
    sent = time.monotonic()
    if to_group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 15  # 3 s of grace, then the decode (~30 s more) is abandoned
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "[failed]" not in out and f"stopped early: interrupted ({sig.name})" in out
    counts = _summary_counts(out)
    assert counts["failed"] == counts["dead"] == counts["rejected"] == 0, out
    assert counts["not attempted"] >= 2  # the image being decoded, and at least one URL never started
    assert counts["archived"] + counts["not attempted"] == counts["urls"] == 19, out
    deadline = time.monotonic() + 5
    while _group(proc.pid) and time.monotonic() < deadline:
        print({pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in _group(proc.pid)})
        time.sleep(0.05)
    assert _group(proc.pid) == []  # no worker left behind

    for i in range(6):  # the re-run finds them quick to fetch
        origin.add(f"/s/{i}.jpg", make_jpeg(64, 48, seed=950 + i), "image/jpeg")
    cfg.write_text(cfg.read_text().replace(lifted, ""))  # the default scan limit refuses the bomb at once
    proc = _start(cfg)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert "1 rejected, 0 failed" in out and "too costly to decode" in out
    assert _original_urls_left(tmp_path / "site") == 1  # the bomb's URL, left as it was


def test_storage_outage_mid_run_is_waited_out(tmp_path: Path, origin: Server, s3_env) -> None:
    bucket = s3_env.make_bucket("outage")
    storage = (
        f'[storage]\nbackend = "s3"\nbucket = "{bucket}"\nendpoint_url = "{s3_env.endpoint_url}"\nretry_for = 60'
    )
    cfg = _site(tmp_path, origin, n=24, delay=0.15, storage=storage)
    proc = _start(cfg)
    try:
        _wait_for_progress(cfg, 3)
        s3_env.stop()  # the S3 server goes away mid-run ...
        time.sleep(2.5)
    finally:
        s3_env.start()  # ... and comes back
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert "24 archived" in out
    s3 = s3_env.client()
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    for path in (tmp_path / "site").glob("*.md"):
        text = path.read_text()
        assert "http://img.test/" not in text
        for url in re.findall(r"/archive/(\S+?\.jpg)", text):
            assert url in keys  # no article points at an object that is not stored


def test_storage_gone_for_good_ends_with_exit_1_and_a_rerun_finishes(
    tmp_path: Path, origin: Server, s3_env
) -> None:
    import sqlite3

    bucket = s3_env.make_bucket("gone")
    storage = (
        f'[storage]\nbackend = "s3"\nbucket = "{bucket}"\nendpoint_url = "{s3_env.endpoint_url}"\nretry_for = 2'
    )
    cfg = _site(tmp_path, origin, n=24, delay=0.15, storage=storage)
    proc = _start(cfg)
    try:
        _wait_for_progress(cfg, 3)
        s3_env.stop()
        out, err = proc.communicate(timeout=60)
    finally:
        s3_env.start()
    assert proc.returncode == 1, out + err
    assert "storage unavailable" in out and "run again to finish" in out
    assert "Traceback" not in err
    db = sqlite3.connect(tmp_path / ".archiver" / "manifest.sqlite3")
    archived_keys = [k for (k,) in db.execute(
        "SELECT a.key FROM urls u JOIN assets a ON a.sha256 = u.asset WHERE u.status = 'archived'"
    )]
    s3 = s3_env.client()
    stored = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert archived_keys and set(archived_keys) <= stored  # nothing marked archived that is not stored
    db.close()

    proc = _start(cfg)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert _original_urls_left(tmp_path / "site") == 0


def test_a_second_run_on_the_same_manifest_is_refused(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _site(tmp_path, origin, n=12, delay=0.4)
    proc = _start(cfg)
    try:
        _wait_for_progress(cfg, 1)
        assert main(["run", "--config", str(cfg), "-q"]) == 2
        assert "another archiver run is using this manifest" in capsys.readouterr().err
    finally:
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err  # the first run was not disturbed


def test_unwritable_articles_are_reported_and_left_intact_the_rest_goes_on(tmp_path: Path, origin: Server) -> None:
    cfg = _site(tmp_path, origin, n=9, delay=0)
    site = tmp_path / "site"
    readonly = site / "p003.md"
    readonly.chmod(0o444)
    big = site / "p006.md"  # over the file-size limit below: its rewrite fails like a full disk would
    # 5 MB: above what the manifest and its WAL reach (SQLite checkpoints the WAL near 4 MB)
    big.write_text(big.read_text() + f"<!-- {'padding ' * 16}-->\n" * 40_000, encoding="utf-8")
    before = {p.name: p.read_bytes() for p in site.glob("*.md")}
    limit = big.stat().st_size - 1

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = _start(cfg, preexec_fn=small_disk)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out + err  # a re-run may fix it once the disk has room
    assert f"[failed] {readonly}" in out and f"[failed] {big}" in out
    assert readonly.read_bytes() == before["p003.md"] and big.read_bytes() == before["p006.md"]
    assert site.joinpath("p000.md").read_bytes() != before["p000.md"]  # the others were rewritten
    assert not list(site.glob(".archiver-tmp-*"))
