"""The work queue in the manifest's own tables: URLs waiting for a worker, claimed in batches under a lease with a
fencing token, and completed (the URL's outcome recorded and its queue row removed) in one transaction.

PostgreSQL: a claim takes rows with ``SELECT … FOR UPDATE SKIP LOCKED``, so any number of workers claim at once
without waiting for each other or taking the same row. SQLite: one writer, so a plain ``UPDATE … RETURNING`` in a
write transaction. Leases are timed by the database's clock, never a worker's (machines' clocks disagree).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, NamedTuple

from archiver.manifest.rows import url_key
from archiver.model import Outcome

HEARTBEAT = 10.0  # the longest wait between two heartbeats (and lease renewals) of a worker
RUN_PREFIX = "run/"  # the id of a run's own worker starts with this ("/" is in no host name: a host called "run" is not one)
LIVE = 3 * HEARTBEAT  # a worker heard from within this many seconds is alive (`archiver status`)


FORGET_SILENT = 600.0  # seconds: a worker row silent this long is forgotten (heartbeats come every 10 s at most)


class Claim(NamedTuple):
    url: str  # as the manifest keys it
    token: int  # the fencing token: complete() and renew() refuse any other


class UrlResult(NamedTuple):
    """What a worker found for a URL, as ``Manifest.record_url`` takes it."""

    status: Outcome
    reason: str | None = None
    asset: str | None = None
    http_status: int | None = None
    attempts: int = 0
    final_url: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    cause: str | None = None
    settings: str | None = None


class QueueDepth(NamedTuple):
    waiting: int  # never claimed, or released
    claimed: int  # under a live lease
    expired: int  # claimed, lease passed: the next claim takes them


class WorkerRow(NamedTuple):
    """A worker's heartbeat row, as `archiver status` shows it."""

    id: str
    host: str
    pid: int
    started_at: float
    silent_for: float  # seconds since its last heartbeat, by the database's clock
    held: int
    done: int


