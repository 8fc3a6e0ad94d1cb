"""What the user sees: a live status line on a terminal, plain lines otherwise, and the final summary."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from archiver.fetch.pauses import HostPauses, host_key
from archiver.run.pipeline import Problem, RunReport, Stats
from archiver.run.progress import Progress, status_line, summary, summary_lines
from tests.support.images import make_jpeg
from tests.support.origin import Server
from tests.support.paths import ROOT_DIR

ROOT = ROOT_DIR


def test_on_a_terminal_a_status_line_is_redrawn_in_place(tmp_path: Path, origin: Server) -> None:
    for i in range(6):
        origin.add(f"/p/{i}.jpg", make_jpeg(200, 150, seed=i), "image/jpeg", delay=0.4)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.md").write_text("".join(f"![](http://img.test/p/{i}.jpg)\n" for i in range(6)))
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[fetch]\nallow_networks = ["127.0.0.1/32"]\nconnect_to = {{ "img.test" = "127.0.0.1:{origin.port}" }}\n'
        f'per_host = 2\n[storage]\npath = "archive"\n'
    )
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "archiver", "run", str(tmp_path / "site"), "--config", str(cfg)],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=follower,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    out = proc.stdout.read().decode() if proc.stdout else ""
    assert proc.wait(60) == 0
    screen = b"".join(chunks).decode()
    assert "\r\x1b[Karticles 1 · urls " in screen  # redrawn in place, not scrolled
    # progress was drawn while the run went on (how far it got between two redraws depends on the machine's load)
    assert re.search(r"(fetched [1-6] |urls [1-6]/6)", screen), screen
    assert "6 unique image URLs: 6 archived" in out  # the summary goes to stdout


def test_not_on_a_terminal_progress_is_plain_lines() -> None:
    stream = io.StringIO()
    stats = Stats(articles=3, urls=10, archived=2, dead=1, rejected=1, fetched=4, uploaded=8)
    progress = Progress(stats, stream)
    assert not progress.tty
    progress.draw()
    line = stream.getvalue()
    assert line.endswith("\n") and "\r" not in line and "\x1b" not in line
    assert "urls 4/10 (40%): 2 archived, 1 dead, 1 rejected, 0 failed" in line and "uploaded 8" in line


def test_the_status_line_shows_percentage_bytes_rate_eta_and_the_hosts_paused() -> None:
    """What rclone -P users expect: done/total (percent), bytes and their rate, URLs/s, the time left, and the hosts
    a "slow down" answer paused, with the seconds left (from the fetcher's own pauses, on a fake clock)."""
    now = [1000.0]
    pauses = HostPauses(clock=lambda: now[0])
    pauses.pause(host_key("https://cdn.example.com/a.jpg"), 42, "429 Retry-After")
    pauses.pause(host_key("http://img.test:8080/b.jpg"), 5, "503 Retry-After")
    # 40 URLs, 10 of them known from an earlier run (no work): 15 settled by this run's work in 30 s -> 30 s left
    stats = Stats(articles=7, urls=40, urls_known=10, archived=20, dead=3, rejected=1, failed=1, fetched=15,
                  bytes_fetched=3 * 1024 * 1024, uploaded=30, articles_rewritten=2)
    line = status_line(stats, 30.0, paused=pauses.paused())
    assert "urls 25/40 (62%): 20 archived, 3 dead, 1 rejected, 1 failed" in line
    assert "fetched 15 (3.0 MB, 102.4 KB/s)" in line and "0.8 urls/s" in line and "ETA 30s" in line
    assert line.endswith(" · paused: cdn.example.com (42s), img.test:8080 (5s)")
    now[0] += 6  # one pause is over
    assert status_line(stats, 30.0, paused=pauses.paused()).endswith(" · paused: cdn.example.com (36s)")
    stats.archived += 15
    assert "ETA 0s" in status_line(stats, 60.0) and "paused" not in status_line(stats, 60.0)
    assert "ETA --" in status_line(Stats(articles=1, urls=5), 3.0)
    assert status_line(Stats(articles=3, refs=12), 1.0) == "articles 3 · scanning for image references, 12 so far"
    assert "ETA 1h23m" in status_line(Stats(urls=5001, archived=1, fetched=1), 1.0)
    stream = io.StringIO()
    Progress(stats, stream, paused=lambda: [("cdn.example.com:443", 3.0)]).draw()
    assert "paused: cdn.example.com (3s)" in stream.getvalue()


def test_the_status_line_and_the_summary_use_the_outcomes_vocabulary_and_a_dry_run_says_would() -> None:
    """The status line says "dead" for what the summary calls dead (it used to call dead and rejected "failed"),
    and a dry run says what would be archived, uploaded and rewritten."""
    stats = Stats(articles=1, urls=6, archived=2, dead=1, rejected=1, failed=1, not_attempted=1, uploaded=4,
                  articles_rewritten=1)
    stream = io.StringIO()
    Progress(stats, stream, dry_run=True).draw()
    line = stream.getvalue()
    assert "urls 5/6 (83%): 2 would be archived, 1 dead, 1 rejected, 1 failed" in line
    assert "would upload 4" in line and "would be rewritten 1" in line and "uploaded 4" not in line
    text = summary(RunReport(stats), 1.0, dry_run=True)
    assert "6 unique image URLs: 2 would be archived (0 by earlier runs), 1 dead, 1 rejected, 1 failed, " \
           "1 not attempted" in text
    assert "objects that would be uploaded 4" in text and "1 would be rewritten" in text
    real = summary(RunReport(stats), 1.0)
    assert "6 unique image URLs: 2 archived (0 by earlier runs)" in real and "objects uploaded 4" in real
    assert "would" not in real


def test_summary_lists_every_image_not_archived_with_article_line_url_and_reason() -> None:
    report = RunReport(Stats(articles=2, urls=3, archived=1, dead=1, failed=1, fetched=2))
    report.problems += [
        Problem("dead", "404 Not Found", "https://x/gone.jpg", "posts/a.md", 12),
        Problem("failed", "timed out after 5 attempts", "https://y/slow.jpg", "posts/b.md", 3),
    ]
    text = summary(report, 2.0)
    assert "3 unique image URLs: 1 archived" in text and "1 dead" in text and "1 failed" in text
    assert "[failed] posts/b.md:3  https://y/slow.jpg  — timed out after 5 attempts" in text
    assert "[dead] posts/a.md:12  https://x/gone.jpg  — 404 Not Found" in text
    assert text.index("[failed]") < text.index("[dead]")  # what a re-run may fix comes first
    assert report.exit_code == 1
    assert RunReport(Stats(), [Problem("dead", "404")]).exit_code == 0


def test_a_long_list_of_images_not_archived_starts_with_one_headline_per_host_and_is_bounded() -> None:
    """412 images refused by one CDN: the summary's first lines say so and what to do; it does not print all 412
    again (each was logged as it happened) but says where every one is listed."""
    report = RunReport(Stats(urls=420, dead=420))
    report.problems += [Problem("dead", "403 Forbidden", f"https://cdn.example/i/{i}.jpg", f"posts/{i}.md", 3)
                        for i in range(412)]
    report.problems += [Problem("dead", "404 Not Found", f"https://old.example/{i}.png", "posts/x.md", i)
                        for i in range(8)]
    assert sum(" — " in line for line in summary(report, 1.0).splitlines()) == 420  # quiet: none was logged
    lines = summary_lines(report, 1.0, bounded=True)
    start = lines.index("Not archived (420):")
    assert lines[start + 1] == "  cdn.example: 412 images 403 Forbidden — set a Referer (or a cookie) for this host " \
                               "in [fetch] headers"
    assert lines[start + 2].startswith("  old.example: 8 images 404 Not Found — gone at the source")
    listed = [line for line in lines if line.startswith("  [dead]")]
    assert len(listed) == 30
    assert "… and 390 more" in lines[-1] and "archiver report" in lines[-1]
