"""The worker processes that decode images: a small pool whose workers are killed and replaced one at a time.

Why not ``concurrent.futures.ProcessPoolExecutor``: it cannot end one job, and a worker that dies breaks the whole
pool (every pending future fails). Here each slot owns one worker process (spawned, never forked: the parent has
threads) and one thread that feeds it and watches it, so:

- a job gets a budget, enforced from outside the worker: once the worker has spent ``budget`` seconds of CPU on it
  (read from /proc; wall-clock time where the platform does not tell), or ``WALL_FACTOR`` times that in wall-clock
  time, the worker is killed (SIGKILL) and the job fails with ImageError("too costly to decode: ..."); the next job
  in that slot starts a new worker;
- a worker that dies (a crash, the OOM killer) fails its own job only (WorkerDied);
- a job its caller gives up on (``abandon``; cancelling the task awaiting ``run``) has its worker killed at once:
  stopping a run never waits for a decode;
- workers ignore SIGINT and SIGTERM from birth (Ctrl-C in a terminal reaches the whole process group: the parent
  decides what happens, and kills them), and exit as soon as their parent is gone (SIGKILL, the OOM killer).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.util
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Executor, Future
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

from archiver.errors import ImageError, WorkerDied

T = TypeVar("T")
PARENT_CHECK_SECONDS = 0.5
TICK = 0.05  # how often a busy slot checks its worker's CPU time and whether its job was abandoned
WALL_FACTOR = 10  # a job also ends after this many times its budget in wall-clock time (a stuck worker)
_STARTED = "started"  # a worker's message: the job is unpickled (its module imported), the clock starts now
_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def default_workers() -> int:
    """One worker per core, at most 8."""
    return max(1, min(os.cpu_count() or 1, 8))


def make_pool(budget: float | None = None, workers: int | None = None) -> ImagePool:
    """The pool `archiver run` decodes images in: one worker per core (at most 8), ``budget`` CPU seconds a job."""
    return ImagePool(workers or default_workers(), budget)


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) process ``pid`` has used so far, or None where /proc does not say."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rsplit(b")", 1)[-1].split()  # after "(comm)": state is field 3, utime 14, stime 15
    try:
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    except (IndexError, ValueError):
        return None


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class _Job:
    __slots__ = ("fn", "args", "future", "abandoned")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.future: Future[Any] = Future()
        self.abandoned = False


class ImagePool(Executor):
    """``workers`` slots, each one worker process fed by one thread; ``budget``: CPU seconds per job (None: none).

    Workers start on the first job (a run with nothing to decode starts none). ``submit`` works as any Executor's
    (``loop.run_in_executor`` too); ``run`` awaits a job and kills its worker if the awaiting task is cancelled.
    ``terminate`` ends everything now; ``shutdown`` lets the running jobs finish first, as an Executor's does.
    """

    def __init__(self, workers: int = 1, budget: float | None = None) -> None:
        if workers < 1:
            raise ValueError("an ImagePool needs at least one worker")
        if budget is not None and budget <= 0:
            raise ValueError("a job's budget must be more than 0 seconds")
        self.budget = budget
        self._size = workers
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._slots: list[_Slot] = []  # filled on the first job, never replaced (the exit hook below holds it)
        self._closed = False
        self._cancel_pending = False
        # At interpreter exit multiprocessing terminates (SIGTERM, which workers ignore) and joins its children:
        # kill ours first, or an ImagePool nobody shut down would hang the exit.
        multiprocessing.util.Finalize(self, _kill_all, args=(self._slots,), exitpriority=100)

    # -- Executor ------------------------------------------------------------------------------
    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        if kwargs:
            raise TypeError("ImagePool jobs take positional arguments only")
        job = _Job(fn, args)
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to an ImagePool after shutdown")
            if not self._slots:
                self._slots.extend(_Slot(self, i) for i in range(self._size))
                for slot in self._slots:
                    slot.thread.start()
            self._jobs.put(job)
        return job.future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new jobs; pending ones cancelled if ``cancel_futures``; running ones finish; workers exit."""
        self._close(cancel_futures, kill=False)
        if wait:
            self._join()

    # -- beyond an Executor --------------------------------------------------------------------
    async def run(self, fn: Callable[..., T], /, *args: Any) -> T:
        """``fn(*args)`` in a worker; if the awaiting task is cancelled, the job is abandoned (its worker killed)."""
        import asyncio  # here: the workers import this module too, and need no event loop

        future = self.submit(fn, *args)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            self.abandon(future)
            raise

    def abandon(self, future: Future[Any]) -> None:
        """Give up on a job: cancelled if it has not started, else its worker is killed now (and later replaced)."""
        with self._lock:
            if future.cancel():
                return
            for slot in self._slots:
                job = slot.job
                if job is not None and job.future is future:
                    job.abandoned = True
                    slot.kill()

    def terminate(self) -> None:
        """End everything now: pending jobs cancelled, running jobs abandoned (their workers killed), all joined."""
        self._close(cancel_futures=True, kill=True)
        self._join()

    def worker_pids(self) -> list[int]:
        """Process ids of the workers alive now (for tests and benchmarks)."""
        with self._lock:
            return [s.proc.pid for s in self._slots if s.proc is not None and s.proc.pid is not None]

    # -- inside ----------------------------------------------------------------------------------
    def _close(self, cancel_futures: bool, kill: bool) -> None:
        with self._lock:
            if cancel_futures:
                self._cancel_pending = True  # a job a slot is taking right now is cancelled there
                ends = 0
                while True:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        ends += 1
                    else:
                        job.future.cancel()
                for _ in range(ends):
                    self._jobs.put(None)
            if not self._closed:
                self._closed = True
                for _ in self._slots:
                    self._jobs.put(None)
            if kill:
                for slot in self._slots:
                    if slot.job is not None:
                        slot.job.abandoned = True
                        slot.kill()

    def _join(self) -> None:
        for slot in self._slots:
            if slot.thread.is_alive() and slot.thread is not threading.current_thread():
                slot.thread.join()


