"""Object keys and their public URLs: written (``original_key``, ``rendition_key``, ``public_url``) and read back
(``parse_key``, ``archive_key``) here only; ``check_config`` refuses at start-up a prefix or a public base URL that
cannot work. Keys are content-addressed, sharded names that can never escape the configured prefix, or, with
``[storage] key_template``, names made from it (template.py) and recorded in the manifest: such a key is read back
by looking it up there (``archive_key``'s ``lookup``), never by its shape."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from archiver.errors import ConfigError, StorageError
from archiver.storage.template import NAME_MAX as TEMPLATE_NAME_MAX
from archiver.storage.template import KeyParts, KeyTemplate, rendition_of

if TYPE_CHECKING:
    from archiver.config import Config

_SHA256 = re.compile(r"[0-9a-f]{64}")
_EXT = re.compile(r"[a-z0-9]{1,5}")
# RFC 3986 "unreserved" characters: a key made of them is the same in a URL, an S3 key and a file name.
_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")
MAX_KEY_BYTES = 1024  # S3's limit
# segments of _SEGMENT's characters joined by "/", none of them "." or "..": one match, not one per segment (a report
# at a million images checks four million keys)
_SAFE_SEGMENT = r"(?!\.\.?(?:/|\Z))[A-Za-z0-9._~-]+"
_SAFE_KEY = re.compile(rf"{_SAFE_SEGMENT}(?:/{_SAFE_SEGMENT})*")


def normalise_prefix(prefix: str) -> str:
    """``"/a//b"`` → ``"a/b/"``; ``""`` stays ``""``. Refuses ``..``, and characters a URL would need to escape."""
    segments = [s for s in prefix.strip().split("/") if s not in ("", ".")]
    for seg in segments:
        if seg == ".." or not _SEGMENT.fullmatch(seg):
            raise ConfigError(
                f"[storage] prefix: {prefix!r} is not a safe key prefix "
                "(use letters, digits, '.', '_', '~', '-' and '/', no '..')"
            )
    return "".join(f"{s}/" for s in segments)


def _check(sha256: str, ext: str) -> None:
    if not _SHA256.fullmatch(sha256):
        raise ValueError(f"not a lowercase hex SHA-256: {sha256!r}")
    if not _EXT.fullmatch(ext):
        raise ValueError(f"not a file extension (1-5 of a-z0-9): {ext!r}")


def original_key(prefix: str, sha256: str, ext: str) -> str:
    """Where an original lives: ``{prefix}ab/cd/abcd….{ext}``."""
    _check(sha256, ext)
    return f"{normalise_prefix(prefix)}{sha256[:2]}/{sha256[2:4]}/{sha256}.{ext}"


def rendition_key(prefix: str, sha256: str, width: int, ext: str) -> str:
    """A thumbnail next to its original (``sha256`` is the ORIGINAL's): ``…/{sha256}-{width}w.{ext}``."""
    _check(sha256, ext)
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"not a rendition width: {width!r}")
    return f"{normalise_prefix(prefix)}{sha256[:2]}/{sha256[2:4]}/{sha256}-{width}w.{ext}"


def templated_key(cfg: Config, parts: KeyParts, width: int | None = None) -> str:
    """An original's key under ``[storage] key_template`` (with ``[storage] prefix``); the content-addressed key
    when no template is set. ``width``: every hash placeholder at least this wide (after a collision)."""
    prefix = normalise_prefix(cfg.storage.prefix)
    if not cfg.storage.key_template:
        return original_key(prefix, parts.sha256, parts.ext)
    _check(parts.sha256, parts.ext)
    return check_key(prefix + KeyTemplate.parse(cfg.storage.key_template).render(parts, width))


def check_key(key: str) -> str:
    """Every store calls this before touching a key: relative, no ``.``/``..``/empty segments, unreserved characters."""
    if len(key) > MAX_KEY_BYTES or not _SAFE_KEY.fullmatch(key):  # a safe key is ASCII: its length is its bytes'
        raise StorageError(f"refusing object key {key!r}: not a safe relative key")
    return key


