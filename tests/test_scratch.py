"""The archiver deletes only what it created: its own scratch folders, and in them only its own files."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from archiver import scratch
from archiver.cli import main
from tests.support.images import make_jpeg
from tests.support.origin import Server
from tests.support.paths import ROOT_DIR
from tests.support.site import write_config


def test_a_run_keeps_a_tmp_folder_beside_its_manifest_and_leaves_no_scratch_folder(
    tmp_path: Path, origin: Server
) -> None:
    """Before: the work folder was <manifest folder>/tmp, removed with rmtree at every run's start and end."""
    origin.add("/a.jpg", make_jpeg(64, 48, seed=1), "image/jpeg")
    cfg = write_config(tmp_path, origin, storage='[storage]\nbackend = "local"\npath = "."\n[manifest]\npath = "archiver.sqlite3"')
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "post.md").write_text("![a](http://img.news.test/a.jpg)\n", encoding="utf-8")
    drafts = tmp_path / "tmp"
    drafts.mkdir()
    (drafts / "draft.md").write_text("my unpublished draft\n", encoding="utf-8")
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "notes.txt").write_text("mine\n", encoding="utf-8")
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert (drafts / "draft.md").read_text(encoding="utf-8") == "my unpublished draft\n"
    assert (tmp_path / ".tmp" / "notes.txt").read_text(encoding="utf-8") == "mine\n"
    assert not list(tmp_path.glob(f"{scratch.PREFIX}*")), "a scratch folder was left after a clean run"
    assert main(["run", "--config", str(cfg), "-q", "--dry-run"]) == 0
    assert (drafts / "draft.md").exists() and not list(tmp_path.glob(f"{scratch.PREFIX}*"))


def test_removing_a_scratch_folder_spares_what_the_archiver_did_not_write(tmp_path: Path) -> None:
    work = scratch.create(tmp_path)
    (work / "fetch-abc123.part").write_bytes(b"partial download")
    (work / "holiday.jpg").write_bytes(b"a user's file")
    assert not scratch.remove(work)
    assert sorted(p.name for p in work.iterdir()) == [scratch.MARKER, "holiday.jpg"]
    (work / "holiday.jpg").unlink()
    assert scratch.remove(work) and not work.exists()


def test_only_marked_folders_of_dead_processes_on_this_host_are_stale(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    host = scratch._host()
    stale = tmp_path / f"{scratch.PREFIX}{host}-{dead_pid}-x1"
    stale.mkdir()
    (stale / scratch.MARKER).write_text(f"{host} {dead_pid}\n", encoding="utf-8")
    (stale / "fetch-1.part").write_bytes(b"x")
    alive = scratch.create(tmp_path)  # ours: alive
    unmarked = tmp_path / f"{scratch.PREFIX}{host}-{dead_pid}-x2"  # a look-alike without our marker
    unmarked.mkdir()
    (unmarked / "fetch-2.part").write_bytes(b"x")
    other_host = tmp_path / f"{scratch.PREFIX}elsewhere-{dead_pid}-x3"
    other_host.mkdir()
    (other_host / scratch.MARKER).write_text(f"elsewhere {dead_pid}\n", encoding="utf-8")
    link = tmp_path / f"{scratch.PREFIX}{host}-{dead_pid}-x4"
    link.symlink_to(stale)
    assert scratch.remove_stale(tmp_path) == [stale]
    assert alive.is_dir() and (unmarked / "fetch-2.part").exists() and other_host.is_dir() and link.is_symlink()
    assert os.getpid() != dead_pid


def test_two_concurrent_runs_with_two_manifests_in_one_folder_both_succeed(tmp_path: Path, origin: Server) -> None:
    """Before the scratch folders: both runs worked in <folder>/tmp and each removed it at its start and end, so
    the second run's start deleted the first one's downloads in flight."""
    slow = {f"/slow-{i}.jpg": make_jpeg(64, 48, seed=40 + i) for i in range(4)}
    fast = {f"/fast-{i}.jpg": make_jpeg(64, 48, seed=50 + i) for i in range(4)}
    for path, body in slow.items():
        origin.add(path, body, "image/jpeg", delay=8.0)  # the first run's downloads are in flight meanwhile
    for path, body in fast.items():
        origin.add(path, body, "image/jpeg")
    configs = {}
    for name, images in (("one", slow), ("two", fast)):
        (tmp_path / name).mkdir()
        refs = "".join(f"![x](http://img.news.test{p})\n" for p in images)
        (tmp_path / name / "post.md").write_text(refs, encoding="utf-8")
        cfg = write_config(tmp_path, origin, timeout=30, storage=(
            f'[storage]\nbackend = "local"\npath = "archive"\n[manifest]\npath = "{name}.sqlite3"'))
        configs[name] = cfg.rename(tmp_path / f"{name}.toml")  # the same folder: manifests side by side

    def run(name: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "archiver", "run", str(tmp_path / name), "--config",
                                 str(configs[name]), "-q"], cwd=ROOT_DIR, stderr=subprocess.PIPE)

    first = run("one")
    deadline = time.monotonic() + 30
    while sum(origin.hits(p) for p in slow) < len(slow) and time.monotonic() < deadline:
        time.sleep(0.02)  # every download of the first run has started
    second = run("two")
    assert second.wait(60) == 0, second.stderr.read() if second.stderr else ""
    assert first.poll() is None, "the first run ended before the second: the test proves nothing"
    assert first.wait(60) == 0, first.stderr.read() if first.stderr else ""
    for name, images in (("one", slow), ("two", fast)):
        text = (tmp_path / name / "post.md").read_text(encoding="utf-8")
        assert "img.news.test" not in text and text.count("/archive/") == len(images), name
    assert sorted((tmp_path / "archive").rglob("*.jpg")) and not list(tmp_path.glob(f"{scratch.PREFIX}*"))
