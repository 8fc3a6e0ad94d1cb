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
