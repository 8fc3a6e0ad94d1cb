"""Copying a manifest's contents between databases (SQLite ↔ PostgreSQL, ``archiver migrate-manifest``; a dry run's
memory copy of a PostgreSQL manifest), and the per-table digest that proves a copy equal to its source."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, NamedTuple

from archiver.manifest.rows import BYTES_MARK, bytes_of_text
from archiver.manifest.schema import TABLES

if TYPE_CHECKING:
    from archiver.manifest.sqlite import Manifest

BATCH = 5_000


class TableDigest(NamedTuple):
    rows: int
    digest: str  # order-independent: the sum of the rows' SHA-256 values modulo 2**256, in hex


def _columns(db: Any, table: str) -> list[str]:
    cur = db.execute(f"SELECT * FROM {table} LIMIT 0")
    return [d[0] for d in cur.description]


def _canonical(value: object) -> object:
    if isinstance(value, str) and value.startswith(BYTES_MARK):  # bytes as a PostgreSQL manifest keeps them
        return {"bytes": value[len(BYTES_MARK):]}
    if isinstance(value, memoryview | bytearray):
        return {"bytes": bytes(value).hex()}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, float):
        return {"float": value.hex()}
    return value


def digest(db: Any, table: str, columns: list[str]) -> TableDigest:
    """Row count and order-independent digest of ``table``'s rows over ``columns`` (a value's type is part of it:
    1 and 1.0 and b"1" and "1" differ)."""
    total, rows = 0, 0
    cur = db.execute(f"SELECT {', '.join(_quoted(c) for c in columns)} FROM {table}")
    while batch := cur.fetchmany(BATCH):
        for row in batch:
            text = json.dumps([_canonical(v) for v in row], ensure_ascii=False, separators=(",", ":"))
            total = (total + int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())) % 2**256
            rows += 1
    return TableDigest(rows, f"{total:064x}")


def _quoted(column: str) -> str:
    return f'"{column}"'


def _value(value: object) -> object:
    """A value as any manifest takes it: bytes kept as text (PostgreSQL) become bytes again; the PostgreSQL
    connection turns bytes into that text."""
    if isinstance(value, str) and value.startswith(BYTES_MARK):
        return bytes_of_text(value)
    return bytes(value) if isinstance(value, memoryview) else value


def copy_manifest(src: Manifest, dst: Manifest, *, replace: bool = False) -> dict[str, TableDigest]:
    """Copy every table of ``src`` into ``dst`` (both at the latest schema) in one transaction on ``dst``, and check
    each table's count and digest there before committing; returns the digests. ``dst`` must hold no rows (the
    counter table aside) unless ``replace``, which first deletes what it holds. ManifestError on any difference
    (then nothing of the copy stays)."""
    from archiver.errors import ManifestError

    src_db, dst_db = src._db, dst._db
    expected: dict[str, TableDigest] = {}
    columns = {t: _columns(src_db, t) for t in TABLES}
    for t in TABLES:
        if sorted(columns[t]) != sorted(_columns(dst_db, t)):
            raise ManifestError(f"{dst.path}: table {t} has other columns than in {src.path}")
        expected[t] = digest(src_db, t, columns[t])
    with dst._tx() as db:
        if not replace:
            busy = [t for t in TABLES if t != "counters" and db.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()]
            if busy:
                raise ManifestError(
                    f"{dst.path}: already holds a manifest ({', '.join(busy)} not empty); "
                    "--replace to overwrite it"
                )
        for t in reversed(TABLES):
            db.execute(f"DELETE FROM {t}")
        for t in TABLES:
            cols = columns[t]
            sql = (f"INSERT INTO {t} ({', '.join(_quoted(c) for c in cols)}) "
                   f"VALUES ({', '.join('?' * len(cols))})")
            cur = src_db.execute(f"SELECT {', '.join(_quoted(c) for c in cols)} FROM {t}")
            while batch := cur.fetchmany(BATCH):
                db.executemany(sql, [tuple(_value(v) for v in r) for r in batch])
        for t in TABLES:
            got = digest(db, t, columns[t])
            if got != expected[t]:
                raise ManifestError(
                    f"{dst.path}: the copy of table {t} differs from {src.path} ({got.rows} rows, expected "
                    f"{expected[t].rows}): it changed while being copied (is something writing to it?); nothing was copied"
                )
    return expected
