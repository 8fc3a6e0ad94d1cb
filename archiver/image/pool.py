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
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Executor, Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

from archiver.errors import ImageError, WorkerDied
from archiver.image.worker import SIGNALS, STARTED, serve

T = TypeVar("T")
DEPTH = 2  # jobs sent to a worker at once: the running one and the next
TICK = 0.05  # how often a busy slot checks its worker's CPU time and whether its job was abandoned
WALL_FACTOR = 10  # a job also ends after this many times its budget in wall-clock time (a stuck worker)


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


@dataclass(eq=False)
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: Future[Any] = field(default_factory=Future)
    abandoned: bool = False  # its caller gave up on it: its worker is killed, it ends cancelled


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
                for i, job in enumerate(slot.sent):
                    if job.future is future:
                        job.abandoned = True
                        if i == 0:  # running: now; queued behind it: its slot kills it when its turn comes
                            slot.kill()
                        return

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
            self._cancel_pending |= cancel_futures  # the slots cancel what they take from the queue from now on
            if not self._closed:
                self._closed = True
                for _ in self._slots:
                    self._jobs.put(None)
            if kill:
                for slot in self._slots:
                    for job in slot.sent:
                        job.abandoned = True
                    if slot.sent:
                        slot.kill()

    def _join(self) -> None:
        for slot in self._slots:
            if slot.thread.is_alive() and slot.thread is not threading.current_thread():
                slot.thread.join()


_START_LOCK = threading.Lock()


@contextlib.contextmanager
def _without_main_script() -> Iterator[None]:
    """Start a spawned worker without it running the parent's main script again (multiprocessing does, to find
    functions defined there; our jobs are functions of importable modules). The console script imports the whole
    CLI: skipping it makes a worker start faster and shortens the moment in which a Ctrl-C reaches a worker that
    does not ignore SIGINT yet (its disposition is set as the first thing ``serve`` does)."""
    main = sys.modules.get("__main__")
    with _START_LOCK:
        hide = main is not None and getattr(main, "__spec__", None) is None and "__file__" in main.__dict__
        saved = main.__dict__.pop("__file__") if hide and main is not None else None
        try:
            yield
        finally:
            if hide and main is not None:
                main.__file__ = saved