_KEY = re.compile(
    r"(?P<prefix>(?:[A-Za-z0-9._~-]+/)*?)(?P<a>[0-9a-f]{2})/(?P<b>[0-9a-f]{2})/(?P<sha>[0-9a-f]{64})"
    r"(?:-(?P<w>\d+)w)?\.(?P<ext>[a-z0-9]{1,5})"
)


@dataclass(frozen=True)
class ParsedKey:
    """What a content-addressed key names: the original's SHA-256, and for a rendition its width."""

    key: str
    prefix: str
    sha256: str
    ext: str
    width: int | None = None  # set for a rendition (``…-320w.webp``)


def parse_key(key: str) -> ParsedKey | None:
    """The parts of a key ``original_key`` or ``rendition_key`` made (any prefix), else None."""
    m = _KEY.fullmatch(key)
    if not m or m["sha"][:2] != m["a"] or m["sha"][2:4] != m["b"]:
        return None
    return ParsedKey(key, m["prefix"], m["sha"], m["ext"], int(m["w"]) if m["w"] else None)


def check_config(cfg: Config) -> None:
    """At start-up (``open_store``), before anything is fetched: a ``[storage] prefix`` no key can be made with,
    and a ``public_base_url`` a key cannot be joined to unambiguously, are ConfigErrors naming the file and key."""
    where = f"{cfg.source}: " if cfg.source else ""
    try:
        prefix = normalise_prefix(cfg.storage.prefix)
    except ConfigError as exc:
        raise ConfigError(where + exc.message) from None
    widest = max(cfg.images.thumbnails, default=1)
    longest = rendition_key(prefix, "0" * 64, widest, "xxxxx")  # the longest key this configuration makes
    if len(longest.encode()) > MAX_KEY_BYTES:
        raise ConfigError(f"{where}[storage] prefix: {len(prefix)} characters leave no room for object keys "
                          f"(an S3 key has at most {MAX_KEY_BYTES} bytes)")
    if cfg.storage.backend == "local" and any(len(seg.encode()) > NAME_MAX for seg in prefix.split("/")):
        raise ConfigError(f"{where}[storage] prefix: a folder name is longer than {NAME_MAX} bytes")
    if cfg.storage.key_template:
        _check_template(cfg, prefix, widest, where)
    base = cfg.storage.public_base_url
    why = public_base_problem(base)
    if why:
        raise ConfigError(f"{where}[storage] public_base_url: {base!r} {why}")


NAME_MAX = 255  # bytes in one file name on the usual file systems


def _check_template(cfg: Config, prefix: str, widest: int, where: str) -> None:
    """The longest key the template can make (a 253-character host, a 64-character name, the full hash, a
    five-letter extension, the widest thumbnail) must be a safe key of at most 1024 bytes, and for a local folder
    have no file name longer than 255 bytes."""
    text = cfg.storage.key_template
    try:
        template = KeyTemplate.parse(text)
    except ValueError as exc:
        raise ConfigError(f"{where}[storage] key_template: {text!r} {exc}") from None
    host = ".".join(["h" * 63] * 4)[:253]
    parts = KeyParts("f" * 64, "xxxxx", f"https://{host}/{'n' * TEMPLATE_NAME_MAX}.jpg", 4102444800.0)
    original = prefix + template.render(parts, 64)
    longest = rendition_of(original, "xxxxx", widest, "xxxxx")
    try:
        check_key(longest)
    except StorageError:
        if len(longest.encode()) > MAX_KEY_BYTES:
            raise ConfigError(f"{where}[storage] key_template: {text!r} can make keys of {len(longest.encode())} "
                              f"bytes with [storage] prefix (an S3 key has at most {MAX_KEY_BYTES})") from None
        raise ConfigError(f"{where}[storage] key_template: {text!r} makes keys that are not safe relative keys "
                          f"(e.g. {longest[:80]!r}…)") from None
    if cfg.storage.backend == "local" and any(len(seg.encode()) > NAME_MAX for seg in longest.split("/")):
        raise ConfigError(f"{where}[storage] key_template: {text!r} can make a file name longer than {NAME_MAX} "
                          "bytes; put a '/' between long placeholders such as {host} and {name}")


