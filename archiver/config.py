"""Configuration: one frozen object built from TOML, every key defined once with its default and meaning.

Secrets never live here: S3 credentials come from boto3's own chain (environment, profile, role).
Unknown keys and wrong types raise ConfigError naming the file and the key.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archiver import __version__
from archiver.errors import ConfigError
from archiver.model import DISTANCE_LIMIT, Cause

if TYPE_CHECKING:
    import http.cookiejar


def _key(default: Any, doc: str) -> Any:
    """A config key: its default and a one-line description (config.example.toml repeats it)."""
    if isinstance(default, (list, dict)):
        raise TypeError("defaults must be immutable: tuples, or mappingproxy for tables")
    if isinstance(default, types.MappingProxyType):
        return field(default_factory=lambda: default, metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


DEFAULT_FIELDS = (
    "headimg", "thumbnail", "cover", "image", "banner", "feature", "featured_image",
    "gallery*", "images", "photos", "resources",  # lists: Minimal Mistakes galleries, Hugo images/resources, Hexo photos
)


@dataclass(frozen=True)
class ArticlesConfig:
    root: str = _key("source/_posts", "folder of articles scanned when `archiver run` gets no PATH")
    base_url: str = _key(
        "", "resolves root-relative and relative image URLs; empty: such URLs are reported, not guessed"
    )
    site_root: str = _key(
        "", "the folder your site serves at its root (Jekyll: the site's folder, Hugo: static, Hexo: source): "
        "root-relative image paths (/images/x.png) are archived from the files there, no HTTP; empty: they resolve "
        "against base_url"
    )
    front_matter_fields: tuple[str, ...] = _key(
        DEFAULT_FIELDS, "front-matter keys holding image URLs; dotted paths reach nested keys (image.path) and list "
        "entries' keys (gallery.image_path); * and ? match any characters in a key (gallery* is gallery2 too)"
    )
    extensions: tuple[str, ...] = _key(
        (".md", ".markdown", ".html", ".htm"), "file name endings that are articles"
    )
    follow_symlinks_outside: bool = _key(
        False, "archive (and rewrite) articles reached through a symlink that leads outside the folders given "
        "(PATHs, or root); false: such links are reported and what they lead to is never changed"
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
    cookies: str = _key(
        "", 'a Netscape cookie file ("cookies.txt", as curl and browser extensions export it): each cookie is sent '
        "only to the domain and path it names; empty: no cookies"
    )


@dataclass(frozen=True)
class ImagesConfig:
    thumbnails: tuple[int, ...] = _key(
        (320,), "rendition widths in px, e.g. [320, 640, 1280]; one rendition per width and format, never upscaled"
    )
    thumbnail_format: str = _key(
        "webp", 'rendition format when `formats` is empty: "webp", "jpeg", "png" or "avif"'
    )
    formats: tuple[str, ...] = _key(
        (), 'rendition formats, e.g. ["avif", "webp"]: every width in each (empty: [thumbnail_format]); all made '
        "from one decode; AVIF is left out, with a message at start-up, where the installed Pillow cannot write it"
    )
    thumbnail_quality: int = _key(80, "rendition encoder quality, 1-100 (webp, jpeg, avif)")
    max_pixels: int = _key(50_000_000, "images with more pixels are refused before decoding (decompression bombs)")
    max_jpeg_scans: int = _key(
        100, "JPEG scans allowed (each is a pass over the whole image; real JPEGs have 1-20): more are refused before "
        "decoding"
    )
    max_decode_seconds: float = _key(
        20.0, "CPU seconds one image may cost to decode, hash and thumbnail; beyond, its worker is killed and the "
        "image rejected as too costly to decode"
    )

    @property
    def output_formats(self) -> tuple[str, ...]:
        """The rendition formats, in the order configured (``formats``, else ``thumbnail_format`` alone)."""
        return self.formats or (self.thumbnail_format,)


@dataclass(frozen=True)
class StorageConfig:
    backend: str = _key("local", '"local" (a folder) or "s3"')
    path: str = _key("archive", "folder of the local backend")
    bucket: str = _key("media-archive", "S3 bucket")
    endpoint_url: str = _key("", "S3-compatible endpoint; empty means AWS")
    region: str = _key("us-east-1", "S3 region")
    prefix: str = _key("", "key prefix inside the bucket or folder: letters, digits, '.', '_', '~', '-' and '/'")
    key_template: str = _key(
        "", 'object keys people can browse, e.g. "{yyyy}/{mm}/{name}-{sha8}.{ext}" (placeholders: README "Key '
        'layouts"); empty: content-addressed keys ab/cd/<sha256>.<ext>. Changing it moves nothing until `archiver rekey`'
    )
    public_base_url: str = _key(
        "/archive/", "a folder URL, ending in '/' (a bare origin may omit it): a rewritten URL is it + the object key"
    )
    cache_control: str = _key("public, max-age=31536000, immutable", "Cache-Control of every stored object")
    concurrency: int = _key(8, "uploads at once")
    retry_for: float = _key(
        120.0, "seconds to keep retrying a store that is unreachable or failing (5xx) before the run gives up"
    )


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


@dataclass(frozen=True)
class ManifestConfig:
    path: str = _key(".archiver/manifest.sqlite3", "SQLite manifest: every URL, asset, object and article")
    url: str = _key(
        "", "PostgreSQL manifest instead (postgresql://user@host:5432/db; needs psycopg: `pip install -e '.[postgres]'` in the checkout); "
        "the environment's ARCHIVER_MANIFEST_URL wins; keep the password in ~/.pgpass or PGPASSWORD, not here"
    )
    reconnect_for: float = _key(
        60.0, "PostgreSQL manifest: seconds to wait for the server after the connection is lost (a restart, a "
        "failover) before giving up with an error; statements and transactions are retried on a new connection"
    )


@dataclass(frozen=True)
class DedupeConfig:
    max_distance: int = _key(10, "pHash Hamming distance (of 64 bits, 0-16) within which two images are candidates")
    rewrite_to_canonical: bool = _key(
        False, "during `run`, rewrite articles to the canonical copy of each near-duplicate group"
    )
    canonical: tuple[str, ...] = _key((), "asset sha256s or URLs pinned as the canonical copy of their group")
    exclude: tuple[str, ...] = _key((), "asset sha256s or URLs never grouped")
    prefer: tuple[str, ...] = _key(
        ("colour", "area", "lossless", "bytes", "first_seen"),
        'canonical choice, in order: "colour" (before greyscale), "area" (largest), "lossless" (a lossless '
        'full-colour image, then photo formats, then photos reduced to a palette), "bytes" (largest), "first_seen"',
    )
    report: str = _key("report/dedupe.html", "where `archiver dedupe` writes its HTML report (JSON beside it)")


@dataclass(frozen=True)
class RewriteConfig:
    responsive: bool = _key(
        False, "give each HTML <img> whose image is archived what it lacks of width, height, srcset (the renditions), "
        "sizes, loading and decoding; never an attribute the author wrote (restore removes them)"
    )
    sizes: str = _key("100vw", "the sizes attribute added with a srcset (how wide the image is shown)")
    loading: str = _key("lazy", 'the loading attribute added ("lazy"; empty: none added)')
    decoding: str = _key("async", 'the decoding attribute added ("async"; empty: none added)')
    picture: bool = _key(
        False, "with responsive and several [images] formats: wrap the <img> in a <picture> with a <source> per "
        "other format (AVIF first), unless it is in one already"
    )


@dataclass(frozen=True)
class Config:
    articles: ArticlesConfig = ArticlesConfig()
    fetch: FetchConfig = FetchConfig()
    images: ImagesConfig = ImagesConfig()
    storage: StorageConfig = StorageConfig()
    manifest: ManifestConfig = ManifestConfig()
    dedupe: DedupeConfig = DedupeConfig()
    rewrite: RewriteConfig = RewriteConfig()
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
    "rewrite": RewriteConfig,
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
    known = {"colour", "area", "lossless", "bytes", "first_seen"}
    if not d.prefer or set(d.prefer) - known:
        raise bad("[dedupe] prefer", f"must list some of {', '.join(sorted(known))}")
    if f.retries < 0:
        raise bad("[fetch] retries", "must be 0 or more")
    for section, name in (("fetch", "timeout"), ("fetch", "connect_timeout"), ("fetch", "backoff"),
                          ("fetch", "max_backoff"), ("storage", "retry_for"), ("manifest", "reconnect_for")):
        value = getattr(getattr(cfg, section), name)
        positive = name.endswith("timeout")
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            least = "more than 0" if positive else "0 or more"
            raise bad(f"[{section}] {name}", f"must be a number of seconds, {least} (got {value})")
        if value > MAX_SECONDS:  # a wait no run should make: a hostile Retry-After would hang it for good
            raise bad(f"[{section}] {name}", f"must be at most {MAX_SECONDS:g} seconds (one day; got {value:g})")
    import ipaddress

    for net in f.allow_networks:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise bad("[fetch] allow_networks", f"{net!r} is not a CIDR network") from None
    _validate_http(f, bad)
    if f.cookies:
        read_cookie_file(f.cookies, f"{where}: [fetch] cookies")
    if not im.thumbnails or any(w < 1 for w in im.thumbnails):
        raise bad("[images] thumbnails", "must list widths of at least 1 px")
    if im.thumbnail_format not in RENDITION_FORMATS:
        raise bad("[images] thumbnail_format", f"{im.thumbnail_format!r} is not one of {', '.join(RENDITION_FORMATS)}")
    for name in im.formats:
        if name not in RENDITION_FORMATS:
            raise bad("[images] formats", f"{name!r} is not one of {', '.join(RENDITION_FORMATS)}")
    if len(set(im.formats)) != len(im.formats):
        raise bad("[images] formats", "lists a format twice")
    rw = cfg.rewrite
    for name in ("sizes", "loading", "decoding"):
        value = getattr(rw, name)
        if any(c in value for c in "\"<>&") or _CONTROL.search(value) or value != value.strip():
            raise bad(f"[rewrite] {name}", f"{value!r} must be an attribute value without quotes, <, >, & or "
                                           "surrounding spaces")
    if not rw.sizes:
        raise bad("[rewrite] sizes", 'must not be empty (the default is "100vw")')
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
    if _CONTROL.search(st.cache_control):
        raise bad("[storage] cache_control", "must not contain control characters (it is an HTTP header)")
    for name in ("path",):
        if not getattr(st, name).strip():
            raise bad(f"[storage] {name}", "must name a folder")
    if not cfg.manifest.path.strip():
        raise bad("[manifest] path", "must name a file")
    url = cfg.manifest.url.strip()
    if url and not url.startswith(POSTGRES_SCHEMES):  # the URL itself is not shown: it may hold a password
        raise bad("[manifest] url", "is not a PostgreSQL URL (postgresql://user@host:port/database)")
    if not d.report.strip():
        raise bad("[dedupe] report", "must name a file")
    for ending in cfg.articles.extensions:
        if not ending.strip(". ") or any(c in ending for c in "/\\") or _CONTROL.search(ending):
            raise bad("[articles] extensions", f"{ending!r} is not a file name ending such as \".md\"")
    if cfg.articles.max_refs < 1:
        raise bad("[articles] max_refs", "must be at least 1")
    base = cfg.articles.base_url
    if base:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(base)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
        except ValueError:  # a port that is not a number, unbalanced brackets
            ok = False
        if not ok or any(c.isspace() for c in base) or _CONTROL.search(base):
            raise bad("[articles] base_url", f"{base!r} must be an http:// or https:// URL with a host")


RENDITION_FORMATS = ("webp", "jpeg", "png", "avif")
# Control characters (HTAB allowed, as HTTP allows it inside a header value): never in a header, a URL or a name.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# RFC 9110 token: what a header name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Headers the HTTP client sets itself: a configured value would break the framing of every request.
_CLIENT_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer",
                             "keep-alive", "proxy-connection", "expect"})
_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")


def _validate_http(f: FetchConfig, bad: Any) -> None:
    """What goes into requests: refused here, at start-up, rather than by the HTTP client on every URL."""
    if _CONTROL.search(f.user_agent):
        raise bad("[fetch] user_agent", "must not contain control characters (it is an HTTP header)")
    for table in ("headers", "connect_to"):
        for host in getattr(f, table):
            _check_host_key(f"[fetch] {table}", host, bad)
    for host, headers in f.headers.items():
        for name, value in headers.items():
            where = f"[fetch] headers.{host}"
            if not _TOKEN.fullmatch(name):
                raise bad(where, f"{name!r} is not a valid header name (letters, digits and !#$%&'*+.^_`|~-)")
            if name.lower() in _CLIENT_HEADERS:
                raise bad(where, f"{name} is set by the HTTP client (use connect_to to reach another address)")
            if _CONTROL.search(value):
                raise bad(f"{where}.{name}", "must not contain control characters (line breaks, NUL, ...)")
    for host, target in f.connect_to.items():
        where = f"[fetch] connect_to.{host}"
        address, colon, port = target.rpartition(":")
        if target.startswith("["):
            address = address[1:-1] if address.startswith("[") and address.endswith("]") else ""
        elif ":" in address:
            address = ""  # an IPv6 address must be written in brackets: "[::1]:8080"
        if not colon or not address or any(c.isspace() or c in "/@[]" for c in address) or _CONTROL.search(address):
            raise bad(where, f"{target!r} must be ADDRESS:PORT, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\"")
        if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise bad(where, f"{target!r}: the port must be a number from 1 to 65535")


def _check_host_key(where: str, host: str, bad: Any) -> None:
    """A host as it appears in a URL (lower-cased, ASCII): anything else would never match one."""
    if not host.isascii():
        try:
            ascii_form = host.encode("idna").decode("ascii")
        except UnicodeError:
            ascii_form = "its xn-- form"
        raise bad(f"{where}.{host}", f"write the host as URLs carry it: {ascii_form!r}")
    if _HOST_NAME.fullmatch(host.lower().rstrip(".")):
        return
    import ipaddress

    try:
        ipaddress.IPv6Address(host)  # an IPv6 host, as a URL's host name reads without its brackets
    except ValueError:
        raise bad(f"{where}.{host}", "must be a host name alone (no scheme, port, path or spaces), "
                                     'e.g. "img.example.com"') from None


_COOKIE_FLAGS = ("TRUE", "FALSE")


def _public_suffix(domain: str) -> bool:
    """Whether ``domain`` is a public suffix (``com``, ``co.uk``, ``github.io``), by the Public Suffix List that the
    ``publicsuffixlist`` package ships (the list browsers use to refuse such cookies)."""
    from publicsuffixlist import PublicSuffixList

    return not domain or PublicSuffixList().is_public(domain.lower().rstrip("."))


def read_cookie_file(path: str, where: str = "[fetch] cookies") -> http.cookiejar.MozillaCookieJar:
    """The cookies of a Netscape cookie file (curl's ``-c``, browser exports; ``#HttpOnly_`` lines included), read
    with the standard library. Every line is checked first, so a file it would refuse (or half read) is a
    ConfigError naming ``where``, the file and the line, never a cookie's value. Session cookies (no expiry) are
    kept: an export is made to be used; expired ones are dropped."""
    import http.cookiejar
    import time

    def bad(why: str) -> ConfigError:
        return ConfigError(f"{where}: {path}: {why}")

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise bad(f"cannot read the cookie file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise bad("the cookie file is not UTF-8 text") from None
    lines = text.splitlines()
    if not lines or not re.match(r"#( Netscape)? HTTP Cookie File", lines[0]):
        raise bad('not a Netscape cookie file: its first line must be "# Netscape HTTP Cookie File"')
    for number, line in enumerate(lines[1:], start=2):
        line = line.removeprefix("#HttpOnly_")
        if not line.strip() or line.strip().startswith(("#", "$")):
            continue
        parts = line.split("\t")
        if len(parts) != 7:
            raise bad(f"line {number} has {len(parts)} tab-separated fields; a cookie line has 7 (domain, "
                      "include subdomains, path, secure, expiry, name, value)")
        domain, subdomains, _path, secure, expires = parts[:5]
        if subdomains not in _COOKIE_FLAGS or secure not in _COOKIE_FLAGS:
            raise bad(f"line {number}: the include-subdomains and secure fields must be TRUE or FALSE")
        if (subdomains == "TRUE") != domain.startswith("."):
            raise bad(f"line {number}: include subdomains is {subdomains} but the domain "
                      f"{'does not start' if subdomains == 'TRUE' else 'starts'} with a dot")
        if subdomains == "TRUE" and _public_suffix(domain[1:]):
            raise bad(f"line {number}: {domain} is a public suffix: a cookie for it would go to every site under "
                      "it, which a browser never does; name the site's own domain")
        if expires and not expires.isdigit():
            raise bad(f"line {number}: the expiry must be a number of seconds since 1970 (or empty)")
        if not domain.strip(".") or _CONTROL.search(line.replace("\t", " ")):
            raise bad(f"line {number}: a cookie needs a domain and no control characters")
    jar = http.cookiejar.MozillaCookieJar(
        policy=http.cookiejar.DefaultCookiePolicy(strict_ns_domain=http.cookiejar.DefaultCookiePolicy.DomainStrictNonDomain)
    )
    try:
        jar.load(path, ignore_discard=True, ignore_expires=True)
    except (OSError, http.cookiejar.LoadError):
        raise bad("the standard library could not read it as a Netscape cookie file") from None
    now = time.time()
    for cookie in list(jar):
        if cookie.expires == 0:  # curl and browser exports write 0 for a session cookie
            cookie.expires, cookie.discard = None, True
        elif cookie.is_expired(now):
            jar.clear(cookie.domain, cookie.path, cookie.name)
    return jar


MAX_SECONDS = 86400.0


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
    if cfg.fetch.cookies.strip():  # kept as an absolute path: the fetcher has no config file to resolve it against
        cfg = replace(cfg, fetch=replace(cfg.fetch, cookies=str(cfg.resolve_path(cfg.fetch.cookies).absolute())))
    if cfg.articles.site_root.strip():  # likewise for the scan
        site_root = str(cfg.resolve_path(cfg.articles.site_root).absolute())
        cfg = replace(cfg, articles=replace(cfg.articles, site_root=site_root))
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


# The settings each settings-dependent refusal depends on (model.Cause): when one of them changes, URLs refused for
# that cause are tried again (their manifest rows keep the fingerprint of the settings they were refused under).
CAUSE_SETTINGS: dict[Cause, tuple[tuple[str, str], ...]] = {
    Cause.GUARD: (("fetch", "allow_networks"), ("fetch", "connect_to")),
    Cause.UNKNOWN_HOST: (("fetch", "connect_to"),),
    Cause.BASE_URL: (("articles", "base_url"),),
    Cause.MAX_BYTES: (("fetch", "max_bytes"),),
    Cause.MAX_PIXELS: (("images", "max_pixels"),),
    Cause.MAX_REDIRECTS: (("fetch", "max_redirects"),),
    Cause.FORBIDDEN: (("fetch", "headers"), ("fetch", "cookies")),  # the cookie file's bytes count too
}


def settings_fingerprint(cfg: Config, cause: Cause) -> str:
    """A short digest of the settings a refusal for ``cause`` depends on (equal settings, equal digest)."""
    values = []
    for section, key in CAUSE_SETTINGS[cause]:
        value = getattr(getattr(cfg, section), key)
        if isinstance(value, types.MappingProxyType):
            value = sorted((k.lower(), v) for k, v in value.items())
        elif isinstance(value, tuple):
            value = sorted(value)
        values.append(f"{section}.{key}={value!r}")
        if (section, key) == ("fetch", "cookies") and value:
            try:
                values.append(hashlib.sha256(Path(value).read_bytes()).hexdigest())
            except OSError:
                values.append("unreadable")
    return hashlib.sha256("\n".join(values).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def documented_keys() -> dict[str, dict[str, str]]:
    """Every section, key and description: what config.example.toml must list."""
    return {
        name: {f.name: f.metadata["doc"] for f in fields(cls)} for name, cls in SECTIONS.items()
    }


__all__ = ["Config", "load", "from_mapping", "documented_keys", "replace", "settings_fingerprint"]
