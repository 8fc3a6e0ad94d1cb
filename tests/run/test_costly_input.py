"""Input that costs too much, through the real CLI and the loopback origin: an image too costly to decode (the
scan limit checked before decoding, the CPU budget enforced from outside the worker) is rejected and the run goes
on."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.cli import main
from tests.support.images import make_jpeg, make_scan_bomb
from tests.support.origin import Server
from tests.support.site import key, write_config

IMG = "http://img.news.test"


def _site(tmp_path: Path, origin: Server, images: dict[str, bytes]) -> Path:
    for name, data in images.items():
        origin.add(f"/c/{name}", data, "image/jpeg")
    site = tmp_path / "site"
    site.mkdir()
    body = "".join(f"![{name}]({IMG}/c/{name})\n\n" for name in images)
    (site / "post.md").write_text(f"---\ntitle: costly\n---\n{body}", encoding="utf-8")
    return site / "post.md"


def _run(cfg: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["run", "--config", str(cfg), "-q"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


GOOD = {f"good{i}.jpg": make_jpeg(160, 120, seed=700 + i) for i in range(4)}


@pytest.mark.parametrize(
    ("images", "reason"),
    [
        ("", "too costly to decode: more than images.max_jpeg_scans (100) JPEG scans"),
        # the scan limit lifted: the bomb reaches libjpeg, and the budget stops it from outside
        ("max_jpeg_scans = 100000\nmax_decode_seconds = 1.0",
         "too costly to decode: more than 1 s of CPU (images.max_decode_seconds)"),
    ],
    ids=["scan-limit", "cpu-budget"],
)
def test_an_image_too_costly_to_decode_is_rejected_and_the_run_goes_on(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str], images: str, reason: str
) -> None:
    article = _site(tmp_path, origin, {"bomb.jpg": make_scan_bomb(), **GOOD})
    cfg = write_config(tmp_path, origin, f"[images]\n{images}")
    code, out, err = _run(cfg, capsys)
    assert code == 0, out + err  # rejected is a reported outcome, not a failure
    assert "5 unique image URLs: 4 archived" in out and "1 rejected, 0 failed" in out
    line = next(x for x in out.splitlines() if "bomb.jpg" in x)
    assert line.strip().startswith("[rejected]") and reason in line, out
    text = article.read_text(encoding="utf-8")
    assert f"{IMG}/c/bomb.jpg" in text  # left as it was
    for data in GOOD.values():
        assert f"/archive/{key(data, 'jpg')}" in text
    assert "Traceback" not in err


_PEAK = (
    "import re, sys\nfrom archiver.cli import main\ncode = main(sys.argv[1:])\n"
    "print('PEAK_KB', re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
    "raise SystemExit(code)\n"
)


@pytest.mark.parametrize("fmt", ["html", "markdown"])
def test_an_article_with_a_million_references_is_skipped_in_bounded_memory(
    tmp_path: Path, origin: Server, fmt: str
) -> None:
    """~1.5 KB per reference while an article is scanned: a million of them took 1.1 GB (HTML) to 1.5 GB
    (Markdown) before. Past [articles] max_refs (20 000) the article is skipped and reported; the rest is archived."""
    import subprocess
    import sys

    from tests.support.paths import ROOT_DIR

    article = _site(tmp_path, origin, GOOD)
    line = "".join(f'<img src="{IMG}/c/good{i % 4}.jpg">' for i in range(1_000_000))
    many = tmp_path / "site" / f"many.{'html' if fmt == 'html' else 'md'}"
    many.write_text(f"<p>{line}</p>\n" if fmt == "html" else f"# many\n\n<div>{line}</div>\n", encoding="utf-8")
    before = many.read_bytes()
    cfg = write_config(tmp_path, origin)
    done = subprocess.run([sys.executable, "-c", _PEAK, "run", "--config", str(cfg), "-q"], cwd=ROOT_DIR,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"[skipped] {many}  — more than 20,000 image references (articles.max_refs)" in done.stdout
    assert "4 unique image URLs: 4 archived" in done.stdout
    assert many.read_bytes() == before
    assert all(f"/archive/{key(data, 'jpg')}" in article.read_text(encoding="utf-8") for data in GOOD.values())
    peak_mb = int(done.stdout.split("PEAK_KB")[1].split()[0]) / 1024
    print(f"{fmt}: peak RSS {peak_mb:.0f} MB for a {len(before) / 1e6:.0f} MB article")
    assert peak_mb < 400  # the article's own bytes and text, a few copies; not a million references


def test_every_command_that_scans_articles_reports_one_past_max_refs(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """run, verify and dedupe read articles: each names the one past the bound (lowered after a first run) and goes
    on; none scans it."""
    _site(tmp_path, origin, GOOD)  # 4 references
    big = tmp_path / "site" / "big.md"
    big.write_text("".join(f"![]({IMG}/c/good{i % 4}.jpg)\n" for i in range(5)), encoding="utf-8")
    cfg = write_config(tmp_path, origin)
    config = cfg.read_text()
    cfg.write_text(config.replace("[articles]\n", "[articles]\nmax_refs = 5\n", 1))
    code, out, err = _run(cfg, capsys)
    assert code == 0 and "[skipped]" not in out and f"{IMG}/c/" not in big.read_text(), out + err
    cfg.write_text(config.replace("[articles]\n", "[articles]\nmax_refs = 4\n", 1))
    reason = f"{big}: more than 4 image references (articles.max_refs)"
    code, out, err = _run(cfg, capsys)
    assert code == 0 and f"[skipped] {big}  — more than 4 image references (articles.max_refs)" in out, out + err
    assert main(["verify", "--config", str(cfg)]) == 0
    captured = capsys.readouterr()
    assert f"note: article not scanned: {reason}" in captured.out, captured.out + captured.err
    assert main(["dedupe", "--config", str(cfg), "--apply"]) == 1  # an article --apply could not read: exit 1
    captured = capsys.readouterr()
    assert reason in captured.out + captured.err and "Traceback" not in captured.err