def public_base_problem(base: str) -> str | None:
    """Why ``base`` cannot be joined to a key as a URL, or None. A base is a folder: it ends with ``/`` (a bare
    origin such as ``https://cdn.example.com`` gets one); anything else would glue the key to its last segment
    (``…/bucket`` + ``87/68/….png`` = ``…/bucket87/68/….png``), and a query or fragment would swallow the key."""
    parts = urlsplit(base)
    if parts.query or parts.fragment or "?" in base or "#" in base:
        return "has a query or fragment: the key would not be part of the path"
    if base and not (parts.scheme or base.startswith("/")):
        return (f"is relative: each page would look for the images under its own address (on a post at "
                f"/2024/01/01/hello/, {base}87/68/….png means /2024/01/01/hello/{base}87/…); write {'/' + base!r} "
                "(from the site's root) or a full URL")
    if base.endswith("/") or (parts.scheme and parts.netloc and not parts.path):
        return None
    return (f"does not end with '/': the key would be glued to {base.rsplit('/', 1)[-1]!r} "
            f"(…{base.rsplit('/', 1)[-1]}87/68/….png); if it is a folder, write {base + '/'!r}")


def _folder(base: str) -> str:
    """A base as the folder keys are joined to: a bare origin gets its ``/``."""
    return base if base.endswith("/") else base + "/"


def public_bases(cfg: Config) -> tuple[str, ...]:
    """Every form in which an article may hold an archive URL, longest first: ``[storage] public_base_url`` as
    configured and, when ``[articles] base_url`` is set, resolved against it (a relative base becomes absolute)."""
    base = _folder(cfg.storage.public_base_url)
    bases = {base}
    if cfg.articles.base_url:
        bases.add(urljoin(cfg.articles.base_url, base))
    return tuple(sorted(bases, key=len, reverse=True))


def public_url(public_base_url: str, key: str) -> str:
    """The URL a rewritten article uses for ``key``: the base (a folder, see ``public_base_problem``) and the key."""
    return _folder(public_base_url) + check_key(key)


KeyLookup = Callable[[str], "ParsedKey | None"]


def archive_key(url: str, bases: tuple[str, ...], lookup: KeyLookup | None = None) -> ParsedKey | None:
    """The key ``url`` points at when it is one of our archive URLs (a base + a content-addressed key, or a key
    ``lookup`` knows: the manifest's record of templated keys, ``Manifest.key_record``), else None. A ``#fragment``
    is not part of the key (a run keeps one it replaced: ``urls.kept_fragment``)."""
    url = url.split("#", 1)[0]
    for base in bases:
        if url.startswith(base):
            parsed = parse_key(url[len(base):])
            if parsed is None and lookup is not None:
                rest = url[len(base):]
                parsed = lookup(rest) if rest and "?" not in rest else None
            if parsed is not None:
                return parsed
    return None


def current_url(bases: tuple[str, ...], moved: Mapping[str, str]) -> Callable[[str], str] | None:
    """Text with every archive URL in it as it is now, after `archiver rekey` moved objects (``moved``: old key ->
    new key, chains followed): a URL, or an attribute [rewrite] responsive added (a srcset lists several); None when
    nothing ever moved."""
    if not moved:
        return None
    pattern = re.compile("(" + "|".join(re.escape(b) for b in bases) + r")([A-Za-z0-9._~/-]+)")

    def key_now(key: str) -> str:
        seen: set[str] = set()
        while key in moved and key not in seen:
            seen.add(key)
            key = moved[key]
        return key

    return lambda text: pattern.sub(lambda m: m[1] + key_now(m[2]), text)
