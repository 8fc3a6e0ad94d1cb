"""The objects found missing or corrupt in storage, until they are stored again, and where their bytes came from.

`archiver verify` marks what it finds (and unmarks what it finds intact); `run` stores marked objects again before
it points an article at them, and `verify --repair` re-creates them: originals from their source URLs, thumbnails
from their originals. Recording an asset's objects (``Manifest.record_asset``) ends their marks.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from archiver.manifest.rows import LostObject


class LostObjects:
    """Part of ``Manifest`` (which provides ``_db`` and ``_tx``)."""

    if TYPE_CHECKING:
        _db: sqlite3.Connection

        def _tx(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def mark_lost(self, found: Iterable[LostObject], checked: Iterable[str] = ()) -> None:
        """One transaction: the objects verify found missing or corrupt (``found``), and the end of the marks of
        the objects it found intact (``checked``). Run and verify --repair store marked objects again."""
        now = time.time()
        with self._tx() as db:
            db.executemany("DELETE FROM lost_objects WHERE key=?", [(k,) for k in checked])
            db.executemany(
                "INSERT INTO lost_objects (key, asset, state, reason, found_at) VALUES (?,?,?,?,?) ON CONFLICT(key) "
                "DO UPDATE SET asset=excluded.asset, state=excluded.state, reason=excluded.reason, "
                "found_at=excluded.found_at",
                [(o.key, o.asset, o.state, o.reason, now) for o in found],
            )

    def lost_objects(self) -> list[LostObject]:
        """Every object marked missing or corrupt, by key (those of assets the manifest no longer has are ignored)."""
        return [LostObject(*r) for r in self._db.execute(
            "SELECT l.key, l.asset, l.state, l.reason FROM lost_objects l JOIN assets a ON a.sha256 = l.asset "
            "ORDER BY l.key"
        )]

    def source_urls(self, sha256: str) -> list[str]:
        """The archived URLs that gave these bytes, oldest first, as the manifest keeps them (a URL that held a
        secret is kept redacted, with ``#sha256=``: it cannot be fetched again)."""
        return [r[0] for r in self._db.execute(
            "SELECT url FROM urls WHERE asset=? AND status='archived' ORDER BY first_seen, url", (sha256,)
        )]