class WorkQueue:
    """Part of ``Manifest`` (which provides ``_db``, ``_tx``, ``_upsert_url`` and ``_gc_asset_holds``)."""

    if TYPE_CHECKING:
        _db: Any

        def _tx(self) -> AbstractContextManager[Any]: ...

        def _upsert_url(self, db: Any, url: str, status: Outcome, **fields: object) -> None: ...

        def _gc_asset_holds(self, db: Any, asset: str | None) -> None: ...

    def enqueue(self, urls: Iterable[str]) -> int:
        """Add URLs to the queue (one already there stays as it is, claim and all); returns how many were added."""
        now = time.time()
        keys = sorted({url_key(u) for u in urls})
        if not keys:
            return 0
        with self._tx() as db:
            before = db.execute("SELECT COUNT(*) FROM queue").fetchone()[0]
            db.executemany("INSERT INTO queue (url, enqueued_at) VALUES (?, ?) ON CONFLICT(url) DO NOTHING",
                           [(k, now) for k in keys])
            return int(db.execute("SELECT COUNT(*) FROM queue").fetchone()[0] - before)

    def claim(self, worker: str, n: int, lease: float) -> list[Claim]:
        """Up to ``n`` URLs nobody holds (waiting, or whose lease passed), oldest first, held by ``worker`` for
        ``lease`` seconds, and no more than a fair share of the queue (its URLs split between the live workers, by
        their heartbeats); each claim raises the URL's fencing token."""
        d = self._db.dialect
        with self._tx() as db:
            # a fair share: a small queue is split between the live workers, not taken whole by the first to ask
            # (the count is bounded: a long queue costs no more than a short one)
            live = max(1, int(db.execute(f"SELECT COUNT(*) FROM workers WHERE heartbeat_at >= {d.now} - ?",
                                         (LIVE,)).fetchone()[0]))
            if live > 1:
                queued = int(db.execute("SELECT COUNT(*) FROM (SELECT 1 FROM queue LIMIT ?) w",
                                        (n * live,)).fetchone()[0])
                n = min(n, max(1, -(-queued // live)))
            rows = db.execute(
                f"UPDATE queue SET claimed_by = ?, lease_until = {d.now} + ?, token = token + 1 WHERE url IN ("
                f"SELECT url FROM queue WHERE lease_until IS NULL OR lease_until < {d.now} "
                f"ORDER BY enqueued_at, url LIMIT ?{d.skip_locked}) RETURNING url, token",
                (worker, lease, n),
            ).fetchall()
        return sorted(Claim(u, int(t)) for u, t in rows)

    def renew(self, worker: str, claims: Iterable[Claim], lease: float) -> list[Claim]:
        """Extend the leases ``worker`` still holds by ``lease`` seconds from now; returns those it still holds
        (a claim another worker took after its lease passed is not among them: drop its work)."""
        d = self._db.dialect
        held = []
        with self._tx() as db:
            for c in claims:
                if db.execute(f"UPDATE queue SET lease_until = {d.now} + ? WHERE url = ? AND token = ? "
                              "AND claimed_by = ?", (lease, c.url, c.token, worker)).rowcount:
                    held.append(c)
        return held

    def complete(self, url: str, token: int, result: UrlResult) -> bool:
        """Record the URL's outcome and take it off the queue, in one transaction, if ``token`` is still its claim's
        token; False (nothing recorded) when the lease passed and another worker claimed it since: a late
        result is never recorded twice."""
        key = url_key(url)
        with self._tx() as db:
            self._gc_asset_holds(db, result.asset)  # first: a gc batch deleting it is waited for (manifest/gc.py)
            # the delete checks and takes the row at once: a claim racing it either sees no row or raises the
            # token first (then this deletes nothing)
            if db.execute("DELETE FROM queue WHERE url = ? AND token = ? RETURNING url", (key, token)).fetchone() \
                    is None:
                return False
            fields = result._asdict()
            del fields["status"]
            self._upsert_url(db, url, result.status, **fields)
        return True

    def record_result(self, url: str, result: UrlResult) -> None:
        """Record a URL's outcome outside the queue (a URL the run settles itself)."""
        fields = result._asdict()
        del fields["status"]
        with self._tx() as db:
            self._gc_asset_holds(db, result.asset)
            self._upsert_url(db, url, result.status, **fields)

    def release(self, claims: Iterable[Claim]) -> None:
        """Give back claims unfinished (a worker stopping): waiting again at once, not after the lease."""
        with self._tx() as db:
            db.executemany("UPDATE queue SET claimed_by = NULL, lease_until = NULL WHERE url = ? AND token = ?",
                           [(c.url, c.token) for c in claims])

    def release_runs(self) -> int:
        """Give back the claims of earlier runs' own workers (ids starting ``run:``) and forget their rows: the
        caller holds the single writer's lock, so any earlier run has ended (killed, most likely), and its claims
        need not wait out their leases. Returns how many claims were released."""
        with self._tx() as db:
            db.execute(f"DELETE FROM workers WHERE id LIKE '{RUN_PREFIX}%'")
            return int(db.execute("UPDATE queue SET claimed_by = NULL, lease_until = NULL "
                                  f"WHERE claimed_by LIKE '{RUN_PREFIX}%'").rowcount)

    def queue_depth(self) -> QueueDepth:
        d = self._db.dialect
        row = self._db.execute(
            "SELECT COALESCE(SUM(CASE WHEN lease_until IS NULL THEN 1 ELSE 0 END), 0), "
            f"COALESCE(SUM(CASE WHEN lease_until >= {d.now} THEN 1 ELSE 0 END), 0), "
            f"COALESCE(SUM(CASE WHEN lease_until < {d.now} THEN 1 ELSE 0 END), 0) FROM queue"
        ).fetchone()
        return QueueDepth(*(int(v) for v in row))

    def queued(self) -> Iterator[tuple[str, str | None, int]]:
        """(url, holder, token) of every queued URL, by URL."""
        for row in self._db.execute("SELECT url, claimed_by, token FROM queue ORDER BY url"):  # noqa: UP028
            yield row  # (not ``yield from``: closing this generator after the connection would close the cursor)

    # -- the workers' heartbeats -----------------------------------------------------------------
    def heartbeat(self, worker: str, host: str, pid: int, *, held: int, done: int) -> None:
        """Write (or create) ``worker``'s heartbeat row: alive now, by the database's clock. Rows silent for
        FORGET_SILENT seconds go (a worker that died with its database unreachable could not remove its own; one
        that was only paused writes its row again when it resumes)."""
        d = self._db.dialect
        with self._tx() as db:
            db.execute(f"DELETE FROM workers WHERE heartbeat_at < {d.now} - ?", (FORGET_SILENT,))
            db.execute(
                f"INSERT INTO workers (id, host, pid, started_at, heartbeat_at, held, done) VALUES "
                f"(?, ?, ?, {d.now}, {d.now}, ?, ?) ON CONFLICT(id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, "
                "held = excluded.held, done = excluded.done",
                (worker, host, pid, held, done),
            )

    def remove_worker(self, worker: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM workers WHERE id = ?", (worker,))

    def workers(self) -> list[WorkerRow]:
        """Every worker row, the most recently heard from first."""
        d = self._db.dialect
        return [WorkerRow(i, h, int(p), float(s), max(0.0, float(a)), int(n), int(k)) for i, h, p, s, a, n, k in
                self._db.execute(f"SELECT id, host, pid, started_at, {d.now} - heartbeat_at, held, done FROM workers "
                                 "ORDER BY heartbeat_at DESC, id")]

    def held_by(self) -> dict[str, int]:
        """How many URLs each worker holds under a live lease now (from the queue itself, not its last heartbeat)."""
        d = self._db.dialect
        return {str(w): int(n) for w, n in self._db.execute(
            f"SELECT claimed_by, COUNT(*) FROM queue WHERE lease_until >= {d.now} GROUP BY claimed_by")}

    def completed_since(self, seconds: float) -> int:
        """URLs whose outcome was recorded in the last ``seconds`` (by whoever: workers and runs)."""
        return int(self._db.execute("SELECT COUNT(*) FROM urls WHERE last_tried >= ?",
                                    (time.time() - seconds,)).fetchone()[0])

    def unqueued_states(self, urls: Iterable[str]) -> dict[str, tuple[Outcome, str | None, str | None, int | None,
                                                                       str | None]]:
        """For the URLs (as given) that have a recorded outcome and are not in the queue (any more): (status, reason,
        asset, http status, cause). What a run waiting for the fleet polls; one statement per 500 URLs."""
        by_key = {url_key(u): u for u in urls}
        batch = list(by_key)
        out = {}
        for i in range(0, len(batch), 500):
            chunk = batch[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for url, status, reason, asset, http_status, cause in self._db.execute(
                f"SELECT u.url, u.status, u.reason, u.asset, u.http_status, u.cause FROM urls u WHERE u.url IN "
                f"({marks}) AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.url = u.url)", chunk,
            ):
                out[by_key[url]] = (Outcome(status), reason, asset, http_status, cause)
        return out
