"""Helpers for tests that drive the CLI: content-addressed keys and a config whose made-up hosts reach the
loopback origin through ``[fetch] connect_to``."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from tests.support.origin import Server

HOSTS = ("img.news.test", "photos.test", "blog.test")
LOCAL_STORAGE = '[storage]\nbackend = "local"\npath = "archive"'


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def key(data: bytes, ext: str) -> str:
    """The object key archiver stores these bytes under (no prefix)."""
    h = sha(data)
    return f"{h[:2]}/{h[2:4]}/{h}.{ext}"


def write_config(
    tmp: Path,
    origin: Server,
    extra: str = "",
    storage: str = "",
    *,
    hosts: Sequence[str] = HOSTS,
    base_url: str = "http://blog.test/",
    retries: int = 2,
    timeout: float = 5,
) -> Path:
    """``tmp/archiver.toml``: articles under ``tmp/site``, ``hosts`` served by ``origin``, ``extra`` lines
    appended to [fetch], ``storage`` replacing the local-folder [storage] section."""
    connect_to = ", ".join(f'"{h}" = "127.0.0.1:{origin.port}"' for h in hosts)
    cfg = tmp / "archiver.toml"
    cfg.write_text(
        f"""
[articles]
root = "site"
base_url = "{base_url}"
[fetch]
allow_networks = ["127.0.0.1/32"]
connect_to = {{ {connect_to} }}
retries = {retries}
backoff = 0.01
max_backoff = 0.05
timeout = {timeout}
{extra}
{storage or LOCAL_STORAGE}
""",
        encoding="utf-8",
    )
    return cfg


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of every file below ``folder`` except the manifest: equal snapshots mean no write."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".archiver" not in p.parts
    }