class _Slot:
    """One worker process and the thread that feeds it jobs, watches its budget and replaces it when it dies.

    The thread keeps one job queued in the worker behind the running one (``DEPTH``), so a worker never waits for
    this process (whose GIL is busy with fetching and storing) between two images. When a worker dies or is killed,
    its running job gets the outcome and the queued one is sent again to the new worker."""

    def __init__(self, pool: ImagePool, index: int) -> None:
        self.pool = pool
        self.proc: BaseProcess | None = None
        self.conn: Connection | None = None
        self.sent: deque[_Job] = deque()  # sent to the worker, in order; the first runs (under the pool's lock)
        self.thread = threading.Thread(target=self._serve, name=f"image-slot-{index}", daemon=True)

    def kill(self) -> None:
        """SIGKILL the worker (the caller holds the pool's lock); the slot's thread sees it die and cleans up."""
        if self.proc is not None and self.proc.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)

    def _serve(self) -> None:
        # Workers are started from this thread with SIGINT and SIGTERM blocked: a new process inherits the mask,
        # so a Ctrl-C that arrives while it starts stays pending until the worker has set them to be ignored.
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        closing = False
        try:
            while True:
                while not closing and len(self.sent) < DEPTH:
                    try:
                        job = self.pool._jobs.get(block=not self.sent)
                    except queue.Empty:
                        break
                    if job is None:
                        closing = True
                    elif self.pool._cancel_pending:
                        job.future.cancel()
                    elif job.future.set_running_or_notify_cancel():
                        self._send(job)
                if not self.sent:
                    return  # closing, and every job sent is done
                self._wait()
        except BaseException as exc:  # a bug here must not leave callers waiting for ever
            with self.pool._lock:
                jobs = list(self.sent)
                self.sent.clear()
            for job in jobs:
                job.future.set_exception(exc)
            raise
        finally:
            self._stop_worker()

    def _send(self, job: _Job) -> None:
        """Hand ``job`` to the worker (a new one if there is none, or it died while idle)."""
        for _ in range(2):
            if self.proc is not None and not self.proc.is_alive():
                self._reap()
            if self.proc is None:
                self._start_worker()
            assert self.conn is not None
            try:
                self.conn.send((job.fn, job.args))
            except (OSError, EOFError):  # it died just now: once more with a new one
                self._reap()
                continue
            except Exception as exc:  # the job cannot be pickled: the worker never saw it
                job.future.set_exception(exc)
                return
            with self.pool._lock:
                self.sent.append(job)
            return
        job.future.set_exception(WorkerDied("cannot start an image worker"))

    def _wait(self) -> None:
        """Until the running job ends: its result, or its worker killed (over budget, abandoned) or dead."""
        assert self.proc is not None and self.conn is not None and self.proc.pid is not None
        job, pid, budget = self.sent[0], self.proc.pid, self.pool.budget
        since = time.monotonic()
        clock: tuple[float | None, float] | None = None  # (CPU seconds, monotonic) when the job started
        while True:
            if self.conn.poll(TICK):
                try:
                    message = self.conn.recv()
                except (OSError, EOFError):
                    return self._lost()
                except Exception as exc:  # a result that cannot be unpickled here
                    return self._done(False, exc)
                if message == STARTED:
                    clock = (cpu_seconds(pid), time.monotonic())
                    continue
                return self._done(*message)
            if job.abandoned:
                return self._lost()
            if budget is None:
                continue
            now = time.monotonic()
            if now - since > WALL_FACTOR * budget:
                return self._lost(ImageError(
                    f"too costly to decode: no result after {now - since:.0f} s (images.max_decode_seconds is "
                    f"{budget:g} s of CPU)"
                ))
            if clock is not None:
                cpu = cpu_seconds(pid)
                if cpu is not None and clock[0] is not None:
                    used, unit = cpu - clock[0], "s of CPU"
                else:
                    used, unit = now - clock[1], "s"
                if used > budget:
                    return self._lost(
                        ImageError(f"too costly to decode: more than {budget:g} {unit} (images.max_decode_seconds)")
                    )

    def _done(self, ok: bool, value: Any) -> None:
        with self.pool._lock:
            job = self.sent.popleft()
        if job.abandoned:
            job.future.set_exception(CancelledError())
        elif ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)

    def _lost(self, error: BaseException | None = None) -> None:
        """The worker is killed (over budget, abandoned) or died: the running job gets ``error`` (or WorkerDied, or
        is cancelled if abandoned); the jobs queued behind it go to a new worker."""
        with self.pool._lock:
            self.kill()
        code = self._reap()
        with self.pool._lock:
            job = self.sent.popleft()
            rest = list(self.sent)
            self.sent.clear()
        if job.abandoned or code in (-signal.SIGINT, -signal.SIGTERM):
            # abandoned, or interrupted with the run (a Ctrl-C that reached a worker before it could ignore it):
            # not attempted, left for a re-run, never a failure
            job.future.set_exception(CancelledError())
        else:
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
            job.future.set_exception(
                error or WorkerDied(f"the image worker died ({how}) while decoding; a re-run will try again")
            )
        for queued in rest:
            if queued.abandoned:
                queued.future.set_exception(CancelledError())
            else:
                self._send(queued)

    def _start_worker(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent_end, child_end = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=serve, args=(child_end, os.getpid()), name="archiver-image-worker",
                           daemon=True)
        with _without_main_script():
            proc.start()
        child_end.close()
        with self.pool._lock:
            self.proc, self.conn = proc, parent_end

    def _reap(self) -> int | None:
        """Forget the worker (killed or gone) and wait for it; its exit code."""
        with self.pool._lock:
            proc, conn = self.proc, self.conn
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
