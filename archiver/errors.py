"""The exception tree every stage raises; the CLI turns each into one clear line, never a traceback.

    ArchiverError                 anything the user can act on
    ├── ConfigError               bad config file, key or value (exit 2)
    ├── ArticleError              an article cannot be read, decoded or written (file, line, reason)
    ├── UrlError                  a reference cannot become a fetchable URL (refused scheme, malformed host)
    │   └── NoBaseUrl             a relative URL and no articles.base_url
    ├── FetchError                a download did not give an image
    │   ├── Refused               refused before any request (scheme, malformed host)
    │   │   └── GuardRefused      the address guard refused the resolved address: never connected to
    │   ├── DeadLink              404 / 410 / other 4xx: final, not retried
    │   │   ├── UnknownHost       the host does not exist (NXDOMAIN)
    │   │   └── TooManyRedirects  more than fetch.max_redirects hops
    │   ├── NotAnImage            the body is not an image by its bytes (HTML error page, ...)
    │   ├── TooLarge              body over fetch.max_bytes
    │   └── TransientFetchError   retries exhausted on timeouts, resets, 408/429/5xx, short bodies
    ├── ImageError                the bytes claim an image format but cannot be decoded, or cost too much to
    │   │                         decode (max_jpeg_scans, max_decode_seconds)
    │   ├── TooManyPixels         more than images.max_pixels
    │   └── WorkerDied            the worker decoding it died (a crash, the OOM killer): failed, worth a re-run
    ├── StorageError              the object store refused or failed an operation
    └── ManifestError             the manifest database is unusable (locked, corrupt, newer schema)
        ├── ManifestUnavailable   its PostgreSQL server unreachable for [manifest] reconnect_for (exit 1)
        └── AssetGone             a concurrent `archiver gc` deleted the image a worker was about to record a URL
                                  against (or proved stored): nothing recorded; the worker archives it again

Errors from aiohttp, botocore, Pillow and sqlite3 are translated at the stage boundary with
``raise ... from exc``; nothing above a stage sees a third-party exception.

Every error carries ``outcome`` (a ``model.Outcome``): how a URL that failed with it is recorded and whether a
later run retries it: dead and rejected are final (reported, not an error exit), failed is worth a re-run; and
``cause`` (a ``model.Cause`` or None): the setting the outcome depends on, re-evaluated when that setting changes.
Every error also carries ``exit_code``: what the CLI exits with when it reaches the top (2 for what the user must
fix before anything can run: configuration, storage set-up, an unusable manifest; 1 otherwise).
"""

from __future__ import annotations

from archiver.model import Cause, Outcome
from archiver.terminal import shown_path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class ArchiverError(Exception):
    """Base of every error the archiver reports to the user."""

    outcome = Outcome.FAILED
    exit_code = EXIT_FAILED
    cause: Cause | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(ArchiverError):
    """The configuration file or a value in it is wrong; names the file and the key."""

    exit_code = EXIT_USAGE


class ArticleError(ArchiverError):
    """An article could not be read, decoded or written back; names the file (and line)."""

    def __init__(self, path: object, reason: str, line: int | None = None) -> None:
        where = f"{shown_path(path)}:{line}" if line else shown_path(path)
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.reason = reason
        self.line = line


class UrlError(ArchiverError):
    """A reference cannot be turned into a URL we may fetch."""

    outcome = Outcome.REJECTED

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


class NoBaseUrl(UrlError):
    """A relative URL, and no [articles] base_url to resolve it against."""

    cause = Cause.BASE_URL


class FetchError(ArchiverError):
    """A URL did not yield an image. ``reason`` is short and user-facing."""

    def __init__(self, url: str, reason: str, *, status: int | None = None, attempts: int = 1) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.status = status
        self.attempts = attempts


class Refused(FetchError):
    """The SSRF guard or the scheme check refused the URL; no request was made to it."""

    outcome = Outcome.REJECTED


class GuardRefused(Refused):
    """The address guard refused every address the host resolves to (``address``: one of them, for the hint)."""

    cause = Cause.GUARD

    def __init__(self, url: str, reason: str, *, status: int | None = None, attempts: int = 1,
                 address: str | None = None) -> None:
        super().__init__(url, reason, status=status, attempts=attempts)
        self.address = address


class DeadLink(FetchError):
    """The origin says the image is gone (404, 410) or the host does not exist."""

    outcome = Outcome.DEAD


class UnknownHost(DeadLink):
    """The host name does not exist (NXDOMAIN)."""

    cause = Cause.UNKNOWN_HOST


class Forbidden(DeadLink):
    """403: often hotlink protection, which a per-host Referer or a cookie ([fetch] headers, cookies) gets past."""

    cause = Cause.FORBIDDEN


class TooManyRedirects(DeadLink):
    """More redirect hops than fetch.max_redirects."""

    cause = Cause.MAX_REDIRECTS


class NotAnImage(FetchError):
    """The body is not an image by its magic bytes, whatever the Content-Type said."""

    outcome = Outcome.REJECTED


class TooLarge(FetchError):
    """The body is larger than fetch.max_bytes."""

    outcome = Outcome.REJECTED
    cause = Cause.MAX_BYTES


class TransientFetchError(FetchError):
    """Timeouts, resets, 408/429/5xx or short bodies, still failing after every retry."""

    outcome = Outcome.FAILED


class ImageError(ArchiverError):
    """The bytes look like an image but cannot be decoded, exceed images.max_pixels, or are too costly to decode."""

    outcome = Outcome.REJECTED

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TooManyPixels(ImageError):
    """More pixels than images.max_pixels: refused before decoding."""

    cause = Cause.MAX_PIXELS


class WorkerDied(ImageError):
    """The process decoding the image died (a crash, the OOM killer): not known to be the image's fault."""

    outcome = Outcome.FAILED


class StorageError(ArchiverError):
    """The object store refused or failed an operation (after its own retries).

    ``transient`` is true when waiting may help (endpoint unreachable, connection reset, 5xx, throttling);
    false for what only the user can fix (credentials, missing bucket, access denied, disk full). One that
    reaches the CLI is a set-up error (exit 2): the run itself records storage failures per URL."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ManifestError(ArchiverError):
    """The manifest database cannot be used (locked by another run, corrupt, newer schema)."""

    exit_code = EXIT_USAGE


class ManifestUnavailable(ManifestError):
    """A PostgreSQL manifest's server stayed unreachable for ``[manifest] reconnect_for`` seconds: worth a re-run."""

    exit_code = EXIT_FAILED


class AssetGone(ManifestError):
    """A PostgreSQL manifest: an `archiver gc` batch deleted the image (records and objects) that this worker had
    decided was already stored, between that decision and its record; nothing was recorded, and the URL is to be
    archived again (manifest/gc.py)."""

    exit_code = EXIT_FAILED
