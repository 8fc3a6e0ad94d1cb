"""The image worker pool, with real worker processes: a CPU budget per image enforced from outside the worker (which
is killed and replaced), a dead worker failing only its own job, an abandoned job killing its worker at once, and
workers that ignore SIGINT/SIGTERM (the parent decides)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from concurrent.futures import CancelledError
from pathlib import Path

import pytest

from archiver.config import ImagesConfig
from archiver.errors import ImageError, WorkerDied
from archiver.image.pool import ImagePool, cpu_seconds, make_pool
from archiver.image.process import process
from archiver.model import ImageFormat
from tests.support.images import make_jpeg, make_scan_bomb

JPEG = ImageFormat("jpeg", "image/jpeg", "jpg")


def spin(seconds: float) -> int:
    """Burn ``seconds`` of CPU in the worker; its pid."""
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass
    return os.getpid()


def sleep_then_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def exit_now(code: int) -> None:
    os._exit(code)


def interrupted_like_a_starting_worker(sig: int) -> None:
    """What a Ctrl-C does to a worker that has not yet set SIGINT to be ignored: it dies of the signal."""
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
    time.sleep(60)


def _gone(pid: int, within: float = 10.0) -> bool:
    """True once process ``pid`` no longer runs (a zombie counts as gone), waiting up to ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


def _file(tmp_path: Path, name: str, data: bytes) -> tuple[str, ImageFormat, str, int]:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path), JPEG, "0" * 64, len(data)


def test_an_image_over_its_cpu_budget_is_rejected_its_worker_replaced(tmp_path: Path) -> None:
    """The scan bomb with the scan limit lifted: ~30 s of CPU in libjpeg, where nothing can interrupt it from
    inside. The pool kills the worker after 1 s of CPU; the next image gets a new worker."""
    cfg = ImagesConfig(max_jpeg_scans=100_000, max_decode_seconds=1.0)
    bomb = _file(tmp_path, "bomb.jpg", make_scan_bomb())
    good = _file(tmp_path, "good.jpg", make_jpeg(320, 240, seed=5))
    with make_pool(cfg.max_decode_seconds, workers=1) as pool:
        first = pool.submit(sleep_then_pid, 0).result()
        costly = pool.submit(process, *bomb, cfg)
        after = pool.submit(process, *good, cfg)  # queued in the same worker, behind the bomb
        with pytest.raises(ImageError) as info:
            costly.result()
        assert not isinstance(info.value, WorkerDied)
        assert info.value.outcome == "rejected"
        assert info.value.reason == "too costly to decode: more than 1 s of CPU (images.max_decode_seconds)"
        assert _gone(first)
        asset = after.result()  # sent again to the new worker
        assert asset.width == 320 and asset.renditions
        assert pool.worker_pids() and pool.worker_pids() != [first]


def test_the_budget_counts_cpu_not_waiting(tmp_path: Path) -> None:
    """A job that sleeps uses no CPU: a 0.5 s budget does not end a 1.5 s sleep (a loaded machine only slows a
    legitimate image down; it does not make it "too costly")."""
    with ImagePool(1, budget=0.5) as pool:
        assert pool.submit(sleep_then_pid, 1.5).result() > 0
    assert cpu_seconds(os.getpid()) is not None  # /proc is there: the budget really was CPU time


@pytest.mark.parametrize("workers", [1, 2])
def test_a_worker_that_dies_fails_only_its_own_job(workers: int) -> None:
    with ImagePool(workers) as pool:
        futures = [pool.submit(exit_now, 3), pool.submit(spin, 0.05), pool.submit(spin, 0.05)]
        with pytest.raises(WorkerDied) as info:
            futures[0].result()
        assert "exit status 3" in info.value.reason and info.value.outcome == "failed"
        assert all(f.result() > 0 for f in futures[1:])
        assert pool.submit(spin, 0.01).result() > 0


def test_cancelling_the_awaiting_task_kills_the_worker_at_once() -> None:
    async def main(pool: ImagePool) -> tuple[int, int]:
        first = await pool.run(spin, 0.01)
        task = asyncio.create_task(pool.run(spin, 600))  # would hold the worker for ten minutes
        while not pool.worker_pids():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # inside the job now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return first, await pool.run(spin, 0.01)

    with ImagePool(1) as pool:
        first, after = asyncio.run(main(pool))
    assert _gone(first) and after != first


def test_a_job_abandoned_while_queued_behind_another_never_runs_its_course() -> None:
    with ImagePool(1) as pool:
        first = pool.submit(sleep_then_pid, 0.5)
        queued = pool.submit(spin, 600)
        while not first.running():
            time.sleep(0.01)
        pool.abandon(queued)
        pid = first.result()
        with pytest.raises(CancelledError):
            queued.result(timeout=30)  # killed when its turn came, not after ten minutes
        assert _gone(pid)
        assert pool.submit(spin, 0.01).result() != pid


def test_terminate_kills_busy_workers_and_cancels_pending_jobs() -> None:
    pool = ImagePool(1)
    busy = pool.submit(spin, 600)
    pending = pool.submit(spin, 0.01)
    while not pool.worker_pids() or not busy.running():
        time.sleep(0.01)
    pid = pool.worker_pids()[0]
    pool.terminate()
    assert _gone(pid)
    for future in (busy, pending):  # the pending one may already sit in the worker's pipe: abandoned too
        with pytest.raises(CancelledError):
            future.result(timeout=5)
    with pytest.raises(RuntimeError):
        pool.submit(spin, 0.01)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_workers_ignore_sigint_and_sigterm(sig: signal.Signals) -> None:
    """Ctrl-C in a terminal reaches every process of the group: a worker must go on (the parent decides)."""
    with ImagePool(1) as pool:
        job = pool.submit(sleep_then_pid, 1.0)
        while not job.running() or not pool.worker_pids():
            time.sleep(0.01)
        time.sleep(0.2)
        pid = pool.worker_pids()[0]
        os.kill(pid, sig)
        assert job.result() == pid  # finished its job, no KeyboardInterrupt


def test_a_pool_nobody_shuts_down_does_not_hang_the_exit(tmp_path: Path) -> None:
    """Workers ignore SIGTERM, which multiprocessing sends its children at exit before joining them: the pool
    kills its own first."""
    import subprocess
    import sys

    code = (
        "from archiver.image.pool import ImagePool\n"
        "from tests.image.test_pool import spin\n"
        "pool = ImagePool(1)\n"
        "pool.submit(spin, 0.01).result()\n"
        "pool.submit(spin, 600)\n"
        "print('leaving')\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "leaving" in done.stdout, done.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_worker_interrupted_with_the_run_abandons_its_job_never_fails_it(sig: int) -> None:
    """Found by review: a Ctrl-C that reached a worker while it started made its URL "failed" (the worker died of
    signal 2); a worker dying of SIGINT or SIGTERM leaves its job not attempted (cancelled), for a re-run."""
    with ImagePool(1) as pool:
        with pytest.raises(CancelledError):
            pool.submit(interrupted_like_a_starting_worker, sig).result()
        assert pool.submit(spin, 0.01).result() > 0  # a new worker takes the next job
