"""``ARCHIVER_STAGE_STATS=FILE``: the CPU seconds a run spent by stage, what the benchmarks print per image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.images import make_jpeg
from tests.support.origin import Server
from tests.support.paths import ROOT_DIR


def test_a_run_writes_its_cpu_seconds_by_stage_where_asked(tmp_path: Path, origin: Server) -> None:
    for i in range(6):
        origin.add(f"/i/{i}.jpg", make_jpeg(640, 480, seed=40 + i), "image/jpeg")
    (tmp_path / "site").mkdir()
    (tmp_path / "site/post.md").write_text(
        "---\ntitle: t\n---\n" + "".join(f'<img src="http://img.test/i/{i}.jpg">\n' for i in range(6)), encoding="utf-8")
    cfg = tmp_path / "archiver.toml"
    cfg.write_text(f'[articles]\nroot = "site"\n[fetch]\nallow_networks = ["127.0.0.1/32"]\n'
                   f'connect_to = {{ "img.test" = "127.0.0.1:{origin.port}" }}\n[storage]\npath = "archive"\n',
                   encoding="utf-8")
    stats = tmp_path / "stages.json"
    proc = subprocess.run([sys.executable, "-m", "archiver", "run", "--config", str(cfg), "-q"], cwd=ROOT_DIR,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT_DIR), "ARCHIVER_STAGE_STATS": str(stats)})
    assert proc.returncode == 0, proc.stderr
    assert "6 archived" in proc.stdout
    spent = json.loads(stats.read_text())
    assert {"manifest", "store", "rewrite", "near-duplicate search", "fetch, loop and the rest",
            "image workers"} <= set(spent)
    assert all(v >= 0 for v in spent.values())
    assert spent["image workers"] > 0 and spent["manifest"] > 0 and spent["store"] > 0

    stats.unlink()  # and nothing is written without the variable
    proc = subprocess.run([sys.executable, "-m", "archiver", "run", "--config", str(cfg), "-q"], cwd=ROOT_DIR,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT_DIR)})
    assert proc.returncode == 0 and not stats.exists()


def test_the_stats_file_never_replaces_what_it_did_not_write(tmp_path: Path, origin: Server) -> None:
    """ARCHIVER_STAGE_STATS naming an article (or the manifest) by mistake, or a symlink to one: left as it is."""
    origin.add("/i/x.jpg", make_jpeg(320, 240, seed=77), "image/jpeg")
    (tmp_path / "site").mkdir()
    post = tmp_path / "site/post.md"
    post.write_text('---\ntitle: t\n---\n<img src="http://img.test/i/x.jpg">\n', encoding="utf-8")
    cfg = tmp_path / "archiver.toml"
    cfg.write_text(f'[articles]\nroot = "site"\n[fetch]\nallow_networks = ["127.0.0.1/32"]\n'
                   f'connect_to = {{ "img.test" = "127.0.0.1:{origin.port}" }}\n[storage]\npath = "archive"\n',
                   encoding="utf-8")
    notes = tmp_path / "notes.md"
    notes.write_text("my notes\n", encoding="utf-8")
    link = tmp_path / "stats.json"
    link.symlink_to(notes)
    for target in (notes, link):
        proc = subprocess.run([sys.executable, "-m", "archiver", "run", "--config", str(cfg)], cwd=ROOT_DIR,
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT_DIR), "ARCHIVER_STAGE_STATS": str(target)})
        assert proc.returncode == 0, proc.stderr
        assert notes.read_text(encoding="utf-8") == "my notes\n" and link.is_symlink()
        assert f"ARCHIVER_STAGE_STATS={target}: not written" in proc.stderr + proc.stdout
