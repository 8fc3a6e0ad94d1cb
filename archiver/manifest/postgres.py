"""Opening a manifest in PostgreSQL (``[manifest] url``): a connection that speaks the manifest's SQL and whose errors
name the manifest (its password hidden), and the one writer's lock as a session advisory lock.

Imported only when a PostgreSQL URL is configured: the embedded SQLite default never loads psycopg.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from archiver.config import ManifestConfig
from archiver.errors import ConfigError, ManifestError
from archiver.manifest.dialect import POSTGRES, WRITER_LOCK, postgres_query
from archiver.manifest.rows import text_of_bytes
from archiver.redaction import redact, redact_text

try:
    import psycopg
except ImportError as exc:  # pragma: no cover - exercised by a test that hides the package
    psycopg = None  # type: ignore[assignment]
    _MISSING: ImportError | None = exc
else:
    _MISSING = None

CONNECT_TIMEOUT = 10  # seconds
RECONNECT_FOR = ManifestConfig().reconnect_for


def shown(url: str) -> str:
    """The URL as messages show it: no password, no secret query value."""
    return redact(url)


def _message(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return redact_text(text[0] if text else type(exc).__name__)


def _params(parameters: Sequence[object]) -> tuple[object, ...]:
    """Bytes (an article path that is not UTF-8: rows.stored_path) as the text PostgreSQL's TEXT columns can hold."""
    return tuple(text_of_bytes(p) if isinstance(p, bytes) else p for p in parameters)


class PgConnection:
    """The calls the manifest makes on a sqlite3 connection (``execute``, ``executemany``, ``executescript``), on one
    psycopg connection in autocommit mode (the manifest begins and ends its own transactions)."""

    dialect = POSTGRES

    def __init__(self, raw: Any, where: str, url: str = "", reconnect_for: float | None = None) -> None:
        self._raw = raw
        self.where = where
        self.url = url
        self.reconnect_for = RECONNECT_FOR if reconnect_for is None else reconnect_for

    def execute(self, sql: str, parameters: Sequence[object] = (), /) -> Any:
        try:
            cur = self._raw.cursor()
            cur.execute(postgres_query(sql), _params(parameters))
            return cur
        except psycopg.Error as exc:
            raise ManifestError(f"{self.where}: {_message(exc)}") from exc

    def executemany(self, sql: str, parameters: Iterable[Sequence[object]], /) -> Any:
        rows = [_params(p) for p in parameters]
        try:
            cur = self._raw.cursor()
            if rows:
                cur.executemany(postgres_query(sql), rows)
            return cur
        except psycopg.Error as exc:
            raise ManifestError(f"{self.where}: {_message(exc)}") from exc

    def executescript(self, script: str) -> None:
        try:
            self._raw.execute(script)
        except psycopg.Error as exc:
            raise ManifestError(f"{self.where}: {_message(exc)}") from exc

    def close(self) -> None:
        self._raw.close()


def connect(url: str, *, reconnect_for: float | None = None) -> PgConnection:
    """A connection to the manifest's database; ConfigError (exit 2) without psycopg, ManifestError when the server
    cannot be reached or refuses us."""
    where = shown(url)
    if psycopg is None:
        raise ConfigError(
            f"[manifest] url: {where}: a PostgreSQL manifest needs psycopg, which is not installed: "
            "pip install 'archiver[postgres]'"
        ) from _MISSING
    try:
        raw = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                              application_name="archiver")
    except psycopg.Error as exc:
        raise ManifestError(f"{where}: cannot open manifest: {_message(exc)}") from None
    except Exception as exc:  # a URL libpq cannot parse
        raise ConfigError(f"[manifest] url: {where}: {_message(exc)}") from None
    return PgConnection(raw, where, url, reconnect_for)


def take_lock(conn: PgConnection) -> None:
    """The one writing run: a session advisory lock, released when the connection closes (a killed run's session
    ends with its connection, so a crash never leaves the manifest locked)."""
    if not conn.execute("SELECT pg_try_advisory_lock(?)", (WRITER_LOCK,)).fetchone()[0]:
        raise ManifestError(f"{conn.where}: another archiver run is using this manifest; wait for it to finish")
