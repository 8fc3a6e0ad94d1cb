"""Fleet-wide politeness in the manifest's own tables: connection slots per host (``per_host`` rows per host, and
``concurrency`` rows of the pseudo-host ``*`` for the global limit) held under leases, and host pauses.

A slot is a row ``host_slots(host, slot, holder, lease_until)``: free when ``lease_until`` is NULL or passed,
claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` (PostgreSQL: workers claiming at once pass over each other's rows
instead of waiting; SQLite: one writer at a time, nothing to skip), leased on the database's clock (never a
worker's: machines' clocks disagree) and renewed while its request runs, so the slot of a worker that was killed,
stopped (SIGSTOP) or cut off comes free when its lease passes. A pause is a row ``host_pauses(host, paused_until)``,
only ever extended, read in the same transaction as each claim. The process-side adapter is archiver.run.fleet.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

GLOBAL = "*"  # the pseudo-host whose slots are the fleet-wide `concurrency`


class SlotClaim(NamedTuple):
    slot: int | None  # the slot taken; None when all are held, or the host is paused
    paused: float  # seconds the host stays paused (0.0: not paused)


class HeldSlot(NamedTuple):
    host: str
    slot: int
    holder: str
    lease_left: float  # seconds


class FleetRecords:
    """Part of ``Manifest`` (which provides ``_db``, ``_tx``, ``path`` and ``open``)."""

    if TYPE_CHECKING:
        _db: Any
        path: Any

        def _tx(self) -> AbstractContextManager[Any]: ...

    def sibling(self) -> Any:
        """Another connection to this manifest, without the writer's lock (for a fleet gate, which must not share
        the run's connection: its claims would land inside the run's transactions)."""
        from archiver.errors import ManifestError

        url = getattr(self._db, "url", None)
        if url:
            return type(self)._open_postgres(url, lock=False, reconnect_for=self._db.reconnect_for)  # type: ignore
        if isinstance(self.path, Path):
            return type(self).open(self.path, lock=False)  # type: ignore[attr-defined]
        raise ManifestError("an in-memory manifest cannot be shared with other processes")

    def claim_slot(self, holder: str, host: str, limit: int, lease: float, *, paused_host: str | None = None,
                   make_rows: bool = False) -> SlotClaim:
        """One of the first ``limit`` slots of ``host`` for ``holder`` (for ``lease`` seconds), unless
        ``paused_host`` (default: ``host``) is paused; ``make_rows``: add the host's slot rows first if missing."""
        d = self._db.dialect
        with self._tx() as db:  # (no answer here depends on the clock: a transaction replayed after a lost
            if make_rows:       # connection must read what it read the first time, manifest/postgres.py)
                db.executemany("INSERT INTO host_slots (host, slot) VALUES (?, ?) ON CONFLICT (host, slot) DO NOTHING",
                               [(host, i) for i in range(limit)])
            got = db.execute(
                f"UPDATE host_slots SET holder = ?, lease_until = {d.now} + ? WHERE host = ? AND slot = ("
                f"SELECT slot FROM host_slots WHERE host = ? AND slot < ? AND (lease_until IS NULL OR lease_until < "
                f"{d.now}) ORDER BY slot LIMIT 1{d.skip_locked}) AND NOT EXISTS (SELECT 1 FROM host_pauses WHERE "
                f"host = ? AND paused_until > {d.now}) RETURNING slot",
                (holder, lease, host, host, limit, paused_host or host),
            ).fetchone()
        if got is not None:
            return SlotClaim(int(got[0]), 0.0)
        return SlotClaim(None, self.host_paused(paused_host or host))

    def release_slots(self, holder: str, slots: list[tuple[str, int]]) -> None:
        """Free the given (host, slot) pairs if ``holder`` still holds them."""
        with self._tx() as db:
            db.executemany("UPDATE host_slots SET holder = NULL, lease_until = NULL WHERE host = ? AND slot = ? AND "
                           "holder = ?", [(h, s, holder) for h, s in slots])

    def release_holder(self, holder: str) -> None:
        """Free every slot ``holder`` holds (a gate closing)."""
        with self._tx() as db:
            db.execute("UPDATE host_slots SET holder = NULL, lease_until = NULL WHERE holder = ?", (holder,))

    def renew_slots(self, holder: str, lease: float) -> int:
        """Extend every lease ``holder`` still holds to ``lease`` seconds from now; returns how many (a slot whose
        lease passed and that another holder took since is not among them)."""
        d = self._db.dialect
        with self._tx() as db:
            return int(db.execute(f"UPDATE host_slots SET lease_until = {d.now} + ? WHERE holder = ?",
                                  (lease, holder)).rowcount)

    def pause_host(self, host: str, seconds: float, why: str) -> tuple[float, bool]:
        """Pause ``host`` for ``seconds`` from now unless it is paused longer already (a pause is never shortened);
        returns (seconds it stays paused, whether this call set or extended it)."""
        d = self._db.dialect
        with self._tx() as db:
            changed = db.execute(
                f"INSERT INTO host_pauses (host, paused_until, why) VALUES (?, {d.now} + ?, ?) ON CONFLICT (host) DO "
                "UPDATE SET paused_until = excluded.paused_until, why = excluded.why "
                "WHERE excluded.paused_until > host_pauses.paused_until", (host, max(0.0, seconds), why),
            ).rowcount
        return self.host_paused(host), bool(changed)

    def host_paused(self, host: str) -> float:
        """Seconds ``host`` stays paused (0.0: not paused)."""
        d = self._db.dialect
        row = self._db.execute(f"SELECT paused_until - {d.now} FROM host_pauses WHERE host = ?", (host,)).fetchone()
        return max(0.0, float(row[0])) if row else 0.0

    def paused_hosts(self) -> list[tuple[str, float]]:
        """(host, seconds left) of every host paused now, the longest pause first."""
        d = self._db.dialect
        return [(h, float(left)) for h, left in self._db.execute(
            f"SELECT host, paused_until - {d.now} AS left_s FROM host_pauses WHERE paused_until > {d.now} "
            "ORDER BY left_s DESC, host")]

    def held_slots(self) -> list[HeldSlot]:
        """Every slot held under a live lease, by host and slot (for `status`)."""
        d = self._db.dialect
        return [HeldSlot(h, int(s), w, float(left)) for h, s, w, left in self._db.execute(
            f"SELECT host, slot, holder, lease_until - {d.now} FROM host_slots WHERE holder IS NOT NULL AND "
            f"lease_until >= {d.now} ORDER BY host, slot")]


__all__ = ["GLOBAL", "FleetRecords", "HeldSlot", "SlotClaim"]
