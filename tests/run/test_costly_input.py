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
