"""Where the manifest lives: the SQLite file at ``[manifest] path``, or the PostgreSQL database of ``[manifest] url``
(the environment's ``ARCHIVER_MANIFEST_URL`` wins over both)."""

from __future__ import annotations

import os
from pathlib import Path

from archiver.config import POSTGRES_SCHEMES, Config
from archiver.errors import ConfigError

ENV_URL = "ARCHIVER_MANIFEST_URL"
SCHEMES = POSTGRES_SCHEMES


def is_postgres(target: object) -> bool:
    return isinstance(target, str) and target.startswith(SCHEMES)


def check_url(url: str, key: str) -> None:
    """ConfigError naming ``key`` unless ``url`` is a PostgreSQL URL."""
    if not is_postgres(url):
        from archiver.redaction import redact

        # only a URL is shown (redacted): a libpq "host=… password=…" string is not one, and redaction judges URLs
        shown = f"{redact(url)!r} " if "://" in url else ""
        raise ConfigError(f"{key}: {shown}is not a PostgreSQL URL (postgresql://user@host:port/database)")


def parse_target(value: str, key: str) -> Path | str:
    """A manifest named on the command line: a PostgreSQL URL, or a SQLite file (relative to the cwd)."""
    if "://" in value:
        check_url(value, key)
        return value
    return Path(value).expanduser()


def manifest_target(cfg: Config) -> Path | str:
    """The configured manifest: a PostgreSQL URL, or the SQLite file's path."""
    env = os.environ.get(ENV_URL, "").strip()
    if env:
        check_url(env, ENV_URL)
        return env
    if cfg.manifest.url.strip():
        return cfg.manifest.url.strip()
    return cfg.resolve_path(cfg.manifest.path)


def shown(target: Path | str) -> str:
    """How messages name the manifest (a URL without its password)."""
    if is_postgres(target):
        from archiver.redaction import redact

        return redact(str(target))
    return str(target)


def local_path(cfg: Config) -> Path:
    """``[manifest] path``: the SQLite manifest, and in any case the file whose folder holds this machine's own files
    (the scratch folders of downloads), which a PostgreSQL manifest keeps too."""
    return cfg.resolve_path(cfg.manifest.path)


def exists(target: Path | str) -> bool:
    """Whether there may be a manifest to read (a PostgreSQL database says so when it is opened)."""
    return is_postgres(target) or Path(target).exists()
