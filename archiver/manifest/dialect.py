"""What differs between the manifest's two databases (SQLite, PostgreSQL): the schema version's home, the DDL types,
the write transaction's first statement. Queries are written once, in the portable subset both accept."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any


class SQLiteDialect:
    name = "sqlite"
    begin = "BEGIN IMMEDIATE"  # the write lock at once: a busy writer is waited for, not met mid-transaction
    now = "((julianday('now') - 2440587.5) * 86400.0)"  # the database's clock, in seconds since the epoch
    skip_locked = ""  # one writer at a time: nothing to skip

    def version(self, conn: Any) -> int:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def has_tables(self, conn: Any) -> bool:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' LIMIT 1").fetchone() is not None

    def tables(self, conn: Any) -> set[str]:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def foreign(self, conn: Any) -> bool:
        """Schema 0 with tables of its own: another program's database."""
        return self.version(conn) == 0 and self.has_tables(conn)

    def apply(self, conn: Any, index: int, script: str) -> None:
        """Migration ``index`` (to version index + 1), in one transaction."""
        conn.executescript("BEGIN;" + script + f"; PRAGMA user_version={index + 1}; COMMIT;")


class PostgresDialect:
    name = "postgresql"
    begin = "BEGIN"
    now = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"
    skip_locked = " FOR UPDATE SKIP LOCKED"  # a row another worker is claiming is passed over, not waited for

    def version(self, conn: Any) -> int:
        if conn.execute("SELECT to_regclass('archiver_schema')").fetchone()[0] is None:
            return 0
        row = conn.execute("SELECT version FROM archiver_schema").fetchone()
        return 0 if row is None else int(row[0])

    def has_tables(self, conn: Any) -> bool:
        return bool(self.tables(conn))

    def tables(self, conn: Any) -> set[str]:
        return {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )} - {"archiver_schema"}

    def foreign(self, conn: Any) -> bool:
        """Schema 0 with tables of its own: another program's database. Read under the migration lock: another
        process migrating the new manifest at this moment commits its first tables and its version together, and
        the two reads must not fall on either side of that commit (it happened: three workers and a run starting on
        an empty database, one of them refused it as "not an archiver manifest")."""
        conn.execute("BEGIN")
        try:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            return self.version(conn) == 0 and self.has_tables(conn)
        finally:
            conn.execute("COMMIT")

    def apply(self, conn: Any, index: int, script: str) -> None:
        """Migration ``index`` in one transaction, under a transaction-scoped advisory lock: two processes opening a
        new manifest at once migrate it once (the second finds the version moved on and does nothing)."""
        conn.execute("BEGIN")
        try:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS archiver_schema (version BIGINT NOT NULL)")
            if self.version(conn) == index:
                conn.executescript(postgres_ddl(script))
                conn.execute("DELETE FROM archiver_schema")
                conn.execute("INSERT INTO archiver_schema (version) VALUES (?)", (index + 1,))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


SQLITE = SQLiteDialect()
POSTGRES = PostgresDialect()

# Advisory lock keys (64-bit, fixed): the one writing run, and a migration in progress; `archiver gc` from start to
# end (one gc at a time; a run that finds the writer's lock taken while this one is held knows it is a gc batch, and
# waits); a gc batch's deletion, exclusive, against the shared hold of every transaction that records a URL's outcome
# against an asset or records an asset (manifest/gc.py says why that is safe).
WRITER_LOCK = 0x61726368_69766572 & 0x7FFF_FFFF_FFFF_FFFF  # "archiver"
MIGRATION_LOCK = WRITER_LOCK - 1
GC_RUNNING_LOCK = WRITER_LOCK - 2
GC_BATCH_LOCK = WRITER_LOCK - 3

_TYPES = (
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),  # SQLite's REAL is a 64-bit float, PostgreSQL's a 32-bit one
    (re.compile(r"\bINTEGER\b"), "BIGINT"),  # SQLite's INTEGER is 64-bit
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\bTEXT\b"), 'TEXT COLLATE "C"'),  # compare and sort by bytes, as SQLite does (CHECK (a < b))
    (re.compile(r"^(\s*)end\b", re.M), r'\1"end"'),  # a reserved word in PostgreSQL
)
_CREATE = re.compile(r"CREATE TABLE (\w+) \(")
_REFERENCE = re.compile(r"^\s*(\w+)\b(.*?)\s+REFERENCES (\w+)\((\w+)\)")


@lru_cache(maxsize=64)
def postgres_ddl(script: str) -> str:
    """A migration written for SQLite as PostgreSQL runs it: the same tables with the equivalent types. A column's
    inline ``REFERENCES`` inside a ``CREATE TABLE`` becomes an ``ALTER TABLE … ADD FOREIGN KEY`` after the script
    (SQLite accepts a reference to a table created later in the script; PostgreSQL does not)."""
    script = re.sub(r"--[^\n]*", "", script)
    lines, later, table = [], [], None
    for line in script.splitlines():
        if m := _CREATE.search(line):
            table = m.group(1)
        elif table and (m := _REFERENCE.match(line)):
            column, target, target_column = m.group(1), m.group(3), m.group(4)
            line = line.replace(f" REFERENCES {target}({target_column})", "")
            later.append(f"ALTER TABLE {table} ADD FOREIGN KEY ({column}) REFERENCES {target}({target_column})")
        if line.strip().startswith(");"):
            table = None
        lines.append(line)
    out = "\n".join(lines)
    for pattern, repl in _TYPES:
        out = pattern.sub(repl, out)
    return out + ";\n" + ";\n".join(later) + (";" if later else "")


_IS_NOT = re.compile(r"\bIS NOT (?!NULL\b)")


@lru_cache(maxsize=1024)
def postgres_query(sql: str) -> str:
    """A query written for SQLite (``?`` placeholders, ``IS NOT`` for a NULL-safe comparison, the column ``end``)
    as psycopg takes it."""
    sql = _IS_NOT.sub("IS DISTINCT FROM ", sql)
    return sql.replace("%", "%%").replace("?", "%s")
