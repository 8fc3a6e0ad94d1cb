"""Configuration: one frozen object built from TOML, every key defined once with its default and meaning.

Secrets never live here: S3 credentials come from boto3's own chain (environment, profile, role).
Unknown keys and wrong types raise ConfigError naming the file and the key.
"""

from __future__ import annotations

import tomllib
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from archiver import __version__
from archiver.errors import ConfigError
from archiver.model import DISTANCE_LIMIT


def _key(default: Any, doc: str) -> Any:
    """A config key: its default and a one-line description (config.example.toml repeats it)."""
    if isinstance(default, (list, dict)):
        raise TypeError("defaults must be immutable: tuples, or mappingproxy for tables")
    if isinstance(default, types.MappingProxyType):
        return field(default_factory=lambda: default, metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


DEFAULT_FIELDS = ("headimg", "thumbnail", "cover", "image", "banner", "feature", "featured_image")


@dataclass(frozen=True)
class ArticlesConfig:
    root: str = _key("source/_posts", "folder of articles scanned when `archiver run` gets no PATH")
    base_url: str = _key(
        "", "resolves root-relative and relative image URLs; empty: such URLs are reported, not guessed"
    )
    front_matter_fields: tuple[str, ...] = _key(
        DEFAULT_FIELDS, "front-matter keys holding image URLs; dotted paths reach nested keys (image.path)"
    )
    extensions: tuple[str, ...] = _key(
        (".md", ".markdown", ".html", ".htm"), "file name endings that are articles"
    )
    max_refs: int = _key(
        20_000, "image references per article; an article with more, or with more than 5 times as many lines, "
        "Markdown elements or front-matter values, is skipped and reported (scanning holds them all in memory)"
    )


@dataclass(frozen=True)
class FetchConfig:
    concurrency: int = _key(16, "downloads at once")
    per_host: int = _key(4, "downloads at once per host")
    timeout: float = _key(30.0, "seconds for one attempt (connect + whole body)")
    connect_timeout: float = _key(10.0, "seconds to establish a connection")
    retries: int = _key(4, "attempts after the first, for timeouts, resets, 408, 429 and 5xx")
    backoff: float = _key(0.5, "seconds before the first retry; doubles each attempt, with jitter")
    max_backoff: float = _key(60.0, "longest wait between attempts, Retry-After included")
    max_bytes: int = _key(52_428_800, "larger bodies are refused")
    max_redirects: int = _key(10, "redirect hops followed before giving up")
    min_rate: int = _key(
        1024, "bytes/s: a body arriving slower than this (over a few seconds) is abandoned and retried; 0: off"
    )
    user_agent: str = _key(f"archiver/{__version__}", "User-Agent header sent with every request")
    allow_networks: tuple[str, ...] = _key(
        (), 'CIDRs allowed despite the private-address guard, e.g. ["127.0.0.1/32"]'
    )
    headers: dict[str, dict[str, str]] = _key(
        types.MappingProxyType({}),
        'extra request headers per host, e.g. {"cdn.example.com" = {Referer = "https://example.com/"}}',
    )
    connect_to: dict[str, str] = _key(
        types.MappingProxyType({}),
        'like curl --connect-to: connect to another address for a host, e.g. {"img.example.com" = "127.0.0.1:8080"}',
    )


@dataclass(frozen=True)
class ImagesConfig:
    thumbnails: tuple[int, ...] = _key((320,), "thumbnail widths in px; one rendition per width, never upscaled")
    thumbnail_format: str = _key("webp", 'rendition format: "webp", "jpeg" or "png"')
    thumbnail_quality: int = _key(80, "rendition encoder quality, 1-100 (webp, jpeg)")
    max_pixels: int = _key(50_000_000, "images with more pixels are refused before decoding (decompression bombs)")
    max_jpeg_scans: int = _key(
        100, "JPEG scans allowed (each is a pass over the whole image; real JPEGs have 1-20): more are refused before "
        "decoding"
    )
    max_decode_seconds: float = _key(
        20.0, "CPU seconds one image may cost to decode, hash and thumbnail; beyond, its worker is killed and the "
        "image rejected as too costly to decode"
    )


@dataclass(frozen=True)
class StorageConfig:
    backend: str = _key("local", '"local" (a folder) or "s3"')
    path: str = _key("archive", "folder of the local backend")
    bucket: str = _key("media-archive", "S3 bucket")
    endpoint_url: str = _key("", "S3-compatible endpoint; empty means AWS")
    region: str = _key("us-east-1", "S3 region")
    prefix: str = _key("", "key prefix inside the bucket or folder")
    public_base_url: str = _key("/archive/", "a rewritten URL is public_base_url + object key")
    cache_control: str = _key("public, max-age=31536000, immutable", "Cache-Control of every stored object")
    concurrency: int = _key(8, "uploads at once")
    retry_for: float = _key(
        120.0, "seconds to keep retrying a store that is unreachable or failing (5xx) before the run gives up"
    )


@dataclass(frozen=True)
class ManifestConfig:
    path: str = _key(".archiver/manifest.sqlite3", "SQLite manifest: every URL, asset, object and article")


@dataclass(frozen=True)
class DedupeConfig:
    max_distance: int = _key(10, "pHash Hamming distance (of 64 bits, 0-16) within which two images are candidates")
    rewrite_to_canonical: bool = _key(
        False, "during `run`, rewrite articles to the canonical copy of each near-duplicate group"
    )
    canonical: tuple[str, ...] = _key((), "asset sha256s or URLs pinned as the canonical copy of their group")
    exclude: tuple[str, ...] = _key((), "asset sha256s or URLs never grouped")
    prefer: tuple[str, ...] = _key(
        ("area", "lossless", "bytes", "first_seen"),
        'canonical choice, in order: "area" (largest), "lossless" format, "bytes" (largest), "first_seen"',
    )
    report: str = _key("report/dedupe.html", "where `archiver dedupe` writes its HTML report (JSON beside it)")


@dataclass(frozen=True)
class Config:
    articles: ArticlesConfig = ArticlesConfig()
    fetch: FetchConfig = FetchConfig()
    images: ImagesConfig = ImagesConfig()
    storage: StorageConfig = StorageConfig()
    manifest: ManifestConfig = ManifestConfig()
    dedupe: DedupeConfig = DedupeConfig()
    source: Path | None = None  # the file it was read from; relative paths in it resolve against its folder

    def resolve_path(self, value: str) -> Path:
        """A path from the config: relative paths are relative to the config file's folder (else the cwd)."""
        p = Path(value).expanduser()
        if p.is_absolute() or self.source is None:
            return p
        return self.source.parent / p


SECTIONS: dict[str, type] = {
    "articles": ArticlesConfig,
    "fetch": FetchConfig,
    "images": ImagesConfig,
    "storage": StorageConfig,
    "manifest": ManifestConfig,
    "dedupe": DedupeConfig,
}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "table"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is tuple:
        (inner, _ellipsis) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {type(value).__name__}")
        return tuple(_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
        return types.MappingProxyType(
            {str(k): _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
        )
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got boolean")
    if not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    return value


def _validate(cfg: Config, where: str) -> None:
    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{where}: {key}: {why}")

    f, im, st = cfg.fetch, cfg.images, cfg.storage
    for name in ("concurrency", "per_host", "max_bytes", "max_redirects"):
        if getattr(f, name) < 1 and not (name == "max_redirects" and f.max_redirects == 0):
            raise bad(f"[fetch] {name}", "must be at least 1")
    if f.min_rate < 0:
        raise bad("[fetch] min_rate", "must be 0 (off) or more")
    d = cfg.dedupe
    if not 0 <= d.max_distance <= DISTANCE_LIMIT:
        raise bad("[dedupe] max_distance", f"must be 0-{DISTANCE_LIMIT}")
    known = {"area", "lossless", "bytes", "first_seen"}
    if not d.prefer or set(d.prefer) - known:
        raise bad("[dedupe] prefer", f"must list some of {', '.join(sorted(known))}")
    if f.retries < 0:
        raise bad("[fetch] retries", "must be 0 or more")
    if f.timeout <= 0 or f.connect_timeout <= 0:
        raise bad("[fetch] timeout", "must be more than 0")
    import ipaddress

    for net in f.allow_networks:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise bad("[fetch] allow_networks", f"{net!r} is not a CIDR network") from None
    for host, target in f.connect_to.items():
        if ":" not in target.rsplit("]", 1)[-1]:
            raise bad(f"[fetch] connect_to.{host}", f"{target!r} must be ADDRESS:PORT")
    if not im.thumbnails or any(w < 1 for w in im.thumbnails):
        raise bad("[images] thumbnails", "must list widths of at least 1 px")
    if im.thumbnail_format not in ("webp", "jpeg", "png"):
        raise bad("[images] thumbnail_format", f"{im.thumbnail_format!r} is not one of webp, jpeg, png")
    if not 1 <= im.thumbnail_quality <= 100:
        raise bad("[images] thumbnail_quality", "must be 1-100")
    if im.max_pixels < 1:
        raise bad("[images] max_pixels", "must be at least 1")
    if im.max_jpeg_scans < 1:
        raise bad("[images] max_jpeg_scans", "must be at least 1")
    if not im.max_decode_seconds > 0:
        raise bad("[images] max_decode_seconds", "must be more than 0")
    if st.backend not in ("local", "s3"):
        raise bad("[storage] backend", f'{st.backend!r} is not "local" or "s3"')
    if st.backend == "s3" and not 3 <= len(st.bucket) <= 63:
        raise bad("[storage] bucket", "an S3 bucket name has 3-63 characters")
    if st.concurrency < 1:
        raise bad("[storage] concurrency", "must be at least 1")
    bad_chars = set(" \t\r\n\"'<>()[]{}\\`")
    if not st.public_base_url or bad_chars & set(st.public_base_url):
        raise bad("[storage] public_base_url", "must be a URL or path without spaces, quotes, brackets or parentheses")
    if cfg.articles.max_refs < 1:
        raise bad("[articles] max_refs", "must be at least 1")
    if cfg.articles.base_url and not cfg.articles.base_url.startswith(("http://", "https://")):
        raise bad("[articles] base_url", "must be an http:// or https:// URL")


def from_mapping(data: dict[str, Any], where: str = "<config>", source: Path | None = None) -> Config:
    """Build a Config from parsed TOML (a dict), checking every key and type."""
    sections: dict[str, Any] = {}
    for section, value in data.items():
        cls = SECTIONS.get(section)
        if cls is None:
            raise ConfigError(f"{where}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: [{section}] must be a table")
        known = {f.name: f for f in fields(cls)}
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for key, raw in value.items():
            if key not in known:
                raise ConfigError(
                    f"{where}: unknown key [{section}] {key} (known: {', '.join(known)})"
                )
            kwargs[key] = _coerce(raw, hints[key], f"{where}: [{section}] {key}")
        sections[section] = cls(**kwargs)
    cfg = Config(**sections, source=source)
    _validate(cfg, where)
    return cfg


def load(path: Path | None) -> Config:
    """Read a TOML config file; ``None`` gives the defaults."""
    if path is None:
        return Config()
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: config file is not UTF-8") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    return from_mapping(data, str(path), source=path.resolve())


def documented_keys() -> dict[str, dict[str, str]]:
    """Every section, key and description: what config.example.toml must list."""
    return {
        name: {f.name: f.metadata["doc"] for f in fields(cls)} for name, cls in SECTIONS.items()
    }


__all__ = ["Config", "load", "from_mapping", "documented_keys", "replace"]