class _Slot:
    """One worker process and the thread that feeds it jobs, watches its budget and replaces it when it dies."""

    def __init__(self, pool: ImagePool, index: int) -> None:
        self.pool = pool
        self.proc: BaseProcess | None = None
        self.conn: Connection | None = None
        self.job: _Job | None = None  # the job running now (read and written under the pool's lock)
        self.thread = threading.Thread(target=self._serve, name=f"image-slot-{index}", daemon=True)

    def kill(self) -> None:
        """SIGKILL the worker (the caller holds the pool's lock); the slot's thread sees it die and cleans up."""
        if self.proc is not None and self.proc.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)

    def _serve(self) -> None:
        # Workers are started from this thread with SIGINT and SIGTERM blocked: a new process inherits the mask,
        # so a Ctrl-C that arrives while it starts stays pending until the worker has set them to be ignored.
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            while True:
                job = self.pool._jobs.get()
                if job is None:
                    return
                if self.pool._cancel_pending:
                    job.future.cancel()
                if not job.future.set_running_or_notify_cancel():
                    continue
                with self.pool._lock:
                    self.job = job
                try:
                    ok, value = self._run(job)
                except BaseException as exc:  # a bug here must not leave the caller waiting for ever
                    ok, value = False, exc
                with self.pool._lock:
                    self.job = None
                if job.abandoned:
                    job.future.set_exception(CancelledError())
                elif ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)
        finally:
            self._stop_worker()

    def _run(self, job: _Job) -> tuple[bool, Any]:
        """(True, result) or (False, exception) of one job, the worker killed if it goes over its budget."""
        if self.proc is not None and not self.proc.is_alive():  # it died while idle: not this job's fault
            self._reap()
        if self.proc is None:
            self._start_worker()
        assert self.proc is not None and self.conn is not None
        pid = self.proc.pid
        assert pid is not None
        try:
            self.conn.send((job.fn, job.args))
        except (OSError, EOFError):
            return False, self._died()
        except Exception as exc:  # the job cannot be pickled: the worker never saw it
            return False, exc
        budget = self.pool.budget
        sent = time.monotonic()
        clock: tuple[float | None, float] | None = None  # (CPU seconds, monotonic) when the job started
        while True:
            if self.conn.poll(TICK):
                try:
                    message = self.conn.recv()
                except (OSError, EOFError):
                    return False, self._died()
                except Exception as exc:  # a result that cannot be unpickled here
                    return False, exc
                if message == _STARTED:
                    clock = (cpu_seconds(pid), time.monotonic())
                    continue
                ok, value = message
                return bool(ok), value
            if job.abandoned:
                return False, self._died()
            if budget is None:
                continue
            now = time.monotonic()
            if now - sent > WALL_FACTOR * budget:
                self._kill_now()
                return False, ImageError(
                    f"too costly to decode: no result after {now - sent:.0f} s (images.max_decode_seconds "
                    f"is {budget:g} s of CPU)"
                )
            if clock is not None:
                cpu = cpu_seconds(pid)
                if cpu is not None and clock[0] is not None:
                    used, unit = cpu - clock[0], "s of CPU"
                else:
                    used, unit = now - clock[1], "s"
                if used > budget:
                    self._kill_now()
                    return False, ImageError(
                        f"too costly to decode: more than {budget:g} {unit} (images.max_decode_seconds)"
                    )

    def _start_worker(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent_end, child_end = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_worker_main, args=(child_end, os.getpid()), name="archiver-image-worker",
                           daemon=True)
        proc.start()
        child_end.close()
        with self.pool._lock:
            self.proc, self.conn = proc, parent_end

    def _kill_now(self) -> None:
        with self.pool._lock:
            self.kill()
        self._reap()

    def _died(self) -> WorkerDied:
        """The worker is gone (or abandoned: kill it): reap it; the error its job gets."""
        if self.proc is not None and self.proc.is_alive():
            with self.pool._lock:
                self.kill()
        code = self._reap()
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        return WorkerDied(f"the image worker died ({how}) while decoding; a re-run will try again")

    def _reap(self) -> int | None:
        proc, conn = self.proc, self.conn
        with self.pool._lock:
            self.proc, self.conn = None, None
        if conn is not None:
            conn.close()
        if proc is None:
            return None
        proc.join(5)
        code = proc.exitcode
        if code is not None:
            proc.close()
        return code

    def _stop_worker(self) -> None:
        """A clean exit for an idle worker (a ``None`` job), a kill if it does not go within a second."""
        if self.proc is None:
            return
        try:
            assert self.conn is not None
            self.conn.send(None)
            self.proc.join(1.0)
        except (OSError, ValueError):
            pass
        if self.proc.exitcode is None:
            with self.pool._lock:
                self.kill()
        self._reap()


def _kill_all(slots: list[_Slot]) -> None:
    for slot in slots:
        slot.kill()


def _worker_main(conn: Connection, parent: int) -> None:
    """A worker: ignore SIGINT and SIGTERM (the parent decides), watch the parent, run jobs until told to stop."""
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)  # blocked by the slot that started us; now ignored
    watch_parent(parent)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        except Exception as exc:  # the job's function cannot be imported here
            conn.send((False, RuntimeError(f"cannot load the job: {type(exc).__name__}: {exc}")))
            continue
        if job is None:
            return
        conn.send(_STARTED)
        fn, args = job
        try:
            result: tuple[bool, Any] = (True, fn(*args))
        except Exception as exc:
            result = (False, exc)
        try:
            conn.send(result)
        except Exception as exc:  # an exception (or result) that cannot be pickled
            conn.send((False, RuntimeError(f"{type(exc).__name__}: {exc}")))


def watch_parent(parent: int) -> None:
    """In a worker: exit as soon as ``parent`` is no longer this process's parent (it died; we were re-parented)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()
